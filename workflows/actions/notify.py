"""`notify`: an in-app notification to each user `to` names (user ids, or
user names; `owner` is the record's owner), in the user's language. One
per (run, user), so a run tried again never notifies twice."""

from __future__ import annotations

from types import SimpleNamespace
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
    rows = conn.execute(sa.select(users.c.id, users.c.username, users.c.email, users.c.locale, users.c.role).where(
        sa.or_(users.c.id.in_(wanted), users.c.username.in_(wanted)), users.c.is_active.is_(True))).fetchall()
    return [dict(r._mapping) for r in rows]


def who_may_read(act: Act, conn: sa.Connection, people: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Of `people`, those who may read the record: nobody hears of a record they may not see."""
    if act.deleted or not act.record.get("id"):
        return people
    table = act.schema.table(act.flow.obj.name)
    resolver = act.automation.runtime.access
    return [p for p in people if resolver.of(SimpleNamespace(id=p["id"], role=p["role"]))
            .allows(conn, table, act.flow.obj.name, act.record["id"], "read")]


def notify(act: Act) -> dict[str, Any]:
    named = recipients(act.conn, act.value("to"))
    if not named:
        raise Dead("'to' names no active user", "no_recipient")
    people = who_may_read(act, act.conn, named)
    if not people:
        return {"notified": [], "not_allowed": [p["id"] for p in named]}
    from .email import template_record

    record = template_record(act)
    now = utcnow()
    rows = [{"id": new_id(), "user_id": p["id"], "message": render(act.action.message, p["locale"] or "en", record),
             "object": act.flow.obj.name, "record_id": act.record.get("id"), "workflow": act.flow.name,
             "run_id": act.claim.id, "created_at": now, "read_at": None} for p in people]
    dialect = {"postgresql": postgresql, "sqlite": sqlite}[act.conn.dialect.name]
    act.conn.execute(dialect.insert(systemdb.notifications).on_conflict_do_nothing(index_elements=["run_id", "user_id"]), rows)
    left_out = [p["id"] for p in named if p not in people]
    return {"notified": [p["id"] for p in people], **({"not_allowed": left_out} if left_out else {})}
