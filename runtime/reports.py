"""Reports (SPEC §3.7): aggregates computed by the database in one
statement, through the user's record access.

A report groups an object's rows by fields (through lookups, as joins) and
date buckets, and computes its measures per group; the totals row comes
from the same statement (a UNION ALL of the grouped and the ungrouped
select), so nothing is summed in Python. Filters and weights are the
expression language, translated to SQL by the same back end as list
filters; a part the database cannot run is refused with `not_sql`.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from loomcrm.metadata.expressions import ExpressionError, Scope
from loomcrm.metadata.model import GroupBy, Report, localized

from .expressions.compiled import compile_expression
from .expressions.sql import JoinResolver, to_sql
from .records import RecordError

NUMERIC = frozenset({"integer", "decimal", "currency", "percent", "rollup"})
DATES = frozenset({"date", "datetime"})
SYSTEM_DATES = frozenset({"created_at", "updated_at"})


class BadReport(RecordError):
    status, title = 422, "Invalid report"


def _problem(path: str, code: str, message: str) -> BadReport:
    return BadReport(f"{path}: {message}", errors=[{"field": path, "code": code, "message": message}])


def _bucket(column, by: str, dialect: str):
    """The first day of `column`'s day, week (Monday), month, quarter or year."""
    if dialect == "postgresql":
        return sa.cast(sa.func.date_trunc(by, column), sa.Date)
    day = sa.func.date(column)
    if by == "day":
        return day
    if by == "week":
        return sa.func.date(column, "-6 days", "weekday 1")
    if by == "month":
        return sa.func.strftime("%Y-%m-01", column)
    if by == "year":
        return sa.func.strftime("%Y-01-01", column)
    month = sa.cast(sa.func.strftime("%m", column), sa.Integer)
    return sa.func.printf("%s-%02d-01", sa.func.strftime("%Y", column), (month - 1) // 3 * 3 + 1)


class _Fields:
    """Resolves a report's field paths to columns (lookups as joins) and
    their field definitions, through the objects the user may see."""

    def __init__(self, objects, base: str, resolver: JoinResolver):
        self.objects, self.base, self.resolver = objects, base, resolver

    def field(self, path: str, where: str):
        obj = self.objects[self.base]
        parts = path.split(".")
        for part in parts[:-1]:
            f = obj.field(part)
            if f is None or f.type != "lookup":
                raise _problem(where, "unknown_field", f"{part!r} is not a lookup of {obj.name}")
            obj = self.objects[f.to]
        last = parts[-1]
        f = obj.field(last)
        if f is None and last not in ("owner", "created_at", "updated_at", "created_by"):
            raise _problem(where, "unknown_field", f"{obj.name} has no field {last!r}")
        return f, self.resolver.column(tuple(parts))


def run_report(conn: sa.Connection, schema, report: Report, access, locale: str = "en") -> dict[str, Any]:
    """`{"columns": [...], "rows": [[...]], "totals": [...]}` of `report`;
    the totals line up with the columns (None under each group)."""
    obj = schema.object(report.object)
    if obj is None or not access.may_see_object(report.object):
        raise _problem("object", "not_found", f"no object {report.object!r}")
    if access.everything:
        objects, version, join_filter = schema.objects, schema.version, None
    else:
        objects, version = access.objects(schema.objects), (schema.version, "access", access.role)
        join_filter = lambda alias, target: access.clause(alias, target, "read")  # noqa: E731
    resolver = JoinResolver(objects, obj.name, schema.tables, join_filter=join_filter)
    fields = _Fields(objects, obj.name, resolver)
    scope = Scope(objects=objects, object_name=obj.name, version=version)
    dialect = conn.dialect.name

    def expression(source: str, where: str, expect: str):
        try:
            return to_sql(compile_expression(source, scope, expect=expect), resolver)
        except ExpressionError as exc:
            e = exc.error
            raise _problem(where, e.code, f"{e.message} (line {e.line}, column {e.column})") from None

    columns: list[dict[str, Any]] = []
    groups = []
    for i, item in enumerate(report.group_by):
        group = item if isinstance(item, GroupBy) else GroupBy(field=item)
        where = f"group_by[{i}]"
        f, column = fields.field(group.field, where)
        kind = f.type if f is not None else ("datetime" if group.field.split(".")[-1] in SYSTEM_DATES else "text")
        if group.by is not None:
            if kind not in DATES:
                raise _problem(where, "type", f"{group.field} is not a date: it has no {group.by}")
            column, kind = _bucket(column, group.by, dialect), "date"
        groups.append(column.label(f"g{i}"))
        columns.append({"name": group.field if group.by is None else f"{group.field}:{group.by}",
                        "label": localized(f.label, locale, f.name) if f is not None else group.field, "type": kind})
    measures = []
    for i, m in enumerate(report.measures):
        where = f"measures[{i}]"
        column, kind = None, "number"
        if m.field is not None:
            f, column = fields.field(m.field, f"{where}.field")
            kind = f.type if f is not None else "text"
            if m.function in ("sum", "avg") and kind not in NUMERIC and not (
                    f is not None and f.type == "formula" and f.returns in ("integer", "decimal", "currency", "percent")):
                raise _problem(f"{where}.field", "type", f"{m.function} needs a number, and {m.field} is {kind}")
        elif m.function != "count":
            raise _problem(where, "required", f"{m.function} needs a field")
        if m.weight is not None:
            if m.function != "sum" or column is None:
                raise _problem(f"{where}.weight", "type", "a weight goes with a sum of a field")
            # unrounded: a weighted amount has more decimals than the field
            column = sa.type_coerce(column * expression(m.weight, f"{where}.weight", "number"), sa.Numeric(asdecimal=True))
        value = {"count": (lambda c: sa.func.count(c) if c is not None else sa.func.count()),
                 "sum": sa.func.sum, "avg": sa.func.avg, "min": sa.func.min, "max": sa.func.max,
                 "count_distinct": lambda c: sa.func.count(sa.distinct(c))}[m.function](column)
        measures.append(value.label(f"m{i}"))
        columns.append({"name": m.name, "label": localized(m.label, locale, m.name),
                        "type": "number" if m.function in ("count", "count_distinct", "sum", "avg") else kind})
    conditions = []
    if report.filter:
        conditions.append(expression(report.filter, "filter", "boolean"))
    table = schema.table(obj.name)
    conditions.append(table.c._deleted_at.is_(None))
    scope_clause = access.clause(table, obj.name, "read")
    if scope_clause is not None:
        conditions.append(scope_clause)
    source = resolver.from_clause
    marker = sa.literal(0).label("total")
    grouped = sa.select(marker, *groups, *measures).select_from(source).where(*conditions)
    if groups:
        grouped = grouped.group_by(*[g.element for g in groups])
        total = sa.select(sa.literal(1).label("total"), *[sa.null().label(g.name) for g in groups], *measures) \
            .select_from(source).where(*conditions)
        union = sa.union_all(grouped, total).subquery()
        statement = sa.select(union).order_by(union.c.total, *[union.c[g.name] for g in groups])
    else:
        statement = grouped
    rows, totals = [], None
    for row in conn.execute(statement):
        values = list(row[1:])
        if row[0] == 1 or not groups:
            totals = values
            if not groups:
                rows.append(values)
        else:
            rows.append(values)
    return {"columns": columns, "rows": [[_plain(v) for v in r] for r in rows],
            "totals": [_plain(v) for v in totals] if totals is not None else []}


def _plain(value: Any) -> Any:
    """Dates as ISO text (SQLite answers buckets as text already)."""
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value
