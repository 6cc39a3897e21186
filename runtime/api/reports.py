"""The report endpoints of SPEC §3.7: run a definition, run a saved report
(with a dashboard's date range and owner, as JSON, CSV or XLSX), list,
save and delete saved reports and dashboards; and the sales analytics of
the stage history."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Callable

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from loomcrm.metadata.model import Dashboard, Report, as_json, localized

from .. import report_catalog as catalog, sales_analytics, targets
from ..records import RecordError
from ..forms.report_output import group_labels, table_of, to_csv, to_xlsx
from ..reports import Narrowing, run_report
from .problems import json_response
from .routes import _guard, read_json

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def day_of(params, key: str) -> date | None:
    """An ISO date query parameter; 400 naming it when it is not one."""
    value = (params.get(key) or "").strip()
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise RecordError(f"{key} is not a date (YYYY-MM-DD)", errors=[
            {"field": key, "code": "type", "message": "not a date (YYYY-MM-DD)"}], status=400) from None


def narrowing_of(params, user: Any) -> Narrowing:
    """`date_from`, `date_to` (ISO dates) and `owner` (a user id, or `me`)."""
    owner = (params.get("owner") or "").strip() or None
    return Narrowing(date_from=day_of(params, "date_from"), date_to=day_of(params, "date_to"),
                     owner=getattr(user, "id", None) if owner == "me" else owner)


def result_of(runtime, user: Any, report: Report, narrowing: Narrowing, locale: str) -> dict[str, Any]:
    schema, access = runtime.schema(), runtime.access.of(user)
    with runtime.engine.connect() as conn:
        return run_report(conn, schema, report, access, locale, zone=runtime.context.timezone, narrowing=narrowing)


def exported(runtime, user: Any, report: Report, result: dict[str, Any], kind: str, locale: str) -> Response:
    """The result as a CSV or XLSX download, group values as labels."""
    from loomcrm.platform import i18n

    schema, access = runtime.schema(), runtime.access.of(user)
    groups = len(report.group_by)
    with runtime.engine.connect() as conn:
        labels = group_labels(conn, schema, report, [r[:groups] for r in result["rows"]], locale, access) if groups else []
    table = table_of(result, labels, groups, i18n.gettext(locale, "Total"))
    name = report.name
    if kind == "csv":
        # a byte-order mark, so spreadsheet programs read Chinese as UTF-8
        return Response(("\ufeff" + to_csv(table)).encode("utf-8"), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'})
    title = localized(report.label, locale, name)
    return Response(to_xlsx(table, title), media_type=XLSX,
                    headers={"Content-Disposition": f'attachment; filename="{name}.xlsx"'})


async def definition(request: Request, model, name: str):
    """A report or dashboard from the body, named by the path."""
    data = await read_json(request)
    if not isinstance(data, dict):
        raise RecordError(f"the body is a {model.__name__.lower()} definition")
    return model.model_validate({**data, "name": name})


def build_reports_router(runtime, *, user_dependency: Callable) -> APIRouter:
    router = APIRouter()

    def locale_of(user: Any) -> str:
        return getattr(user, "locale", None) or "en"

    @router.get("/_reports", tags=["reports"])
    @_guard
    async def report_list(user=Depends(user_dependency)):
        """The saved reports the acting user may run."""
        schema, access = runtime.schema(), runtime.access.of(user)
        return json_response({"data": [as_json(r) | {"name": r.name}
                                       for r in catalog.reports_for(schema, user, access)]})

    @router.post("/_reports/run", tags=["reports"])
    @_guard
    async def report_run(request: Request, user=Depends(user_dependency)):
        """A report definition (SPEC 3.7) run through the acting user's record access."""
        data = await read_json(request)
        if not isinstance(data, dict):
            raise RecordError("the body is a report definition")
        data.setdefault("name", "adhoc")
        report = Report.model_validate(data)
        narrowing = narrowing_of(request.query_params, user)
        return json_response(await run_in_threadpool(result_of, runtime, user, report, narrowing, locale_of(user)))

    @router.get("/_reports/{name}", tags=["reports"])
    @_guard
    async def report_get(name: str, request: Request, user=Depends(user_dependency)):
        """A saved report's result; `date_from`, `date_to` and `owner` narrow
        it as a dashboard does; `format=csv` or `xlsx` downloads it."""
        report = catalog.report_for(runtime.schema(), user, runtime.access.of(user), name)
        narrowing = narrowing_of(request.query_params, user)
        kind = request.query_params.get("format", "json")
        if kind not in ("json", "csv", "xlsx"):
            raise RecordError("format is json, csv or xlsx", status=400)
        result = await run_in_threadpool(result_of, runtime, user, report, narrowing, locale_of(user))
        if kind == "json":
            return json_response(result)
        return await run_in_threadpool(exported, runtime, user, report, result, kind, locale_of(user))

    @router.put("/_reports/{name}", tags=["reports"])
    @_guard
    async def report_put(name: str, request: Request, user=Depends(user_dependency)):
        """Save a report (a new one, or one of the acting user's)."""
        saved = await run_in_threadpool(catalog.save_report, runtime, user, await definition(request, Report, name))
        return json_response(as_json(saved) | {"name": saved.name})

    @router.delete("/_reports/{name}", tags=["reports"])
    @_guard
    async def report_delete(name: str, user=Depends(user_dependency)):
        await run_in_threadpool(catalog.delete_report, runtime, user, name)
        return Response(status_code=204)

    @router.get("/_dashboards", tags=["reports"])
    @_guard
    async def dashboard_list(user=Depends(user_dependency)):
        return json_response({"data": [as_json(d) | {"name": d.name}
                                       for d in catalog.dashboards_for(runtime.schema(), user)]})

    @router.put("/_dashboards/{name}", tags=["reports"])
    @_guard
    async def dashboard_put(name: str, request: Request, user=Depends(user_dependency)):
        saved = await run_in_threadpool(catalog.save_dashboard, runtime, user,
                                        await definition(request, Dashboard, name))
        return json_response(as_json(saved) | {"name": saved.name})

    @router.delete("/_dashboards/{name}", tags=["reports"])
    @_guard
    async def dashboard_delete(name: str, user=Depends(user_dependency)):
        await run_in_threadpool(catalog.delete_dashboard, runtime, user, name)
        return Response(status_code=204)

    @router.get("/_targets", tags=["reports"])
    @_guard
    async def target_list(request: Request, user=Depends(user_dependency)):
        """The targets of the periods holding `on` (default today) the acting
        user follows, each with what was achieved."""
        on = day_of(request.query_params, "on") or datetime.now(runtime.context.timezone).date()
        rows = await run_in_threadpool(targets.targets_on, runtime, user, on, locale_of(user))
        return json_response({"data": rows})

    @router.put("/_targets", tags=["reports"])
    @_guard
    async def target_put(request: Request, user=Depends(user_dependency)):
        """Set a target: {"report", "user" or "department", "period", "starts_on", "value"}."""
        data = await read_json(request)
        if not isinstance(data, dict):
            raise RecordError("the body is a target")
        return json_response(await run_in_threadpool(targets.set_target, runtime, user, data))

    @router.delete("/_targets/{target_id}", tags=["reports"])
    @_guard
    async def target_delete(target_id: str, user=Depends(user_dependency)):
        await run_in_threadpool(targets.delete_target, runtime, user, target_id)
        return Response(status_code=204)

    analyses = {"funnel": sales_analytics.funnel, "stage_times": sales_analytics.stage_times,
                "win_rates": sales_analytics.win_rates}

    @router.get("/_analytics/{object_name}/{analysis}", tags=["reports"])
    @_guard
    async def analytics(object_name: str, analysis: str, request: Request, user=Depends(user_dependency)):
        """Sales analytics from the stage history: `funnel`, `stage_times` or
        `win_rates` (`by=month|quarter|year` for one row per owner and
        period), narrowed by `date_from`, `date_to` and `owner`."""
        run = analyses.get(analysis)
        if run is None:
            raise RecordError(f"no analysis {analysis[:40]!r}: funnel, stage_times or win_rates", status=404)
        narrowing = narrowing_of(request.query_params, user)

        extra = {"by": request.query_params.get("by") or None} if analysis == "win_rates" else {}

        def compute():
            with runtime.engine.connect() as conn:
                return run(conn, runtime.schema(), object_name, runtime.access.of(user), locale_of(user),
                           narrowing, runtime.context.timezone, **extra)

        return json_response(await run_in_threadpool(compute))

    return router
