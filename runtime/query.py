"""List queries: sort on several fields, keyset (cursor) pagination, `q`
text search, and filters. One SELECT per page, whatever the page size.

Filters come as `field=value` and `field__op=value` query parameters
(values parsed by the field's type, so they are always bound parameters)
and as `filter=EXPR`, compiled by the expression language's SQL back end.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field as dc_field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Mapping

import sqlalchemy as sa

from loomcrm.metadata.expressions import ExpressionError, Scope
from loomcrm.metadata.model import ObjectDef

from .expressions import compile_expression
from .expressions.sql import JoinResolver, to_sql
from .fields import FieldContext, FieldError, field_type
from .fields.dates import parse_datetime
from .records import RecordError, record_json
from .search import matching, searches
from .tables import CompiledSchema

DEFAULT_LIMIT, MAX_LIMIT = 50, 500
RESERVED = {"limit", "cursor", "sort", "filter", "q", "deleted"}
SORTABLE_SYSTEM = {"id", "version", "created_at", "updated_at", "created_by", "updated_by", "owner"}
UNSORTABLE = {"multi_picklist", "long_text"}
MAX_SORT_KEYS = 5


class BadQuery(RecordError):
    status, title = 400, "Bad request"


@dataclass
class ListParams:
    limit: int = DEFAULT_LIMIT
    cursor: str | None = None
    sort: list[tuple[str, bool]] = dc_field(default_factory=list)   # (name, descending)
    q: str | None = None
    filters: list[tuple[str, str, Any]] = dc_field(default_factory=list)
    filter_expr: str | None = None
    deleted: bool = False


def compile_filter(schema: CompiledSchema, obj: ObjectDef, expr: str, access=None):
    """A `filter=` expression as a WHERE clause plus the FROM clause that
    joins the lookups its dotted paths walk through. Compiled through the
    same checker as every rule, so a filter is typed and sandboxed too.
    With `access`, the fields the user may not see are unknown names, and a
    looked-up record it may not see reads as empty."""
    if access is None or access.everything:
        objects, version, join_filter = schema.objects, schema.version, None
    else:
        objects, version = access.objects(schema.objects), (schema.version, "access", access.role)
        join_filter = lambda alias, target: access.clause(alias, target, "read")  # noqa: E731
    scope = Scope(objects=objects, object_name=obj.name, version=version)
    resolver = JoinResolver(objects, obj.name, schema.tables, join_filter=join_filter)
    try:
        clause = to_sql(compile_expression(expr, scope, expect="boolean"), resolver)
    except ExpressionError as exc:
        errors = [{"field": "filter", "code": e.code, "message": e.message, "line": e.line, "column": e.column}
                  for e in exc.errors]
        raise BadQuery(f"invalid filter: {exc.error.message} (line {exc.error.line}, column {exc.error.column})",
                       errors=errors) from None
    return clause, resolver.from_clause


def _field_or_system(obj: ObjectDef, name: str):
    return obj.field(name)


def parse_list_params(params: Mapping[str, str] | list[tuple[str, str]], obj: ObjectDef, ctx: FieldContext) -> ListParams:
    items = list(params.items()) if isinstance(params, Mapping) else list(params)
    out = ListParams()
    errors = []
    for key, value in items:
        if key == "limit":
            if not value.isdigit() or not 1 <= int(value) <= MAX_LIMIT:
                raise BadQuery(f"limit must be a whole number from 1 to {MAX_LIMIT}")
            out.limit = int(value)
        elif key == "cursor":
            out.cursor = value
        elif key == "q":
            out.q = value[:200] if value.strip() else None
        elif key == "filter":
            out.filter_expr = value
        elif key == "deleted":
            out.deleted = value.lower() in ("1", "true", "only")
        elif key == "sort":
            for part in value.split(","):
                desc = part.startswith("-")
                name = part[1:] if desc else part
                f = obj.field(name)
                if name not in SORTABLE_SYSTEM and (f is None or f.type in UNSORTABLE):
                    raise BadQuery(f"cannot sort on {name[:63]!r}", [{"field": name[:63], "code": "unknown_field", "message": "not a sortable field"}])
                out.sort.append((name, desc))
            if len(out.sort) > MAX_SORT_KEYS:
                raise BadQuery(f"sort on at most {MAX_SORT_KEYS} fields")
        else:
            name, _, op = key.partition("__")
            op = op or "eq"
            f = obj.field(name)
            if f is None and name not in SORTABLE_SYSTEM:
                errors.append({"field": key[:63], "code": "unknown_field", "message": f"{obj.name} has no field {name[:63]!r}"})
                continue
            kind = field_type(f) if f is not None else None
            allowed = kind.operators if kind else ("eq", "ne", "in", "lt", "lte", "gt", "gte", "isnull")
            if op not in allowed:
                errors.append({"field": key[:63], "code": "type", "message": f"{name} does not support {op[:20]!r}; use one of {', '.join(allowed)}"})
                continue
            try:
                out.filters.append((name, op, _parse_filter_value(f, name, op, value, ctx)))
            except FieldError as exc:
                errors.append({"field": key[:63], "code": exc.code, "message": exc.message})
    if errors:
        raise BadQuery("invalid filter parameters", errors)
    return out


def _parse_filter_value(f, name, op, value, ctx):
    if op == "isnull":
        if value.lower() not in ("true", "false", "1", "0"):
            raise FieldError("type", "isnull takes true or false")
        return value.lower() in ("true", "1")
    if len(value) > 10_000:
        raise FieldError("too_long", "filter value too long")
    if op == "in":
        return [_parse_one(f, name, v, ctx) for v in value.split(",")][:1000]
    if op in ("contains", "startswith", "endswith"):
        return value
    if op == "includes":
        return value
    return _parse_one(f, name, value, ctx)


def _parse_one(f, name, value, ctx):
    if f is None:  # a system field
        if name in ("created_at", "updated_at"):
            return parse_datetime(type("F", (), {"name": name}), value, ctx.timezone)
        if name == "version":
            if not value.lstrip("-").isdigit():
                raise FieldError("type", "version is a whole number")
            return int(value)
        return value
    kind = field_type(f)
    if f.type == "auto_number":
        return value
    if f.type == "text":  # comparison values may be longer or not match the pattern
        return value
    return kind.parse_text(f, value, ctx) if kind.writable else kind.parse_text(f, value, ctx)


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _condition(column, op, value):
    if op == "eq":
        return column.is_(None) if value is None else column == value
    if op == "ne":
        return sa.or_(column != value, column.is_(None))
    if op == "lt":
        return column < value
    if op == "lte":
        return column <= value
    if op == "gt":
        return column > value
    if op == "gte":
        return column >= value
    if op == "in":
        return column.in_(value)
    if op == "isnull":
        return column.is_(None) if value else column.is_not(None)
    if op == "contains":
        return sa.func.lower(column).like("%" + _escape_like(value.lower()) + "%", escape="\\")
    if op == "startswith":
        return sa.func.lower(column).like(_escape_like(value.lower()) + "%", escape="\\")
    if op == "endswith":
        return sa.func.lower(column).like("%" + _escape_like(value.lower()), escape="\\")
    if op == "includes":
        return sa.cast(column, sa.Text).like('%' + _escape_like(json.dumps(value)) + '%', escape="\\")
    raise BadQuery(f"unknown operator {op!r}")


# --- cursors ---------------------------------------------------------------------
#
# A cursor is the sort key of the last row of a page, typed by its column:
# {"v": format, "s": the sort it belongs to, "k": [values]}. A cursor of
# another sort or an older format is refused, never read as a wrong page.

CURSOR_FORMAT = 2


def _cursor_value(value):
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    return value


def encode_cursor(values: list[Any], signature: str) -> str:
    raw = json.dumps({"v": CURSOR_FORMAT, "s": signature, "k": [_cursor_value(v) for v in values]}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, signature: str, columns: list[sa.Column]) -> list[Any]:
    """The key values of `cursor`, each checked against its column's type."""
    try:
        if len(cursor) > 4000:
            raise ValueError("too long")
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(data, dict) or not isinstance(data.get("k"), list):
            raise ValueError("shape")
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise BadQuery("malformed cursor: start again without it") from None
    if data.get("v") != CURSOR_FORMAT or data.get("s") != signature or len(data["k"]) != len(columns):
        raise BadQuery("this cursor belongs to another sort or an older version of the list: start again without it")
    try:
        return [_restore(raw, column) for raw, column in zip(data["k"], columns)]
    except (ValueError, TypeError, ArithmeticError):
        raise BadQuery("malformed cursor: start again without it") from None


