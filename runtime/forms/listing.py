"""List pages: the params of a list URL, row counts that stay fast on big
tables, and CSV export that `loom import` reads back."""

from __future__ import annotations

import csv
import io
from typing import Any, Iterable

import sqlalchemy as sa

from loomcrm.metadata.model import ObjectDef

from ..fields import field_type
from ..query import ListParams, build_select, list_records, parse_list_params

PAGE_SIZE = 50
COUNT_CAP = 10_000
OWN_PARAMS = {"view", "page_size", "ids", "export"}


def list_params(items: Iterable[tuple[str, str]], obj: ObjectDef, ctx, *, default_sort: str | None = None,
                limit: int = PAGE_SIZE) -> ListParams:
    """The record query of a list URL (the API's parameters, minus the page's own)."""
    items = [(k, v) for k, v in items if k not in OWN_PARAMS and not (k in ("filter", "q", "sort", "cursor") and not v.strip())]
    if default_sort and not any(k == "sort" for k, _ in items):
        items.append(("sort", default_sort))
    if not any(k == "limit" for k, _ in items):
        items.append(("limit", str(limit)))
    return parse_list_params(items, obj, ctx)


def count_capped(conn, schema, obj: ObjectDef, params: ListParams, cap: int = COUNT_CAP, access=None) -> tuple[int, bool]:
    """(count, exact): counting stops after `cap` rows, so a list of ten
    million rows costs no more than one of ten thousand."""
    table, query = build_select(schema, obj, params, access, dialect=conn.dialect.name)
    limited = query.with_only_columns(table.c.id).limit(cap + 1).subquery()
    count = conn.execute(sa.select(sa.func.count()).select_from(limited)).scalar()
    return min(count, cap), count <= cap


def csv_value(f, value: Any) -> str:
    if value is None:
        return ""
    if f.type == "multi_picklist":
        return ";".join(value)
    if f.type == "related_to":
        return f"{value['object']}:{value['id']}"
    if f.type == "boolean":
        return "true" if value else "false"
    return str(value)


def export_csv(conn, schema, obj: ObjectDef, params: ListParams, ids: list[str] | None = None, max_rows: int = 100_000,
               access=None) -> str:
    """UTF-8 with a BOM (Excel opens it right), one column per field, named
    like the fields, so `loom import` maps every column by itself. A lookup
    is the linked record's title, readable in Excel, with its id in a
    second column `FIELD.id` (which `loom import` prefers); users and the
    owner are user names."""
    from .refs import Refs

    lookups = {f.name for f in obj.fields if f.type == "lookup"}
    users = _user_names(conn)
    out = io.StringIO()
    out.write("\ufeff")
    writer = csv.writer(out)
    header = ["id"]
    for f in obj.fields:
        header += [f.name, f"{f.name}.id"] if f.name in lookups else [f.name]
    writer.writerow(header + ["owner"])
    if ids:
        params.filters = params.filters + [("id", "in", ids[:1000])]
    params.limit = min(500, max_rows)
    written = 0
    while True:
        rows, cursor = list_records(conn, schema, obj, params, access)
        refs = Refs(schema, conn, access).collect(obj, rows)
        for r in rows:
            line = [r["id"]]
            for f in obj.fields:
                value = r.get(f.name)
                if f.name in lookups:
                    line += [refs.title(f.to, value) if value else "", value or ""]
                elif f.type == "user":
                    line.append(users.get(value, value or ""))
                else:
                    line.append(csv_value(f, value))
            writer.writerow(line + [users.get(r.get("owner"), r.get("owner") or "")])
        written += len(rows)
        if not cursor or written >= max_rows:
            break
        params.cursor = cursor
    return out.getvalue()


def _user_names(conn) -> dict[str, str]:
    from loomcrm.platform import systemdb

    return dict(conn.execute(sa.select(systemdb.users.c.id, systemdb.users.c.username)).all())


def example_filter(obj: ObjectDef) -> str:
    """A filter over this object's own fields, as the filter box's
    placeholder: a number and a choice when it has them."""
    parts = []
    number = next((f for f in obj.fields if f.type in ("currency", "decimal", "integer") and field_type(f).writable), None)
    choice = next((f for f in obj.fields if f.type in ("stage", "picklist") and (f.stages if f.type == "stage" else f.options)), None)
    text = next((f for f in obj.fields if f.type == "text"), None)
    if number is not None:
        parts.append(f"{number.name} > {10000 if number.type != 'integer' else 10}")
    if choice is not None:
        first = (choice.stages if choice.type == "stage" else choice.options)[0].value
        parts.append(f"{choice.name} == '{first}'")
    if len(parts) < 2 and text is not None:
        parts.append(f"not is_blank({text.name})")
    return " and ".join(parts) or "created_at >= add_days(today(), -30)"


def sortable(obj: ObjectDef, name: str) -> bool:
    from ..query import SORTABLE_SYSTEM, UNSORTABLE

    f = obj.field(name)
    return name in SORTABLE_SYSTEM or (f is not None and f.type not in UNSORTABLE)


def searchable(obj: ObjectDef) -> bool:
    return any(field_type(f).searchable for f in obj.fields)
