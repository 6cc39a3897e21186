"""The `_admin` endpoints (SPEC §5), administrators only: users (with role
and department) and their sessions, departments, roles, the audit log, and
handing a leaver's records to a colleague."""

from __future__ import annotations

import functools

from typing import Any

import sqlalchemy as sa
from email_validator import EmailNotValidError, validate_email
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from loomcrm.metadata.model import as_json
from loomcrm.runtime.api.problems import json_response, problem
from loomcrm.runtime.api.routes import read_json
from loomcrm.runtime.handover import HandOverError, hand_over
from loomcrm.runtime.records import RecordError

from . import audit, auth, directory, i18n, systemdb
from .db import write_transaction

USER_KEYS = {"username", "password", "role", "display_name", "email", "locale", "department"}
CHANGE_KEYS = {"password", "role", "display_name", "email", "locale", "department", "is_active"}


def user_json(row) -> dict[str, Any]:
    return {"id": row.id, "username": row.username, "display_name": row.display_name, "email": row.email,
            "role": row.role, "locale": row.locale, "is_active": row.is_active, "department": row.department,
            "created_at": row.created_at.isoformat() if row.created_at else None}


def department_json(d: directory.Department) -> dict[str, Any]:
    return {"id": d.id, "name": d.name, "label": d.label, "parent": d.parent, "manager": d.manager, "members": d.members}


def users(engine, username: str | None = None) -> list[dict[str, Any]]:
    """The users who can sign in (not automation's own), with their department's name."""
    u, d = systemdb.users, systemdb.departments
    query = (sa.select(u, d.c.name.label("department")).select_from(u.outerjoin(d, d.c.id == u.c.department_id))
             .where(u.c.password_hash != auth.NO_PASSWORD).order_by(u.c.username))
    if username is not None:
        query = query.where(u.c.username == username)
    with engine.connect() as conn:
        return [user_json(r) for r in conn.execute(query)]


def user_problems(body: dict, roles: list[str], *, creating: bool) -> list[dict[str, Any]]:
    """What is wrong with a new user (`creating`) or a change to one: unknown
    keys, wrong types, missing values, the name's shape, the role, the
    password's length, the e-mail and the language. Normalizes the e-mail."""
    allowed = USER_KEYS if creating else CHANGE_KEYS
    errors = [{"field": str(k)[:63], "code": "unknown_field", "message": f"not a key of a user: {str(k)[:63]!r}"}
              for k in body if k not in allowed]
    for key in ("username", "password", "role", "display_name", "email", "locale", "department"):
        if body.get(key) is not None and not isinstance(body[key], str):
            errors.append({"field": key, "code": "type", "message": f"{key} must be text"})
    for key in ("username", "password", "role") if creating else ():
        if not isinstance(body.get(key), str) or not body.get(key):
            errors.append({"field": key, "code": "required", "message": f"{key} is required"})
    if creating and isinstance(body.get("username"), str) and body["username"] and not auth.USERNAME_PATTERN.match(body["username"]):
        errors.append({"field": "username", "code": "pattern",
                       "message": "a user name is 1 to 150 letters, digits or . _ @ -, starting with a letter or digit"})
    if isinstance(body.get("role"), str) and body["role"] and body["role"] not in (*auth.ROLES, *roles):
        errors.append({"field": "role", "code": "invalid_option", "message": f"role is one of {', '.join([*auth.ROLES, *roles])}"})
    if isinstance(body.get("password"), str) and (body["password"] or not creating) \
            and len(body["password"].strip()) < auth.MIN_PASSWORD_LENGTH:
        errors.append({"field": "password", "code": "too_short",
                       "message": f"a password needs at least {auth.MIN_PASSWORD_LENGTH} characters"})
    if isinstance(body.get("email"), str) and body["email"]:
        try:
            body["email"] = validate_email(body["email"], check_deliverability=False).normalized
        except EmailNotValidError as exc:
            errors.append({"field": "email", "code": "type", "message": f"not a valid e-mail address: {exc}"})
    if isinstance(body.get("locale"), str) and not i18n.supported(body["locale"]):
        errors.append({"field": "locale", "code": "invalid_option", "message": f"locale is one of {', '.join(i18n.LOCALES)}"})
    if "is_active" in body and not isinstance(body["is_active"], bool):
        errors.append({"field": "is_active", "code": "type", "message": "is_active is true or false"})
    return errors


