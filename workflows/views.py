"""Automation in the pages: the bell's notifications (every user), the run
log with replays (admins), and what automation did to a record, for its
timeline (admins). Mounted before the generated object pages, under
`/app/_...` paths no object name can take."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Callable
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from loomcrm.metadata.model import localized
from loomcrm.platform import auth
from loomcrm.platform.db import write_transaction
from loomcrm.runtime.forms.display import Display
from loomcrm.runtime.forms.related import TimelineItem

from . import notifications, runs

TEMPLATE_DIR = Path(__file__).with_name("templates")
# The writers and moments a run's event came from, as the run log names them.
SOURCE_TEXTS = {"form": "a form", "api": "the API", "import": "an import", "automation": "automation",
                "time": "a time trigger", "schedule": "a schedule"}
STATUS_TEXTS = {"pending": "Pending", "waiting": "Waiting", "running": "Running", "done": "Done", "skipped": "Skipped",
                "failed": "Failed, will retry", "dead": "Dead", "loop": "Stopped (loop)"}


def build_automation_pages(automation, *, templates, page_context: Callable[..., dict]) -> APIRouter:
    router = APIRouter(prefix="/app", include_in_schema=False)
    engine = automation.engine

    def render(request: Request, template: str, **context) -> Response:
        base = page_context(request)
        ui = Display(automation.runtime.schema().objects, base["locale"], automation.runtime.context.timezone)
        return templates.TemplateResponse(request, template, {**base, "ui_moment": ui.moment, **context})

    @router.get("/_notifications")
    def notification_list(request: Request, user=Depends(auth.page_user)):
        with engine.connect() as conn:
            items = notifications.listing(conn, user.id, limit=200)
        schema = automation.runtime.schema()
        locale = page_context(request)["locale"]
        for item in items:
            obj = schema.object(item["object"] or "")
            item["object_label"] = localized(obj.label, locale, obj.name) if obj else item["object"]
            item["at"] = _moment(item["created_at"])
        return render(request, "automation/notifications.html", items=items)

    @router.post("/_notifications/read", dependencies=[Depends(auth.page_csrf)])
    async def notification_read(request: Request, user=Depends(auth.page_user)):
        form = await request.form()
        which = str(form.get("id") or "")[:32] or None

        def mark():
            with write_transaction(engine) as conn:
                notifications.mark_read(conn, user.id, which)

        await run_in_threadpool(mark)
        target = str(form.get("next") or "")
        # only a path of this site: never "//elsewhere" or "/\\elsewhere"
        safe = target.startswith("/") and not target.startswith("//") and "\\" not in target
        return RedirectResponse(target if safe else "/app/_notifications", status_code=303)

    @router.get("/_automation")
    def run_log(request: Request, workflow: str = "", status: str = "", record: str = "", cursor: str = "",
                refused: str = "", user=Depends(auth.page_user)):
        if not user.is_admin:
            raise HTTPException(status_code=403, detail="Only administrators may see the automation run log.")
        status = status if status in runs.STATUSES else ""
        with engine.connect() as conn:
            try:
                items, next_cursor = runs.listing(conn, workflow=workflow or None, record=record or None,
                                                  status=status or None, limit=50, cursor=cursor or None)
            except runs.BadCursor:
                items, next_cursor = runs.listing(conn, workflow=workflow or None, record=record or None,
                                                  status=status or None, limit=50)
            totals = runs.counts(conn)
            flows = automation.catalog.current(conn)
        for item in items:
            item["at"] = _moment(item["created_at"])
            item["retry_at"] = _moment(item["due_at"]) if item["status"] == "failed" and item["due_at"] else None
        return render(request, "automation/runs.html", items=items, next_cursor=next_cursor, totals=totals,
                      source_texts=SOURCE_TEXTS,
                      statuses=runs.STATUSES, status_texts=STATUS_TEXTS, workflow=workflow, status=status, record=record,
                      workflows=sorted(flows.by_name), refused=refused[:500])

    @router.post("/_automation/{run_id}/replay", dependencies=[Depends(auth.page_csrf)])
    async def replay(run_id: str, request: Request, user=Depends(auth.page_user)):
        if not user.is_admin:
            raise HTTPException(status_code=403, detail="Only administrators may replay runs.")
        refused = await run_in_threadpool(automation.replay, run_id[:32])
        if not refused:
            automation.ready([run_id[:32]])
        return RedirectResponse("/app/_automation" + (f"?{urlencode({'refused': refused})}" if refused else ""),
                                status_code=303)

    return router


def _moment(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def record_timeline(automation) -> Callable[..., list[TimelineItem]]:
    """What automation did to a record, as timeline items (admins only):
    the run log of the record, with what each action made and why one failed."""
    def items(conn, schema, obj, record, user) -> list[TimelineItem]:
        if getattr(user, "role", None) != "admin":
            return []
        out = []
        for run in runs.for_record(conn, record["id"]):
            if run["status"] in ("skipped", "waiting"):
                continue
            link = None
            created = (run["result"] or {}).get("created")
            if created and schema.object(created["object"]):
                link = (f"/app/{created['object']}/{created['id']}", created["object"])
            out.append(TimelineItem(_moment(run["created_at"]), "automation", template="automation/_timeline.html",
                                    data={**run, "link": link, "source_text": SOURCE_TEXTS.get(run["source"] or run["event"]),
                                          "retry_at": _moment(run["due_at"]) if run["status"] == "failed" else None}))
        return out
    return items


def unread(automation, user_id: str) -> int:
    with automation.engine.connect() as conn:
        return notifications.unread_count(conn, user_id)

