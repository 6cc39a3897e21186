"""The admin screens under `/admin` (administrators only): users (create,
change role and department, reset the password, deactivate, end sessions,
hand records to a colleague), the department tree, the roles' rights and
the audit log. They change things through the same functions as the
`_admin` API, so both check and log alike."""

from __future__ import annotations

import functools

from datetime import datetime
from typing import Any, Callable
from urllib.parse import urlencode

import sqlalchemy as sa
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from loomcrm.metadata.model import localized
from loomcrm.runtime.forms.views import N_
from loomcrm.runtime.handover import HandOverError, hand_over

from . import audit, auth, directory, i18n
from .admin import rights_changed, role_names, user_problems, users
from .db import write_transaction

# What went wrong with a field, as the pages say it (by the code the
# checks and the directory give).
PROBLEM_TEXTS = {
    "required": "Required.",
    "pattern": "Use letters, digits and . _ @ - only, starting with a letter or digit.",
    "department_pattern": "Use lower-case letters, digits and _ only, starting with a letter (e.g. east_sales).",
    "too_short": "At least %(n)s characters.",
    "invalid_option": "Choose one of the options.",
    "type": "Not a valid value.",
    "email": "Not a valid e-mail address.",
    "taken": "This name is already taken.",
    "not_found": "There is no such entry; choose one from the list.",
    "cycle": "A department cannot move inside itself.",
    "self": "You cannot deactivate yourself.",
    "self_role": "You cannot take away your own administrator role.",
    "last_admin": "This is the last active administrator: make another one first.",
    "colleague": "Choose an active colleague to hand the records to.",
    "nothing_owned": "Tick at least one kind of record this user owns.",
}
# What the last change did, shown once on the page it lands on (?done=...).
DONE_TEXTS = {"created": "Created.", "saved": "Saved.",
              "password": "The password was changed; the user was signed out everywhere.",
              "deactivated": "The user was deactivated: signed out everywhere, API tokens revoked.",
              "activated": "The user may sign in again.", "session": "The session was ended.",
              "sessions": "Every session of the user was ended."}
BUILTIN_ROLE_TEXTS = {"admin": "Administrator (built-in)", "user": "User (built-in)"}
SCOPE_TEXTS = {"none": "None", "own": "Own", "department": "Department", "subordinates": "Department and below",
               "all": "All"}
FIELD_RIGHT_TEXTS = {"edit": "Edit", "read": "Read only", "hidden": "Hidden"}
ACCESS_TEXTS = {"read": "Read", "edit": "Edit"}
ACTION_TEXTS = {"user.create": "User created", "user.update": "User changed", "department.create": "Department created",
                "department.update": "Department changed", "share": "Record shared", "unshare": "Share removed",
                "records.hand_over": "Records handed over", "session.end": "Session ended",
                "metadata.publish": "Metadata published"}


def _admin(request: Request) -> auth.User:
    user = auth.page_user(request)
    if not user.is_admin:
        raise HTTPException(status_code=403, detail=N_("Only administrators may open the administration pages."))
    return user


def problem_text(gettext: Callable[[str], str], field: str | None, code: str) -> str:
    if code == "pattern" and field == "name":
        code = "department_pattern"
    if code == "type" and field == "email":
        code = "email"
    text = gettext(PROBLEM_TEXTS.get(code, "Not a valid value."))
    return text.replace("%(n)s", str(auth.MIN_PASSWORD_LENGTH))


def _form_errors(gettext, errors: list[dict[str, Any]]) -> dict[str | None, str]:
    found: dict[str | None, str] = {}
    for e in errors:
        found.setdefault(e["field"], problem_text(gettext, e["field"], e["code"]))
    return found


def _handed(query) -> dict[str, Any] | None:
    """What a hand-over moved, from the address it redirected to."""
    if query.get("done") != "handed":
        return None
    moved = {}
    for part in query.get("moved", "").split(","):
        name, _, count = part.partition(":")
        if name and count.isdigit():
            moved[name] = int(count)
    refused = query.get("refused", "0")
    return {"to": query.get("to", ""), "moved": moved, "refused": int(refused) if refused.isdigit() else 0}


