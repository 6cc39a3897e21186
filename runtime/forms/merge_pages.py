"""Merging duplicates in the browser (`/app/{object}/_merge?ids=...`): two
or three records side by side, the one that survives and, per field where
they differ, the value it keeps. (Two people editing one record is
`merge`'s business, not this.)"""

from __future__ import annotations

from typing import Any, Callable

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from loomcrm.platform import auth

from .. import merging
from ..fields import field_type
from ..records import NotFound, RecordError
from .refs import Refs, record_title
from .views import FORM, N_, Pages, _locale_user, localize_errors, redirect_after

OWNER = "owner"


def _ids(values: list[str]) -> list[str]:
    ids: list[str] = []
    for value in values:
        for rid in value.split(","):
            if rid and rid not in ids:
                ids.append(rid)
    return ids


def _rows(obj, access, found: list[dict[str, Any]], survivor: str, form) -> list[dict[str, Any]]:
    """The fields (and the owner: `field` None) where the records differ,
    each with their values and the record whose value is picked: the
    survivor's unless blank, else the first other one that has one."""
    kept = next(r for r in found if r["id"] == survivor) if any(r["id"] == survivor for r in found) else found[0]
    rows = []
    for f in [*merging.mergeable(obj, access), None]:
        name = f.name if f is not None else OWNER
        values = [r.get(name) for r in found]
        if all(v == values[0] for v in values):
            continue   # the same everywhere: nothing to pick
        blank = field_type(f).is_blank if f is not None else (lambda v: v is None)
        default = kept["id"] if not blank(kept.get(name)) else next(
            (r["id"] for r in found if not blank(r.get(name))), kept["id"])
        picked = (form.get(f"pick.{name}") if form is not None else None) or default
        rows.append({"field": f, "name": name, "values": values, "picked": picked})
    return rows


def build_merge_pages(runtime, *, templates, page_context: Callable[..., dict]) -> APIRouter:
    router = APIRouter(prefix="/app", include_in_schema=False)
    pages = Pages(runtime, templates, page_context)

    def page(request: Request, obj, access, ids: list[str], user, *, form=None, errors=(), status: int = 200):
        locale = page_context(request)["locale"]
        schema = runtime.schema()
        found: list[dict[str, Any]] = []
        if 2 <= len(ids) <= merging.MAX_OTHERS + 1:
            try:
                found = [runtime.records.get(obj.name, rid, user, schema=schema) for rid in ids]
            except NotFound:
                raise HTTPException(status_code=404, detail=N_("This record does not exist or is in the recycle bin.")) from None
        survivor = (form.get("survivor") if form is not None else None) or (found[0]["id"] if found else None)
        rows = _rows(obj, access, found, survivor, form) if found else []
        with runtime.engine.connect() as conn:
            refs = Refs(schema, conn, access).collect(obj, found)
        messages = [m for ms in localize_errors(list(errors), obj, locale).values() for m in ms]
        return pages.render(request, "forms/merge.html", status=status, obj=obj, records=found, rows=rows,
                            survivor=survivor, messages=messages, ui=pages.display(schema, locale, refs),
                            record_title=record_title)

    @router.get("/{object_name}/_merge", response_class=HTMLResponse)
    def merge_page(request: Request, object_name: str, user=Depends(auth.page_user)):
        schema, obj, access = pages.obj(object_name, user)
        return page(request, obj, access, _ids(request.query_params.getlist("ids")), user)

    @router.post("/{object_name}/_merge", response_class=HTMLResponse, dependencies=[Depends(auth.page_csrf)])
    async def merge(request: Request, object_name: str, user=Depends(auth.page_user)):
        schema, obj, access = pages.obj(object_name, user)
        form = await request.form()
        ids = _ids(form.getlist("ids"))
        survivor = form.get("survivor") or (ids[0] if ids else None)
        picks = {key[5:]: value for key, value in form.items() if key.startswith("pick.") and value in ids}
        body: dict[str, Any] = {"survivor": survivor, "others": [i for i in ids if i != survivor], "values": picks}
        acting = _locale_user(user, page_context(request)["locale"])
        try:
            done = await run_in_threadpool(merging.merge, runtime, obj.name, body, acting, origin=FORM)
        except NotFound:
            raise HTTPException(status_code=404, detail=N_("This record does not exist or is in the recycle bin.")) from None
        except RecordError as exc:
            errors, status = exc.errors or [{"field": None, "message": exc.detail}], exc.status
            return await run_in_threadpool(lambda: page(request, obj, access, ids, user, form=form, errors=errors,
                                                        status=status))
        return redirect_after(request, f"/app/{obj.name}/{done['record']['id']}?merged={len(done['merged'])}")

    return router
