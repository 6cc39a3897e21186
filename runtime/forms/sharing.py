"""The record page's access panel: who the record is shared with beyond
its owner's scope (shared and unshared by whoever may update it), and, for
admins, "Why can this user see this record?" in words. Loaded into the
page by htmx; every change goes through `runtime.shares`, which checks and
logs it."""

from __future__ import annotations

from typing import Any, Callable

import sqlalchemy as sa
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from loomcrm.metadata.model import localized
from loomcrm.platform import auth, systemdb
from loomcrm.platform.directory import departments

from .. import shares
from ..records import Forbidden, NotFound, RecordError

# The reasons of `Access.explain`, by code, as the page says them.
REASON_TEXTS = {
    "everything": "The built-in %(role)s role may do everything with every record.",
    "unknown_role": "No installed bundle defines the role %(role)s, so it gives nothing.",
    "scope_all": "%(action)s: the role %(role)s reaches every record.",
    "scope_own": "%(action)s: the user owns the record.",
    "scope_department": "%(action)s: its owner %(owner)s is in %(department)s, the user's department.",
    "scope_subordinates_same": "%(action)s: its owner %(owner)s is in %(department)s, the user's department.",
    "scope_subordinates_below": "%(action)s: its owner %(owner)s is in %(department)s, below the user's department "
                                "%(user_department)s.",
    "share_user": "The record is shared with the user (%(access)s).",
    "share_department": "The record is shared with department %(department)s (%(access)s).",
    "sharing_rule": "The role's sharing rule gives %(access)s access to records owned in %(department)s.",
    "deactivated": "%(user)s is deactivated and cannot sign in.",
}
ACTION_TEXTS = {"read": "Read", "update": "Update", "delete": "Delete"}
NOTICE_TEXTS = {"shared": "Shared.", "removed": "The share was removed.",
                "invalid": "Choose a user or a department, and read or edit."}
ACCESS_TEXTS = {"read": "read", "edit": "edit"}
SCOPE_TEXTS = {"none": "none", "own": "own records", "department": "the department's records",
               "subordinates": "the department's records and those below it", "all": "every record"}


def build_sharing_router(runtime, *, templates, page_context: Callable[..., dict]) -> APIRouter:
    router = APIRouter(prefix="/app", include_in_schema=False)

    def panel(request: Request, object_name: str, rid: str, user, status: int = 200, **extra) -> HTMLResponse:
        """The panel, for a user who may read the record (404 otherwise, as everywhere)."""
        schema = runtime.schema()
        try:
            listed = shares.listing(runtime, object_name, rid, user)
        except NotFound:
            raise HTTPException(status_code=404, detail="This record does not exist or is in the recycle bin.") from None
        access = runtime.access.of(user)
        with runtime.engine.connect() as conn:
            table = schema.table(object_name)
            may_share = access.allows(conn, table, object_name, rid, "update")
            people = conn.execute(sa.select(systemdb.users.c.username, systemdb.users.c.display_name)
                                  .where(systemdb.users.c.is_active.is_(True),
                                         systemdb.users.c.password_hash != auth.NO_PASSWORD)
                                  .order_by(systemdb.users.c.username).limit(2000)).all()
        context = page_context(request)
        return templates.TemplateResponse(request, "forms/_sharing.html", {
            **context, "object_name": object_name, "rid": rid, "shares": listed, "may_share": may_share,
            "people": [(p.username, p.display_name or p.username) for p in people],
            "departments": [(d.name, d.label or d.name) for d in departments(runtime.engine)],
            "access_texts": ACCESS_TEXTS, "errors": {}, **extra}, status_code=status)

    @router.get("/{object_name}/{rid}/_sharing", response_class=HTMLResponse)
    def sharing(object_name: str, rid: str, request: Request, user=Depends(auth.page_user)):
        return panel(request, object_name, rid, user)

    @router.post("/{object_name}/{rid}/_sharing", dependencies=[Depends(auth.page_csrf)])
    async def share(object_name: str, rid: str, request: Request, user=Depends(auth.page_user)):
        form = await request.form()
        kind, _, name = str(form.get("with") or "").partition(":")
        body: dict[str, Any] = {"access": str(form.get("access") or "read")}
        if kind in ("user", "department") and name:
            body[kind] = name
        try:
            await run_in_threadpool(shares.share, runtime, object_name, rid, body, user)
        except Forbidden:
            raise HTTPException(status_code=403, detail="You may not share this record.") from None
        except NotFound:
            raise HTTPException(status_code=404, detail="This record does not exist or is in the recycle bin.") from None
        except RecordError:
            return panel(request, object_name, rid, user, status=422,
                         errors={"with": NOTICE_TEXTS["invalid"]})
        return panel(request, object_name, rid, user, done=NOTICE_TEXTS["shared"])

    @router.post("/{object_name}/{rid}/_sharing/{share_id}/remove", dependencies=[Depends(auth.page_csrf)])
    async def unshare(object_name: str, rid: str, share_id: str, request: Request, user=Depends(auth.page_user)):
        try:
            await run_in_threadpool(shares.unshare, runtime, object_name, rid, share_id, user)
        except Forbidden:
            raise HTTPException(status_code=403, detail="You may not share this record.") from None
        except NotFound:
            raise HTTPException(status_code=404, detail="This record does not exist or is in the recycle bin.") from None
        return panel(request, object_name, rid, user, done=NOTICE_TEXTS["removed"])

    @router.get("/{object_name}/{rid}/_why", response_class=HTMLResponse)
    def why(object_name: str, rid: str, request: Request, username: str = "", user=Depends(auth.page_user)):
        """Admins: the `_access` explanation, in the page's language."""
        if not user.is_admin:
            raise HTTPException(status_code=403, detail="Only administrators may see why a user sees a record.")
        try:
            answer = shares.explain(runtime, object_name, rid, username)
        except NotFound:
            raise HTTPException(status_code=404, detail="There is no such user or record.") from None
        except RecordError:
            answer = None
        context = page_context(request)
        gettext = context["_"]
        obj = runtime.schema().object(object_name)
        reasons = []
        for reason in (answer or {}).get("reasons", []):
            args = dict(reason.get("args") or {})
            if "action" in args:
                args["action"] = gettext(ACTION_TEXTS[args["action"]])
            if "access" in args:
                args["access"] = gettext(ACCESS_TEXTS[args["access"]])
            if "object" in args and obj is not None:
                args["object"] = localized(obj.label, context["locale"], obj.name)
            reasons.append(gettext(REASON_TEXTS[reason["code"]]) % {k: "—" if v is None else v for k, v in args.items()})
        return templates.TemplateResponse(request, "forms/_why.html", {
            **context, "answer": answer, "reasons": reasons, "action_texts": ACTION_TEXTS, "scope_texts": SCOPE_TEXTS,
            "who": username})

    return router
