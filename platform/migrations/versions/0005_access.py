"""Who sees what: departments (a tree, each with a manager), users in a
department with a role a bundle may define, sessions an admin can tell
apart (address, browser), records shared beyond their
owners' scope, an audit log of administration, and failed sign-ins for
the lockout.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "loom_departments",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(63), nullable=False, unique=True),
        sa.Column("label", sa.String(200), nullable=False),
        sa.Column("parent_id", sa.String(32), sa.ForeignKey("loom_departments.id")),
        sa.Column("manager_id", sa.String(32), sa.ForeignKey("loom_users.id")),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.current_timestamp()),
    )
    with op.batch_alter_table("loom_users") as batch:
        # roles are no longer only admin and user: bundles define more
        batch.drop_constraint("ck_loom_users_role", type_="check")
        batch.alter_column("role", type_=sa.String(63), existing_nullable=False)
        batch.add_column(sa.Column("department_id", sa.String(32), sa.ForeignKey("loom_departments.id",
                                                                                 name="fk_loom_users_department")))
    op.create_index("ix_loom_users_department", "loom_users", ["department_id"])
    # so an admin can tell a user's sessions apart before ending one
    with op.batch_alter_table("loom_sessions") as batch:
        batch.add_column(sa.Column("address", sa.String(45)))
        batch.add_column(sa.Column("user_agent", sa.String(300)))
    op.create_index("ix_loom_sessions_user", "loom_sessions", ["user_id"])
    op.create_table(
        "loom_shares",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("object", sa.String(63), nullable=False),
        sa.Column("record_id", sa.String(32), nullable=False),
        sa.Column("user_id", sa.String(32), sa.ForeignKey("loom_users.id", ondelete="CASCADE")),
        sa.Column("department_id", sa.String(32), sa.ForeignKey("loom_departments.id", ondelete="CASCADE")),
        sa.Column("access", sa.String(10), nullable=False),
        sa.Column("created_by", sa.String(32)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.current_timestamp()),
        sa.CheckConstraint("access IN ('read', 'edit')", name="ck_loom_shares_access"),
        sa.CheckConstraint("(user_id IS NULL) <> (department_id IS NULL)", name="ck_loom_shares_with"),
    )
    op.create_index("ix_loom_shares_record", "loom_shares", ["object", "record_id"])
    op.create_index("ix_loom_shares_user", "loom_shares", ["user_id", "object"])
    op.create_index("ix_loom_shares_department", "loom_shares", ["department_id", "object"])
    op.create_table(
        "loom_audit",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(32)),
        sa.Column("action", sa.String(63), nullable=False),
        sa.Column("target", sa.String(200)),
        sa.Column("details", sa.JSON),
    )
    op.create_index("ix_loom_audit_at", "loom_audit", ["at"])
    op.create_table(
        "loom_login_failures",
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("first_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True)),
    )


def downgrade() -> None:
    op.drop_table("loom_login_failures")
    op.drop_index("ix_loom_audit_at", table_name="loom_audit")
    op.drop_table("loom_audit")
    for name in ("record", "user", "department"):
        op.drop_index(f"ix_loom_shares_{name}", table_name="loom_shares")
    op.drop_table("loom_shares")
    op.drop_index("ix_loom_sessions_user", table_name="loom_sessions")
    with op.batch_alter_table("loom_sessions") as batch:
        batch.drop_column("user_agent")
        batch.drop_column("address")
    op.drop_index("ix_loom_users_department", table_name="loom_users")
    with op.batch_alter_table("loom_users") as batch:
        batch.drop_column("department_id")
        batch.alter_column("role", type_=sa.String(20), existing_nullable=False)
        batch.create_check_constraint("ck_loom_users_role", "role IN ('admin', 'user')")
    op.drop_table("loom_departments")
