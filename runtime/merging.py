"""Merging two or three duplicate records into one, in one transaction
through the record service.

One record survives. Each field takes the value of the record the user
picked for it; a field not picked keeps the survivor's value, or when that
is blank takes the first other record's. What linked to the others (their
children through lookups, their activities and tasks) moves to the
survivor; the others go to the recycle bin in one batch, so restoring one
brings them all back; history keeps a merge entry on each.
"""

from __future__ import annotations

import uuid
from typing import Any

from loomcrm.platform.db import write_transaction

import sqlalchemy as sa

from .fields import field_type
from .records import API, MERGED_FIELD, NotFound, Origin, RecordError, record_title
from .rules.duplicates import find_matches

MAX_OTHERS = 2
SHOWN_DUPLICATES = 5


def mergeable(obj, access) -> list:
    """The fields a merge picks values for: those the user may change."""
    return [f for f in obj.fields if field_type(f).writable and not f.read_only
            and access.field_right(obj.name, f.name) == "edit"]



def merge(runtime, object_name: str, body: Any, user, *, origin: Origin = API) -> dict[str, Any]:
    """Merge as `body` says: {"survivor": id, "others": [one or two ids],
    "values": {field (or "owner"): the id of the record whose value it
    takes}}. Answers the survivor as merged and the ids merged into it."""
    schema = runtime.schema()
    obj = schema.object(object_name) if isinstance(object_name, str) else None
    if obj is None:
        raise NotFound(f"there is no object {str(object_name)[:63]!r}")
    if not isinstance(body, dict):
        raise RecordError('send {"survivor": id, "others": [ids], "values": {field: id}}', status=422)
    survivor, others, picks = body.get("survivor"), body.get("others"), body.get("values") or {}
    if not isinstance(others, list) or not 1 <= len(others) <= MAX_OTHERS or not all(isinstance(i, str) for i in others):
        raise RecordError(f"others lists the one or {MAX_OTHERS} records merged into the survivor", status=422,
                          errors=[{"field": "others", "code": "type", "message": "one or two record ids"}])
    ids = [survivor, *others]
    if not isinstance(survivor, str) or len(set(ids)) != len(ids):
        raise RecordError("name the survivor once and each other record once", status=422,
                          errors=[{"field": "survivor", "code": "type", "message": "a record id, not among others"}])
    access = runtime.access.of(user)
    fields = {f.name: f for f in mergeable(obj, access)}
    if not isinstance(picks, dict):
        raise RecordError("values maps fields to the id of the record whose value they take", status=422)
    wrong = [{"field": str(name)[:63], "code": "invalid", "message": f"{str(name)[:63]} cannot take the value of "
                                                                       f"{str(rid)[:40]!r}"}
             for name, rid in picks.items() if (name not in fields and name != "owner") or rid not in ids]
    if wrong:
        raise RecordError("values names fields this merge cannot set or records it does not merge", status=422,
                          errors=wrong)
    records = runtime.records
    with write_transaction(runtime.engine) as conn:
        found = {rid: records.get(obj.name, rid, user, conn=conn, schema=schema) for rid in ids}
        kept = found[survivor]
        taken: dict[str, str] = {}   # field -> the record whose value it takes
        for name, f in fields.items():
            source = picks.get(name)
            if source is None and field_type(f).is_blank(kept.get(name)):
                source = next((rid for rid in others if not field_type(f).is_blank(found[rid].get(name))), None)
            if source is not None and source != survivor and found[source].get(name) != kept.get(name):
                taken[name] = source
        if picks.get("owner") not in (None, survivor) and found[picks["owner"]].get("owner") != kept.get("owner"):
            taken["owner"] = picks["owner"]
        data = {name: found[source].get(name) for name, source in taken.items()}
        batch = uuid.uuid4().hex
        for rid in others:
            records.move_links(conn, schema, obj, rid, obj, survivor, user, origin=origin)
            records.delete(obj.name, rid, user, conn=conn, schema=schema, origin=origin, batch=batch)
            records.mark(conn, obj, rid, MERGED_FIELD, {"into": survivor}, user)
        if data:
            try:
                records.update(obj.name, survivor, data, user, conn=conn, schema=schema, origin=origin)
            except RecordError as exc:
                raise exc.restated("the merged record could not be saved") from None
        records.mark(conn, obj, survivor, MERGED_FIELD, {
            "merged": [{"id": rid, "title": record_title(obj, found[rid])} for rid in others],
            "values": taken}, user)
        return {"record": records.get(obj.name, survivor, user, conn=conn, schema=schema), "merged": others}


def possible_duplicates(runtime, obj, rid: str, user) -> list[dict[str, Any]]:
    """Records the object's duplicate rules match with this one (block
    and warn rules alike: one may have been saved past a rule or before
    it), that the user may see: what the record page offers to merge."""
    if not obj.duplicate_rules:
        return []
    schema = runtime.schema()
    table = schema.table(obj.name)
    found: list[dict[str, Any]] = []
    with runtime.engine.connect() as conn:
        row = conn.execute(sa.select(table).where(table.c.id == rid)).first()
        if row is None:
            return []
        ids: list[str] = []
        for rule in obj.duplicate_rules:
            ids += [m for m in find_matches(conn, schema, obj, rule, dict(row._mapping), rid) if m not in ids]
        for match in ids:
            try:
                found.append(runtime.records.get(obj.name, match, user, conn=conn, schema=schema))
            except NotFound:
                continue
            if len(found) == SHOWN_DUPLICATES:
                break
    return found
