"""Loom's own tables: migrated by Alembic, described here for queries.

`upgrade(engine)` brings any database to the newest revision of the
migration scripts in `migrations/`; the Table objects below mirror what
those scripts create (a test compares the two).
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

from .db import write_transaction

VERSION_TABLE = "loom_alembic_version"


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(Path(__file__).with_name("migrations")))
    return config


def upgrade(engine: Engine) -> None:
    """Migrate the system tables to the newest revision (idempotent)."""
    config = alembic_config()
    head = ScriptDirectory.from_config(config).get_current_head()
    with engine.connect() as conn:
        if MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).get_current_revision() == head:
            return
    with write_transaction(engine) as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "head")


meta = sa.MetaData()

config_table = sa.Table(
    "loom_config", meta,
    sa.Column("key", sa.String(100), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)
users = sa.Table(
    "loom_users", meta,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("username", sa.String(150), nullable=False, unique=True),
    sa.Column("display_name", sa.String(200), nullable=False),
    sa.Column("email", sa.String(320)),
    sa.Column("password_hash", sa.String(200), nullable=False),
    sa.Column("role", sa.String(63), nullable=False),
    sa.Column("locale", sa.String(10), nullable=False),
    sa.Column("is_active", sa.Boolean, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.current_timestamp()),
    sa.Column("department_id", sa.String(32), sa.ForeignKey("loom_departments.id", name="fk_loom_users_department")),
    sa.Index("ix_loom_users_department", "department_id"),
)
sessions = sa.Table(
    "loom_sessions", meta,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("user_id", sa.String(32), sa.ForeignKey("loom_users.id"), nullable=False),
    sa.Column("csrf_token", sa.String(64), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.current_timestamp()),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("address", sa.String(45)),
    sa.Column("user_agent", sa.String(300)),
    sa.Index("ix_loom_sessions_user", "user_id"),
)
api_tokens = sa.Table(
    "loom_api_tokens", meta,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("user_id", sa.String(32), sa.ForeignKey("loom_users.id"), nullable=False),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("prefix", sa.String(16), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.current_timestamp()),
    sa.Column("last_used_at", sa.DateTime(timezone=True)),
    sa.Column("revoked_at", sa.DateTime(timezone=True)),
)
metadata_versions = sa.Table(
    "loom_metadata_versions", meta,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("snapshot", sa.JSON, nullable=False),
    sa.Column("comment", sa.Text, nullable=False),
    sa.Column("created_by", sa.String(32)),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.current_timestamp()),
)
metadata_draft = sa.Table(
    "loom_metadata_draft", meta,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("base_version", sa.Integer, nullable=False),
    sa.Column("snapshot", sa.JSON, nullable=False),
    sa.Column("updated_by", sa.String(32)),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.current_timestamp()),
)
bundles = sa.Table(
    "loom_bundles", meta,
    sa.Column("name", sa.String(63), primary_key=True),
    sa.Column("version", sa.String(50), nullable=False),
    sa.Column("manifest", sa.JSON, nullable=False),
    sa.Column("pristine", sa.JSON, nullable=False),
    sa.Column("installed_by", sa.String(32)),
    sa.Column("installed_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.current_timestamp()),
)
history = sa.Table(
    "loom_history", meta,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("object", sa.String(63), nullable=False),
    sa.Column("record_id", sa.String(32), nullable=False),
    sa.Column("field", sa.String(63), nullable=False),
    sa.Column("old_value", sa.JSON),
    sa.Column("new_value", sa.JSON),
    sa.Column("note", sa.Text),
    sa.Column("changed_by", sa.String(32)),
    sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.current_timestamp()),
)
outbox = sa.Table(
    "loom_outbox", meta,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("object", sa.String(63), nullable=False),
    sa.Column("record_id", sa.String(32), nullable=False),
    sa.Column("event", sa.String(20), nullable=False),
    sa.Column("payload", sa.JSON, nullable=False),
    sa.Column("actor", sa.String(32)),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.current_timestamp()),
    sa.Column("processed_at", sa.DateTime(timezone=True)),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_error", sa.Text),
    # who wrote (form, api, import, automation), the metadata version the
    # save ran under, and for automation the chain that led to it
    sa.Column("source", sa.String(20)),
    sa.Column("metadata_version", sa.Integer),
    sa.Column("depth", sa.Integer, nullable=False, server_default="0"),
    sa.Column("cause_workflow", sa.String(63)),
    sa.Column("cause_run", sa.String(32)),
)
archives = sa.Table(
    "loom_archives", meta,
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
)
counters = sa.Table(
    "loom_counters", meta,
    sa.Column("key", sa.String(200), primary_key=True),
    sa.Column("value", sa.BigInteger, nullable=False),
)
saved_views = sa.Table(
    "loom_saved_views", meta,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("user_id", sa.String(32), sa.ForeignKey("loom_users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("object", sa.String(63), nullable=False),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("filter", sa.Text, nullable=False, server_default=""),
    sa.Column("sort", sa.String(400), nullable=False, server_default=""),
    sa.Column("q", sa.String(200), nullable=False, server_default=""),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.current_timestamp()),
    sa.Index("ix_loom_saved_views_owner", "user_id", "object"),
)

# --- automation (loomcrm.workflows) ----------------------------------------------
automation_runs = sa.Table(
    "loom_automation_runs", meta,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("key", sa.String(300), nullable=False, unique=True),   # (workflow, event or moment, action): once
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
    sa.Index("ix_loom_automation_runs_due", "status", "due_at"),
    sa.Index("ix_loom_automation_runs_workflow", "workflow", "created_at"),
    sa.Index("ix_loom_automation_runs_record", "record_id", "created_at"),
    sa.Index("ix_loom_automation_runs_after", "after"),
    sa.Index("ix_loom_automation_runs_created", "created_at", "id"),
)
automation_timers = sa.Table(
    "loom_automation_timers", meta,
    sa.Column("workflow", sa.String(63), primary_key=True),
    sa.Column("record_id", sa.String(32), primary_key=True),
    sa.Column("object", sa.String(63), nullable=False),
    # NULL: no timer now (cleared, fired, record deleted); the row keeps the
    # id of the last event applied, so an older event never moves it back
    sa.Column("due_at", sa.DateTime(timezone=True)),
    sa.Column("event_id", sa.BigInteger, nullable=False),
    sa.Column("metadata_version", sa.Integer, nullable=False),
    sa.Index("ix_loom_automation_timers_due", "due_at"),
)
automation_ticks = sa.Table(
    "loom_automation_ticks", meta,
    sa.Column("workflow", sa.String(63), primary_key=True),
    sa.Column("tick", sa.DateTime(timezone=True), primary_key=True),
    sa.Column("last_id", sa.String(32)),
    sa.Column("lease_until", sa.DateTime(timezone=True)),
    sa.Column("done_at", sa.DateTime(timezone=True)),
)
notifications = sa.Table(
    "loom_notifications", meta,
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
    sa.Index("ix_loom_notifications_user", "user_id", "read_at", "created_at"),
)

# --- who sees what (runtime.access) -----------------------------------------------
departments = sa.Table(
    "loom_departments", meta,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(63), nullable=False, unique=True),
    sa.Column("label", sa.String(200), nullable=False),
    sa.Column("parent_id", sa.String(32), sa.ForeignKey("loom_departments.id")),
    # users and departments point at each other: this one is created last
    sa.Column("manager_id", sa.String(32), sa.ForeignKey("loom_users.id", use_alter=True, name="fk_loom_departments_manager")),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.current_timestamp()),
)
shares = sa.Table(
    "loom_shares", meta,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("object", sa.String(63), nullable=False),
    sa.Column("record_id", sa.String(32), nullable=False),
    sa.Column("user_id", sa.String(32), sa.ForeignKey("loom_users.id", ondelete="CASCADE")),
    sa.Column("department_id", sa.String(32), sa.ForeignKey("loom_departments.id", ondelete="CASCADE")),
    sa.Column("access", sa.String(10), nullable=False),   # read or edit
    sa.Column("created_by", sa.String(32)),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.current_timestamp()),
    sa.CheckConstraint("access IN ('read', 'edit')", name="ck_loom_shares_access"),
    sa.CheckConstraint("(user_id IS NULL) <> (department_id IS NULL)", name="ck_loom_shares_with"),
    sa.Index("ix_loom_shares_record", "object", "record_id"),
    sa.Index("ix_loom_shares_user", "user_id", "object"),
    sa.Index("ix_loom_shares_department", "department_id", "object"),
)
audit = sa.Table(
    "loom_audit", meta,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("actor", sa.String(32)),
    sa.Column("action", sa.String(63), nullable=False),
    sa.Column("target", sa.String(200)),
    sa.Column("details", sa.JSON),
    sa.Index("ix_loom_audit_at", "at"),
)
login_failures = sa.Table(
    "loom_login_failures", meta,
    sa.Column("key", sa.String(200), primary_key=True),   # "user:NAME" or "address:IP"
    sa.Column("failures", sa.Integer, nullable=False),
    sa.Column("first_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("locked_until", sa.DateTime(timezone=True)),
)
targets = sa.Table(
    "loom_targets", meta,
    sa.Column("id", sa.String(32), primary_key=True),
    # a saved report of one number (no groups): what the target counts
    sa.Column("report", sa.String(63), nullable=False),
    sa.Column("holder_kind", sa.String(10), nullable=False),   # user or department
    sa.Column("holder_id", sa.String(32), nullable=False),
    sa.Column("period", sa.String(10), nullable=False),        # month, quarter or year
    sa.Column("starts_on", sa.Date, nullable=False),
    sa.Column("value", sa.Numeric(18, 2), nullable=False),
    sa.Column("set_by", sa.String(32)),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.current_timestamp()),
    sa.CheckConstraint("holder_kind IN ('user', 'department')", name="ck_loom_targets_holder"),
    sa.CheckConstraint("period IN ('month', 'quarter', 'year')", name="ck_loom_targets_period"),
    sa.UniqueConstraint("report", "holder_kind", "holder_id", "period", "starts_on", name="uq_loom_targets"),
    sa.Index("ix_loom_targets_holder", "holder_kind", "holder_id", "starts_on"),
)
# lead pools (公海): the records in a pool, and every claim (for caps, bans
# and protection periods)
pool_entries = sa.Table(
    "loom_pool_entries", meta,
    sa.Column("object", sa.String(63), primary_key=True),
    sa.Column("record_id", sa.String(32), primary_key=True),
    sa.Column("pool", sa.String(63), nullable=False),
    sa.Column("entered_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("previous_owner", sa.String(32)),
    sa.Column("reason", sa.String(63)),          # a return reason, or "recycled"
    sa.Index("ix_loom_pool_entries_pool", "pool", "entered_at"),
)
pool_claims = sa.Table(
    "loom_pool_claims", meta,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("pool", sa.String(63), nullable=False),
    sa.Column("object", sa.String(63), nullable=False),
    sa.Column("record_id", sa.String(32), nullable=False),
    sa.Column("user_id", sa.String(32), nullable=False),
    sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("ended_at", sa.DateTime(timezone=True)),   # returned or recycled
    sa.Column("ended_by", sa.String(10)),                # returned or recycled
    sa.Index("ix_loom_pool_claims_user", "user_id", "claimed_at"),
    sa.Index("ix_loom_pool_claims_record", "object", "record_id", "claimed_at"),
)
# when the owner of a record was last told it goes back to its pool soon
pool_reminders = sa.Table(
    "loom_pool_reminders", meta,
    sa.Column("object", sa.String(63), primary_key=True),
    sa.Column("record_id", sa.String(32), primary_key=True),
    sa.Column("reminded_at", sa.DateTime(timezone=True), nullable=False),
)
# approval processes (审批流): one request per submit of a record, and one
# task per approver of a step (decided, handed on, or still waiting)
approval_requests = sa.Table(
    "loom_approval_requests", meta,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("process", sa.String(63), nullable=False),
    sa.Column("object", sa.String(63), nullable=False),
    sa.Column("record_id", sa.String(32), nullable=False),
    sa.Column("submitter", sa.String(32)),
    # pending, approved, rejected, recalled or returned (sent back to the submitter)
    sa.Column("status", sa.String(10), nullable=False),
    sa.Column("step", sa.Integer, nullable=False),           # the current step's index
    sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("decided_at", sa.DateTime(timezone=True)),
    sa.Column("comment", sa.Text),
    sa.Index("ix_loom_approval_requests_record", "object", "record_id", "submitted_at"),
    sa.Index("ix_loom_approval_requests_submitter", "submitter", "submitted_at"),
)
approval_tasks = sa.Table(
    "loom_approval_tasks", meta,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("request_id", sa.String(32), sa.ForeignKey("loom_approval_requests.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("step", sa.Integer, nullable=False),
    sa.Column("approver", sa.String(32), nullable=False),
    # pending, approved, rejected, returned, handed (to someone else), skipped (the step was settled) or cancelled
    sa.Column("status", sa.String(10), nullable=False),
    sa.Column("origin", sa.String(10), nullable=False),     # step, added, handed or escalated
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("due_at", sa.DateTime(timezone=True)),
    sa.Column("reminded_at", sa.DateTime(timezone=True)),
    sa.Column("decided_at", sa.DateTime(timezone=True)),
    sa.Column("comment", sa.Text),
    sa.Index("ix_loom_approval_tasks_approver", "approver", "status", "created_at"),
    sa.Index("ix_loom_approval_tasks_request", "request_id", "step"),
    sa.Index("ix_loom_approval_tasks_due", "status", "due_at"),
)
# e-mails written in the transaction of what they tell (an approval waiting),
# delivered by the automation pump: never sent for a change rolled back
# --- SLA clocks (runtime.slas) -------------------------------------------------------
sla_clocks = sa.Table(
    "loom_sla_clocks", meta,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("object", sa.String(63), nullable=False),
    sa.Column("record_id", sa.String(32), nullable=False),
    sa.Column("sla", sa.String(63), nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("target_minutes", sa.Integer, nullable=False),
    sa.Column("pauses", sa.JSON, nullable=False),                     # [[from, to], ...] as ISO 8601
    sa.Column("paused_since", sa.DateTime(timezone=True)),
    sa.Column("stopped_at", sa.DateTime(timezone=True)),
    sa.Column("due_at", sa.DateTime(timezone=True)),                   # none while paused
    sa.Column("warn_at", sa.DateTime(timezone=True)),
    sa.Column("warned_at", sa.DateTime(timezone=True)),
    sa.Column("breached_at", sa.DateTime(timezone=True)),
    sa.Column("next_at", sa.DateTime(timezone=True)),                  # when the sweep acts next: a warning or the breach
    sa.UniqueConstraint("object", "record_id", "sla", name="uq_loom_sla_clocks_record"),
    sa.Index("ix_loom_sla_clocks_next", "next_at"),
)

# --- full-text search (runtime.search) -----------------------------------------------
# One row per record of an object with `search` fields: its words and Chinese
# character pairs. SQLite indexes it with an FTS5 table kept in step by
# triggers, PostgreSQL with a stored `vector` column (to_tsvector('simple',
# tokens)) under a GIN index: both made by migration 0010, as this
# portable declaration cannot say them.
search_docs = sa.Table(
    "loom_search_docs", meta,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("object", sa.String(63), nullable=False),
    sa.Column("record_id", sa.String(32), nullable=False),
    sa.Column("tokens", sa.Text, nullable=False),
    sa.UniqueConstraint("object", "record_id", name="uq_loom_search_docs_record"),
)

# --- surveys and public web forms (runtime.surveys, runtime.web_forms) ----------------
surveys = sa.Table(
    "loom_surveys", meta,
    sa.Column("id", sa.String(32), primary_key=True),        # the link carries it, signed
    sa.Column("survey", sa.String(63), nullable=False),
    sa.Column("object", sa.String(63), nullable=False),
    sa.Column("record_id", sa.String(32), nullable=False),
    sa.Column("address", sa.String(320), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("mailed_at", sa.DateTime(timezone=True)),
    sa.Column("answered_at", sa.DateTime(timezone=True)),
    sa.UniqueConstraint("survey", "object", "record_id", name="uq_loom_surveys_record"),
    sa.Index("ix_loom_surveys_unmailed", "mailed_at"),
)
form_posts = sa.Table(
    "loom_form_posts", meta,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("form", sa.String(63), nullable=False),
    sa.Column("sender", sa.String(64), nullable=False),       # a keyed hash of the address it came from
    sa.Column("posted_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_loom_form_posts_sender", "form", "sender", "posted_at"),
)

mail_outbox = sa.Table(
    "loom_mail_outbox", meta,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("address", sa.String(320), nullable=False),
    sa.Column("subject", sa.Text, nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("next_at", sa.DateTime(timezone=True), nullable=False),   # when to try (again)
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("sent_at", sa.DateTime(timezone=True)),
    sa.Column("failed_at", sa.DateTime(timezone=True)),                 # given up: the server refused for good
    sa.Column("error", sa.Text),
    sa.Index("ix_loom_mail_outbox_due", "sent_at", "failed_at", "next_at"),
)
