"""Saved list views: a user's named filter, sort and columns for one object.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "loom_saved_views",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("user_id", sa.String(32), sa.ForeignKey("loom_users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("object", sa.String(63), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("filter", sa.Text, nullable=False, server_default=""),
        sa.Column("sort", sa.String(400), nullable=False, server_default=""),
        sa.Column("q", sa.String(200), nullable=False, server_default=""),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.current_timestamp()),
    )
    op.create_index("ix_loom_saved_views_owner", "loom_saved_views", ["user_id", "object"])


def downgrade() -> None:
    op.drop_index("ix_loom_saved_views_owner", table_name="loom_saved_views")
    op.drop_table("loom_saved_views")