def _restore(raw, column: sa.Column):
    if raw is None:
        if not column.nullable:
            raise ValueError("null")
        return None
    kind = column.type
    kind = (kind.impl_instance if isinstance(kind, sa.types.TypeDecorator) else kind).python_type
    if kind is Decimal and isinstance(raw, str):
        value = Decimal(raw)
        if not value.is_finite():
            raise ValueError("not a number")
        return value
    if kind is datetime and isinstance(raw, str):
        value = datetime.fromisoformat(raw)
        if value.tzinfo is None:
            raise ValueError("naive")
        return value
    if kind is date and isinstance(raw, str):
        return date.fromisoformat(raw)
    if type(raw) is kind and kind in (str, int, bool):
        return raw
    raise ValueError("type")


# --- the query -------------------------------------------------------------------

def build_select(schema: CompiledSchema, obj: ObjectDef, params: ListParams, access=None, *, dialect: str = "sqlite"):
    """The query of a list. With `access`, only the records the user may
    read, and `obj` should be as the user knows it (`access.view`), so that
    the search never looks in a field the user may not see. An object with
    `search` fields is searched through its full-text documents."""
    table = schema.table(obj.name)
    query = sa.select(table)
    if access is not None:
        clause = access.clause(table, obj.name, "read")
        if clause is not None:
            query = query.where(clause)
    if params.filter_expr:
        clause, joined = compile_filter(schema, obj, params.filter_expr, access)
        query = query.select_from(joined).where(clause)
    query = query.where(table.c._deleted_at.is_not(None) if params.deleted else table.c._deleted_at.is_(None))
    for name, op, value in params.filters:
        query = query.where(_condition(table.c[name], op, value))
    declared = schema.object(obj.name)
    if params.q and declared is not None and searches(declared, obj):
        found = matching(dialect, declared, params.q)
        query = query.where(table.c.id.in_(found) if found is not None else sa.false())
    elif params.q:
        # Each field searched for the text as its type stores it (a phone
        # typed with spaces matches its E.164 digits).
        matches = []
        for f in obj.fields:
            kind = field_type(f)
            text = kind.search_text(params.q) if kind.searchable else None
            if text:
                needle = "%" + _escape_like(text.lower()) + "%"
                matches.append(sa.func.lower(table.c[f.name]).like(needle, escape="\\"))
        query = query.where(sa.or_(*matches) if matches else sa.false())
    return table, query


