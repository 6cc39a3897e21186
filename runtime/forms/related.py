"""The 360° view around one record: related lists for every lookup (and
polymorphic link) that points at its object, and a timeline of field
history and linked activities."""

from __future__ import annotations

from dataclasses import dataclass, field as dc_field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from loomcrm.metadata.model import FieldDef, ObjectDef
from loomcrm.platform import systemdb
from loomcrm.platform.db import stored_utc

from ..approvals import HISTORY_FIELD as APPROVAL_FIELD
from ..records import CONVERTED_FIELD, DELETED_FIELD, EDITED_FIELD, MERGED_FIELD, RESTORED_FIELD, record_json
from ..rules.hooks import SKIP_FIELD

RELATED_ROWS = 5
TIMELINE_ITEMS = 30


@dataclass
class RelatedList:
    obj: ObjectDef
    via: FieldDef
    value: str                # the filter value: an id, or "object:id" for related_to
    columns: list[FieldDef]
    rows: list[dict] = dc_field(default_factory=list)
    count: int = 0
    exact: bool = True

    @property
    def query(self) -> str:
        return f"{self.via.name}={self.value}"


def links_to(schema, obj: ObjectDef) -> list[tuple[ObjectDef, FieldDef]]:
    """(child object, its field) for every lookup or related_to pointing at `obj`."""
    cache = schema.extra.setdefault("forms.links_to", {})
    if obj.name not in cache:
        found = []
        for child in schema.objects.values():
            for f in child.fields:
                if (f.type == "lookup" and f.to == obj.name) or (f.type == "related_to" and obj.name in f.to):
                    found.append((child, f))
        cache[obj.name] = found
    return cache[obj.name]


def list_columns(obj: ObjectDef, without: str | None = None, limit: int = 5) -> list[FieldDef]:
    names = obj.layouts.list_.columns if obj.layouts.list_ else [f.name for f in obj.fields]
    fields = [obj.field(n) for n in names if n != without]
    return [f for f in fields if f is not None][:limit]


def _related_statement(schema, child: ObjectDef, f: FieldDef, rows: int):
    """rows + the total count in one statement (a window count), built once
    per metadata version and reused with a bound value."""
    cache = schema.extra.setdefault("forms.related_sql", {})
    key = (child.name, f.name, rows)
    statement = cache.get(key)
    if statement is None:
        table = schema.table(child.name)
        order = []
        for part in (child.layouts.list_.sort.split(",") if child.layouts.list_ and child.layouts.list_.sort else ["-created_at"]):
            name = part.lstrip("-")
            if name not in table.c:
                continue
            column = table.c[name]
            order.append(sa.case((column.is_(None), 1), else_=0))  # blanks last, on both databases
            order.append(column.desc() if part.startswith("-") else column.asc())
        order.append(table.c.id)
        statement = (sa.select(table, sa.func.count().over().label("_total"))
                     .where(table.c[f.name] == sa.bindparam("value"), table.c._deleted_at.is_(None))
                     .order_by(*order).limit(rows))
        cache[key] = statement
    return statement


def related_lists(conn, schema, obj: ObjectDef, rid: str, rows: int = RELATED_ROWS, access=None) -> list[RelatedList]:
    """The records linking to this one, by object and link, with `access`
    only those the user may read (of objects it may see, without the
    fields it may not)."""
    out = []
    for child, f in links_to(schema, obj):
        if access is not None and not access.may_see_object(child.name):
            continue
        if access is not None:
            child = access.view(child)
            if child.field(f.name) is None:
                continue   # the link itself is a hidden field
        value = rid if f.type == "lookup" else f"{obj.name}:{rid}"
        related = RelatedList(child, f, value, list_columns(child, without=f.name))
        statement = _related_statement(schema, child, f, rows)
        clause = access.clause(schema.table(child.name), child.name, "read") if access is not None else None
        if clause is not None:
            statement = statement.where(clause)
        found = conn.execute(statement, {"value": value}).fetchall()
        related.rows = [record_json(child, dict(r._mapping)) for r in found]
        related.count = found[0]._total if found else 0
        out.append(related)
    return out


