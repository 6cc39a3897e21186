"""The REST API of SPEC §5: one generic router for every object, plus the
metadata endpoints. Mount it with

    router = build_api_router(runtime, user_dependency=current_user)
    app.include_router(router)
    install_openapi(app, runtime)

Every error is an RFC 9457 problem; record writes go through the record
service only.
"""

from __future__ import annotations

import functools
import json
from decimal import Decimal
from typing import Any, Callable

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from loomcrm.metadata.model import ObjectDef, Workflow, as_json
from loomcrm.metadata.versions import DraftConflict

from ..migrate.execute import PublishRefused, plan_for, publish
from ..query import list_records, parse_list_params
from .. import conversion, drafts, merging, search, shares, slas
from ..records import RecordError, record_json
from .problems import json_response, problem

MAX_BODY = 2_000_000


def _guard(handler: Callable) -> Callable:
    """Turn every known error into a problem response."""

    @functools.wraps(handler)
    async def wrapper(*args, **kwargs):
        try:
            return await handler(*args, **kwargs)
        except RecordError as exc:
            return problem(exc.status, exc.detail, errors=exc.errors)
        except PublishRefused as exc:
            return problem(409, str(exc), errors=[{"field": p["key"], "code": "needs_decision", "message": p["message"]} for p in exc.problems],
                           plan=exc.plan.as_json())
        except drafts.DraftChanged as exc:
            return problem(412, str(exc), **drafts.as_problem_fields(exc))
        except DraftConflict as exc:
            return problem(409, str(exc))
        except ValidationError as exc:
            return problem(422, "invalid metadata", errors=[
                {"field": ".".join(str(p) for p in e["loc"])[:200], "code": "type", "message": e["msg"][:300]}
                for e in exc.errors()[:50]])

    return wrapper


async def read_json(request: Request) -> Any:
    ctype = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if ctype and ctype != "application/json" and not ctype.endswith("+json"):
        raise RecordError("send application/json", status=415)
    body = await request.body()
    if len(body) > MAX_BODY:
        raise RecordError(f"the body is larger than {MAX_BODY} bytes", status=413)
    try:
        return json.loads(body, parse_float=Decimal, parse_constant=_no_constant)
    except (ValueError, RecursionError, UnicodeDecodeError):
        raise RecordError("the body is not valid JSON") from None


def _no_constant(name):
    raise ValueError(name)


def _if_match(request: Request) -> int | None:
    header = request.headers.get("if-match")
    if header is None or header.strip() == "*":
        return None
    tag = header.strip()
    if tag.startswith("W/"):
        tag = tag[2:]
    tag = tag.strip('"')
    if not tag.isdigit() or len(tag) > 18:
        raise RecordError("If-Match must be an ETag of this API", status=412)
    return int(tag)


def _etag(record: dict) -> dict[str, str]:
    return {"ETag": f'"{record["version"]}"'}


