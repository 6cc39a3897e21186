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
from .views import N_

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
        try:
            listed = shares.listing(runtime, object_name, rid, user)
            owner = runtime.records.get(object_name, rid, user).get("owner")
        except NotFound:
            raise HTTPException(status_code=404, detail=N_("This record does not exist or is in the recycle bin.")) from None
        u = systemdb.users
        with runtime.engine.connect() as conn:
            people = conn.execute(sa.select(u.c.id, u.c.username, u.c.display_name)
                                  .where(u.c.is_active.is_(True), u.c.password_hash != auth.NO_PASSWORD)
                                  .order_by(u.c.display_name, u.c.username).limit(2000)).all()
        names = {p.username: p.display_name or p.username for p in people}
        tree = {d.name: d.label or d.name for d in departments(runtime.engine)}
        return templates.TemplateResponse(request, "forms/_sharing.html", {
            **page_context(request), "object_name": object_name, "rid": rid,
            "may_share": shares.may_share(runtime, object_name, rid, user),
            "shares": [{**s, "whom": names.get(s["user"], s["user"]) if s["user"]
                        else tree.get(s["department"], s["department"])} for s in listed],
            "people": [(p.username, names[p.username]) for p in people],
            "share_people": [(p.username, names[p.username]) for p in people if p.id != owner],
            "departments": list(tree.items()), "access_texts": ACCESS_TEXTS, "errors": {}, **extra}, status_code=status)

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
            raise HTTPException(status_code=403, detail=N_("You may not share this record.")) from None
        except NotFound:
            raise HTTPException(status_code=404, detail=N_("This record does not exist or is in the recycle bin.")) from None
        except RecordError:
            return panel(request, object_name, rid, user, status=422,
                         errors={"with": NOTICE_TEXTS["invalid"]})
        return panel(request, object_name, rid, user, done=NOTICE_TEXTS["shared"])

    @router.post("/{object_name}/{rid}/_sharing/{share_id}/remove", dependencies=[Depends(auth.page_csrf)])
    async def unshare(object_name: str, rid: str, share_id: str, request: Request, user=Depends(auth.page_user)):
        try:
            await run_in_threadpool(shares.unshare, runtime, object_name, rid, share_id, user)
        except Forbidden:
            raise HTTPException(status_code=403, detail=N_("You may not share this record.")) from None
        except NotFound:
            raise HTTPException(status_code=404, detail=N_("This record does not exist or is in the recycle bin.")) from None
        return panel(request, object_name, rid, user, done=NOTICE_TEXTS["removed"])

    @router.get("/{object_name}/{rid}/_why", response_class=HTMLResponse)
    def why(object_name: str, rid: str, request: Request, username: str = "", user=Depends(auth.page_user)):
        """Admins: the `_access` explanation, in the page's language."""
        if not user.is_admin:
            raise HTTPException(status_code=403, detail=N_("Only administrators may see why a user sees a record."))
        try:
            answer = shares.explain(runtime, object_name, rid, username)
        except NotFound:
            raise HTTPException(status_code=404, detail=N_("There is no such user or record.")) from None
        except RecordError:
            answer = None
        context = page_context(request)
        gettext, locale = context["_"], context["locale"]
        obj = runtime.schema().object(object_name)
        tree = {d.name: d.label or d.name for d in departments(runtime.engine)}
        roles = runtime.roles()[1]
        role_label = (localized(roles[answer["role"]].label, locale, answer["role"])
                      if answer and answer.get("role") in roles else (answer or {}).get("role"))
        reasons = []
        for reason in (answer or {}).get("reasons", []):
            args = dict(reason.get("args") or {})
            for key in ("department", "user_department"):
                if args.get(key) in tree:
                    args[key] = tree[args[key]]
            if "role" in args:
                args["role"] = role_label
            if "action" in args:
                args["action"] = gettext(ACTION_TEXTS[args["action"]])
            if "access" in args:
                args["access"] = gettext(ACCESS_TEXTS[args["access"]])
            if "object" in args and obj is not None:
                args["object"] = localized(obj.label, context["locale"], obj.name)
            reasons.append(gettext(REASON_TEXTS[reason["code"]]) % {k: "—" if v is None else v for k, v in args.items()})
        return templates.TemplateResponse(request, "forms/_why.html", {
            **context, "answer": answer, "reasons": reasons, "action_texts": ACTION_TEXTS, "scope_texts": SCOPE_TEXTS,
            "who": username, "role_label": role_label})

    return router
