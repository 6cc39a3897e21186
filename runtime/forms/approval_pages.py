"""Approvals in the browser: the inbox (`/app/_approvals`: what waits for
me, what I submitted, what I decided), made for a phone first, and the
record page's approval panel (loaded by htmx): the requests with each
approver's decision and comment, and the actions the user may take."""

from __future__ import annotations

from typing import Any, Callable

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from loomcrm.metadata.model import localized
from loomcrm.platform import auth, i18n

from .. import approvals
from ..records import NotFound, RecordError
from .views import N_, Pages, _users, redirect_after

STATUS_TEXTS = {"pending": "Awaiting approval", "approved": "Approved", "rejected": "Rejected", "recalled": "Recalled",
                "returned": "Sent back", "handed": "Handed on", "skipped": "Not needed", "cancelled": "Cancelled"}
BOX_TEXTS = {"waiting": "Waiting for me", "submitted": "Submitted by me", "decided": "Decided by me"}
# a refused action, by code, in the user's words
REFUSAL_TEXTS = {
    "already_pending": "The record already waits for an approval.",
    "not_needed": "The record does not need this approval.",
    "no_approver": "A step of the process names no active approver: ask an admin.",
    "not_pending": "The request was settled already.",
    "decided": "Someone decided this step first.",
    "not_approver": "You do not approve this step.",
    "already_approver": "That user already approves this step.",
    "unknown_user": "Choose a user.",
    "bad_step": "Choose an earlier step.",
}


def refusal(exc: RecordError, locale: str) -> str:
    code = getattr(exc, "code", None)
    if locale == "en" or code not in REFUSAL_TEXTS:
        return exc.detail
    return i18n.gettext(locale, REFUSAL_TEXTS[code])


def build_approval_pages(runtime, *, templates, page_context: Callable[..., dict]) -> APIRouter:
    router = APIRouter(prefix="/app", include_in_schema=False)
    pages = Pages(runtime, templates, page_context)

    def locale_of(request: Request) -> str:
        return page_context(request)["locale"]

    def texts(request: Request) -> dict[str, Any]:
        locale = locale_of(request)
        schema = runtime.schema()
        return {"process_label": lambda name: localized(getattr(schema.approvals.get(name), "label", None), locale, name),
                "step_label": lambda process, step: _step_label(schema, process, step, locale),
                "statuses": STATUS_TEXTS, "boxes": BOX_TEXTS}

    @router.get("/_approvals", response_class=HTMLResponse)
    def inbox(request: Request, user=Depends(auth.page_user)):
        box = request.query_params.get("box", "waiting")
        if box not in approvals.BOXES:
            raise HTTPException(status_code=404, detail=N_("There is no such page."))
        items = approvals.inbox(runtime, user, box)
        schema = runtime.schema()
        return pages.render(request, "forms/approvals.html", box=box, items=items, objects=schema.objects,
                            ui=pages.display(schema, locale_of(request)), **texts(request))

    @router.get("/{object_name}/{rid}/_approval", response_class=HTMLResponse)
    def panel(request: Request, object_name: str, rid: str, user=Depends(auth.page_user)):
        schema, obj, access = pages.obj(object_name, user)
        try:
            state = approvals.of_record(runtime, user, obj.name, rid)
        except NotFound:
            raise HTTPException(status_code=404, detail=N_("This record does not exist or is in the recycle bin.")) from None
        current = state["requests"][0] if state["requests"] else None
        process = schema.approvals.get(current["process"]) if current else None
        earlier = []   # the steps a request may be sent back to
        if process is not None and current["status"] == approvals.PENDING:
            at = next((k for k, step in enumerate(process.steps) if step.name == current["step"]), 0)
            earlier = list(enumerate(process.steps))[:at]
        return pages.render(request, "forms/_approval.html", obj=obj, rid=rid, state=state, current=current,
                            earlier=earlier, users=_users(runtime.engine), ui=pages.display(schema, locale_of(request)),
                            **texts(request))

    @router.post("/{object_name}/{rid}/_approval/submit", response_class=HTMLResponse,
                 dependencies=[Depends(auth.page_csrf)])
    async def submit(request: Request, object_name: str, rid: str, user=Depends(auth.page_user)):
        schema, obj, access = pages.obj(object_name, user)
        form = await request.form()
        try:
            await run_in_threadpool(lambda: approvals.submit(runtime, user, obj.name, rid,
                                                             comment=form.get("comment") or None))
        except RecordError as exc:
            return pages.render(request, "forms/_notice.html", status=exc.status, kind="error",
                                message=refusal(exc, locale_of(request)))
        return redirect_after(request, f"/app/{obj.name}/{rid}")

    @router.post("/_approvals/{request_id}/{action}", response_class=HTMLResponse, dependencies=[Depends(auth.page_csrf)])
    async def act(request: Request, request_id: str, action: str, user=Depends(auth.page_user)):
        form = await request.form()
        step = form.get("step")
        try:
            done = await run_in_threadpool(lambda: approvals.act(
                runtime, user, request_id, action, comment=form.get("comment") or None, to=form.get("to") or None,
                step=int(step) if step and step.isdigit() else None))
        except RecordError as exc:
            return pages.render(request, "forms/_notice.html", status=exc.status, kind="error",
                                message=refusal(exc, locale_of(request)))
        target = form.get("next") or ""
        if not target.startswith("/app/"):
            target = f"/app/{done['object']}/{done['record_id']}"
        return redirect_after(request, target)

    return router


def _step_label(schema, process_name: str, step_name: str | None, locale: str) -> str:
    process = schema.approvals.get(process_name)
    step = next((s for s in process.steps if s.name == step_name), None) if process else None
    return localized(step.label, locale, step.name) if step is not None else (step_name or "")
