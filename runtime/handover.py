"""Handing a user's records to a colleague in one step (a leaver's, a
territory that changes hands): every record the user owns, of the objects
named (default: all), becomes the colleague's, each through the record
service (history, events, rules), with a line in the audit log."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from loomcrm.platform import audit, systemdb
from loomcrm.platform.db import write_transaction

from .records import RecordError


class HandOverError(ValueError):
    def __init__(self, message: str, status: int = 422):
        super().__init__(message)
        self.status = status


def hand_over(runtime, from_username: str, to_username: Any, objects: Any, actor) -> dict[str, Any]:
    """{object: records moved}, and the records that could not move (a rule
    refused them) under "refused"."""
    users = systemdb.users
    with runtime.engine.connect() as conn:
        source = conn.execute(sa.select(users.c.id).where(users.c.username == from_username)).scalar()
        target = conn.execute(sa.select(users.c.id).where(users.c.username == str(to_username or ""),
                                                          users.c.is_active.is_(True))).scalar()
    if source is None:
        raise HandOverError(f"there is no user {from_username[:63]!r}", 404)
    if target is None:
        raise HandOverError(f"name an active user to hand the records to (\"to\"), not {str(to_username)[:63]!r}")
    schema = runtime.schema()
    names = list(schema.objects) if objects is None else objects
    if not isinstance(names, list) or any(not isinstance(n, str) or schema.object(n) is None for n in names):
        raise HandOverError("objects is a list of object names")
    moved: dict[str, Any] = {}
    refused: list[dict[str, str]] = []
    for name in names:
        table = schema.table(name)
        with runtime.engine.connect() as conn:
            ids = conn.execute(sa.select(table.c.id).where(table.c.owner == source, table.c._deleted_at.is_(None))
                               .order_by(table.c.id)).scalars().all()
        count = 0
        for rid in ids:
            try:
                runtime.records.update(name, rid, {"owner": target}, actor)
                count += 1
            except RecordError as exc:
                refused.append({"object": name, "id": rid, "reason": exc.detail})
        if count:
            moved[name] = count
    with write_transaction(runtime.engine) as conn:
        audit.record(conn, actor, "records.hand_over", from_username,
                     {"to": to_username, "moved": moved, "refused": len(refused), "refused_records": refused[:20]})
    return {**moved, "refused": refused} if refused else moved
