"""Satisfaction surveys (one per record and survey, answered once through a
signed link) and the posts of public web forms (for their rate limit).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "loom_surveys",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("survey", sa.String(63), nullable=False),
        sa.Column("object", sa.String(63), nullable=False),
        sa.Column("record_id", sa.String(32), nullable=False),
        sa.Column("address", sa.String(320), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("mailed_at", sa.DateTime(timezone=True)),
        sa.Column("answered_at", sa.DateTime(timezone=True)),
        sa.UniqueConstraint("survey", "object", "record_id", name="uq_loom_surveys_record"),
    )
    op.create_index("ix_loom_surveys_unmailed", "loom_surveys", ["mailed_at"])
    op.create_table(
        "loom_form_posts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("form", sa.String(63), nullable=False),
        sa.Column("sender", sa.String(64), nullable=False),
        sa.Column("posted_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_loom_form_posts_sender", "loom_form_posts", ["form", "sender", "posted_at"])


def downgrade() -> None:
    op.drop_table("loom_form_posts")
    op.drop_table("loom_surveys")