def list_records(conn: sa.Connection, schema: CompiledSchema, obj: ObjectDef, params: ListParams,
                 access=None) -> tuple[list[dict], str | None]:
    """One page of records and the cursor of the next page (None on the last
    page), in one SELECT whatever the page size or depth.

    The order is the sort, nulls last in both directions, then the id in the
    direction of the last key. The SQL is shaped so that an index on the
    leading sort key serves it: the rows where that key is null come from a
    separate branch of a UNION ALL, read only once the others run out, so
    each branch orders by the bare column in its native direction and the
    cursor gives the index a plain range bound."""
    table, query = build_select(schema, obj, params, access, dialect=conn.dialect.name)
    sort = params.sort or [("created_at", True)]
    if all(name != "id" for name, _ in sort):
        sort = sort + [("id", sort[-1][1])]
    keys = [(table.c[name], desc) for name, desc in sort]
    signature = ",".join(("-" if d else "") + n for n, d in sort)
    last = decode_cursor(params.cursor, signature, [c for c, _ in keys]) if params.cursor else None
    size = params.limit + 1
    (lead, desc), rest = keys[0], keys[1:]

    def page(q, order, native_lead=False):
        terms = [_ordered(c, d) for c, d in order]
        if native_lead:  # no nulls here: the bare direction matches an index read either way
            terms.insert(0, lead.desc() if desc else lead.asc())
        return q.order_by(*terms).limit(size)

    def after(q):
        if last is None:
            return q
        q = q.where(_after(keys, last))
        if last[0] is not None:  # a plain range on the leading key, for the index
            q = q.where(lead <= _bind(lead, last[0]) if desc else lead >= _bind(lead, last[0]))
        return q

    if not lead.nullable:
        statement = page(after(query), keys)
    elif last is not None and last[0] is None:  # already in the null group
        statement = page(after(query.where(lead.is_(None))), rest)
    else:  # every null comes after every value: the null branch needs no cursor condition
        values = page(after(query.where(lead.is_not(None))), rest, native_lead=True)
        nulls = page(query.where(lead.is_(None)), rest)
        # UNION ALL reads its branches in order and stops at the limit: a
        # branch holding a LIMIT never runs in parallel on PostgreSQL, and
        # SQLite runs a compound select left to right. SQLite wants each
        # branch wrapped in a subquery; PostgreSQL takes them as they are,
        # which SQLAlchemy prepares for execution in a third less time.
        if conn.dialect.name == "sqlite":
            values, nulls = sa.select(values.subquery()), sa.select(nulls.subquery())
        statement = sa.union_all(values, nulls).limit(size)
    rows = [r._mapping for r in conn.execute(statement)]
    next_cursor = None
    if len(rows) > params.limit:
        rows = rows[: params.limit]
        next_cursor = encode_cursor([rows[-1][c.name] for c, _ in keys], signature)
    return [record_json(obj, r) for r in rows], next_cursor


def _bind(column, value):
    return sa.literal(value, column.type)


def _ordered(column, desc):
    ordered = column.desc() if desc else column.asc()
    return ordered.nulls_last() if column.nullable else ordered


def _after(keys, last):
    """Rows strictly after `last` in the order of `keys`, nulls last: some
    key beyond its value with every key before it equal. Nothing is beyond
    a null but other nulls are equal to it."""
    clauses = []
    for i, ((column, desc), value) in enumerate(zip(keys, last)):
        if value is None:
            continue
        beyond = column < _bind(column, value) if desc else column > _bind(column, value)
        if column.nullable:
            beyond = sa.or_(beyond, column.is_(None))
        clauses.append(sa.and_(*[_eq(c, v) for (c, _), v in zip(keys[:i], last[:i])], beyond))
    return sa.or_(*clauses) if clauses else sa.false()


def _eq(column, value):
    return column.is_(None) if value is None else column == _bind(column, value)
