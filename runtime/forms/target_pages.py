"""Targets in the browser (`/app/_targets`): this period's targets with how
far each got, and, for admins and department managers, setting and
removing them. The home page shows the same progress (`forms/_targets.html`)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Callable

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from loomcrm.metadata.model import localized
from loomcrm.platform import auth, i18n, systemdb

from .. import targets
from ..access import departments
from ..records import RecordError
from .views import Pages

PERIOD_TEXTS = {"month": "Month", "quarter": "Quarter", "year": "Year"}
NOTICE_TEXTS = {"set": "The target is set.", "removed": "The target was removed."}


def today(runtime) -> date:
    return datetime.now(runtime.context.timezone).date()


def build_target_pages(runtime, *, templates, page_context: Callable[..., dict]) -> APIRouter:
    router = APIRouter(prefix="/app", include_in_schema=False)
    pages = Pages(runtime, templates, page_context)

    def holders(user) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        """(users, departments) whose targets `user` may set, as (name, label)."""
        with runtime.engine.connect() as conn:
            managed = targets.managed_departments(conn, user)
            tree = departments(conn)
            users = conn.execute(sa.select(systemdb.users.c.username, systemdb.users.c.display_name,
                                           systemdb.users.c.department_id)
                                 .where(systemdb.users.c.is_active.is_(True)).order_by(systemdb.users.c.username)).all()
        people = [(u.username, u.display_name or u.username) for u in users
                  if managed is None or u.department_id in managed]
        teams = [(d["name"], d["label"]) for d in sorted(tree.values(), key=lambda d: d["label"])
                 if managed is None or d["id"] in managed]
        return people, teams

    def render(request: Request, user, on: date, status: int = 200, notice: tuple[str, str] | None = None):
        locale = page_context(request)["locale"]
        schema = runtime.schema()
        access = runtime.access.of(user)
        rows = targets.targets_on(runtime, user, on, locale)
        measures = [(r.name, localized(r.label, locale, r.name)) for r in schema.reports.values()
                    if not r.group_by and access.may_see_object(r.object)]
        people, teams = holders(user)
        periods = {k: i18n.gettext(locale, v) for k, v in PERIOD_TEXTS.items()}
        return pages.render(request, "forms/targets.html", status=status, targets=rows, on=on, measures=measures,
                            people=people, teams=teams, periods=periods, notice=notice, ui=pages.display(schema, locale),
                            may_set=bool(people or teams))

    @router.get("/_targets", response_class=HTMLResponse)
    def target_page(request: Request, on: str = "", user=Depends(auth.page_user)):
        try:
            day = date.fromisoformat(on) if on else today(runtime)
        except ValueError:
            day = today(runtime)
        return render(request, user, day)

    @router.post("/_targets", response_class=HTMLResponse, dependencies=[Depends(auth.page_csrf)])
    async def target_set(request: Request, user=Depends(auth.page_user)):
        form = await request.form()
        holder = str(form.get("holder") or "")
        kind, _, name = holder.partition(":")
        data = {"report": form.get("report"), "period": form.get("period"), "starts_on": form.get("starts_on"),
                "value": str(form.get("value") or "").replace(",", "").strip(),
                "user": name if kind == "user" else None, "department": name if kind == "department" else None}
        gettext = pages.gettext(request)
        try:
            await run_in_threadpool(targets.set_target, runtime, user, data)
        except RecordError as exc:
            on = _day(form.get("starts_on")) or today(runtime)
            return await run_in_threadpool(render, request, user, on, exc.status, ("error", exc.detail))
        on = _day(form.get("starts_on")) or today(runtime)
        return await run_in_threadpool(render, request, user, on, 200, ("success", gettext(NOTICE_TEXTS["set"])))

    @router.post("/_targets/{target_id}/delete", response_class=HTMLResponse, dependencies=[Depends(auth.page_csrf)])
    async def target_delete(request: Request, target_id: str, user=Depends(auth.page_user)):
        gettext = pages.gettext(request)
        try:
            await run_in_threadpool(targets.delete_target, runtime, user, target_id)
        except RecordError as exc:
            return await run_in_threadpool(render, request, user, today(runtime), exc.status, ("error", exc.detail))
        return await run_in_threadpool(render, request, user, today(runtime), 200,
                                       ("success", gettext(NOTICE_TEXTS["removed"])))

    return router


def _day(value) -> date | None:
    try:
        return date.fromisoformat(str(value or ""))
    except ValueError:
        return None

