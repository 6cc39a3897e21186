"""`route`: point a lookup (a ticket's queue) at the first target record
whose fields take the record's values (the queue for its category and
region), through the record service like `update`."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from loomcrm.runtime.records import RecordError, title_column

from . import Act, Dead
from .records import _refused


def route(act: Act) -> dict[str, Any]:
    if act.deleted:
        raise Dead("the record was deleted before it could be routed", "deleted")
    action, obj = act.action, act.schema.object(act.flow.obj.name)
    lookup = obj.field(action.field)
    target = act.schema.object(lookup.to) if lookup is not None and lookup.type == "lookup" else None
    if target is None:
        raise Dead(f"{action.field!r} is no lookup of {obj.name} any more", "unknown_field")
    chosen = next((row["id"] for row in _targets(act, target) if _takes(row, act.record, action.match)), None)
    if chosen is None or chosen == act.record.get(action.field):
        return {"routed": chosen, "unchanged": True}
    try:
        act.automation.runtime.records.update(obj.name, act.record["id"], {action.field: chosen}, act.user,
                                              conn=act.conn, origin=act.origin)
    except RecordError as exc:
        raise _refused(exc, f"routing {obj.name} {act.record['id']}") from None
    return {"routed": chosen}


def _targets(act: Act, target) -> list[dict[str, Any]]:
    """The target's live records in the action's order (a handful: queues, teams)."""
    table = act.schema.table(target.name)
    columns = {"id", *act.action.match.values()}
    order = []
    for name in (act.action.order or title_column(target) or "id").split(","):
        column = table.c[name.lstrip("-")]
        order.append(column.desc() if name.startswith("-") else column.asc())
    query = (sa.select(*(table.c[c] for c in columns)).where(table.c._deleted_at.is_(None))
             .order_by(*order, table.c.id).limit(1000))
    return [dict(r._mapping) for r in act.conn.execute(query)]


def _takes(target: dict[str, Any], record: dict[str, Any], match: dict[str, str]) -> bool:
    for mine, theirs in match.items():
        accepted, value = target.get(theirs), record.get(mine)
        if accepted in (None, "", []):
            continue
        if value not in (accepted if isinstance(accepted, list) else [accepted]):
            return False
    return True