@dataclass
class TimelineItem:
    at: datetime
    kind: str                 # "history", "owner", "edited", "created", "deleted", "restored", "record",
                              # "rules_skipped", "converted", "merged" or one an extension adds ("automation")
    user: str | None = None
    field: FieldDef | None = None
    old: Any = None
    new: Any = None
    obj: ObjectDef | None = None
    record: dict | None = None
    note: str | None = None       # "rules_skipped": the reason given
    problems: list[str] = dc_field(default_factory=list)
    fields: list[FieldDef] = dc_field(default_factory=list)   # "edited": the fields changed
    template: str | None = None       # an extension's item: the template that shows it
    data: dict | None = None          # ... and what it shows


def _moment_field(obj: ObjectDef) -> FieldDef | None:
    return next((f for f in obj.fields if f.type == "datetime"), None) or next((f for f in obj.fields if f.type == "date"), None)


def timeline(conn, schema, obj: ObjectDef, record: dict, limit: int = TIMELINE_ITEMS, access=None) -> list[TimelineItem]:
    """Field history of the record and the records linked to it with a
    polymorphic link (activities, tasks), newest first. `obj` is the object
    as the user knows it: the history of a field it may not see is left
    out; with `access`, so are linked records it may not read."""
    h = systemdb.history
    items: list[TimelineItem] = []
    rows = conn.execute(sa.select(h).where(h.c.object == obj.name, h.c.record_id == record["id"])
                        .order_by(h.c.changed_at.desc(), h.c.id.desc()).limit(limit)).fetchall()
    for row in rows:
        if row.field == SKIP_FIELD and (row.new_value or {}).get("problems"):
            # an admin saved this record past rules it broke: say which, who and why
            items.append(TimelineItem(stored_utc(row.changed_at), "rules_skipped", row.changed_by,
                                      note=(row.note or "").removeprefix("rules skipped: "),
                                      problems=[p.get("message", "") for p in row.new_value["problems"]]))
            continue
        if row.field in (DELETED_FIELD, RESTORED_FIELD):
            items.append(TimelineItem(stored_utc(row.changed_at), row.field.strip("_"), row.changed_by))
            continue
        if row.field == APPROVAL_FIELD and isinstance(row.new_value, dict):   # an approval's step, with its comment
            items.append(TimelineItem(stored_utc(row.changed_at), "approval", row.changed_by,
                                      template="forms/_approval_item.html", data=row.new_value))
            continue
        if row.field in (CONVERTED_FIELD, MERGED_FIELD):   # what it became, what it took in
            items.append(TimelineItem(stored_utc(row.changed_at), row.field.strip("_"), row.changed_by, new=row.new_value))
            continue
        if row.field == EDITED_FIELD:
            fields = [f for f in (obj.field(name) for name in row.new_value or []) if f is not None]
            if fields:
                items.append(TimelineItem(stored_utc(row.changed_at), "edited", row.changed_by, fields=fields))
            continue
        if row.field.startswith("_") or row.note == "created":
            continue  # the creation is one entry, below
        if row.field == "owner":
            items.append(TimelineItem(stored_utc(row.changed_at), "owner", row.changed_by, old=row.old_value, new=row.new_value))
            continue
        f = obj.field(row.field)
        if f is not None:   # a field since dropped has no label to show
            items.append(TimelineItem(stored_utc(row.changed_at), "history", row.changed_by, f, row.old_value, row.new_value))
    created = datetime.fromisoformat(record["created_at"].replace("Z", "+00:00"))
    items.append(TimelineItem(created, "created", record.get("created_by")))
    for child, f in links_to(schema, obj):
        if f.type != "related_to" or (access is not None and not access.may_see_object(child.name)):
            continue
        if access is not None:
            child = access.view(child)
        table = schema.table(child.name)
        moment = _moment_field(child)
        order = table.c[moment.name] if moment is not None else table.c.created_at
        query = (sa.select(table).where(table.c[f.name] == f"{obj.name}:{record['id']}", table.c._deleted_at.is_(None))
                 .order_by(order.desc()).limit(limit))
        clause = access.clause(table, child.name, "read") if access is not None else None
        found = conn.execute(query if clause is None else query.where(clause)).fetchall()
        for r in found:
            data = record_json(child, dict(r._mapping))
            at = r._mapping[moment.name] if moment is not None else r.created_at
            if at is None:
                at = r.created_at
            if not isinstance(at, datetime):
                at = datetime.combine(at, datetime.min.time())
            items.append(TimelineItem(stored_utc(at), "record", data.get("owner"), obj=child, record=data))
    items.sort(key=lambda i: i.at, reverse=True)
    return items[:limit]
