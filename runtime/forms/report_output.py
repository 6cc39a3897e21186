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

import sqlalchemy as sa

from loomcrm.metadata.model import Report, localized
from loomcrm.metadata.reports import DEPARTMENT, columns_of, date_field_of, groups_of
from loomcrm.platform import systemdb

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
    """For each row, the label of each group value."""
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
                labels.append(blank)
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


def drill_params(report: Report, schema, values: list[Any] | None,
                 narrowing: Narrowing | None = None) -> list[tuple[str, str]] | None:
    """The list-page query parameters selecting exactly the records a row
    of the result counts (`values` are its group values; None for the
    totals row); None when no list can say it (a department group)."""
    groups, _ = columns_of(report, schema.objects)
    params: list[tuple[str, str]] = []
    clauses = [f"({report.filter})"] if report.filter else []
    for group, column, value in zip(groups_of(report), groups, values or []):
        path = group.field
        if path == DEPARTMENT:
            return None
        if "." in path:
            clauses.append(f"is_blank({path})" if value is None else f"{path} == {_literal(value)}")
        elif value is None:
            params.append((f"{path}__isnull", "true"))
        elif group.by is not None:
            start = date.fromisoformat(str(value)[:10])
            end = _bucket_end(start, group.by)
            suffix = "T00:00:00" if column.source == "datetime" else ""
            params += [(f"{path}__gte", f"{start.isoformat()}{suffix}"), (f"{path}__lt", f"{end.isoformat()}{suffix}")]
        else:
            params.append((path, "true" if value is True else "false" if value is False else str(value)))
    narrowing = narrowing or Narrowing()
    date_field = date_field_of(report)
    if narrowing.date_from or narrowing.date_to:
        if "." in date_field:
            if narrowing.date_from:
                d = narrowing.date_from
                clauses.append(f"{date_field} >= date({d.year}, {d.month}, {d.day})")
            if narrowing.date_to:
                d = narrowing.date_to
                clauses.append(f"{date_field} <= date({d.year}, {d.month}, {d.day})")
        else:
            stamp = date_field in ("created_at", "updated_at") or _kind(schema, report, date_field) == "datetime"
            if narrowing.date_from:
                params.append((f"{date_field}__gte", narrowing.date_from.isoformat() + ("T00:00:00" if stamp else "")))
            if narrowing.date_to:
                end = narrowing.date_to + timedelta(days=1) if stamp else narrowing.date_to
                params.append((f"{date_field}__lt" if stamp else f"{date_field}__lte",
                               end.isoformat() + ("T00:00:00" if stamp else "")))
    if narrowing.owner:
        params.append(("owner", narrowing.owner))
    if clauses:
        params.append(("filter", " and ".join(clauses)))
    return params


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
