"""`notify`: an in-app notification to each user `to` names (user ids, or
user names; `owner` is the record's owner), in the user's language. One
per (run, user), so a run tried again never notifies twice."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from loomcrm.platform import systemdb

from ..runs import new_id, utcnow
from ..templates import render
from . import Act, Dead


def recipients(conn: sa.Connection, value: Any) -> list[dict[str, Any]]:
    """Active users named by an expression's value: a user id or name, a
    comma-separated text of them, or a list."""
    items = value if isinstance(value, (list, tuple)) else str(value or "").split(",")
    wanted = [str(v).strip() for v in items if str(v).strip()]
    if not wanted:
        return []
    users = systemdb.users
    rows = conn.execute(sa.select(users.c.id, users.c.username, users.c.email, users.c.locale).where(
        sa.or_(users.c.id.in_(wanted), users.c.username.in_(wanted)), users.c.is_active.is_(True))).fetchall()
    return [dict(r._mapping) for r in rows]


def notify(act: Act) -> dict[str, Any]:
    people = recipients(act.conn, act.value("to"))
    if not people:
        raise Dead("'to' names no active user", "no_recipient")
    from .email import template_record

    record = template_record(act)
    now = utcnow()
    rows = [{"id": new_id(), "user_id": p["id"], "message": render(act.action.message, p["locale"] or "en", record),
             "object": act.flow.obj.name, "record_id": act.record.get("id"), "workflow": act.flow.name,
             "run_id": act.claim.id, "created_at": now, "read_at": None} for p in people]
    dialect = {"postgresql": postgresql, "sqlite": sqlite}[act.conn.dialect.name]
    act.conn.execute(dialect.insert(systemdb.notifications).on_conflict_do_nothing(index_elements=["run_id", "user_id"]), rows)
    return {"notified": [p["id"] for p in people]}
