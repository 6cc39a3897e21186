"""In-app notifications (written by `notify` actions): a user's list, the
unread count behind the bell, marking read."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from loomcrm.platform.systemdb import notifications as table

from .runs import _iso, utcnow


def as_json(row) -> dict[str, Any]:
    r = row._mapping
    return {"id": r["id"], "message": r["message"], "object": r["object"], "record": r["record_id"],
            "workflow": r["workflow"], "created_at": _iso(r["created_at"]), "read_at": _iso(r["read_at"])}


def listing(conn: sa.Connection, user_id: str, *, unread: bool = False, limit: int = 50) -> list[dict[str, Any]]:
    query = sa.select(table).where(table.c.user_id == user_id)
    if unread:
        query = query.where(table.c.read_at.is_(None))
    rows = conn.execute(query.order_by(table.c.created_at.desc(), table.c.id.desc()).limit(limit)).fetchall()
    return [as_json(r) for r in rows]


def unread_count(conn: sa.Connection, user_id: str, cap: int = 99) -> int:
    """Unread notifications, counted up to `cap` (the bell shows 99+)."""
    limited = sa.select(table.c.id).where(table.c.user_id == user_id, table.c.read_at.is_(None)).limit(cap + 1).subquery()
    return conn.execute(sa.select(sa.func.count()).select_from(limited)).scalar()


def mark_read(conn: sa.Connection, user_id: str, notification_id: str | None = None) -> int:
    """Mark one of the user's notifications read (all of them without an id)."""
    query = sa.update(table).where(table.c.user_id == user_id, table.c.read_at.is_(None))
    if notification_id is not None:
        query = query.where(table.c.id == notification_id)
    return conn.execute(query.values(read_at=utcnow())).rowcount


def get(conn: sa.Connection, user_id: str, notification_id: str) -> dict[str, Any] | None:
    """One of the user's notifications (another user's is as missing as a made-up id)."""
    row = conn.execute(sa.select(table).where(table.c.user_id == user_id, table.c.id == notification_id)).first()
    return as_json(row) if row is not None else None
