"""Reports and dashboards in the browser (`/app/_reports`, `/app/_dashboards`):
a report as a chart and a table whose rows open the records behind them,
dashboards of report widgets under one date range and owner filter, and
the report builder (fields dragged into rows and columns, measures, a
chart, a filter in the expression language, a live preview, saving).

Every widget of a dashboard is computed in the one request that renders
the page, one SQL statement each; charts are drawn by Apache ECharts from
the compact spec `chart_spec` gives (static/reports.js)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field as dc_field
from datetime import date
from typing import Any, Callable
from urllib.parse import urlencode

import sqlalchemy as sa
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse
from starlette.datastructures import FormData
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from loomcrm.metadata.model import Dashboard, GroupBy, Measure, Report, localized
from loomcrm.metadata.reports import NUMERIC, TEMPORAL, columns_of
from loomcrm.platform import auth, i18n, systemdb

from .. import report_catalog as catalog, sales_analytics
from ..records import RecordError
from .display import option_map
from .refs import Refs
from .report_output import Drill, group_labels
from ..reports import SYSTEM_LABELS, Narrowing, run_report
from .views import N_, Pages, filter_fields, filter_problem, redirect_after

FUNCTIONS = ("count", "sum", "avg", "min", "max", "count_distinct")
FUNCTION_TEXTS = {"count": "Count", "sum": "Sum", "avg": "Average", "min": "Minimum", "max": "Maximum",
                  "count_distinct": "Count of distinct"}
BUCKET_TEXTS = {"day": "Day", "week": "Week", "month": "Month", "quarter": "Quarter", "year": "Year"}
CHART_TEXTS = {"table": "Table", "bar": "Bar chart", "line": "Line chart", "pie": "Pie chart", "funnel": "Funnel",
               "number": "Single number"}
SYSTEM_GROUPS = {k: v for k, v in SYSTEM_LABELS.items() if k != "created_by"}
MONEY = frozenset({"currency"})
DASHBOARD_ROWS = 20   # rows in a dashboard card's table
PERIODS = ("month", "quarter", "year")   # of win rates
# a report definition's problems, by code, for pages not in English
PROBLEM_TEXTS = {"unknown_field": "There is no such field here.", "unknown_object": "There are no such records.",
                 "type": "This does not fit the field's type (a sum or average needs a number, a date grouping a date).",
                 "required": "This measure needs a field.", "duplicate_name": "Two columns have the same name.",
                 "not_found": "There are no such records.", "other": "The report cannot run with these settings."}
ANALYTICS_TEXTS = {"reached": "Reached", "moved_on": "Average days before moving on",
                   "waited": "Days open deals have waited", "no_owner": "No owner"}
NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")
NOTICE_TEXTS = {"bad_name": "A report's name is lowercase letters, digits and _, starting with a letter.",
                "already_there": "This report is on that dashboard already.",
                "not_yours": "Choose one of your dashboards.", "new_board": "My dashboard"}


@dataclass
class Widget:
    """One report as a page shows it."""

    report: Report
    title: str
    chart: str
    spec: dict[str, Any] = dc_field(default_factory=dict)
    header: list[str] = dc_field(default_factory=list)
    rows: list[dict[str, Any]] = dc_field(default_factory=list)   # {"cells": [...], "href": url}
    total: dict[str, Any] | None = None
    number: str = ""
    href: str = ""
    more: bool = False   # rows left out of the table
    measure: str = ""    # the label of the measure a chart or number shows
    pivot: dict[str, Any] | None = None   # the cross table of a report with columns
    subtotals: list[dict[str, Any]] = dc_field(default_factory=list)   # shown before the total
    error: str = ""


def problem_text(exc: RecordError, locale: str) -> str:
    """A report's problem in the user's words: an expression's with its line
    and column, the others by their code; English pages show the engine's
    own, more precise message."""
    first = exc.errors[0] if exc.errors else {}
    if locale == "en" or not first:
        return exc.detail
    if first.get("line"):
        return filter_problem(exc, locale)
    text = PROBLEM_TEXTS.get(first.get("code"), PROBLEM_TEXTS["other"])
    return f"{first.get('field', '')}: {i18n.gettext(locale, text)}"


def narrowing_of(params, user) -> Narrowing:
    def day(key: str) -> date | None:
        try:
            return date.fromisoformat(params.get(key, "").strip()) if params.get(key, "").strip() else None
        except ValueError:
            return None
    owner = params.get("owner", "").strip() or None
    return Narrowing(date_from=day("date_from"), date_to=day("date_to"),
                     owner=user.id if owner == "me" else owner)


def narrowing_query(narrowing: Narrowing) -> dict[str, str]:
    return {k: str(v) for k, v in (("date_from", narrowing.date_from), ("date_to", narrowing.date_to),
                                   ("owner", narrowing.owner)) if v}


class ReportPages:
    """Runs reports for pages, as `user`, in `locale`."""

    def __init__(self, runtime, pages: Pages):
        self.runtime = runtime
        self.pages = pages

    def widget(self, conn: sa.Connection, report: Report, user, locale: str, narrowing: Narrowing,
               title: str = "", max_rows: int | None = None) -> Widget:
        """`report` as a card; with `max_rows`, the table shows that many
        rows (a dashboard's card: the report's page has them all)."""
        schema, access = self.runtime.schema(), self.runtime.access.of(user)
        title = title or localized(report.label, locale, report.name)
        chart = report.chart.type if report.chart else ("table" if report.group_by else "number")
        widget = Widget(report=report, title=title, chart=chart)
        try:
            result = run_report(conn, schema, report, access, locale, zone=self.runtime.context.timezone,
                                narrowing=narrowing)
        except RecordError as exc:
            widget.error = i18n.gettext(locale, "This report cannot run: %(problem)s").replace(
                "%(problem)s", problem_text(exc, locale))
            return widget
        ui = self.pages.display(schema, locale)
        group_columns, measures = columns_of(report, schema.objects)
        groups = len(report.group_by)
        labels = group_labels(conn, schema, report, [r[:groups] for r in result["rows"]], locale, access) \
            if groups else []

        def shown(value, column) -> str:
            if value is None:
                return "—"
            if column.kind in MONEY or column.source in MONEY:
                return ui.money(value)
            return ui.number(value) if column.kind in NUMERIC | {"number"} else str(value)

        drill = Drill(report, schema, narrowing)
        widget.header = [c["label"] for c in result["columns"]]
        for i, (row, row_labels) in enumerate(zip(result["rows"], labels or [[]] * len(result["rows"]))):
            # past `max_rows` only the chart needs the row: no formatted cells
            cells = row_labels + [shown(v, m) for v, m in zip(row[groups:], measures)] \
                if max_rows is None or i < max_rows else []
            widget.rows.append({"cells": cells, "href": drill.url(row[:groups] if groups else None)})
        widget.more = max_rows is not None and len(result["rows"]) > max_rows
        widget.href = drill.url(None)
        self.place_subtotals(widget, result, labels, groups, measures, shown, locale, drill)
        if groups and result["totals"]:
            widget.total = {"cells": [i18n.gettext(locale, "Total")] + [""] * (groups - 1)
                            + [shown(v, m) for v, m in zip(result["totals"][groups:], measures)],
                            "href": widget.href}
        y = self.y_index(report)
        totals = result["totals"] or (result["rows"][0] if result["rows"] else [])
        if totals:
            widget.number = shown(totals[groups + y], measures[y])
        orders = [option_map(c.field) if c.source in ("picklist", "stage") else {} for c in group_columns]
        widget.spec = self.chart_spec(report, result, labels, widget.rows, y,
                                      [{value: i for i, value in enumerate(order)} for order in orders])
        widget.measure = widget.header[groups + y] if len(widget.header) > groups + y else ""
        if widget.spec.get("pivot"):
            widget.pivot = self.pivot(widget, result, labels, groups, measures[y], shown, locale)
        for series in widget.spec["series"]:
            series.pop("values", None)   # exact values, for the cross table only
        return widget

    @staticmethod
    def place_subtotals(widget: Widget, result: dict, labels, groups: int, measures, shown, locale: str,
                        drill: Drill) -> None:
        """Each subtotal of the first group under the last row of its block
        (`then`), or all at the end when a sort by a measure scattered the
        blocks (`widget.subtotals`)."""
        if not result.get("subtotals"):
            return
        label_of = {row[0]: row_labels[0] for row, row_labels in zip(result["rows"], labels)}
        subtotal = {row[0]: {"cells": [i18n.gettext(locale, "Subtotal") + " · " + label_of.get(row[0], str(row[0]))]
                             + [""] * (groups - 1) + [shown(v, m) for v, m in zip(row[groups:], measures)],
                             "href": drill.url([row[0]])}   # the first group's value alone
                    for row in result["subtotals"]}
        firsts = [row[0] for row in result["rows"]]
        blocks = [value for i, value in enumerate(firsts) if i == 0 or firsts[i - 1] != value]
        if len(blocks) != len(set(blocks)):
            widget.subtotals = [subtotal[v] for v in dict.fromkeys(firsts) if v in subtotal]
            return
        for i, value in enumerate(firsts):
            if (i + 1 == len(firsts) or firsts[i + 1] != value) and widget.rows[i]["cells"]:
                widget.rows[i]["then"] = subtotal.get(value)

    @staticmethod
    def pivot(widget: Widget, result: dict, labels, groups: int, measure, shown, locale: str) -> dict[str, Any]:
        """The table of a report with columns: the rows group down, the
        columns group across, the chart's measure in the cells, each row's
        total (its subtotal) last."""
        spec = widget.spec
        x = spec["pivot"]["rows"]
        raw_of = {label[x]: row[x] for row, label in zip(result["rows"], labels)}
        row_totals = {row[0]: row for row in result.get("subtotals", [])} if x == 0 else {}
        y = groups + widget.report.measures.index(next(m for m in widget.report.measures if m.name == spec["pivot"]["y"]))
        body = []
        for i, category in enumerate(spec["categories"]):
            cells = [{"text": shown(series["values"][i], measure) if series["values"][i] is not None else "",
                      "href": series["drill"][i]} for series in spec["series"]]
            total = row_totals.get(raw_of.get(category))
            body.append({"label": category, "cells": cells, "total": shown(total[y], measure) if total else ""})
        return {"corner": spec["pivot"]["corner"], "columns": [series["name"] for series in spec["series"]],
                "rows": body, "total": shown(result["totals"][y], measure) if result["totals"] else "",
                "total_label": i18n.gettext(locale, "Total")}

    @staticmethod
    def y_index(report: Report) -> int:
        names = [m.name for m in report.measures]
        y = report.chart.y if report.chart and report.chart.y in names else None
        return names.index(y) if y else 0

    @staticmethod
    def chart_spec(report: Report, result: dict, labels: list[list[str]], rows: list[dict], y: int,
                   orders: list[dict[Any, int]]) -> dict[str, Any]:
        """What static/reports.js draws: categories (the first group's labels,
        or all groups' joined), series (one per measure, or per value of the
        `series` group for a pivot, in `orders` of options where the group
        has them), and where each point drills down to. Pies and funnels
        read a missing value as 0."""
        groups = len(report.group_by)
        measure_names = [c["label"] for c in result["columns"][groups:]]
        kind = report.chart.type if report.chart else "table"
        series_group = report.chart.series if report.chart else None
        names = [c["name"] for c in result["columns"][:groups]]
        if groups == 2 and series_group in names:
            s = names.index(series_group)
            x = 1 - s
            categories = list(dict.fromkeys(label[x] for label in labels))
            # the series in their own order (months in time, stages as defined)
            raw = {}
            for row, label in zip(result["rows"], labels):
                raw.setdefault(label[s], row[s])
            rank = orders[s]
            series_names = sorted(raw, key=lambda n: (raw[n] is None, rank.get(raw[n], len(rank)),
                                                      "" if raw[n] is None else str(raw[n])))
            data = {name: [None] * len(categories) for name in series_names}
            values = {name: [None] * len(categories) for name in series_names}
            drill = {name: [""] * len(categories) for name in series_names}
            position = {category: i for i, category in enumerate(categories)}
            for row, label, shown in zip(result["rows"], labels, rows):
                value, at = row[groups + y], position[label[x]]
                data[label[s]][at] = float(value) if value is not None else None
                values[label[s]][at] = value
                drill[label[s]][at] = shown["href"]
            series = [{"name": n, "data": data[n], "values": values[n], "drill": drill[n]} for n in series_names]
            return {"type": kind, "categories": categories, "series": series, "axis": measure_names[y],
                    "pivot": {"rows": x, "y": report.measures[y].name, "corner": result["columns"][x]["label"]}}
        else:
            categories = [" · ".join(label) for label in labels]
            chosen = [y] if kind in ("pie", "funnel") or (report.chart and report.chart.y) else range(len(measure_names))
            empty = 0 if kind in ("pie", "funnel") else None
            # counts beside amounts get an axis of their own (they would lie flat at 0)
            counts = {i for i in chosen if report.measures[i].function in ("count", "count_distinct")}
            second = counts if counts and len(counts) < len(list(chosen)) else set()
            series = [{"name": measure_names[i], "axis": 1 if i in second else 0,
                       "data": [float(r[groups + i]) if r[groups + i] is not None else empty for r in result["rows"]],
                       "drill": [shown["href"] for shown in rows]} for i in chosen]
        return {"type": kind, "categories": categories, "series": series}

    def dashboard(self, dashboard: Dashboard, user, locale: str, narrowing: Narrowing) -> list[tuple[Any, Widget]]:
        schema, access = self.runtime.schema(), self.runtime.access.of(user)
        shown = []
        with self.runtime.engine.connect() as conn:
            for item in dashboard.widgets:
                report = schema.reports.get(item.report)
                if report is None or not catalog.may_see(report, user) or not access.may_see_object(report.object):
                    continue
                title = localized(item.title, locale, "") if item.title else ""
                shown.append((item, self.widget(conn, report, user, locale, narrowing, title, max_rows=DASHBOARD_ROWS)))
        return shown

    def dashboard_context(self, request: Request, user, dashboard: Dashboard, locale: str) -> dict[str, Any]:
        """What dashboard.html (and the home page showing a role's dashboard) renders."""
        narrowing = narrowing_of(request.query_params, user)
        return {"dashboard": dashboard, "widgets": self.dashboard(dashboard, user, locale, narrowing),
                "may_change_dashboard": catalog.may_change(dashboard, user),
                "narrowing": narrowing, "owners": self.owners(user), "title": localized(dashboard.label, locale, dashboard.name),
                "description": localized(dashboard.description, locale, ""),
                "query": urlencode(narrowing_query(narrowing))}

    def owners(self, user) -> list[tuple[str, str]]:
        """Whom the owner filter offers: everyone to those who see every
        record, else the user and the people of their department and below."""
        access = self.runtime.access.of(user)
        table = systemdb.users
        query = sa.select(table.c.id, table.c.display_name, table.c.username).where(table.c.is_active.is_(True))
        if not access.everything and access.team is not None:   # None: too many to list, offer all
            query = query.where(table.c.id.in_(sorted(access.team | {access.user_id})))
        with self.runtime.engine.connect() as conn:
            rows = conn.execute(query.order_by(table.c.username).limit(500)).all()
        return [(r.id, r.display_name or r.username) for r in rows]


# --- the builder's form ---------------------------------------------------------------

def report_from_form(form, user, describe: Callable[[str, str], dict[str, str]] | None = None) -> Report:
    """A report from the builder's fields: `object`; `row` and `column`
    paths with their date buckets in `row_by` and `column_by`; measures as
    `measure_function` and `measure_field` pairs; `chart`, `filter`, `sort`,
    `limit`, `name`, `label`, `share` (private, everyone or roles) and `roles`.
    `describe(function, path)` labels a measure in the user's words."""
    def placed(key: str) -> list[tuple[str, str]]:
        return [(path, by) for path, by in zip(form.getlist(key), form.getlist(f"{key}_by")) if path]

    rows, columns = placed("row"), placed("column")
    groups = [GroupBy(field=path, by=by) if by else path for path, by in rows + columns]
    measures, names = [], set()
    for function, path in zip(form.getlist("measure_function"), form.getlist("measure_field")):
        if function not in FUNCTIONS:
            continue
        name = f"{function}_{path.replace('.', '_')}" if path else function
        while name in names:
            name += "_"
        names.add(name)
        measures.append(Measure(name=name, function=function, field=path or None,
                                label=describe(function, path) if describe is not None else None))
    chart_type = form.get("chart") or ("bar" if groups else "number")
    chart: dict[str, Any] = {"type": chart_type}
    if columns and len(groups) == 2:
        path, by = columns[0]
        chart["series"] = f"{path}:{by}" if by else path
    sort = (form.get("sort") or "").strip()
    if sort and sort.lstrip("-") not in names:
        sort = ""
    limit = (form.get("limit") or "").strip()
    if limit and not sort and measures:   # "the first 10" are the 10 biggest
        sort = f"-{measures[0].name}"
    share = form.get("share") or "private"
    label = (form.get("label") or "").strip()
    data: dict[str, Any] = {
        "name": (form.get("name") or "").strip() or "draft", "object": form.get("object") or "",
        "filter": (form.get("filter") or "").strip() or None, "group_by": groups,
        "measures": measures or [Measure(name="count", function="count")], "chart": chart,
        "sort": [sort] if sort else [], "limit": int(limit) if limit.isdigit() and 0 < int(limit) <= 10000 else None,
        "shared_with": "everyone" if share == "everyone" else
                       [r for r in form.getlist("roles") if r] if share == "roles" else []}
    if label:
        data["label"] = {getattr(user, "locale", None) or "en": label}
    return Report.model_validate(data)


def field_choices(schema, obj, ui, locale: str, gettext) -> list[dict[str, Any]]:
    """What the builder offers to drag: the object's groupable fields,
    its lookups' fields one hop away, and the owner and dates."""
    choices = []
    for f in obj.fields:
        kind = ui.kind(obj, f)
        if f.type in ("long_text", "multi_picklist", "related_to"):
            continue
        choices.append({"path": f.name, "label": ui.label(f), "kind": kind, "date": kind in TEMPORAL,
                        "number": kind in NUMERIC})
    for f in obj.fields:
        if f.type == "lookup" and f.to in schema.objects:
            target = schema.objects[f.to]
            for g in target.fields:
                if g.type in ("picklist", "stage", "text", "boolean", "user"):
                    choices.append({"path": f"{f.name}.{g.name}", "label": f"{ui.label(f)} › {ui.label(g)}",
                                    "kind": g.type, "date": False, "number": False})
    for path, text in SYSTEM_GROUPS.items():
        choices.append({"path": path, "label": gettext(text), "kind": "datetime" if path.endswith("_at") else "user",
                        "date": path.endswith("_at"), "number": False})
    return choices


def build_report_pages(runtime, *, templates, page_context: Callable[..., dict]) -> APIRouter:
    router = APIRouter(prefix="/app", include_in_schema=False)
    pages = Pages(runtime, templates, page_context)
    reports = ReportPages(runtime, pages)

    def locale_of(request: Request) -> str:
        return page_context(request)["locale"]

    def describer(object_name: str) -> Callable[[str, str], dict[str, str]]:
        """"Sum · Amount", "Count", in every language Loom speaks."""
        schema = runtime.schema()
        obj = schema.objects.get(object_name)
        labels = {}
        for locale in i18n.LOCALES:
            ui = pages.display(schema, locale)
            labels[locale] = {c["path"]: c["label"] for c in field_choices(
                schema, obj, ui, locale, lambda text, locale=locale: i18n.gettext(locale, text))} if obj else {}

        def describe(function: str, path: str) -> dict[str, str]:
            texts = {}
            for locale in i18n.LOCALES:
                text = i18n.gettext(locale, FUNCTION_TEXTS[function])
                texts[locale] = f"{text} · {labels[locale].get(path, path)}" if path else text
            return texts
        return describe

    def texts(locale: str) -> dict[str, dict[str, str]]:
        return {name: {k: i18n.gettext(locale, v) for k, v in table.items()}
                for name, table in (("functions", FUNCTION_TEXTS), ("buckets", BUCKET_TEXTS), ("charts", CHART_TEXTS))}

    @router.get("/_reports", response_class=HTMLResponse)
    def report_list(request: Request, user=Depends(auth.page_user)):
        schema, access = runtime.schema(), runtime.access.of(user)
        locale = locale_of(request)
        ui = pages.display(schema, locale)
        listed = [{"report": r, "label": localized(r.label, locale, r.name),
                   "object": ui.plural(schema.objects[r.object]) if r.object in schema.objects else r.object,
                   "mine": catalog.may_change(r, user)}
                  for r in catalog.reports_for(schema, user, access)]
        boards = [{"dashboard": d, "label": localized(d.label, locale, d.name)} for d in catalog.dashboards_for(schema, user)]
        # objects whose stage history the analytics read
        tracked = [(o.name, ui.plural(o)) for o in schema.objects.values() if access.may_see_object(o.name)
                   and any(f.type == "stage" and f.name in o.track_history for f in o.fields)]
        return pages.render(request, "forms/reports.html", reports=sorted(listed, key=lambda r: r["label"]),
                            dashboards=boards, tracked=tracked)

    @router.get("/_reports/new", response_class=HTMLResponse)
    def builder_new(request: Request, object: str = "", user=Depends(auth.page_user)):
        return builder(request, user, None, object)

    @router.get("/_reports/{name}/edit", response_class=HTMLResponse)
    def builder_edit(request: Request, name: str, user=Depends(auth.page_user)):
        schema = runtime.schema()
        report = _report(schema, user, name)
        return builder(request, user, report, report.object)

    def builder(request: Request, user, report: Report | None, object_name: str) -> HTMLResponse:
        schema, access = runtime.schema(), runtime.access.of(user)
        locale = locale_of(request)
        objects = [o for o in schema.objects.values() if access.may_see_object(o.name)]
        if not objects:
            raise HTTPException(status_code=404, detail=N_("There is no such page."))
        obj = schema.objects.get(object_name) if object_name in {o.name for o in objects} else objects[0]
        obj = access.view(obj)
        ui = pages.display(schema, locale)
        gettext = pages.gettext(request)
        choices = field_choices(schema, obj, ui, locale, gettext)
        rows, columns, measures = [], [], [("count", "")]
        if report is not None:
            series = report.chart.series if report.chart else None
            for g in report.group_by:
                group = g if isinstance(g, GroupBy) else GroupBy(field=g)
                name = f"{group.field}:{group.by}" if group.by else group.field
                (columns if name == series else rows).append((group.field, group.by or ""))
            measures = [(m.function, m.field or "") for m in report.measures]
        roles = [(name, localized(r.label, locale, name)) for name, r in sorted(runtime.roles()[1].items())]
        return pages.render(request, "forms/report_builder.html", obj=obj, objects=objects, ui=ui, choices=choices,
                            report=report, rows=rows, columns=columns, measures=measures,
                            labels={c["path"]: c["label"] for c in choices},
                            texts=texts(locale), roles=roles, filter_fields=filter_fields(obj, ui),
                            label=localized(report.label, locale, "") if report is not None else "")

    @router.post("/_reports/preview", response_class=HTMLResponse, dependencies=[Depends(auth.page_csrf)])
    async def builder_preview(request: Request, user=Depends(auth.page_user)):
        form = await request.form()
        locale = locale_of(request)
        describe = describer(str(form.get("object") or ""))

        def run():
            try:
                report = report_from_form(form, user, describe)
            except ValidationError as exc:
                return None, _validation_text(exc)
            title = localized(report.label, locale, "") or i18n.gettext(locale, "Preview")
            with runtime.engine.connect() as conn:
                return reports.widget(conn, report, user, locale, Narrowing(), title), ""

        widget, problem = await run_in_threadpool(run)
        return pages.render(request, "forms/_widget.html", widget=widget, problem=problem, preview=True)

    @router.post("/_reports/save", dependencies=[Depends(auth.page_csrf)])
    async def builder_save(request: Request, user=Depends(auth.page_user)):
        form = await request.form()
        gettext = pages.gettext(request)
        name = (form.get("name") or "").strip()
        schema = runtime.schema()
        if not name:   # from the title, else a number: links and the API need one
            name = _new_name(re.sub(r"[^a-z0-9]+", "_", str(form.get("label") or "").lower()).strip("_") or "report",
                             schema.reports)
        elif not NAME.fullmatch(name):
            return pages.render(request, "forms/_notice.html", status=422, kind="error",
                                message=gettext(NOTICE_TEXTS["bad_name"]))
        form = _with_name(form, name)
        try:
            report = _edited(report_from_form(form, user, describer(str(form.get("object") or ""))),
                             schema.reports.get(name))
            saved = await run_in_threadpool(catalog.save_report, runtime, user, report)
        except ValidationError as exc:
            return pages.render(request, "forms/_notice.html", status=422, kind="error", message=_validation_text(exc))
        except RecordError as exc:
            return pages.render(request, "forms/_notice.html", status=exc.status if exc.status < 500 else 422,
                                kind="error", message=exc.detail)
        return redirect_after(request, f"/app/_reports/{saved.name}")

    @router.get("/_reports/{name}", response_class=HTMLResponse)
    def report_page(request: Request, name: str, user=Depends(auth.page_user)):
        schema = runtime.schema()
        report = _report(schema, user, name)
        locale = locale_of(request)
        narrowing = narrowing_of(request.query_params, user)
        with runtime.engine.connect() as conn:
            widget = reports.widget(conn, report, user, locale, narrowing)
        query = urlencode(narrowing_query(narrowing))
        boards = [(d.name, localized(d.label, locale, d.name)) for d in catalog.dashboards_for(schema, user)
                  if catalog.may_change(d, user)]
        return pages.render(request, "forms/report.html", widget=widget, narrowing=narrowing, owners=reports.owners(user),
                            may_change=catalog.may_change(report, user), query=query, boards=boards)

    @router.post("/_reports/{name}/pin", dependencies=[Depends(auth.page_csrf)])
    async def pin(request: Request, name: str, user=Depends(auth.page_user)):
        """Put the report on a dashboard the user may change, or on a new one."""
        schema = runtime.schema()
        report = _report(schema, user, name)
        form = await request.form()
        gettext = pages.gettext(request)
        board = str(form.get("dashboard") or "")
        try:
            if board:
                dashboard = schema.dashboards.get(board)
                if dashboard is None or not catalog.may_change(dashboard, user):
                    raise RecordError(gettext(NOTICE_TEXTS["not_yours"]))
                if any(w.report == report.name for w in dashboard.widgets):
                    raise RecordError(gettext(NOTICE_TEXTS["already_there"]))
                dashboard = dashboard.model_copy(update={"widgets": [*dashboard.widgets, {"report": report.name}]})
            else:
                title = str(form.get("title") or "").strip() or gettext(NOTICE_TEXTS["new_board"])
                dashboard = {"name": _new_name(f"board_{user.username}", schema.dashboards),
                             "label": {user.locale or "en": title}, "widgets": [{"report": report.name}],
                             "shared_with": []}
            saved = await run_in_threadpool(catalog.save_dashboard, runtime, user, Dashboard.model_validate(
                dashboard.model_dump() if isinstance(dashboard, Dashboard) else dashboard))
        except (RecordError, ValidationError) as exc:
            message = exc.detail if isinstance(exc, RecordError) else _validation_text(exc)
            return pages.render(request, "forms/_notice.html", status=422, kind="error", message=message)
        return redirect_after(request, f"/app/_dashboards/{saved.name}")

    @router.post("/_reports/{name}/delete", dependencies=[Depends(auth.page_csrf)])
    async def report_delete(request: Request, name: str, user=Depends(auth.page_user)):
        try:
            await run_in_threadpool(catalog.delete_report, runtime, user, name)
        except RecordError as exc:
            return pages.render(request, "forms/_notice.html", status=exc.status, kind="error", message=exc.detail)
        return redirect_after(request, "/app/_reports")

    @router.post("/_dashboards/{name}/widgets/{index}/remove", dependencies=[Depends(auth.page_csrf)])
    async def widget_remove(request: Request, name: str, index: int, user=Depends(auth.page_user)):
        """Take a report off a dashboard (the last one takes the dashboard away)."""
        dashboard = runtime.schema().dashboards.get(name)
        if dashboard is None or not catalog.may_change(dashboard, user) or not 0 <= index < len(dashboard.widgets):
            raise HTTPException(status_code=404, detail=N_("There is no such page."))
        widgets = [w for i, w in enumerate(dashboard.widgets) if i != index]
        if widgets:
            await run_in_threadpool(catalog.save_dashboard, runtime, user,
                                    dashboard.model_copy(update={"widgets": widgets}))
            return redirect_after(request, f"/app/_dashboards/{name}")
        await run_in_threadpool(catalog.delete_dashboard, runtime, user, name)
        return redirect_after(request, "/app/_reports")

    @router.get("/_dashboards/{name}", response_class=HTMLResponse)
    def dashboard_page(request: Request, name: str, user=Depends(auth.page_user)):
        schema = runtime.schema()
        try:
            dashboard = catalog.dashboard_for(schema, user, name)
        except RecordError:
            raise HTTPException(status_code=404, detail=N_("There is no such page.")) from None
        return pages.render(request, "forms/dashboard.html",
                            **reports.dashboard_context(request, user, dashboard, locale_of(request)))

    @router.get("/_analytics/{object_name}", response_class=HTMLResponse)
    def analytics_page(request: Request, object_name: str, user=Depends(auth.page_user)):
        """The funnel, days in each stage and win rates of an object with a
        tracked stage field."""
        schema, access = runtime.schema(), runtime.access.of(user)
        locale = locale_of(request)
        narrowing = narrowing_of(request.query_params, user)
        zone = runtime.context.timezone
        try:
            with runtime.engine.connect() as conn:
                steps = sales_analytics.funnel(conn, schema, object_name, access, locale, narrowing, zone)["steps"]
                stages = sales_analytics.stage_times(conn, schema, object_name, access, locale, narrowing, zone)["stages"]
                by = request.query_params.get("by") if request.query_params.get("by") in PERIODS else None
                owners = sales_analytics.win_rates(conn, schema, object_name, access, locale, narrowing, zone,
                                                   by=by)["owners"]
                refs = Refs(schema, conn, access)
                refs.load({}, {o["owner"] for o in owners if o["owner"]})
        except RecordError:
            raise HTTPException(status_code=404, detail=N_("There is no such page.")) from None
        gettext = pages.gettext(request)
        funnel_spec = {"type": "funnel", "categories": [s["label"] for s in steps],
                       "series": [{"name": gettext(ANALYTICS_TEXTS["reached"]), "data": [s["reached"] for s in steps],
                                   "drill": [""] * len(steps)}]}
        field = next(f for f in schema.objects[object_name].fields if f.type == "stage")
        drill = [f"/app/{object_name}?{urlencode([(field.name, s['stage'])] + list(narrowing_query(narrowing).items()))}"
                 for s in stages]
        times_spec = {"type": "bar", "categories": [s["label"] for s in stages],
                      "series": [{"name": gettext(ANALYTICS_TEXTS["moved_on"]), "data": [s["avg_days"] for s in stages],
                                  "drill": drill},
                                 {"name": gettext(ANALYTICS_TEXTS["waited"]), "data": [s["open_avg_days"] for s in stages],
                                  "drill": drill}]}
        for o in owners:
            o["name"] = refs.user(o["owner"]) if o["owner"] else gettext(ANALYTICS_TEXTS["no_owner"])
        ui = pages.display(schema, locale)
        return pages.render(request, "forms/analytics.html", obj=schema.objects[object_name], ui=ui, steps=steps,
                            stages=stages, rates=owners, funnel_spec=funnel_spec, times_spec=times_spec, drill=drill,
                            by=by, buckets={k: gettext(BUCKET_TEXTS[k]) for k in PERIODS},
                            narrowing=narrowing, owners=reports.owners(user), query=urlencode(narrowing_query(narrowing)),
                            narrowing_params=list(narrowing_query(narrowing).items()))

    def _report(schema, user, name: str) -> Report:
        try:
            return catalog.report_for(schema, user, runtime.access.of(user), name)
        except RecordError:
            raise HTTPException(status_code=404, detail=N_("There is no such page.")) from None

    return router


def _edited(report: Report, before: Report | None) -> Report:
    """A report edited in the builder keeps what the builder does not show:
    its measures' names (links, sorts and the API use them) and labels, its
    title in other languages, its sort and its chart's measure while they
    still fit."""
    if before is None:
        return report

    def merged(new, old):
        if isinstance(old, dict) and isinstance(new, dict):
            return {**old, **new}
        return new if new is not None else old
    previous = {(m.function, m.field): m for m in before.measures}
    measures, renamed = [], {}
    for m in report.measures:
        old = previous.get((m.function, m.field))
        if old is not None:
            renamed[m.name] = old.name
        # a measure kept keeps its name and its label (the builder's is generated)
        measures.append(m.model_copy(update={"name": old.name, "label": old.label or m.label}) if old else m)
    sort = [("-" if k.startswith("-") else "") + renamed.get(k.lstrip("-"), k.lstrip("-")) for k in report.sort]
    names = {m.name for m in measures} | {g if isinstance(g, str) else g.field for g in report.group_by}
    chart = report.chart
    if chart is not None and before.chart is not None and before.chart.y in names:
        chart = chart.model_copy(update={"y": before.chart.y})
    return report.model_copy(update={
        "label": merged(report.label, before.label), "measures": measures, "chart": chart,
        "sort": sort or [k for k in before.sort if k.lstrip("-") in names],
        "description": before.description, "date_field": before.date_field})


def _with_name(form, name: str):
    """The builder's form with `name` in it."""
    items = [(k, v) for k, v in form.multi_items() if k != "name"] + [("name", name)]
    return FormData(items)


def _new_name(stem: str, taken) -> str:
    """A metadata name from `stem` that `taken` does not hold yet."""
    stem = re.sub(r"[^a-z0-9_]+", "_", stem.lower())[:55].strip("_")
    stem = stem if stem[:1].isalpha() else f"r_{stem}"
    n = 1
    while f"{stem}_{n}" in taken:
        n += 1
    return f"{stem}_{n}"


def _validation_text(exc: ValidationError) -> str:
    first = exc.errors()[0]
    return f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"
