"""Converting a record in the browser (`/app/{object}/{id}/convert`): per
target of the object's conversion, a record that exists (what its duplicate
rules match) or a new one, with the fields it needs filled in; an optional
target may be left out. The answer is the first record made, or the form
again with what refused."""

from __future__ import annotations

from typing import Any, Callable

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from loomcrm.metadata.model import localized
from loomcrm.platform import auth

from .. import conversion
from ..records import NotFound, RecordError
from .conditions import FieldState
from .refs import Refs, record_title
from .views import FORM, N_, Pages, _locale_user, _users, localize_errors, redirect_after
from .widgets import editable, input_value, parse_value, widget

NEW = "new"


def _shown_fields(schema, target: dict[str, Any]) -> list:
    """The fields a target shows: its title, then what it needs and lacks.
    Each is renamed "object.field", the name of its inputs."""
    made = schema.object(target["object"])
    title = made.field(made.title_field or "name")
    wanted = ([title] if title is not None else []) + [made.field(n) for n in target["missing"]]
    out, seen = [], set()
    for f in wanted:
        if f is not None and f.name not in seen and editable(f) and f.type not in ("lookup", "related_to"):
            seen.add(f.name)
            out.append(f.model_copy(update={"name": f"{made.name}.{f.name}"}))
    return out


def made_required(schema, f) -> bool:
    """Whether the renamed field ("object.field") is required on its object."""
    obj_name, _, name = f.name.partition(".")
    field = schema.object(obj_name).field(name)
    return bool(field is not None and field.required)


def build_conversion_pages(runtime, *, templates, page_context: Callable[..., dict]) -> APIRouter:
    router = APIRouter(prefix="/app", include_in_schema=False)
    pages = Pages(runtime, templates, page_context)

    def page(request: Request, obj, rid: str, user, *, form=None, errors=(), status: int = 200):
        locale = page_context(request)["locale"]
        schema = runtime.schema()
        try:
            plan = conversion.preview(runtime, obj.name, rid, user)
            source = runtime.records.get(obj.name, rid, user, schema=schema)
        except NotFound:
            raise HTTPException(status_code=404, detail=N_("This record does not exist or is in the recycle bin.")) from None
        targets = []
        with runtime.engine.connect() as conn:
            refs = Refs(schema, conn, runtime.access.of(user))
            for target in plan["targets"]:
                made = schema.object(target["object"])
                matches = [runtime.records.get(made.name, m, user, conn=conn, schema=schema)
                           for m in target["matches"][:5]]
                fields = _shown_fields(schema, target)
                values = {f.name: target["values"].get(f.name.split(".", 1)[1]) for f in fields}
                if form is not None:
                    values |= {f.name: parse_value(f, form.getlist(f.name), pages.tz) for f in fields}
                choice = (form.get(f"{made.name}._choice") if form is not None else None) or (
                    matches[0]["id"] if matches else NEW)
                made_too = (form.get(f"{made.name}._make") == "on") if form is not None else True
                targets.append({"obj": made, "optional": target["optional"], "matches": matches, "fields": fields,
                                "shown": values, "choice": choice, "make": made_too})
            refs.collect(obj, [source])
        problems = []
        for e in errors:
            target = schema.object(e.get("object") or obj.name)
            problems += [(target, message) for messages in localize_errors([e], target, locale).values()
                         for message in messages]
        ui = pages.display(schema, locale, refs)
        return pages.render(request, "forms/convert.html", status=status, obj=obj, record=source, targets=targets,
                            converted=plan["converted"], problems=problems, ui=ui, title=record_title(obj, source),
                            label=localized(obj.conversion.label, locale, "") or None, record_title=record_title,
                            widget=widget, required=lambda f: made_required(schema, f),
                            editable=editable, input_value=lambda f, v: input_value(f, v, pages.tz),
                            FieldState=FieldState, objects=schema.objects, users=_users(runtime.engine))

    @router.get("/{object_name}/{rid}/convert", response_class=HTMLResponse)
    def convert_page(request: Request, object_name: str, rid: str, user=Depends(auth.page_user)):
        schema, obj, access = pages.obj(object_name, user)
        if obj.conversion is None:
            raise HTTPException(status_code=404, detail=N_("There is no such page."))
        return page(request, obj, rid, user)

    @router.post("/{object_name}/{rid}/convert", response_class=HTMLResponse, dependencies=[Depends(auth.page_csrf)])
    async def convert(request: Request, object_name: str, rid: str, user=Depends(auth.page_user)):
        schema, obj, access = pages.obj(object_name, user)
        if obj.conversion is None:
            raise HTTPException(status_code=404, detail=N_("There is no such page."))
        form = await request.form()
        body: dict[str, Any] = {}
        for target in obj.conversion.targets:
            made = schema.object(target.object)
            if target.optional and form.get(f"{made.name}._make") != "on":
                body[made.name] = None
                continue
            choice = form.get(f"{made.name}._choice") or NEW
            if choice != NEW and target.existing:
                body[made.name] = {"id": choice}
                continue
            prefix = f"{made.name}."
            values = {}
            for key in {k for k in form.keys() if k.startswith(prefix) and not k.startswith(prefix + "_")}:
                f = made.field(key[len(prefix):])
                if f is not None and editable(f):
                    values[f.name] = parse_value(f, form.getlist(key), pages.tz)
            body[made.name] = {"values": {k: v for k, v in values.items() if v is not None}}
        acting = _locale_user(user, page_context(request)["locale"])
        try:
            done = await run_in_threadpool(conversion.convert, runtime, obj.name, rid, body, acting, origin=FORM)
        except NotFound:
            raise HTTPException(status_code=404, detail=N_("This record does not exist or is in the recycle bin.")) from None
        except RecordError as exc:
            errors, status = exc.errors or [{"field": None, "message": exc.detail}], exc.status
            return await run_in_threadpool(lambda: page(request, obj, rid, user, form=form, errors=errors,
                                                        status=status))
        first = next(t.object for t in obj.conversion.targets if t.object in done)
        return redirect_after(request, f"/app/{first}/{done[first]['id']}")

    return router
