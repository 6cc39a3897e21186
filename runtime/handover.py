"""Handing a user's records to a colleague or to a lead pool in one step (a
leaver's, a territory that changes hands): every record the user owns (or
only the open ones), of the objects named (default: all), becomes the
colleague's, each through the record service (history, events, rules), with
a line in the audit log and a notification to the colleague."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa

from loomcrm.metadata.model import localized
from loomcrm.platform import audit, i18n, systemdb
from loomcrm.platform.db import write_transaction

from .pools import put_in_pool
from .records import RecordError

# what the colleague is told, in their language
TEXTS = {"handed": "%(user)s's records were handed to you: %(records)s."}


class HandOverError(ValueError):
    def __init__(self, message: str, status: int = 422):
        super().__init__(message)
        self.status = status


def hand_over(runtime, from_username: str, to_username: Any, objects: Any, actor, *,
              open_only: bool = False) -> dict[str, Any]:
    """{object: records moved}, and the records that could not move (a rule
    refused them) under "refused". `to_username` names a colleague, or a
    lead pool as "pool:NAME" (its object's records go back to it, their
    owner cleared). With `open_only`, records whose stage is won or lost
    stay. The colleague is told in a notification."""
    users = systemdb.users
    schema = runtime.schema()
    to = str(to_username or "")
    pool = schema.pools.get(to[5:]) if to.startswith("pool:") else None
    with runtime.engine.connect() as conn:
        source = conn.execute(sa.select(users.c.id).where(users.c.username == from_username)).scalar()
        target = None if pool else conn.execute(sa.select(users.c.id, users.c.locale).where(
            users.c.username == to, users.c.is_active.is_(True))).first()
    if source is None:
        raise HandOverError(f"there is no user {from_username[:63]!r}", 404)
    if target is None and pool is None:
        raise HandOverError(f"name an active user to hand the records to (\"to\"), or a pool as \"pool:NAME\", "
                            f"not {to[:63]!r}")
    names = list(schema.objects) if objects is None else objects
    if not isinstance(names, list) or any(not isinstance(n, str) or schema.object(n) is None for n in names):
        raise HandOverError("objects is a list of object names")
    if pool is not None:
        names = [n for n in names if n == pool.object]
    moved: dict[str, Any] = {}
    refused: list[dict[str, str]] = []
    for name in names:
        table = schema.table(name)
        conditions = [table.c.owner == source, table.c._deleted_at.is_(None)]
        stage = next((f for f in schema.object(name).fields if f.type == "stage"), None)
        if open_only and stage is not None:
            closed = [s.value for s in stage.stages if s.category != "open"]
            conditions.append(sa.or_(table.c[stage.name].is_(None), table.c[stage.name].not_in(closed)))
        with runtime.engine.connect() as conn:
            ids = conn.execute(sa.select(table.c.id).where(*conditions).order_by(table.c.id)).scalars().all()
        count = 0
        if pool is not None:
            count = put_in_pool(runtime, actor, pool.name, list(ids), reason="handed_over")
        for rid in ids if pool is None else ():
            try:
                runtime.records.update(name, rid, {"owner": target.id}, actor)
                count += 1
            except RecordError as exc:
                refused.append({"object": name, "id": rid, "reason": exc.detail})
        if count:
            moved[name] = count
    with write_transaction(runtime.engine) as conn:
        audit.record(conn, actor, "records.hand_over", from_username,
                     {"to": to, "moved": moved, "refused": len(refused), "refused_records": refused[:20]})
        if target is not None and moved:
            labels = ", ".join(f"{localized(schema.object(n).plural_label or schema.object(n).label, target.locale, n)} "
                               f"{count}" for n, count in moved.items())
            text = i18n.gettext(target.locale, TEXTS["handed"])
            conn.execute(sa.insert(systemdb.notifications).values(
                id=uuid.uuid4().hex, user_id=target.id, created_at=datetime.now(timezone.utc),
                message=text.replace("%(user)s", from_username).replace("%(records)s", labels)))
    return {**moved, "refused": refused} if refused else moved