def build_api_router(runtime, *, user_dependency: Callable, prefix: str = "/api/v1") -> APIRouter:
    """One router for every object and for the metadata endpoints.
    `user_dependency` is a FastAPI dependency returning the acting user (an
    object with `id` and `role`) or raising 401."""
    router = APIRouter(prefix=prefix)
    records = runtime.records

    def require_admin(user):
        if getattr(user, "role", None) != "admin":
            raise RecordError("only admins may change metadata", status=403)

    # --- metadata -------------------------------------------------------------
    @router.get("/_meta/objects", include_in_schema=True, tags=["metadata"])
    @_guard
    async def meta_objects(user=Depends(user_dependency)):
        schema = runtime.schema()
        return json_response({"version": schema.version, "data": [_object_json(o) for o in schema.objects.values()]})

    @router.get("/_meta/objects/{name}", tags=["metadata"])
    @_guard
    async def meta_object(name: str, user=Depends(user_dependency)):
        obj = runtime.schema().object(name)
        if obj is None:
            raise RecordError(f"no object {name[:63]!r}", status=404)
        return json_response(_object_json(obj))

    @router.put("/_meta/objects/{name}", tags=["metadata"])
    @_guard
    async def meta_put(name: str, request: Request, user=Depends(user_dependency)):
        require_admin(user)
        data = await read_json(request)
        if not isinstance(data, dict):
            raise RecordError("the body must be an object definition")
        data.setdefault("name", name)
        obj = ObjectDef.model_validate(data)
        if obj.name != name:
            raise RecordError("the name in the body differs from the name in the path", status=422)
        return json_response(await run_in_threadpool(_change_draft, runtime, user, lambda s: s.with_object(obj), request))

    @router.delete("/_meta/objects/{name}", tags=["metadata"])
    @_guard
    async def meta_delete(name: str, request: Request, user=Depends(user_dependency)):
        require_admin(user)

        def drop(snapshot):
            if snapshot.object(name) is None:
                raise RecordError(f"no object {name[:63]!r} in the draft", status=404)
            return snapshot.without_object(name)

        return json_response(await run_in_threadpool(_change_draft, runtime, user, drop, request))

    @router.get("/_meta/workflows", tags=["metadata"])
    @_guard
    async def meta_workflows(user=Depends(user_dependency)):
        """The published workflows."""
        require_admin(user)
        with runtime.engine.connect() as conn:
            version, snapshot = runtime.store.published(conn)
        return json_response({"version": version, "data": [as_json(w) for w in snapshot.workflows]})

    @router.get("/_meta/workflows/{name}", tags=["metadata"])
    @_guard
    async def meta_workflow(name: str, user=Depends(user_dependency)):
        require_admin(user)
        with runtime.engine.connect() as conn:
            _version, snapshot = runtime.store.published(conn)
        flow = snapshot.workflow(name)
        if flow is None:
            raise RecordError(f"no workflow {name[:63]!r}", status=404)
        return json_response(as_json(flow))

    @router.put("/_meta/workflows/{name}", tags=["metadata"])
    @_guard
    async def meta_workflow_put(name: str, request: Request, user=Depends(user_dependency)):
        """Add or replace a workflow in the draft; checked as `pack validate` checks it."""
        require_admin(user)
        data = await read_json(request)
        if not isinstance(data, dict):
            raise RecordError("the body must be a workflow definition")
        data.setdefault("name", name)
        flow = Workflow.model_validate(data)
        if flow.name != name:
            raise RecordError("the name in the body differs from the name in the path", status=422)

        def change(snapshot):
            snapshot = snapshot.with_workflow(flow)
            check_workflow(snapshot, flow)
            return snapshot

        return json_response(await run_in_threadpool(_change_draft, runtime, user, change, request))

    @router.delete("/_meta/workflows/{name}", tags=["metadata"])
    @_guard
    async def meta_workflow_delete(name: str, request: Request, user=Depends(user_dependency)):
        require_admin(user)

        def drop(snapshot):
            if snapshot.workflow(name) is None:
                raise RecordError(f"no workflow {name[:63]!r} in the draft", status=404)
            return snapshot.without_workflow(name)

        return json_response(await run_in_threadpool(_change_draft, runtime, user, drop, request))

    @router.get("/_meta/draft", tags=["metadata"])
    @_guard
    async def meta_draft(user=Depends(user_dependency)):
        require_admin(user)

        draft = await run_in_threadpool(drafts.read, runtime.engine)
        return json_response({"base_version": draft.base_version, "exists": draft.exists, "snapshot": draft.snapshot.to_json(),
                              "updated_by": draft.updated_by}, headers={"ETag": f'"{draft.tag}"'})

    @router.delete("/_meta/draft", tags=["metadata"])
    @_guard
    async def meta_discard(user=Depends(user_dependency)):
        require_admin(user)

        def discard():
            with runtime.engine.begin() as conn:
                runtime.store.discard_draft(conn)

        await run_in_threadpool(discard)
        return Response(status_code=204)

    @router.get("/_meta/plan", tags=["metadata"])
    @_guard
    async def meta_plan(user=Depends(user_dependency)):
        require_admin(user)
        plan = await run_in_threadpool(plan_for, runtime.engine, None, ctx=runtime.context)
        return json_response(plan.as_json())

    @router.post("/_meta/publish", tags=["metadata"])
    @_guard
    async def meta_publish(request: Request, user=Depends(user_dependency)):
        require_admin(user)
        body = await read_json(request) if (await request.body()) else {}
        if not isinstance(body, dict):
            raise RecordError("the body is {\"confirm\": {...}, \"comment\": \"...\"}")
        confirm = body.get("confirm") or {}
        comment = body.get("comment") or ""
        if not isinstance(confirm, dict) or not all(isinstance(v, str) for v in confirm.values()) or not isinstance(comment, str):
            raise RecordError("confirm maps step keys to decisions; comment is text")
        result = await run_in_threadpool(functools.partial(
            publish, runtime.engine, None, comment=comment[:2000], user_id=_user_id(user), confirm=confirm, ctx=runtime.context))
        runtime.invalidate()
        return json_response({"version": result.version, "plan": result.plan.as_json(confirm), "index_failures": result.index_failures})

    @router.get("/_meta/archive", tags=["metadata"])
    @_guard
    async def meta_archive(user=Depends(user_dependency)):
        require_admin(user)
        from ..install import list_archive

        return json_response({"data": await run_in_threadpool(list_archive, runtime.engine)})

    @router.post("/_meta/archive/{entry_id}/restore", tags=["metadata"])
    @_guard
    async def meta_archive_restore(entry_id: str, user=Depends(user_dependency)):
        require_admin(user)
        from ..install import restore_into_draft

        return json_response(await run_in_threadpool(restore_into_draft, runtime, entry_id, _user_id(user)))

    @router.post("/_meta/bundles", tags=["metadata"])
    @_guard
    async def meta_install(request: Request, user=Depends(user_dependency)):
        require_admin(user)
        from ..install import bundle_from_json, install_bundle

        data = await read_json(request)
        confirm = data.pop("confirm", None) if isinstance(data, dict) else None
        bundle = bundle_from_json(data)
        result = await run_in_threadpool(functools.partial(install_bundle, runtime.engine, bundle, user_id=_user_id(user),
                                                           confirm=confirm, ctx=runtime.context))
        runtime.invalidate()
        return json_response(result.as_json(), status=201)

    @router.delete("/_meta/bundles/{name}", tags=["metadata"])
    @_guard
    async def meta_uninstall(name: str, request: Request, user=Depends(user_dependency)):
        """Uninstall a bundle; a step that drops data may need `?confirm=STEP=DECISION`."""
        require_admin(user)
        from ..install import uninstall_bundle

        confirm = dict(item.split("=", 1) for item in request.query_params.getlist("confirm") if "=" in item)
        result = await run_in_threadpool(functools.partial(uninstall_bundle, runtime.engine, name, user_id=_user_id(user),
                                                           confirm=confirm, ctx=runtime.context))
        runtime.invalidate()
        return json_response({"name": name, "metadata_version": result.version, "plan": result.plan.as_json()})

    @router.get("/_meta/bundles/{name}", tags=["metadata"])
    @_guard
    async def meta_export(name: str, user=Depends(user_dependency)):
        require_admin(user)
        from ..install import export_bundle

        return json_response(await run_in_threadpool(export_bundle, runtime.engine, name))

    # --- reports and dashboards (SPEC 3.7), before the records' catch-all paths
    from .approvals import build_approvals_router  # they use this module's guard
    from .pools import build_pools_router
    from .reports import build_reports_router

    router.include_router(build_reports_router(runtime, user_dependency=user_dependency))
    router.include_router(build_pools_router(runtime, user_dependency=user_dependency))
    router.include_router(build_approvals_router(runtime, user_dependency=user_dependency))

    # --- records ----------------------------------------------------------------
    @router.get("/{object_name}", include_in_schema=False)
    @_guard
    async def list_(object_name: str, request: Request, user=Depends(user_dependency)):
        schema = runtime.schema()
        access = runtime.access.of(user)
        obj = access.view(records.object_of(schema, object_name))   # the fields the user may not see are unknown
        params = parse_list_params(list(request.query_params.multi_items()), obj, runtime.context)

        def run():
            with runtime.engine.connect() as conn:
                return list_records(conn, schema, obj, params, access)

        data, cursor = await run_in_threadpool(run)
        return json_response({"data": data, "next_cursor": cursor})

    @router.post("/{object_name}", include_in_schema=False)
    @_guard
    async def create(object_name: str, request: Request, user=Depends(user_dependency)):
        records.object_of(runtime.schema(), object_name)
        data = await read_json(request)
        record = await run_in_threadpool(records.create, object_name, data, user)
        return json_response(record, status=201, headers=_etag(record))

    @router.post("/{object_name}/_merge", tags=["records"])
    @_guard
    async def merge(object_name: str, request: Request, user=Depends(user_dependency)):
        """Merge duplicates into one: {"survivor": id, "others": [one or two ids], "values": {field: the id of the
        record whose value it keeps}}. Children move to the survivor; the others go to the recycle bin together."""
        body = await read_json(request)
        return json_response(await run_in_threadpool(merging.merge, runtime, object_name, body, user))

    @router.get("/{object_name}/_search", tags=["records"])
    @_guard
    async def full_text_search(object_name: str, q: str = "", limit: int = 20, user=Depends(user_dependency)):
        """The records of an object with `search` fields best matching `q` (words; Chinese by character pairs),
        best first, among those the user may read."""
        schema = runtime.schema()
        obj = records.object_of(schema, object_name)
        access = runtime.access.of(user)
        if not search.searches(obj, access.view(obj)):
            raise RecordError(f"{object_name} has no full-text search", status=404)
        if not 1 <= limit <= 100:
            raise RecordError("limit must be between 1 and 100")

        def run():
            with runtime.engine.connect() as conn:
                rows = search.ranked(conn, schema, obj, q[:500], access, limit)
            seen = access.view(obj)    # the fields the user may not see are left out
            return [record_json(seen, r) for r in rows]
        return json_response({"data": await run_in_threadpool(run)})

    @router.get("/{object_name}/{rid}/_slas", tags=["records"])
    @_guard
    async def sla_clocks(object_name: str, rid: str, user=Depends(user_dependency)):
        """The record's SLA clocks: state (running, warning, paused, breached, stopped), due and remaining time."""
        def run():
            schema = runtime.schema()
            obj = records.object_of(schema, object_name)
            with runtime.engine.connect() as conn:
                records.get(object_name, rid, user, conn=conn, schema=schema)     # 404 unless the user may read it
                return slas.clocks_json(conn, schema, obj, rid)
        return json_response({"data": await run_in_threadpool(run)})

    @router.get("/{object_name}/{rid}", include_in_schema=False)
    @_guard
    async def read(object_name: str, rid: str, user=Depends(user_dependency)):
        record = await run_in_threadpool(records.get, object_name, rid, user)
        return json_response(record, headers=_etag(record))

    @router.patch("/{object_name}/{rid}", include_in_schema=False)
    @_guard
    async def update(object_name: str, rid: str, request: Request, user=Depends(user_dependency)):
        records.object_of(runtime.schema(), object_name)
        expected = _if_match(request)
        data = await read_json(request)
        record = await run_in_threadpool(functools.partial(records.update, object_name, rid, data, user, expected_version=expected))
        return json_response(record, headers=_etag(record))

    @router.delete("/{object_name}/{rid}", include_in_schema=False)
    @_guard
    async def delete(object_name: str, rid: str, request: Request, user=Depends(user_dependency)):
        expected = _if_match(request)
        await run_in_threadpool(functools.partial(records.delete, object_name, rid, user, expected_version=expected))
        return Response(status_code=204)

    @router.get("/{object_name}/{rid}/_access", tags=["access"])
    @_guard
    async def why(object_name: str, rid: str, user: str = "", acting=Depends(user_dependency)):
        """Why a user can or cannot read, update and delete the record (admins)."""
        require_admin(acting)
        return json_response(await run_in_threadpool(shares.explain, runtime, object_name, rid, user))

    @router.get("/{object_name}/{rid}/_shares", tags=["access"])
    @_guard
    async def shares_of(object_name: str, rid: str, user=Depends(user_dependency)):
        """Who the record is shared with beyond the owners' scopes."""
        return json_response({"data": await run_in_threadpool(shares.listing, runtime, object_name, rid, user)})

    @router.post("/{object_name}/{rid}/_shares", tags=["access"])
    @_guard
    async def share(object_name: str, rid: str, request: Request, user=Depends(user_dependency)):
        """Share the record with a user or a department: {"user" or "department": NAME, "access": "read" | "edit"}."""
        body = await read_json(request)
        return json_response(await run_in_threadpool(shares.share, runtime, object_name, rid, body, user), status=201)

    @router.delete("/{object_name}/{rid}/_shares/{share_id}", tags=["access"])
    @_guard
    async def unshare(object_name: str, rid: str, share_id: str, user=Depends(user_dependency)):
        await run_in_threadpool(shares.unshare, runtime, object_name, rid, share_id, user)
        return Response(status_code=204)

    @router.get("/{object_name}/{rid}/_convert", tags=["records"])
    @_guard
    async def conversion_preview(object_name: str, rid: str, user=Depends(user_dependency)):
        """What converting the record would make: per target its values, the required fields left blank and
        the records that may be it already (its duplicate rules' matches)."""
        return json_response(await run_in_threadpool(conversion.preview, runtime, object_name, rid, user))

    @router.post("/{object_name}/{rid}/_convert", tags=["records"])
    @_guard
    async def convert(object_name: str, rid: str, request: Request, user=Depends(user_dependency)):
        """Convert the record (a lead into an account, a contact and an opportunity) in one transaction: per
        target {"id": an existing record}, {"values": {...}} over the mapped values, or null to leave it out."""
        body = await read_json(request)
        return json_response(await run_in_threadpool(conversion.convert, runtime, object_name, rid, body, user))

    @router.post("/{object_name}/{rid}/restore", include_in_schema=False)
    @_guard
    async def restore(object_name: str, rid: str, user=Depends(user_dependency)):
        record = await run_in_threadpool(records.restore, object_name, rid, user)
        return json_response(record, headers=_etag(record))

    return router


