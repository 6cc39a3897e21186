"""The `_admin` endpoints (SPEC §5), administrators only: the users who can
sign in, and creating them."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from email_validator import EmailNotValidError, validate_email
from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool

from loomcrm.runtime.api.problems import json_response, problem
from loomcrm.runtime.api.routes import read_json
from loomcrm.runtime.records import RecordError

from . import auth, i18n, systemdb

USER_KEYS = {"username", "password", "role", "display_name", "email", "locale"}


def user_json(row) -> dict[str, Any]:
    return {"id": row.id, "username": row.username, "display_name": row.display_name, "email": row.email,
            "role": row.role, "locale": row.locale, "is_active": row.is_active, "department": None,
            "created_at": row.created_at.isoformat() if row.created_at else None}


def build_admin_router(engine, prefix: str = "/api/v1") -> APIRouter:
    router = APIRouter(prefix=prefix, tags=["admin"])

    @router.get("/_admin/users")
    async def users(user=Depends(auth.require_admin)):
        def read():
            t = systemdb.users
            with engine.connect() as conn:
                return [user_json(r) for r in conn.execute(sa.select(t).where(t.c.password_hash != auth.NO_PASSWORD)
                                                           .order_by(t.c.username))]
        return json_response({"data": await run_in_threadpool(read)})

    @router.post("/_admin/users")
    async def create(request: Request, user=Depends(auth.require_admin)):
        try:
            body = await read_json(request)
        except RecordError as exc:
            return problem(exc.status, exc.detail)
        if not isinstance(body, dict):
            return problem(400, "the body is {\"username\", \"password\", \"role\", ...}")
        errors = [{"field": str(k)[:63], "code": "unknown_field", "message": f"not a key of a user: {str(k)[:63]!r}"}
                  for k in body if k not in USER_KEYS]
        for key in ("username", "password", "role"):
            if not isinstance(body.get(key), str) or not body.get(key):
                errors.append({"field": key, "code": "required", "message": f"{key} is required"})
        for key in ("display_name", "email", "locale"):
            if body.get(key) is not None and not isinstance(body[key], str):
                errors.append({"field": key, "code": "type", "message": f"{key} must be text"})
        email = body.get("email") or None
        if isinstance(email, str):
            try:
                email = validate_email(email, check_deliverability=False).normalized
            except EmailNotValidError as exc:
                errors.append({"field": "email", "code": "type", "message": f"not a valid e-mail address: {exc}"})
        if isinstance(body.get("username"), str) and body["username"] and not auth.USERNAME_PATTERN.match(body["username"]):
            errors.append({"field": "username", "code": "pattern",
                           "message": "a user name is 1 to 150 letters, digits or . _ @ -, starting with a letter or digit"})
        if isinstance(body.get("role"), str) and body["role"] and body["role"] not in auth.ROLES:
            errors.append({"field": "role", "code": "invalid_option", "message": f"role is one of {', '.join(auth.ROLES)}"})
        if isinstance(body.get("password"), str) and body["password"] and len(body["password"]) < auth.MIN_PASSWORD_LENGTH:
            errors.append({"field": "password", "code": "too_short",
                           "message": f"a password needs at least {auth.MIN_PASSWORD_LENGTH} characters"})
        locale = body.get("locale") or "en"
        if isinstance(locale, str) and not i18n.supported(locale):
            errors.append({"field": "locale", "code": "invalid_option", "message": f"locale is one of {', '.join(i18n.LOCALES)}"})
        if errors:
            return problem(422, f"{len(errors)} problems with the user", errors=errors)
        try:
            made = await run_in_threadpool(lambda: auth.create_user(
                engine, body["username"], body["role"], body["password"], display_name=body.get("display_name") or "",
                locale=locale, email=email))
        except auth.AuthError as exc:   # checked above but for a name taken meanwhile
            return problem(409, str(exc), errors=[{"field": "username", "code": "unique", "message": str(exc)}])
        t = systemdb.users
        with engine.connect() as conn:
            row = conn.execute(sa.select(t).where(t.c.id == made.id)).first()
        return json_response(user_json(row), status=201)

    return router
