"""Targets (目标管理): a value a user or a department should reach in a
month, quarter or year, on the number a saved report counts.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "loom_targets",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("report", sa.String(63), nullable=False),
        sa.Column("holder_kind", sa.String(10), nullable=False),
        sa.Column("holder_id", sa.String(32), nullable=False),
        sa.Column("period", sa.String(10), nullable=False),
        sa.Column("starts_on", sa.Date, nullable=False),
        sa.Column("value", sa.Numeric(18, 2), nullable=False),
        sa.Column("set_by", sa.String(32)),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.current_timestamp()),
        sa.CheckConstraint("holder_kind IN ('user', 'department')", name="ck_loom_targets_holder"),
        sa.CheckConstraint("period IN ('month', 'quarter', 'year')", name="ck_loom_targets_period"),
        sa.UniqueConstraint("report", "holder_kind", "holder_id", "period", "starts_on", name="uq_loom_targets"),
    )
    op.create_index("ix_loom_targets_holder", "loom_targets", ["holder_kind", "holder_id", "starts_on"])


def downgrade() -> None:
    op.drop_index("ix_loom_targets_holder", table_name="loom_targets")
    op.drop_table("loom_targets")
