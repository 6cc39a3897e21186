"""SLA clocks: one row per record and SLA, with the moment the sweep acts next.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "loom_sla_clocks",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("object", sa.String(63), nullable=False),
        sa.Column("record_id", sa.String(32), nullable=False),
        sa.Column("sla", sa.String(63), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("target_minutes", sa.Integer, nullable=False),
        sa.Column("pauses", sa.JSON, nullable=False),
        sa.Column("paused_since", sa.DateTime(timezone=True)),
        sa.Column("stopped_at", sa.DateTime(timezone=True)),
        sa.Column("due_at", sa.DateTime(timezone=True)),
        sa.Column("warn_at", sa.DateTime(timezone=True)),
        sa.Column("warned_at", sa.DateTime(timezone=True)),
        sa.Column("breached_at", sa.DateTime(timezone=True)),
        sa.Column("next_at", sa.DateTime(timezone=True)),
        sa.UniqueConstraint("object", "record_id", "sla", name="uq_loom_sla_clocks_record"),
    )
    op.create_index("ix_loom_sla_clocks_next", "loom_sla_clocks", ["next_at"])


def downgrade() -> None:
    op.drop_table("loom_sla_clocks")
