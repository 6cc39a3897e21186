"""The lead pools' endpoints: the pools a user works with, a pool's records
(without its private fields), claiming, returning, assigning and putting
records in."""

from __future__ import annotations

from typing import Any, Callable

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from loomcrm.metadata.model import as_json

from .. import pools
from ..records import RecordError
from .problems import json_response
from .routes import _guard, read_json


async def _body(request: Request, *keys: str) -> dict[str, Any]:
    data = await read_json(request)
    if not isinstance(data, dict) or any(not isinstance(data.get(k), str) or not data.get(k) for k in keys):
        raise RecordError(f"send {{{', '.join(repr(k) + ': ...' for k in keys)}}}", status=422, errors=[
            {"field": k, "code": "required", "message": f"{k} is required"} for k in keys
            if not isinstance(data, dict) or not isinstance(data.get(k), str) or not data.get(k)])
    return data


def build_pools_router(runtime, *, user_dependency: Callable) -> APIRouter:
    router = APIRouter()

    @router.get("/_pools", tags=["pools"])
    @_guard
    async def pool_list(user=Depends(user_dependency)):
        return json_response({"data": [as_json(p) | {"name": p.name}
                                       for p in await run_in_threadpool(pools.pools_for, runtime, user)]})

    @router.get("/_pools/{name}/records", tags=["pools"])
    @_guard
    async def pool_records(name: str, request: Request, user=Depends(user_dependency)):
        """The pool's records, oldest in it first (`limit`, `after` an id)."""
        pool = pools.pool_of(runtime, name)
        if pool.name not in {p.name for p in await run_in_threadpool(pools.pools_for, runtime, user)}:
            raise pools.PoolError("not_member", "you are not a member of this pool", 403)
        limit = request.query_params.get("limit", "50")
        if not limit.isdigit() or not 1 <= int(limit) <= 500:
            raise RecordError("limit must be a whole number from 1 to 500", status=400)

        def run():
            with runtime.engine.connect() as conn:
                return pools.in_pool(conn, runtime, pool, limit=int(limit), after=request.query_params.get("after"))
        return json_response({"data": await run_in_threadpool(run)})

    @router.post("/_pools/{name}/claim", tags=["pools"])
    @_guard
    async def pool_claim(name: str, request: Request, user=Depends(user_dependency)):
        data = await _body(request, "id")
        return json_response(await run_in_threadpool(pools.claim, runtime, user, name, data["id"]))

    @router.post("/_pools/{name}/return", tags=["pools"])
    @_guard
    async def pool_return(name: str, request: Request, user=Depends(user_dependency)):
        data = await _body(request, "id")
        await run_in_threadpool(pools.return_to_pool, runtime, user, name, data["id"], data.get("reason"))
        return Response(status_code=204)

    @router.post("/_pools/{name}/assign", tags=["pools"])
    @_guard
    async def pool_assign(name: str, request: Request, user=Depends(user_dependency)):
        data = await _body(request, "id", "user")
        await run_in_threadpool(pools.assign_to, runtime, user, name, data["id"], data["user"])
        return Response(status_code=204)

    @router.post("/_pools/{name}/put", tags=["pools"])
    @_guard
    async def pool_put(name: str, request: Request, user=Depends(user_dependency)):
        """Pool admins put records in (their owners cleared)."""
        data = await read_json(request)
        ids = data.get("ids") if isinstance(data, dict) else None
        if not isinstance(ids, list) or not ids or len(ids) > 1000 or not all(isinstance(i, str) for i in ids):
            raise RecordError('send {"ids": [...]} (1 to 1,000 record ids)', status=422)
        moved = await run_in_threadpool(pools.put_in, runtime, user, name, ids)
        return json_response({"moved": moved})

    return router
