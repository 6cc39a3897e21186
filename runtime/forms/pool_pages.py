"""Lead pools in the browser (`/app/_pools/...`): a pool's records, oldest
in it first and without its private fields, each with a Claim button; and
returning a record to its pool from the record page."""

from __future__ import annotations

from typing import Any, Callable

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from loomcrm.metadata.model import localized
from loomcrm.platform import auth, i18n

from .. import pools
from .refs import Refs, record_title
from .related import list_columns
from .views import N_, Pages, redirect_after

NOTICE_TEXTS = {"claimed": "It is yours now.", "open": "Open it", "returned": "The record is back in the pool.",
                "assigned": "Assigned."}
# a refused claim or return, by code, in the user's words
REFUSAL_TEXTS = {
    "taken": "Someone else claimed this record first, or it left the pool.",
    "not_member": "You are not a member of this pool.",
    "daily_cap": "You have claimed as many records from this pool today as one may.",
    "held_cap": "You hold as many of these records as one may: return some first.",
    "reclaim_ban": "You returned this record not long ago: you cannot claim it again yet.",
    "not_owner": "Only the record's owner or a pool admin returns it to the pool.",
    "reason": "Choose a reason.",
    "not_admin": "Only a pool admin does this.",
    "assignee_not_member": "That user is not a member of this pool.",
    "no_user": "Only a signed-in user works with a pool.",
}


def refusal(exc: pools.PoolError, locale: str) -> str:
    """English pages say the engine's own words (with the date a ban ends)."""
    if locale == "en" or exc.code not in REFUSAL_TEXTS:
        return exc.detail
    return i18n.gettext(locale, REFUSAL_TEXTS[exc.code])


def return_forms(runtime, obj, record: dict[str, Any], user) -> list[dict[str, Any]]:
    """The pools the record page offers to return the record to: its owner's
    (or a pool admin's), for pools of its object."""
    pooled = [p for p in runtime.schema().pools.values() if p.object == obj.name]
    if not pooled or not record.get("owner"):
        return []
    mine = {p.name for p in pools.pools_for(runtime, user)}
    owner = record.get("owner") == getattr(user, "id", None)
    return [{"pool": p} for p in pooled if p.name in mine and (owner or getattr(user, "role", None) in
                                                                ("admin", *p.admin_roles))]


def build_pool_pages(runtime, *, templates, page_context: Callable[..., dict]) -> APIRouter:
    router = APIRouter(prefix="/app", include_in_schema=False)
    pages = Pages(runtime, templates, page_context)

    def locale_of(request: Request) -> str:
        return page_context(request)["locale"]

    def pool_for(user, name: str):
        pool = runtime.schema().pools.get(name)
        if pool is None or pool.name not in {p.name for p in pools.pools_for(runtime, user)}:
            raise HTTPException(status_code=404, detail=N_("There is no such page."))
        return pool

    async def taken(request: Request, pool, rid: str, done: str, call: Callable[[], Any]) -> HTMLResponse:
        """A record taken out of the pool (claimed, assigned): the notice
        that says so, its row gone; or why not."""
        gettext = pages.gettext(request)
        try:
            await run_in_threadpool(call)
        except pools.PoolError as exc:
            return pages.render(request, "forms/_notice.html", status=exc.status, kind="error",
                                message=refusal(exc, locale_of(request)))
        return pages.render(request, "forms/_notice.html", kind="success", message=gettext(NOTICE_TEXTS[done]),
                            link=(f"/app/{pool.object}/{rid}", gettext(NOTICE_TEXTS["open"])), removed_rows=[rid])

    @router.get("/_pools/{name}", response_class=HTMLResponse)
    def pool_page(request: Request, name: str, user=Depends(auth.page_user)):
        pool = pool_for(user, name)
        schema = runtime.schema()
        obj = schema.object(pool.object)
        locale = locale_of(request)
        with runtime.engine.connect() as conn:
            rows = pools.in_pool(conn, runtime, pool, limit=200)
            refs = Refs(schema, conn).collect(obj, rows)
            assignees = pools.members(conn, pool) if pools.is_admin(pool, pools.person(conn, user)) else []
        hidden = set(pool.private_fields)
        columns = [f for f in list_columns(obj, limit=6) if f.name not in hidden]
        reasons = {r.value: localized(r.label, locale, r.value) for r in pool.return_reasons}
        return pages.render(request, "forms/pool.html", pool=pool, obj=obj, rows=rows, columns=columns,
                            ui=pages.display(schema, locale, refs), record_title=record_title, reasons=reasons,
                            assignees=assignees,
                            title=localized(pool.label, locale, pool.name),
                            description=localized(pool.description, locale, ""))

    @router.post("/_pools/{name}/claim/{rid}", response_class=HTMLResponse, dependencies=[Depends(auth.page_csrf)])
    async def pool_claim(request: Request, name: str, rid: str, user=Depends(auth.page_user)):
        pool = pool_for(user, name)
        return await taken(request, pool, rid, "claimed", lambda: pools.claim(runtime, user, pool.name, rid))

    @router.post("/_pools/{name}/assign/{rid}", response_class=HTMLResponse, dependencies=[Depends(auth.page_csrf)])
    async def pool_assign(request: Request, name: str, rid: str, user=Depends(auth.page_user)):
        pool = pool_for(user, name)
        form = await request.form()
        return await taken(request, pool, rid, "assigned",
                           lambda: pools.assign(runtime, user, pool.name, rid, str(form.get("user") or "")))

    @router.post("/_pools/{name}/return/{rid}", response_class=HTMLResponse, dependencies=[Depends(auth.page_csrf)])
    async def pool_return(request: Request, name: str, rid: str, user=Depends(auth.page_user)):
        pool = pool_for(user, name)
        form = await request.form()
        try:
            await run_in_threadpool(pools.return_to_pool, runtime, user, pool.name, rid, form.get("reason") or None)
        except pools.PoolError as exc:
            return pages.render(request, "forms/_notice.html", status=exc.status, kind="error",
                                message=refusal(exc, locale_of(request)))
        return redirect_after(request, f"/app/_pools/{pool.name}?returned=1")

    return router
