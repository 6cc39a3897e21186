"""An API app with the rules on, and users that differ by role and locale."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import FastAPI, Header, HTTPException

from loomcrm.runtime.api.routes import build_api_router
from loomcrm.runtime.rules.hooks import Rules
from loomcrm.runtime.state import Runtime


@dataclass
class FakeUser:
    id: str | None
    role: str
    locale: str = "en"


USERS = {"Bearer admin": FakeUser(None, "admin"), "Bearer user": FakeUser(None, "user"),
         "Bearer zh": FakeUser(None, "user", "zh-CN")}


def fake_user(authorization: str | None = Header(default=None)):
    user = USERS.get(authorization or "")
    if user is None:
        raise HTTPException(401, "no credentials")
    return user


def make_app(engine, **rules) -> tuple[FastAPI, Runtime]:
    runtime = Runtime(engine, refresh_interval=0, hooks=Rules(**rules))
    app = FastAPI()
    app.include_router(build_api_router(runtime, user_dependency=fake_user))
    return app, runtime
