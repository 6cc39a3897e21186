"""The automation endpoints of the HTTP API (SPEC §5): the run log and
replays (admins), and the acting user's notifications."""

from __future__ import annotations

from typing import Callable

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool

from loomcrm.platform.db import write_transaction
from loomcrm.runtime.api.problems import json_response, problem

from . import notifications, runs

MAX_PAGE = 500


def build_automation_router(automation, *, user_dependency: Callable, prefix: str = "/api/v1") -> APIRouter:
    router = APIRouter(prefix=prefix, tags=["automation"])
    engine = automation.engine

    def admin(user) -> bool:
        return getattr(user, "role", None) == "admin"

    @router.get("/_automation/runs")
    async def run_log(request: Request, workflow: str | None = None, record: str | None = None, status: str | None = None,
                      limit: int = 50, cursor: str | None = None, user=Depends(user_dependency)):
        """The run log, newest first (admins)."""
        if not admin(user):
            return problem(403, "only administrators may read the run log")
        if status is not None and status not in runs.STATUSES:
            return problem(400, f"status is one of {', '.join(runs.STATUSES)}",
                           errors=[{"field": "status", "code": "invalid_option", "message": f"not a run state: {status[:30]!r}"}])
        if not 1 <= limit <= MAX_PAGE:
            return problem(400, f"limit must be a whole number from 1 to {MAX_PAGE}")

        def read():
            with engine.connect() as conn:
                return runs.listing(conn, workflow=workflow, record=record, status=status, limit=limit, cursor=cursor)

        try:
            data, next_cursor = await run_in_threadpool(read)
        except runs.BadCursor as exc:
            return problem(400, str(exc))
        return json_response({"data": data, "next_cursor": next_cursor})

    @router.post("/_automation/runs/{run_id}/replay")
    async def replay(run_id: str, user=Depends(user_dependency)):
        """Try a dead run again (admins)."""
        if not admin(user):
            return problem(403, "only administrators may replay runs")

        def go():
            refused = automation.replay(run_id[:32])
            with engine.connect() as conn:
                return refused, runs.get(conn, run_id[:32])

        refused, row = await run_in_threadpool(go)
        if row is None:
            return problem(404, f"no run {run_id[:32]!r}")
        if refused:
            return problem(409, refused)
        automation.ready([row["id"]])
        return json_response(row, status=202)

    @router.get("/_me/notifications")
    async def my_notifications(unread: bool = False, limit: int = 50, user=Depends(user_dependency)):
        if not 1 <= limit <= MAX_PAGE:
            return problem(400, f"limit must be a whole number from 1 to {MAX_PAGE}")

        def read():
            with engine.connect() as conn:
                return notifications.listing(conn, user.id, unread=unread, limit=limit)

        return json_response({"data": await run_in_threadpool(read)})

    @router.post("/_me/notifications/{notification_id}/read")
    async def read_notification(notification_id: str, user=Depends(user_dependency)):
        def mark():
            with write_transaction(engine) as conn:
                notifications.mark_read(conn, user.id, notification_id[:32])
                return notifications.get(conn, user.id, notification_id[:32])

        found = await run_in_threadpool(mark)
        if found is None:
            return problem(404, f"no notification {notification_id[:32]!r}")
        return json_response(found)

    return router