def _user_id(user) -> str | None:
    return getattr(user, "id", None)


def _object_json(obj: ObjectDef) -> dict[str, Any]:
    return as_json(obj) | {"name": obj.name, "uid": obj.uid}


def check_workflow(snapshot, flow: Workflow) -> None:
    """The problems `pack validate` would find in `flow` against the draft's objects, as a 422."""
    from loomcrm.metadata.checks import check_bundle
    from loomcrm.metadata.model import Bundle, BundleManifest

    bundle = Bundle(manifest=BundleManifest(format="loom/1", name="draft", version="1.0.0"), objects=snapshot.objects,
                    workflows=[flow])
    problems = [p for p in check_bundle(bundle) if p.file == f"workflows/{flow.name}.json"]
    if problems:
        raise RecordError(f"{len(problems)} problems with the workflow", [
            {"field": p.path or None, "code": p.code, "message": p.message} for p in problems], status=422)


def _change_draft(runtime, user, change: Callable, request: Request | None = None) -> dict[str, Any]:
    """Apply `change` to the draft and answer the draft's object list and
    plan. An `If-Match` with the draft's ETag (from `GET _meta/draft`)
    refuses the change when the draft changed since."""
    seen = request.headers.get("if-match", "").strip().removeprefix("W/").strip('"') if request else ""
    snapshot = drafts.change(runtime, _user_id(user), change, seen_tag=seen if seen and seen != "*" else None)
    plan = plan_for(runtime.engine, None, ctx=runtime.context)
    return {"base_version": plan.base_version, "objects": [o.name for o in snapshot.objects],
            "workflows": [w.name for w in snapshot.workflows], "plan": plan.as_json()}
