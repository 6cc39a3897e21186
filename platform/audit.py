"""The admins' audit log: who changed users, departments, roles, shares
and metadata, when, and what (`loom_audit`)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa

from . import systemdb


def record(conn: sa.Connection, actor, action: str, target: str, details: dict | None = None) -> None:
    """One line, in the caller's transaction (it happens with the change or not at all)."""
    conn.execute(sa.insert(systemdb.audit).values(at=datetime.now(timezone.utc), actor=getattr(actor, "id", actor),
                                                  action=action, target=target[:200], details=details))


def listing(conn: sa.Connection, *, limit: int = 200, before: int | None = None) -> list[dict[str, Any]]:
    """The newest lines first, with the actor's user name."""
    t, u = systemdb.audit, systemdb.users
    query = (sa.select(t, u.c.username).select_from(t.outerjoin(u, u.c.id == t.c.actor))
             .order_by(t.c.id.desc()).limit(limit))
    if before is not None:
        query = query.where(t.c.id < before)
    return [{"id": r.id, "at": (r.at if r.at.tzinfo else r.at.replace(tzinfo=timezone.utc)).isoformat(),
             "actor": r.username, "action": r.action, "target": r.target, "details": r.details}
            for r in conn.execute(query)]
