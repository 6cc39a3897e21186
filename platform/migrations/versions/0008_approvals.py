"""Approval processes (审批流): a request per submit of a record, a task per
approver of a step; and the outbox of e-mails the pump delivers.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "loom_approval_requests",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("process", sa.String(63), nullable=False),
        sa.Column("object", sa.String(63), nullable=False),
        sa.Column("record_id", sa.String(32), nullable=False),
        sa.Column("submitter", sa.String(32)),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("step", sa.Integer, nullable=False),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True)),
        sa.Column("comment", sa.Text),
    )
    op.create_index("ix_loom_approval_requests_record", "loom_approval_requests", ["object", "record_id", "submitted_at"])
    op.create_index("ix_loom_approval_requests_submitter", "loom_approval_requests", ["submitter", "submitted_at"])
    op.create_table(
        "loom_approval_tasks",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("request_id", sa.String(32), sa.ForeignKey("loom_approval_requests.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("step", sa.Integer, nullable=False),
        sa.Column("approver", sa.String(32), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("origin", sa.String(10), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True)),
        sa.Column("reminded_at", sa.DateTime(timezone=True)),
        sa.Column("decided_at", sa.DateTime(timezone=True)),
        sa.Column("comment", sa.Text),
    )
    op.create_index("ix_loom_approval_tasks_approver", "loom_approval_tasks", ["approver", "status", "created_at"])
    op.create_index("ix_loom_approval_tasks_request", "loom_approval_tasks", ["request_id", "step"])
    op.create_index("ix_loom_approval_tasks_due", "loom_approval_tasks", ["status", "due_at"])
    op.create_table(
        "loom_mail_outbox",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("address", sa.String(320), nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("sent_at", sa.DateTime(timezone=True)),
        sa.Column("failed_at", sa.DateTime(timezone=True)),
        sa.Column("error", sa.Text),
    )
    op.create_index("ix_loom_mail_outbox_due", "loom_mail_outbox", ["sent_at", "failed_at", "next_at"])


def downgrade() -> None:
    op.drop_index("ix_loom_mail_outbox_due", table_name="loom_mail_outbox")
    op.drop_table("loom_mail_outbox")
    op.drop_index("ix_loom_approval_tasks_due", table_name="loom_approval_tasks")
    op.drop_index("ix_loom_approval_tasks_request", table_name="loom_approval_tasks")
    op.drop_index("ix_loom_approval_tasks_approver", table_name="loom_approval_tasks")
    op.drop_table("loom_approval_tasks")
    op.drop_index("ix_loom_approval_requests_submitter", table_name="loom_approval_requests")
    op.drop_index("ix_loom_approval_requests_record", table_name="loom_approval_requests")
    op.drop_table("loom_approval_requests")
