"""Loom's own tables: users, sessions, API tokens, configuration, metadata
versions and draft, installed bundles, record history and the outbox.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _now():
    return sa.func.current_timestamp()


def upgrade() -> None:
    op.create_table(
        "loom_config",
        sa.Column("key", sa.String(100), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    op.create_table(
        "loom_users",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("username", sa.String(150), nullable=False, unique=True),
        sa.Column("display_name", sa.String(200), nullable=False, server_default=""),
        sa.Column("email", sa.String(320)),
        sa.Column("password_hash", sa.String(200), nullable=False),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("locale", sa.String(10), nullable=False, server_default="en"),
        sa.Column("is_active", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_now()),
        sa.CheckConstraint("role IN ('admin', 'user')", name="ck_loom_users_role"),
    )
    op.create_table(
        "loom_sessions",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.String(32), sa.ForeignKey("loom_users.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("csrf_token", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_now()),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "loom_api_tokens",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("user_id", sa.String(32), sa.ForeignKey("loom_users.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("name", sa.String(200), nullable=False, server_default=""),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_now()),
        sa.Column("last_used_at", sa.DateTime(timezone=True)),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
    )
    op.create_table(
        "loom_metadata_versions",
        sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("snapshot", sa.JSON, nullable=False),
        sa.Column("comment", sa.Text, nullable=False, server_default=""),
        sa.Column("created_by", sa.String(32), sa.ForeignKey("loom_users.id", ondelete="SET NULL")),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_now()),
    )
    op.create_table(
        "loom_metadata_draft",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("base_version", sa.Integer, nullable=False),
        sa.Column("snapshot", sa.JSON, nullable=False),
        sa.Column("updated_by", sa.String(32), sa.ForeignKey("loom_users.id", ondelete="SET NULL")),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=_now()),
        sa.CheckConstraint("id = 1", name="ck_loom_metadata_draft_single"),
    )
    op.create_table(
        "loom_bundles",
        sa.Column("name", sa.String(63), primary_key=True),
        sa.Column("version", sa.String(50), nullable=False),
        sa.Column("manifest", sa.JSON, nullable=False),
        # The bundle as shipped: the base of the three-way merge that keeps
        # admin customisations on upgrade.
        sa.Column("pristine", sa.JSON, nullable=False),
        sa.Column("installed_by", sa.String(32), sa.ForeignKey("loom_users.id", ondelete="SET NULL")),
        sa.Column("installed_at", sa.DateTime(timezone=True), nullable=False, server_default=_now()),
    )
    op.create_table(
        "loom_history",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("object", sa.String(63), nullable=False),
        sa.Column("record_id", sa.String(32), nullable=False),
        sa.Column("field", sa.String(63), nullable=False),
        sa.Column("old_value", sa.JSON),
        sa.Column("new_value", sa.JSON),
        sa.Column("note", sa.Text),
        sa.Column("changed_by", sa.String(32)),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False, server_default=_now()),
    )
    op.create_index("ix_loom_history_record", "loom_history", ["object", "record_id", "changed_at"])
    op.create_table(
        "loom_outbox",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("object", sa.String(63), nullable=False),
        sa.Column("record_id", sa.String(32), nullable=False),
        sa.Column("event", sa.String(20), nullable=False),
        sa.Column("payload", sa.JSON, nullable=False),
        sa.Column("actor", sa.String(32)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_now()),
        sa.Column("processed_at", sa.DateTime(timezone=True)),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text),
    )
    op.create_index("ix_loom_outbox_pending", "loom_outbox", ["processed_at", "id"])


def downgrade() -> None:
    for table in ("loom_outbox", "loom_history", "loom_bundles", "loom_metadata_draft",
                  "loom_metadata_versions", "loom_api_tokens", "loom_sessions", "loom_users", "loom_config"):
        op.drop_table(table)