def directory_problem(exc: directory.DirectoryError) -> Response:
    return problem(exc.status, str(exc), errors=[{"field": exc.field, "code": exc.code, "message": str(exc)}])


def role_names(runtime) -> list[str]:
    """The names of the roles the installed packs define."""
    return sorted(runtime.roles()[1])


def rights_changed(runtime, tokens: auth.TokenCache) -> None:
    """Rights changed: every cached expansion and token goes."""
    runtime.access.forget()
    tokens.clear()


def build_admin_router(runtime, tokens: auth.TokenCache, prefix: str = "/api/v1") -> APIRouter:
    router = APIRouter(prefix=prefix, tags=["admin"])
    engine = runtime.engine


    async def body_of(request: Request) -> dict | Response:
        try:
            body = await read_json(request)
        except RecordError as exc:
            return problem(exc.status, exc.detail)
        return body if isinstance(body, dict) else problem(400, "the body must be a JSON object")

    @router.get("/_admin/users")
    async def list_users(user=Depends(auth.require_admin)):
        return json_response({"data": await run_in_threadpool(users, engine)})

    @router.post("/_admin/users")
    async def create_user(request: Request, user=Depends(auth.require_admin)):
        body = await body_of(request)
        if isinstance(body, Response):
            return body
        errors = user_problems(body, role_names(runtime), creating=True)
        if errors:
            return problem(422, f"{len(errors)} problems with the user", errors=errors)
        try:
            made = await run_in_threadpool(lambda: directory.create_user(
                engine, body["username"], body["role"], body["password"], roles=role_names(runtime),
                department=body.get("department"), display_name=body.get("display_name") or "",
                email=body.get("email") or None, locale=body.get("locale") or "en", actor=user))
        except directory.DirectoryError as exc:
            return directory_problem(exc)
        return json_response((await run_in_threadpool(users, engine, made.username))[0], status=201)

    @router.patch("/_admin/users/{username}")
    async def change_user(username: str, request: Request, user=Depends(auth.require_admin)):
        """Role, department, name, e-mail, language, password, or is_active
        (false: signed out everywhere and every API token revoked)."""
        body = await body_of(request)
        if isinstance(body, Response):
            return body
        errors = user_problems(body, role_names(runtime), creating=False)
        if errors:
            return problem(422, f"{len(errors)} problems with the change", errors=errors)
        found = await run_in_threadpool(users, engine, username)
        if not found:
            return problem(404, f"no user {username[:63]!r}")
        if found[0]["id"] == user.id and (body.get("is_active") is False or body.get("role", "admin") != "admin"):
            return problem(409, "you cannot deactivate yourself nor take away your own administrator role")
        try:
            await run_in_threadpool(lambda: directory.update_user(engine, found[0]["id"], body, roles=role_names(runtime), actor=user))
        except directory.DirectoryError as exc:
            return directory_problem(exc)
        rights_changed(runtime, tokens)
        return json_response((await run_in_threadpool(users, engine, username))[0])

    @router.get("/_admin/users/{username}/sessions")
    async def user_sessions(username: str, user=Depends(auth.require_admin)):
        found = await run_in_threadpool(users, engine, username)
        if not found:
            return problem(404, f"no user {username[:63]!r}")
        return json_response({"data": await run_in_threadpool(auth.sessions_of, engine, found[0]["id"])})

    @router.delete("/_admin/users/{username}/sessions/{session_id}")
    async def end_user_session(username: str, session_id: str, user=Depends(auth.require_admin)):
        """Sign a user out of one browser."""
        found = await run_in_threadpool(users, engine, username)

        def end() -> bool:
            with write_transaction(engine) as conn:
                ended = auth.end_session_by_id(conn, found[0]["id"], session_id)
                if ended:
                    audit.record(conn, user, "session.end", username, {"session": session_id})
                return ended

        if not found or not await run_in_threadpool(end):
            return problem(404, f"no session {session_id[:32]!r} of {username[:63]!r}")
        return Response(status_code=204)

    @router.post("/_admin/users/{username}/hand-over")
    async def hand_over_records(username: str, request: Request, user=Depends(auth.require_admin)):
        """Give a user's records to a colleague or a pool: {"to": NAME or "pool:NAME", "objects": [...] (default:
        every object), "open_only": true to keep won and lost ones}."""
        body = await body_of(request)
        if isinstance(body, Response):
            return body
        try:
            moved = await run_in_threadpool(functools.partial(hand_over, open_only=body.get("open_only") is True),
                                            runtime, username, body.get("to"), body.get("objects"), user)
        except HandOverError as exc:
            return problem(exc.status, str(exc))
        return json_response({"moved": moved})

    @router.get("/_admin/departments")
    async def list_departments(user=Depends(auth.require_admin)):
        found = await run_in_threadpool(directory.departments, engine)
        return json_response({"data": [department_json(d) for d in found]})

    @router.post("/_admin/departments")
    async def create_department(request: Request, user=Depends(auth.require_admin)):
        body = await body_of(request)
        if isinstance(body, Response):
            return body
        unknown = set(body) - {"name", "label", "parent", "manager"}
        if unknown or not isinstance(body.get("name"), str):
            return problem(422, 'the body is {"name", "label", "parent", "manager"}', errors=[
                {"field": k, "code": "unknown_field", "message": "not a key of a department"} for k in sorted(unknown)]
                or [{"field": "name", "code": "required", "message": "name is required"}])
        try:
            made = await run_in_threadpool(lambda: directory.create_department(
                engine, body["name"], label=str(body.get("label") or ""), parent=body.get("parent"),
                manager=body.get("manager"), actor=user))
        except directory.DirectoryError as exc:
            return directory_problem(exc)
        rights_changed(runtime, tokens)
        return json_response(department_json(made), status=201)

    @router.patch("/_admin/departments/{name}")
    async def change_department(name: str, request: Request, user=Depends(auth.require_admin)):
        """{"label", "parent", "manager"}: any of them; a department never moves below itself."""
        body = await body_of(request)
        if isinstance(body, Response):
            return body
        bad = [k for k, v in body.items() if v is not None and not isinstance(v, str)]
        if bad:
            return problem(422, "label, parent and manager are text", errors=[
                {"field": str(k)[:63], "code": "type", "message": "must be text"} for k in bad])
        try:
            made = await run_in_threadpool(lambda: directory.update_department(engine, name, body, actor=user))
        except directory.DirectoryError as exc:
            return directory_problem(exc)
        rights_changed(runtime, tokens)
        return json_response(department_json(made))

    @router.get("/_admin/roles")
    async def list_roles(user=Depends(auth.require_admin)):
        roles = runtime.roles()[1]
        builtin = [{"name": "admin", "builtin": True, "description": "every right, and metadata, users and roles"},
                   {"name": "user", "builtin": True, "description": "`all` on every object"}]
        return json_response({"data": builtin + [{**as_json(r), "name": r.name, "builtin": False} for r in roles.values()]})

    @router.get("/_admin/audit")
    async def audit_log(limit: int = 200, before: int | None = None, user=Depends(auth.require_admin)):
        def read():
            with engine.connect() as conn:
                return audit.listing(conn, limit=max(1, min(limit, 1000)), before=before)
        return json_response({"data": await run_in_threadpool(read)})

    return router
