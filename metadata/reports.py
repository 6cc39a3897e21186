"""What a report definition means (SPEC §3.7), checked against the objects:
each group, measure, sort key and date field resolved to a field and a
kind, or a problem at its JSON path. The bundle checks and the report
engine both start here, so a report that installs is a report that runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .checks import NUMERIC, TEMPORAL, value_type
from .expressions import Scope, check
from .model import FieldDef, GroupBy, LookupField, ObjectDef, Report

# fields every record has besides its own (SPEC §3.2)
SYSTEM_KINDS = {"owner": "user", "created_by": "user", "created_at": "datetime", "updated_at": "datetime"}
# the owner's department: a group of its own, through the users table
DEPARTMENT = "owner.department"


@dataclass(frozen=True)
class Problem:
    path: str
    code: str
    message: str
    # where in an expression (filter, weight) the problem is
    line: int | None = None
    column: int | None = None


@dataclass(frozen=True)
class Column:
    """A resolved group or measure: its result column name and value kind
    (a date bucket's is `date`; `source` is the kind of the field itself)."""

    name: str
    path: tuple[str, ...]
    field: FieldDef | None
    kind: str
    source: str = ""


class Invalid(Exception):
    def __init__(self, problem: Problem):
        super().__init__(problem.message)
        self.problem = problem


def resolve(objects: Mapping[str, ObjectDef], base: str, path: str, where: str,
            unchecked: Mapping[str, str] | None = None) -> tuple[FieldDef | None, str]:
    """The field at the end of `path` (None for a system field) and the kind
    of its values; `unchecked` paths (of files reported broken) are "any"."""
    if unchecked and path in unchecked:
        return None, "any"
    if path == DEPARTMENT:
        return None, "department"
    obj = objects[base]
    parts = path.split(".")
    for part in parts[:-1]:
        f = obj.field(part)
        if not isinstance(f, LookupField) or f.to not in objects:
            raise Invalid(Problem(where, "unknown_field", f"{part!r} is not a lookup of {obj.name}"))
        obj = objects[f.to]
    last = parts[-1]
    f = obj.field(last)
    if f is None:
        if last in SYSTEM_KINDS:
            return None, SYSTEM_KINDS[last]
        raise Invalid(Problem(where, "unknown_field", f"{obj.name} has no field {last!r}"))
    return f, value_type(objects, obj, f)


def group_name(group: GroupBy) -> str:
    return group.field if group.by is None else f"{group.field}:{group.by}"


def groups_of(report: Report) -> list[GroupBy]:
    return [g if isinstance(g, GroupBy) else GroupBy(field=g) for g in report.group_by]


def columns_of(report: Report, objects: Mapping[str, ObjectDef],
               unchecked: Mapping[str, str] | None = None) -> tuple[list[Column], list[Column]]:
    """(groups, measures) of `report`; `Invalid` at the first problem."""
    groups = []
    for i, group in enumerate(groups_of(report)):
        where = f"group_by[{i}]"
        f, source = resolve(objects, report.object, group.field, where, unchecked)
        if group.by is not None and source not in TEMPORAL | {"any"}:
            raise Invalid(Problem(where, "type", f"{group.field} is not a date: it has no {group.by}"))
        kind = "date" if group.by is not None else source
        groups.append(Column(group_name(group), tuple(group.field.split(".")), f, kind, source))
    measures = []
    for i, m in enumerate(report.measures):
        where = f"measures[{i}]"
        f, kind = None, "number"
        if m.field is not None:
            f, kind = resolve(objects, report.object, m.field, f"{where}.field", unchecked)
            if m.function in ("sum", "avg") and kind not in NUMERIC | {"any"}:
                raise Invalid(Problem(f"{where}.field", "type", f"{m.function} needs a number, and {m.field} is {kind}"))
        elif m.function != "count":
            raise Invalid(Problem(where, "required", f"{m.function} needs a field"))
        if m.weight is not None and (m.function != "sum" or m.field is None):
            raise Invalid(Problem(f"{where}.weight", "type", "a weight goes with a sum of a field"))
        counted = m.function in ("count", "count_distinct", "sum", "avg")
        measures.append(Column(m.name, tuple(m.field.split(".")) if m.field else (), f,
                               "number" if counted else kind, "number" if m.function.startswith("count") else kind))
    return groups, measures


def date_field_of(report: Report) -> str:
    """The date a dashboard's date range narrows."""
    if report.date_field:
        return report.date_field
    return next((g.field for g in groups_of(report) if g.by is not None), "created_at")


def report_problems(report: Report, objects: Mapping[str, ObjectDef],
                    unchecked: Mapping[str, str] | None = None) -> list[Problem]:
    """Every problem of `report` over `objects` (the first of its columns,
    then its expressions, sort keys and date field). `unchecked` names
    paths that may not be judged (their object's file is broken)."""
    if report.object not in objects:
        return [Problem("object", "unknown_object", f"no object {report.object!r}")]
    try:
        groups, measures = columns_of(report, objects, unchecked)
    except Invalid as exc:
        return [exc.problem]
    problems = []
    scope = Scope(objects=objects, object_name=report.object, extra_names=unchecked or {})
    expressions = [("filter", report.filter, "boolean")]
    expressions += [(f"measures[{i}].weight", m.weight, "number") for i, m in enumerate(report.measures)]
    for where, source, expect in expressions:
        if source:
            problems += [Problem(where, e.code, f"{e.message} (line {e.line}, column {e.column})", e.line, e.column)
                         for e in check(source, scope, expect=expect)]
    names = [c.name for c in groups + measures]
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        problems.append(Problem("measures", "duplicate_name", f"two columns are named {twice[0]!r}"))
    chart = report.chart
    if chart is not None:
        group_names, measure_names = [c.name for c in groups], [c.name for c in measures]
        for key, value, allowed in (("x", chart.x, group_names), ("y", chart.y, measure_names),
                                    ("series", chart.series, group_names)):
            if value is not None and value not in allowed:
                problems.append(Problem(f"chart.{key}", "unknown_field",
                                        f"{value!r} is not a {'measure' if key == 'y' else 'group'} of the report"))
    for i, key in enumerate(report.sort):
        if key.lstrip("-") not in names:
            problems.append(Problem(f"sort[{i}]", "unknown_field",
                                    f"{key.lstrip('-')!r} is not a column of the report ({', '.join(names)})"))
    try:
        _, kind = resolve(objects, report.object, date_field_of(report), "date_field", unchecked)
        if kind not in TEMPORAL | {"any"}:
            problems.append(Problem("date_field", "type", f"{date_field_of(report)} is not a date"))
    except Invalid as exc:
        problems.append(exc.problem)
    return problems
