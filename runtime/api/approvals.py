"""The approval endpoints: a user's inbox, a record's requests, submitting,
and the actions on a pending request."""

from __future__ import annotations

from typing import Callable

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool

from .. import approvals
from ..records import RecordError
from .problems import json_response
from .routes import _guard, read_json


async def _options(request: Request) -> dict:
    data = await read_json(request) if await request.body() else {}
    if not isinstance(data, dict):
        raise RecordError("send a JSON object", status=422)
    return data


def build_approvals_router(runtime, *, user_dependency: Callable) -> APIRouter:
    router = APIRouter()

    @router.get("/_approvals", tags=["approvals"])
    @_guard
    async def approval_inbox(request: Request, user=Depends(user_dependency)):
        """What waits for the user (`box=waiting`), what they submitted (`submitted`), what they decided (`decided`)."""
        box = request.query_params.get("box", "waiting")
        return json_response({"data": await run_in_threadpool(approvals.inbox, runtime, user, box)})

    @router.post("/_approvals/{request_id}/{action}", tags=["approvals"])
    @_guard
    async def approval_action(request_id: str, action: str, request: Request, user=Depends(user_dependency)):
        """approve, reject, send_back ({"step": an earlier step's index}, none: to the submitter), add ({"to"}),
        hand ({"to"}) or recall, each with an optional {"comment"}."""
        data = await _options(request)
        step = data.get("step")
        return json_response(await run_in_threadpool(
            lambda: approvals.act(runtime, user, request_id, action, comment=data.get("comment"), to=data.get("to"),
                                  step=step)))

    @router.get("/{object_name}/{rid}/_approvals", tags=["approvals"])
    @_guard
    async def record_approvals(object_name: str, rid: str, user=Depends(user_dependency)):
        return json_response(await run_in_threadpool(approvals.of_record, runtime, user, object_name, rid))

    @router.post("/{object_name}/{rid}/_approvals", tags=["approvals"])
    @_guard
    async def submit_for_approval(object_name: str, rid: str, request: Request, user=Depends(user_dependency)):
        """Submit the record ({"process"}: one of its object's, default the first whose entry holds; {"comment"})."""
        data = await _options(request)
        return json_response(await run_in_threadpool(
            lambda: approvals.submit(runtime, user, object_name, rid, process=data.get("process"),
                                     comment=data.get("comment"))), status=201)

    return router
