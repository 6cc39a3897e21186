"""Automation: the outbox says who wrote and why, and the engine keeps its
runs, due timers, schedule ticks and in-app notifications. On PostgreSQL a
statement trigger on the outbox sends a NOTIFY, so waiting dispatchers wake
at once (a wake-up only: they read the outbox, never the message).

Events written before this revision predate the engine: they are marked
processed, so upgrading never replays a database's whole past.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("loom_outbox") as batch:
        batch.add_column(sa.Column("source", sa.String(20)))
        batch.add_column(sa.Column("metadata_version", sa.Integer))
        batch.add_column(sa.Column("depth", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("cause_workflow", sa.String(63)))
        batch.add_column(sa.Column("cause_run", sa.String(32)))
    op.execute("UPDATE loom_outbox SET processed_at = CURRENT_TIMESTAMP WHERE processed_at IS NULL")
    op.create_table(
        "loom_automation_runs",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("key", sa.String(300), nullable=False, unique=True),
        sa.Column("workflow", sa.String(63), nullable=False),
        sa.Column("action", sa.Integer, nullable=False),
        sa.Column("action_type", sa.String(20), nullable=False),
        sa.Column("object", sa.String(63), nullable=False),
        sa.Column("record_id", sa.String(32)),
        sa.Column("event_id", sa.BigInteger),
        sa.Column("event", sa.String(20), nullable=False),
        sa.Column("source", sa.String(20)),
        sa.Column("depth", sa.Integer, nullable=False, server_default="0"),
        sa.Column("metadata_version", sa.Integer, nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("error", sa.Text),
        sa.Column("payload", sa.JSON, nullable=False),
        sa.Column("result", sa.JSON),
        sa.Column("after", sa.String(32)),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True)),
        sa.Column("lease_token", sa.String(32)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_loom_automation_runs_due", "loom_automation_runs", ["status", "due_at"])
    op.create_index("ix_loom_automation_runs_workflow", "loom_automation_runs", ["workflow", "created_at"])
    op.create_index("ix_loom_automation_runs_record", "loom_automation_runs", ["record_id", "created_at"])
    op.create_index("ix_loom_automation_runs_after", "loom_automation_runs", ["after"])
    op.create_index("ix_loom_automation_runs_created", "loom_automation_runs", ["created_at", "id"])
    op.create_table(
        "loom_automation_timers",
        sa.Column("workflow", sa.String(63), primary_key=True),
        sa.Column("record_id", sa.String(32), primary_key=True),
        sa.Column("object", sa.String(63), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True)),
        sa.Column("event_id", sa.BigInteger, nullable=False),
        sa.Column("metadata_version", sa.Integer, nullable=False),
    )
    op.create_index("ix_loom_automation_timers_due", "loom_automation_timers", ["due_at"])
    op.create_table(
        "loom_automation_ticks",
        sa.Column("workflow", sa.String(63), primary_key=True),
        sa.Column("tick", sa.DateTime(timezone=True), primary_key=True),
        sa.Column("last_id", sa.String(32)),
        sa.Column("lease_until", sa.DateTime(timezone=True)),
        sa.Column("done_at", sa.DateTime(timezone=True)),
    )
    op.create_table(
        "loom_notifications",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("user_id", sa.String(32), sa.ForeignKey("loom_users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("object", sa.String(63)),
        sa.Column("record_id", sa.String(32)),
        sa.Column("workflow", sa.String(63)),
        sa.Column("run_id", sa.String(32)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("read_at", sa.DateTime(timezone=True)),
        sa.UniqueConstraint("run_id", "user_id", name="uq_loom_notifications_run_user"),
    )
    op.create_index("ix_loom_notifications_user", "loom_notifications", ["user_id", "read_at", "created_at"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute("""
            CREATE FUNCTION loom_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                PERFORM pg_notify('loom_outbox', '');
                RETURN NULL;
            END $$""")
        op.execute("CREATE TRIGGER loom_outbox_notify AFTER INSERT ON loom_outbox "
                   "FOR EACH STATEMENT EXECUTE FUNCTION loom_outbox_notify()")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS loom_outbox_notify ON loom_outbox")
        op.execute("DROP FUNCTION IF EXISTS loom_outbox_notify()")
    op.drop_index("ix_loom_notifications_user", table_name="loom_notifications")
    op.drop_table("loom_notifications")
    op.drop_table("loom_automation_ticks")
    op.drop_index("ix_loom_automation_timers_due", table_name="loom_automation_timers")
    op.drop_table("loom_automation_timers")
    for name in ("due", "workflow", "record", "after", "created"):
        op.drop_index(f"ix_loom_automation_runs_{name}", table_name="loom_automation_runs")
    op.drop_table("loom_automation_runs")
    with op.batch_alter_table("loom_outbox") as batch:
        for column in ("cause_run", "cause_workflow", "depth", "metadata_version", "source"):
            batch.drop_column(column)
