"""Reports (SPEC §3.7): aggregates computed by the database in one
statement, through the user's record access.

A report groups an object's rows by fields (through lookups, as joins), the
owner's department and date buckets in LOOM_TIMEZONE, and computes its
measures per group; the totals row comes from the same statement (GROUPING
SETS on PostgreSQL; elsewhere, and under a top-N limit, a UNION ALL of the
grouped and the ungrouped select), so nothing is summed in Python. Filters and weights are the expression language, translated to SQL
by the same back end as list filters; a part the database cannot run is
refused with `not_sql`. What a definition means is decided once, in
`metadata/reports.py`, for the bundle checks and for this engine.
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from cachetools import LRUCache

from loomcrm.metadata.expressions import ExpressionError, Scope
from loomcrm.metadata.model import Report, localized
from loomcrm.metadata.reports import DEPARTMENT, columns_of, date_field_of, groups_of, report_problems, resolve
from loomcrm.platform import i18n, systemdb

from .expressions.compiled import compile_expression
from .expressions.sql import JoinResolver, to_sql
from .records import RecordError

UTC = ZoneInfo("UTC")
# the labels of what every record has, in the user's words
SYSTEM_LABELS = {"owner": "Owner", "owner.department": "Owner's department", "created_at": "Created",
                 "updated_at": "Last changed", "created_by": "Created by"}


class BadReport(RecordError):
    status, title = 422, "Invalid report"


def _problem(path: str, code: str, message: str, line: int | None = None, column: int | None = None) -> BadReport:
    error = {"field": path, "code": code, "message": message}
    if line is not None:
        error |= {"line": line, "column": column}
    return BadReport(f"{path}: {message}", errors=[error])


@dataclass(frozen=True)
class Narrowing:
    """A dashboard's filters over every report on it: a date range (local
    days, both ends included) on each report's date field, and an owner or
    the owners in some departments (a department's target)."""

    date_from: date | None = None
    date_to: date | None = None
    owner: str | None = None
    departments: frozenset[str] = frozenset()


def _local(column, zone: ZoneInfo, dialect: str):
    """A UTC timestamp column as local wall-clock time in `zone`. SQLite
    has no time zone database: it shifts by the zone's offset now."""
    if dialect == "postgresql":
        return sa.func.timezone(zone.key, column)
    minutes = int(datetime.now(zone).utcoffset().total_seconds() // 60)
    return sa.func.datetime(column, f"{minutes:+d} minutes") if minutes else column


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


def _day_start(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(), zone).astimezone(timezone.utc)


def check_report(report: Report, objects) -> None:
    """`BadReport` with every problem of the definition, each at its JSON path."""
    problems = report_problems(report, objects)
    if problems:
        first = problems[0]
        raise BadReport(f"{first.path}: {first.message}", errors=[
            {"field": p.path, "code": p.code, "message": p.message,
             **({"line": p.line, "column": p.column} if p.line is not None else {})} for p in problems])


def run_report(conn: sa.Connection, schema, report: Report, access, locale: str = "en", *,
               zone: ZoneInfo = UTC, narrowing: Narrowing | None = None) -> dict[str, Any]:
    """`{"columns": [...], "rows": [[...]], "totals": [...]}` of `report`;
    the totals line up with the columns (None under each group) and count
    every row, also those past a top-N `limit`. With two groups or more,
    `subtotals` has a row per value of the first group (None under the
    others)."""
    narrowing = narrowing or Narrowing()
    build = functools.partial(_statement, conn.dialect.name, schema, report, access, locale, zone, narrowing)
    if schema.reports.get(report.name) is report:
        # a saved report: its statement is built once per user, filter and
        # version (building costs more than running it on a small table)
        cache, lock = schema.cached("report statements", lambda: (LRUCache(maxsize=1024), threading.Lock()))
        key = (report.name, _reach(access), locale, zone.key, narrowing)
        with lock:   # pages run in a thread pool; an LRU cache is not thread-safe
            built = cache.get(key)
        if built is None:
            built = build()
            with lock:
                cache[key] = built
    else:
        built = build()
    statement, columns, groups = built
    rows, subtotals, totals = [], [], None
    full = (1 << groups) - 1
    for row in conn.execute(statement):
        values = [_plain(v) for v in row[1:]]
        if not groups:
            rows.append(values)
            totals = values
        elif row[0] == 0:
            rows.append(values)
        elif row[0] == full:
            totals = values
        else:
            subtotals.append(values)
    result = {"columns": columns, "rows": rows, "totals": totals if totals is not None else []}
    if groups > 1:
        result["subtotals"] = subtotals
    return result


def _statement(dialect: str, schema, report: Report, access, locale: str, zone: ZoneInfo,
               narrowing: Narrowing) -> tuple[sa.Select, list[dict[str, Any]], bool]:
    """The one statement of `report` (a marker column first, see below), its
    columns, and how many groups it has."""
    obj = schema.object(report.object)
    if obj is None or not access.may_see_object(report.object):
        raise _problem("object", "not_found", f"no object {report.object!r}")
    if access.everything:
        objects, version, join_filter = schema.objects, schema.version, None
    else:
        objects, version = access.objects(schema.objects), (schema.version, "access", access.role)
        join_filter = lambda alias, target: access.clause(alias, target, "read")  # noqa: E731
    check_report(report, objects)
    group_columns, measure_columns = columns_of(report, objects)
    resolver = JoinResolver(objects, obj.name, schema.tables, join_filter=join_filter)
    scope = Scope(objects=objects, object_name=obj.name, version=version)
    table = schema.table(obj.name)
    owners = systemdb.users.alias("report_owner")
    uses_department = False

    def expression(source: str, where: str, expect: str):
        try:
            return to_sql(compile_expression(source, scope, expect=expect), resolver)
        except ExpressionError as exc:
            e = exc.error
            raise _problem(where, e.code, f"{e.message} (line {e.line}, column {e.column})", e.line, e.column) from None

    def column_of(path: tuple[str, ...], kind: str):
        nonlocal uses_department
        if ".".join(path) == DEPARTMENT:
            uses_department = True
            return owners.c.department_id
        column = resolver.column(path)
        return _local(column, zone, dialect) if kind == "datetime" else column

    columns: list[dict[str, Any]] = []
    groups = []
    for i, (group, resolved) in enumerate(zip(groups_of(report), group_columns)):
        column = column_of(resolved.path, resolved.source)
        if group.by is not None:
            column = _bucket(column, group.by, dialect)
        groups.append(column.label(f"g{i}"))
        f = resolved.field
        label = localized(f.label, locale, f.name) if f is not None else \
            i18n.gettext(locale, SYSTEM_LABELS.get(group.field, group.field))
        columns.append({"name": resolved.name, "label": label, "type": resolved.kind})
    measures = []
    for i, (m, resolved) in enumerate(zip(report.measures, measure_columns)):
        column = resolver.column(resolved.path) if resolved.path else None
        if m.weight is not None:
            # unrounded: a weighted amount has more decimals than the field
            column = sa.type_coerce(column * expression(m.weight, f"measures[{i}].weight", "number"),
                                    sa.Numeric(asdecimal=True))
        value = {"count": (lambda c: sa.func.count(c) if c is not None else sa.func.count()),
                 "sum": sa.func.sum, "avg": sa.func.avg, "min": sa.func.min, "max": sa.func.max,
                 "count_distinct": lambda c: sa.func.count(sa.distinct(c))}[m.function](column)
        measures.append(value.label(f"m{i}"))
        columns.append({"name": m.name, "label": localized(m.label, locale, m.name), "type": resolved.kind})

    conditions = [table.c._deleted_at.is_(None)]
    if report.filter:
        conditions.append(expression(report.filter, "filter", "boolean"))
    if narrowing.date_from or narrowing.date_to:
        conditions += _date_range(report, objects, resolver, narrowing, zone)
    if narrowing.owner:
        conditions.append(table.c.owner == narrowing.owner)
    if narrowing.departments:
        users = systemdb.users
        conditions.append(table.c.owner.in_(sa.select(users.c.id).where(
            users.c.department_id.in_(sorted(narrowing.departments)))))
    scope_clause = access.clause(table, obj.name, "read")
    if scope_clause is not None:
        conditions.append(scope_clause)
    source = resolver.from_clause
    if uses_department:
        source = source.outerjoin(owners, owners.c.id == table.c.owner)

    grouped = sa.select(sa.literal(0).label("total"), *groups, *measures).select_from(source).where(*conditions)
    if not groups:
        statement = grouped
    else:
        by_name = {c["name"]: e for c, e in zip(columns, groups + measures)}
        keys = [(by_name[k.lstrip("-")], k.startswith("-")) for k in report.sort] or [(g, False) for g in groups]
        # picklists and stages in their options' order (a funnel runs stage by stage)
        ranks = {f"g{i}": _option_order(c.field) for i, c in enumerate(group_columns) if c.source in ("picklist", "stage")}

        def order(column, name: str, desc: bool):
            if name in ranks:
                column = sa.case(ranks[name], value=column, else_=len(ranks[name]))
            return (column.desc() if desc else column.asc()).nulls_last()

        elements = [g.element for g in groups]
        # the marker is PostgreSQL's grouping() bit mask everywhere: 0 on a
        # group's row, all ones on the totals, the inner bits on a subtotal
        # of the first group (with two groups or more)
        n = len(elements)
        subtotal, total = (1 << (n - 1)) - 1, (1 << n) - 1
        if dialect == "postgresql" and report.limit is None:
            # the groups, the subtotals and the totals in one pass over the rows
            marker = sa.func.grouping(*elements).label("total")
            sets = [sa.tuple_(*elements)] + ([sa.tuple_(elements[0])] if n > 1 else []) + [sa.tuple_()]
            statement = sa.select(marker, *groups, *measures).select_from(source).where(*conditions) \
                .group_by(sa.func.grouping_sets(*sets)) \
                .order_by(marker, *[order(e.element, e.name, desc) for e, desc in keys])
        else:
            grouped = grouped.group_by(*elements)
            if report.limit is not None:
                grouped = grouped.order_by(*[order(e.element, e.name, desc) for e, desc in keys]).limit(report.limit)
            parts = [grouped.subquery().select()]
            if n > 1:
                parts.append(sa.select(sa.literal(subtotal).label("total"), groups[0],
                                       *[sa.null().label(g.name) for g in groups[1:]], *measures)
                             .select_from(source).where(*conditions).group_by(elements[0]))
            parts.append(sa.select(sa.literal(total).label("total"), *[sa.null().label(g.name) for g in groups],
                                   *measures).select_from(source).where(*conditions))
            union = sa.union_all(*parts).subquery()
            statement = sa.select(union).order_by(union.c.total,
                                                  *[order(union.c[e.name], e.name, desc) for e, desc in keys])
    return statement, columns, len(groups)


def _reach(access) -> tuple:
    """What a user's record access clauses are made of (a share or a move to
    another department changes it without a new metadata version)."""
    return (access.role, access.user_id, access.everything, access.department, access.below, access.above,
            access.shared, access.sharing, access.colleagues, access.team)


def _option_order(f) -> dict[str, int]:
    options = f.stages if f.type == "stage" else f.options
    return {o.value: i for i, o in enumerate(options)}


def _date_range(report: Report, objects, resolver: JoinResolver, narrowing: Narrowing, zone: ZoneInfo) -> list:
    path = date_field_of(report)
    _, kind = resolve(objects, report.object, path, "date_field")
    column = resolver.column(tuple(path.split(".")))
    conditions = []
    if kind == "date":
        if narrowing.date_from:
            conditions.append(column >= narrowing.date_from)
        if narrowing.date_to:
            conditions.append(column <= narrowing.date_to)
    else:
        if narrowing.date_from:
            conditions.append(column >= _day_start(narrowing.date_from, zone))
        if narrowing.date_to:
            conditions.append(column < _day_start(narrowing.date_to + timedelta(days=1), zone))
    return conditions


def _plain(value: Any) -> Any:
    """Dates as ISO text (SQLite answers buckets as text already)."""
    return value.isoformat() if isinstance(value, (date, datetime)) else value

