"""Lead pools (公海): the records in a pool, every claim of one (for the
caps, the re-claim ban and the protection period), and the reminders sent.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "loom_pool_entries",
        sa.Column("object", sa.String(63), primary_key=True),
        sa.Column("record_id", sa.String(32), primary_key=True),
        sa.Column("pool", sa.String(63), nullable=False),
        sa.Column("entered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("previous_owner", sa.String(32)),
        sa.Column("reason", sa.String(63)),
    )
    op.create_index("ix_loom_pool_entries_pool", "loom_pool_entries", ["pool", "entered_at"])
    op.create_table(
        "loom_pool_claims",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("pool", sa.String(63), nullable=False),
        sa.Column("object", sa.String(63), nullable=False),
        sa.Column("record_id", sa.String(32), nullable=False),
        sa.Column("user_id", sa.String(32), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True)),
        sa.Column("ended_by", sa.String(10)),
    )
    op.create_index("ix_loom_pool_claims_user", "loom_pool_claims", ["user_id", "claimed_at"])
    op.create_index("ix_loom_pool_claims_record", "loom_pool_claims", ["object", "record_id", "claimed_at"])
    op.create_table(
        "loom_pool_reminders",
        sa.Column("object", sa.String(63), primary_key=True),
        sa.Column("record_id", sa.String(32), primary_key=True),
        sa.Column("reminded_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("loom_pool_reminders")
    op.drop_index("ix_loom_pool_claims_record", table_name="loom_pool_claims")
    op.drop_index("ix_loom_pool_claims_user", table_name="loom_pool_claims")
    op.drop_table("loom_pool_claims")
    op.drop_index("ix_loom_pool_entries_pool", table_name="loom_pool_entries")
    op.drop_table("loom_pool_entries")
