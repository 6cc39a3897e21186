"""Archives of dropped fields and objects (so a drop never destroys data)
and the counters behind auto-number fields.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "loom_archives",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("object_uid", sa.String(64), nullable=False),
        sa.Column("object_name", sa.String(63), nullable=False),
        sa.Column("field_uid", sa.String(64)),
        sa.Column("field_name", sa.String(63)),
        sa.Column("definition", sa.JSON, nullable=False),
        sa.Column("table_name", sa.String(63), nullable=False),
        sa.Column("rows", sa.Integer, nullable=False, server_default="0"),
        sa.Column("metadata_version", sa.Integer, nullable=False),
        sa.Column("archived_by", sa.String(32)),
        sa.Column("archived_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.current_timestamp()),
        sa.Column("restored_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint("kind IN ('field', 'object', 'values')", name="ck_loom_archives_kind"),
    )
    op.create_index("ix_loom_archives_uid", "loom_archives", ["object_uid", "field_uid"])
    op.create_table(
        "loom_counters",
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("value", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("loom_counters")
    op.drop_index("ix_loom_archives_uid", table_name="loom_archives")
    op.drop_table("loom_archives")