def build_admin_pages(runtime, tokens: auth.TokenCache, *, templates, page_context: Callable[..., dict]) -> APIRouter:
    router = APIRouter(prefix="/admin", include_in_schema=False)
    engine = runtime.engine


    def render(request: Request, template: str, status: int = 200, **context) -> Response:
        base = page_context(request)
        tz = runtime.context.timezone
        locale = base["locale"]

        def moment(value) -> str:
            if isinstance(value, str):
                value = datetime.fromisoformat(value)
            return i18n.format_moment(value, locale, tz) if value else "—"

        tree = directory.departments(engine)
        depth: dict[str, int] = {}
        for d in tree:   # parents come before their children
            depth[d.name] = depth.get(d.parent, -1) + 1 if d.parent else 0
        roles = [(name, role_label(name, locale)) for name in (*role_names(runtime), *auth.ROLES)]
        return templates.TemplateResponse(request, template, {
            **base, "moment": moment, "done_texts": DONE_TEXTS, "done": request.query_params.get("done", ""),
            "role_label": lambda name: role_label(name, locale), "role_choices": roles, "departments": tree, "depth": depth,
            "department_choices": [(d.name, "\u2003" * depth[d.name] + (d.label or d.name)) for d in tree],
            "locale_choices": list(i18n.LOCALE_NAMES.items()), **context}, status_code=status)

    def role_label(name: str, locale: str) -> str:
        role = runtime.roles()[1].get(name)
        if role is None:
            return i18n.gettext(locale, BUILTIN_ROLE_TEXTS.get(name, name))
        return localized(role.label, locale, name)

    def gettext_of(request: Request) -> Callable[[str], str]:
        return page_context(request)["_"]

    async def form_of(request: Request) -> dict[str, str]:
        form = await request.form()
        return {k: str(v).strip() if k != "password" else str(v) for k, v in form.items() if k != "csrf_token"}

    # --- users ------------------------------------------------------------------------
    @router.get("")
    def home():
        return RedirectResponse("/admin/users", status_code=303)

    @router.get("/users")
    def user_list(request: Request, admin=Depends(_admin)):
        return render(request, "admin/users.html", people=users(engine), values={}, errors={})

    @router.post("/users", dependencies=[Depends(auth.page_csrf)])
    async def user_create(request: Request, admin=Depends(_admin)):
        values = await form_of(request)
        body = {k: values.get(k, "") for k in ("username", "role", "password")}
        body |= {k: values[k] for k in ("display_name", "email", "department", "locale") if values.get(k)}
        errors = user_problems(body, role_names(runtime), creating=True)
        if not errors:
            try:
                await run_in_threadpool(lambda: directory.create_user(
                    engine, body["username"], body["role"], body["password"], roles=role_names(runtime),
                    department=body.get("department"), display_name=body.get("display_name", ""),
                    email=body.get("email"), locale=body.get("locale", "en"), actor=admin))
            except directory.DirectoryError as exc:
                errors = [{"field": exc.field, "code": exc.code}]
        if errors:
            return render(request, "admin/users.html", status=422, people=users(engine), values=values,
                          errors=_form_errors(gettext_of(request), errors), creating=True, path="/admin/users")
        return RedirectResponse(f"/admin/users/{body['username']}?done=created", status_code=303)

    def user_page(request: Request, username: str, *, status: int = 200, **context) -> Response:
        found = users(engine, username)
        if not found:
            raise HTTPException(status_code=404, detail=N_("There is no such user."))
        person = found[0]
        colleagues = [(p["username"], f'{p["display_name"]} ({p["username"]})' if p["display_name"] else p["username"])
                      for p in users(engine) if p["is_active"] and p["username"] != username]
        # or back to a lead pool (its object's records only)
        colleagues += [(f"pool:{p.name}", localized(p.label, page_context(request)["locale"], p.name))
                       for p in runtime.schema().pools.values()]
        locale = page_context(request)["locale"]
        schema = runtime.schema()
        with engine.connect() as conn:
            owned = [(o.name, localized(o.plural_label, locale, "") or localized(o.label, locale, o.name),
                      conn.execute(sa.select(sa.func.count()).select_from(table := schema.table(o.name))
                                   .where(table.c.owner == person["id"], table.c._deleted_at.is_(None))).scalar())
                     for o in schema.objects.values()]
        context.setdefault("values", person)
        context.setdefault("errors", {})
        session = auth.request_session(request)
        current = auth.keyed_hash(request.app.state.loom.secret_key, session.token)[:auth.SESSION_ID_LENGTH] if session else None
        return render(request, "admin/user.html", status=status, person=person, colleagues=colleagues, owned=owned,
                      sessions=auth.sessions_of(engine, person["id"]), current_session=current,
                      handed=_handed(request.query_params), path=f"/admin/users/{username}", **context)

    @router.get("/users/{username}")
    def user_detail(username: str, request: Request, admin=Depends(_admin)):
        return user_page(request, username)

    async def change(request: Request, username: str, admin, body: dict[str, Any], done: str) -> Response:
        found = users(engine, username)
        if not found:
            raise HTTPException(status_code=404, detail=N_("There is no such user."))
        errors = user_problems(body, role_names(runtime), creating=False)
        if found[0]["id"] == admin.id and body.get("is_active") is False:
            errors.append({"field": "is_active", "code": "self"})
        if found[0]["id"] == admin.id and body.get("role", "admin") != "admin":
            errors.append({"field": "role", "code": "self_role"})
        if not errors:
            try:
                await run_in_threadpool(lambda: directory.update_user(engine, found[0]["id"], body, roles=role_names(runtime),
                                                                      actor=admin))
            except directory.DirectoryError as exc:
                errors = [{"field": exc.field, "code": exc.code}]
        if errors:
            return user_page(request, username, status=422, values={**found[0], **body},
                             errors=_form_errors(gettext_of(request), errors))
        rights_changed(runtime, tokens)
        return RedirectResponse(f"/admin/users/{username}?done={done}", status_code=303)

    @router.post("/users/{username}", dependencies=[Depends(auth.page_csrf)])
    async def user_update(username: str, request: Request, admin=Depends(_admin)):
        values = await form_of(request)
        body = {k: values.get(k, "") for k in ("display_name", "email", "role", "department", "locale")}
        body["department"] = body["department"] or None
        return await change(request, username, admin, body, "saved")

    @router.post("/users/{username}/password", dependencies=[Depends(auth.page_csrf)])
    async def user_password(username: str, request: Request, admin=Depends(_admin)):
        values = await form_of(request)
        return await change(request, username, admin, {"password": values.get("password", "")}, "password")

    @router.post("/users/{username}/active", dependencies=[Depends(auth.page_csrf)])
    async def user_active(username: str, request: Request, admin=Depends(_admin)):
        active = (await form_of(request)).get("active") == "1"
        return await change(request, username, admin, {"is_active": active}, "activated" if active else "deactivated")

    @router.post("/users/{username}/sessions/{session_id}/end", dependencies=[Depends(auth.page_csrf)])
    def user_session_end(username: str, session_id: str, admin=Depends(_admin)):
        found = users(engine, username)
        if not found:
            raise HTTPException(status_code=404, detail=N_("There is no such user."))
        with write_transaction(engine) as conn:
            if auth.end_session_by_id(conn, found[0]["id"], session_id):
                audit.record(conn, admin, "session.end", username, {"session": session_id})
        return RedirectResponse(f"/admin/users/{username}?done=session", status_code=303)

    @router.post("/users/{username}/hand-over", dependencies=[Depends(auth.page_csrf)])
    async def user_hand_over(username: str, request: Request, admin=Depends(_admin)):
        form = await request.form()
        to = str(form.get("to") or "")
        chosen = [str(v) for v in form.getlist("objects")]
        problems = [] if chosen else [{"field": "objects", "code": "nothing_owned"}]
        if not to:
            problems.append({"field": "to", "code": "colleague"})
        if not problems:
            try:
                moved = await run_in_threadpool(functools.partial(hand_over, open_only=form.get("open_only") == "1"),
                                                runtime, username, to, chosen, admin)
            except HandOverError as exc:
                if exc.status == 404:
                    raise HTTPException(status_code=404, detail=N_("There is no such user.")) from None
                problems = [{"field": "objects", "code": "invalid_option"} if str(exc).startswith("objects")
                            else {"field": "to", "code": "colleague"}]
        if problems:
            return user_page(request, username, status=422, errors=_form_errors(gettext_of(request), problems))
        refused = moved.pop("refused", [])
        summary = {"done": "handed", "to": to, "moved": ",".join(f"{name}:{count}" for name, count in moved.items()),
                   "refused": len(refused)}
        return RedirectResponse(f"/admin/users/{username}?{urlencode(summary)}", status_code=303)

    @router.post("/users/{username}/sessions/end-all", dependencies=[Depends(auth.page_csrf)])
    def user_sessions_end_all(username: str, admin=Depends(_admin)):
        found = users(engine, username)
        if not found:
            raise HTTPException(status_code=404, detail=N_("There is no such user."))
        with write_transaction(engine) as conn:
            ended = auth.end_all_sessions(conn, found[0]["id"])
            audit.record(conn, admin, "session.end", username, {"sessions": ended})
        return RedirectResponse(f"/admin/users/{username}?done=sessions", status_code=303)

    # --- departments ----------------------------------------------------------------
    def departments_page(request: Request, status: int = 200, **context) -> Response:
        tree = directory.departments(engine)
        managers = {d.manager for d in tree if d.manager}
        # a deactivated manager stays choosable where it manages, so saving a label keeps it
        people = [(p["username"], p["display_name"] or p["username"]) for p in users(engine)
                  if p["is_active"] or p["username"] in managers]
        children: dict[str | None, list[str]] = {}
        for d in tree:
            children.setdefault(d.parent, []).append(d.name)

        def inside(name: str) -> set[str]:
            found, todo = set(), [name]
            while todo:
                current = todo.pop()
                if current not in found:
                    found.add(current)
                    todo.extend(children.get(current, ()))
            return found

        context = {"values": {}, "errors": {}, "editing": None, **context}
        return render(request, "admin/departments.html", status=status, people_choices=people,
                      outside={d.name: inside(d.name) for d in tree}, path="/admin/departments", **context)

    @router.get("/departments")
    def department_tree(request: Request, admin=Depends(_admin)):
        return departments_page(request)

    @router.post("/departments", dependencies=[Depends(auth.page_csrf)])
    async def department_create(request: Request, admin=Depends(_admin)):
        values = await form_of(request)
        try:
            await run_in_threadpool(lambda: directory.create_department(
                engine, values.get("name", ""), label=values.get("label", ""), parent=values.get("parent") or None,
                manager=values.get("manager") or None, actor=admin))
        except directory.DirectoryError as exc:
            return departments_page(request, 422, values=values,
                                    errors=_form_errors(gettext_of(request), [{"field": exc.field, "code": exc.code}]))
        rights_changed(runtime, tokens)
        return RedirectResponse("/admin/departments?done=created", status_code=303)

    @router.post("/departments/{name}", dependencies=[Depends(auth.page_csrf)])
    async def department_update(name: str, request: Request, admin=Depends(_admin)):
        values = await form_of(request)
        body = {k: values.get(k, "") for k in ("label", "parent", "manager")}
        try:
            await run_in_threadpool(lambda: directory.update_department(engine, name, body, actor=admin))
        except directory.DirectoryError as exc:
            if exc.status == 404:
                raise HTTPException(status_code=404, detail=N_("There is no such department.")) from None
            return departments_page(request, 422, editing=name, edit_values=body,
                                    edit_errors=_form_errors(gettext_of(request), [{"field": exc.field, "code": exc.code}]))
        rights_changed(runtime, tokens)
        return RedirectResponse("/admin/departments?done=saved", status_code=303)

    # --- roles and the audit log -----------------------------------------------------------------
    @router.get("/roles")
    def role_list(request: Request, admin=Depends(_admin)):
        schema = runtime.schema()
        return render(request, "admin/roles.html", roles=list(runtime.roles()[1].values()), schema=schema,
                      scope_texts=SCOPE_TEXTS, field_right_texts=FIELD_RIGHT_TEXTS, access_texts=ACCESS_TEXTS,
                      localized=localized)

    @router.get("/audit")
    def audit_log(request: Request, before: str = "", admin=Depends(_admin)):
        with engine.connect() as conn:
            lines = audit.listing(conn, limit=100, before=int(before) if before.isdigit() else None)
        return render(request, "admin/audit.html", lines=lines, action_texts=ACTION_TEXTS,
                      older=lines[-1]["id"] if len(lines) == 100 else None)

    return router
