"""A report's result as people read it: group values as labels (option
labels, owners' and departments' names, looked-up records' titles, date
buckets), the list of the records behind a row (drill-down), and the result
as CSV or XLSX.
"""

from __future__ import annotations

import csv
import io
from datetime import date, timedelta
from typing import Any
from urllib.parse import urlencode

import sqlalchemy as sa

from loomcrm.metadata.model import Report, localized
from loomcrm.metadata.reports import DEPARTMENT, columns_of, date_field_of, groups_of
from loomcrm.platform import i18n, systemdb

from .display import option_map
from .refs import Refs
from ..reports import Narrowing


def bucket_label(value: str | None, by: str) -> str:
    if value is None:
        return ""
    day = date.fromisoformat(str(value)[:10])
    if by == "month":
        return f"{day:%Y-%m}"
    if by == "quarter":
        return f"{day.year} Q{(day.month - 1) // 3 + 1}"
    if by == "year":
        return str(day.year)
    return day.isoformat()


def group_labels(conn: sa.Connection, schema, report: Report, rows: list[list[Any]], locale: str,
                 access=None, blank: str = "—") -> list[list[str]]:
    """For each row, the label of each group value (no owner reads as such)."""
    nobody = i18n.gettext(locale, "No owner")
    groups, _ = columns_of(report, schema.objects)
    refs = Refs(schema, conn, access)
    wanted: dict[str, set[str]] = {}
    users, departments = set(), set()
    for i, column in enumerate(groups):
        values = {r[i] for r in rows if r[i] is not None}
        if column.kind == "lookup":
            wanted.setdefault(column.field.to, set()).update(values)
        elif column.kind == "user":
            users |= values
        elif column.kind == "department":
            departments |= values
    refs.load(wanted, users)
    names = {}
    if departments:
        table = systemdb.departments
        names = dict(conn.execute(sa.select(table.c.id, table.c.label).where(table.c.id.in_(sorted(departments)))).all())
    by = [g.by for g in groups_of(report)]
    labelled = []
    for row in rows:
        labels = []
        for i, column in enumerate(groups):
            value = row[i]
            if value is None:
                labels.append(nobody if column.kind == "user" and column.path == ("owner",) else blank)
            elif by[i] is not None:
                labels.append(bucket_label(value, by[i]))
            elif column.kind == "lookup":
                labels.append(refs.title(column.field.to, value) or blank)
            elif column.kind == "user":
                labels.append(refs.user(value))
            elif column.kind == "department":
                labels.append(names.get(value, value))
            elif column.field is not None and column.field.type in ("picklist", "stage"):
                option = option_map(column.field).get(value)
                labels.append(localized(option.label, locale, value) if option is not None else str(value))
            else:
                labels.append(str(value))
        labelled.append(labels)
    return labelled


def _literal(value: Any) -> str:
    """A value as the expression language writes it."""
    if value is None:
        return "None"
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, (int, float)) or type(value).__name__ == "Decimal":
        return str(value)
    return repr(str(value))


def _bucket_end(start: date, by: str) -> date:
    if by == "day":
        return start + timedelta(days=1)
    if by == "week":
        return start + timedelta(days=7)
    months = {"month": 1, "quarter": 3, "year": 12}[by]
    month = start.month - 1 + months
    return date(start.year + month // 12, month % 12 + 1, 1)


class Drill:
    """The list pages of the records behind a report's rows (drill-down).

    The selection is written as the list's filter expression, so the list
    shows it in its filter box and the user can read and change it; only a
    date range on a timestamp stays a parameter (an expression compares
    timestamps with timestamps). What every row shares (the report's filter,
    a dashboard's date range and owner) is worked out once."""

    def __init__(self, report: Report, schema, narrowing: Narrowing | None = None):
        self.object = report.object
        self.groups = list(zip(groups_of(report), columns_of(report, schema.objects)[0]))
        # a department is no field of the record: no list can filter on it
        self.possible = all(group.field != DEPARTMENT for group, _ in self.groups)
        self.clauses = [f"({report.filter})"] if report.filter else []
        self.shared: list[tuple[str, str]] = []
        narrowing = narrowing or Narrowing()
        date_field = date_field_of(report)
        stamp = date_field in ("created_at", "updated_at") or _kind(schema, report, date_field) == "datetime"
        if stamp:
            if narrowing.date_from:
                self.shared.append((f"{date_field}__gte", narrowing.date_from.isoformat() + "T00:00:00"))
            if narrowing.date_to:
                end = narrowing.date_to + timedelta(days=1)
                self.shared.append((f"{date_field}__lt", end.isoformat() + "T00:00:00"))
        else:
            if narrowing.date_from:
                self.clauses.append(f"{date_field} >= {_day(narrowing.date_from)}")
            if narrowing.date_to:
                self.clauses.append(f"{date_field} <= {_day(narrowing.date_to)}")
        if narrowing.owner:
            self.clauses.append(f"owner == {_literal(narrowing.owner)}")

    def params(self, values: list[Any] | None) -> list[tuple[str, str]] | None:
        """The list's query parameters for the row of group `values` (None:
        the totals row; fewer values: a subtotal); None when no list can say it."""
        if not self.possible:
            return None
        params, clauses = list(self.shared), list(self.clauses)
        for (group, column), value in zip(self.groups, values or []):
            path = group.field
            if group.by is not None and value is not None:
                start = date.fromisoformat(str(value)[:10])
                end = _bucket_end(start, group.by)
                if column.source == "datetime":
                    params += [(f"{path}__gte", f"{start.isoformat()}T00:00:00"),
                               (f"{path}__lt", f"{end.isoformat()}T00:00:00")]
                else:
                    clauses.append(f"{path} >= {_day(start)} and {path} < {_day(end)}")
            else:
                clauses.append(f"{path} == {_literal(value)}")
        return params + ([("filter", " and ".join(clauses))] if clauses else [])

    def url(self, values: list[Any] | None) -> str:
        params = self.params(values)
        return f"/app/{self.object}?{urlencode(params)}" if params is not None else ""


def _day(day: date) -> str:
    return f"date({day.year}, {day.month}, {day.day})"


def drill_params(report: Report, schema, values: list[Any] | None,
                 narrowing: Narrowing | None = None) -> list[tuple[str, str]] | None:
    """The list-page query parameters selecting exactly the records a row
    of the result counts (see `Drill`)."""
    return Drill(report, schema, narrowing).params(values)


def _kind(schema, report: Report, path: str) -> str | None:
    f = schema.objects[report.object].field(path)
    return f.type if f is not None else None


def table_of(result: dict[str, Any], labels: list[list[str]], groups: int, total: str) -> list[list[Any]]:
    """Header and rows as people read them: labels in the `groups` group
    columns, the totals row last (named `total`)."""
    header = [c["label"] for c in result["columns"]]
    rows = [row_labels + row[groups:] for row_labels, row in zip(labels, result["rows"])]
    if groups and result["totals"]:
        rows.append([total] + [""] * (groups - 1) + result["totals"][groups:])
    elif not groups:
        rows = [list(r) for r in result["rows"]]
    return [header] + rows


def to_csv(table: list[list[Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    for row in table:
        writer.writerow(["" if v is None else v for v in row])
    return out.getvalue()


def to_xlsx(table: list[list[Any]], title: str) -> bytes:
    from openpyxl import Workbook

    book = Workbook(write_only=True)
    sheet = book.create_sheet(title=title[:31] or "Report")
    for row in table:
        sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()
