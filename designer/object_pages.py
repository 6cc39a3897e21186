"""The screens of one object: creating and listing objects, settings, fields
(with stages and picklist options), layouts, validation rules, and the
live expression help (check, completion, try it)."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from loomcrm.metadata.model import ObjectDef, as_json, localized
from loomcrm.metadata.versions import Snapshot
from loomcrm.platform import auth
from loomcrm.runtime import drafts
from loomcrm.runtime.forms.refs import record_title
from loomcrm.runtime.forms.views import N_, record_page
from loomcrm.runtime.install import list_archive, restore_into_draft
from loomcrm.runtime.records import RecordError

from . import checking, edits, layouts
from .edits import texts_of
from .pages import PROBLEM_TEXTS, place_of, require_admin, rule_problems, seen_json, seen_of
from .starters import STARTERS


def add_routes(router: APIRouter, pages) -> None:
    runtime, engine, templates, page_context = pages.runtime, pages.engine, pages.templates, pages.page_context
    render, form_of, object_or_404, change = pages.render, pages.form_of, pages.object_or_404, pages.change
    saved, recent_records = pages.saved, pages.recent_records

    # --- objects ------------------------------------------------------------------
    @router.get("")
    def objects_page(request: Request):
        draft = drafts.read(engine)
        return render(request, "designer/objects.html", draft=draft, values={}, errors={},
                      archive=[e for e in list_archive(engine) if e["kind"] == "object"])

    @router.post("/objects")
    async def object_create(request: Request, user=Depends(require_admin)):
        form = await form_of(request)
        values = {k: str(form.get(k) or "").strip() for k in ("name", "label_en", "label_zh", "plural_label_en",
                                                             "plural_label_zh", "starter")}
        errors: dict[str | None, str] = {}
        if not values["label_en"] and not values["label_zh"]:
            errors["label_en"] = N_("Required.")
        starter = STARTERS.get(values["starter"] or "blank")
        if starter is None:
            errors["starter"] = N_("Choose one of the options.")
        if not errors:
            try:
                label = edits.text_of(form, "label")
                obj = edits.new_object({"plural_label": edits.text_of(form, "plural_label") or label,
                                        **starter(values["name"], label)})

                def add(snapshot: Snapshot) -> Snapshot:
                    if snapshot.object(obj.name) is not None:
                        raise edits.FormProblems({"name": PROBLEM_TEXTS["name_taken"]})
                    return snapshot.with_object(obj)

                await run_in_threadpool(change, user, None, None, add)
                return RedirectResponse(f"/designer/objects/{obj.name}?done=created", status_code=303)
            except edits.FormProblems as exc:
                errors = exc.problems
                if "name" in errors and errors["name"] != PROBLEM_TEXTS["name_taken"]:
                    errors["name"] = PROBLEM_TEXTS["name_pattern"]
            except RecordError as exc:
                errors = {None: exc.detail}
        gettext = page_context(request)["_"]
        errors = {k: gettext(v) for k, v in errors.items()}
        return render(request, "designer/objects.html", status=422, values=values,
                      errors=errors, archive=[])

    @router.get("/objects/{name}")
    def object_page(request: Request, name: str):
        draft = drafts.read(engine)
        obj = object_or_404(draft, name)
        return object_view(request, draft, obj)

    def object_view(request: Request, draft: drafts.Draft, obj: ObjectDef, *, status: int = 200, errors=None,
                    values=None) -> Response:
        problems = [p for p in rule_problems(draft.snapshot) if p["file"] == f"objects/{obj.name}.json"]
        return render(request, "designer/object.html", status=status, draft=draft, obj=obj, seen=seen_json(obj),
                      errors=errors or {}, values=values, field_types=edits.FIELD_TYPES,
                      problems=[{**p, "place": place_of(draft.snapshot, p, page_context(request)["locale"])}
                                for p in problems])

    @router.post("/objects/{name}/settings")
    async def object_settings(request: Request, name: str, user=Depends(require_admin)):
        form = await form_of(request)
        seen = seen_of(form)
        new_name = str(form.get("name") or name).strip()

        def edit(snapshot: Snapshot) -> Snapshot:
            obj = snapshot.object(name)
            if obj is None:
                raise edits.FormProblems({None: N_("The object is no longer in the draft.")})
            changed = edits.object_settings(obj, form)
            if new_name != name and snapshot.object(new_name) is not None:
                raise edits.FormProblems({"name": PROBLEM_TEXTS["name_taken"]})
            snapshot = snapshot.with_object(changed)
            return edits.object_renamed(snapshot, name, changed.name) if changed.name != name else snapshot

        return await saved(request, user, name, seen, edit, f"/designer/objects/{new_name}?done=saved",
                           lambda draft, errors: object_view(request, draft, object_or_404(draft, name), status=422,
                                                             errors=errors, values=dict(form)))

    @router.post("/objects/{name}/delete")
    async def object_delete(request: Request, name: str, user=Depends(require_admin)):
        form = await form_of(request)
        seen = seen_of(form)
        if str(form.get("confirm") or "").strip() != name:
            draft = drafts.read(engine)
            return object_view(request, draft, object_or_404(draft, name), status=422,
                               errors={"confirm": PROBLEM_TEXTS["confirm"]})
        return await saved(request, user, name, seen, lambda s: s.without_object(name), "/designer?done=deleted",
                           lambda draft, errors: object_view(request, draft, object_or_404(draft, name), status=422,
                                                             errors=errors))

    @router.post("/archive/{entry_id}/restore")
    async def archive_restore(request: Request, entry_id: str, user=Depends(require_admin)):
        await form_of(request)
        try:
            await run_in_threadpool(restore_into_draft, runtime, entry_id, user.id)
        except RecordError as exc:
            raise HTTPException(status_code=exc.status, detail=exc.detail) from None
        return RedirectResponse("/designer?done=restored", status_code=303)

    @router.post("/objects/{name}/order")
    async def field_order(request: Request, name: str, user=Depends(require_admin)):
        form = await form_of(request)
        seen = seen_of(form)
        order = [str(n) for n in form.getlist("field")]

        def edit(snapshot: Snapshot) -> Snapshot:
            return snapshot.with_object(edits.reordered(object_or_404(drafts.Draft(0, snapshot, True), name), order))

        return await saved(request, user, name, seen, edit, f"/designer/objects/{name}?done=saved",
                           lambda draft, errors: object_view(request, draft, object_or_404(draft, name), status=422,
                                                             errors=errors))

    # --- fields -------------------------------------------------------------------
    def field_view(request: Request, draft: drafts.Draft, obj: ObjectDef, field: dict | None, *, values: dict,
                   errors=None, status: int = 200) -> Response:
        return render(request, "designer/field.html", status=status, draft=draft, obj=obj, field=field,
                      seen=seen_json(obj), v=values, errors=errors or {}, field_types=edits.FIELD_TYPES,
                      uses=edits.SETTING_TYPES, objects=draft.snapshot.objects, records=recent_records(obj.name),
                      object_choices=[(o.name, f"{localized(o.label, page_context(request)['locale'], o.name)} ({o.name})")
                                      for o in draft.snapshot.objects])

    @router.get("/objects/{name}/fields/new")
    def field_new(request: Request, name: str, type: str = "text"):
        draft = drafts.read(engine)
        obj = object_or_404(draft, name)
        kind = type if type in edits.FIELD_MODELS else "text"
        blank_stage = {"category": "open", "required_fields": [], "exit": [], "entry": []}
        values = {"type": kind, "options": [{"value": "", "label_en": "", "label_zh": "", "color": ""}],
                  "stages": [{**blank_stage, "n": "0"}, {**blank_stage, "n": "1"}], "allow_backward": "on"}
        return field_view(request, draft, obj, None, values=values)

    @router.get("/objects/{name}/fields/{field_name}")
    def field_edit(request: Request, name: str, field_name: str):
        draft = drafts.read(engine)
        obj = object_or_404(draft, name)
        fld = obj.field(field_name)
        if fld is None:
            raise HTTPException(status_code=404, detail=N_("There is no such field in the draft."))
        return field_view(request, draft, obj, as_json(fld), values=field_inputs(as_json(fld)))

    @router.post("/objects/{name}/fields")
    async def field_create(request: Request, name: str, user=Depends(require_admin)):
        return await field_save(request, name, None, user)

    @router.post("/objects/{name}/fields/{field_name}")
    async def field_update(request: Request, name: str, field_name: str, user=Depends(require_admin)):
        return await field_save(request, name, field_name, user)

    async def field_save(request: Request, name: str, field_name: str | None, user) -> Response:
        form = await form_of(request)
        seen = seen_of(form)
        values = form_inputs(form)

        def edit(snapshot: Snapshot) -> Snapshot:
            obj = snapshot.object(name)
            if obj is None:
                raise edits.FormProblems({None: N_("The object is no longer in the draft.")})
            previous = as_json(obj.field(field_name)) if field_name and obj.field(field_name) else None
            expression_problems(snapshot, obj, values)
            inferred = None
            if values.get("type") == "formula" and values.get("expression") and not values.get("returns"):
                checked = checking.check(values["expression"], {o.name: o for o in snapshot.objects}, name, "formula")
                inferred = edits.FORMULA_RETURNS.get(checked.get("type") or "")
            fld = edits.field_json(form, previous, options=edits.options_from(form), inferred_returns=inferred)
            changed = snapshot.with_object(edits.with_field(obj, fld, field_name))
            own_problems(changed, name, fld["name"])
            return changed

        def again(draft: drafts.Draft, errors: dict) -> Response:
            obj = object_or_404(draft, name)
            current = obj.field(field_name) if field_name else None
            return field_view(request, draft, obj, as_json(current) if current else None, values=values,
                              errors=errors, status=422)

        return await saved(request, user, name, seen, edit, f"/designer/objects/{name}?done=saved#fields", again)

    def own_problems(snapshot: Snapshot, object_name: str, field_name: str) -> None:
        """Refuse a field the checks find wrong in itself (stages out of
        order, a default that is no option, ...); what it breaks elsewhere
        waits for the plan."""
        obj = snapshot.object(object_name)
        index = next(i for i, f in enumerate(obj.fields) if f.name == field_name)
        mine = [p for p in rule_problems(snapshot) if p["file"] == f"objects/{object_name}.json"
                and (p["path"] == f"fields[{index}]" or p["path"].startswith(f"fields[{index}]."))]
        if mine:
            raise edits.FormProblems({None: "; ".join(f"{p['path'].removeprefix(f'fields[{index}].')}: {p['message']}"
                                                      for p in mine[:8])})

    def expression_problems(snapshot: Snapshot, obj: ObjectDef, fld: dict) -> None:
        """Refuse a field whose own expressions do not check (`fld`: the
        form's values): the admin sees the problem at the input, not later
        on the plan."""
        objects = {o.name: o for o in snapshot.objects}
        found = {}
        for key, kind in (("expression", "formula"), ("filter", "condition"), ("default_expr", "default"),
                          ("required_if", "condition"), ("visible_if", "condition"), ("read_only_if", "condition")):
            source = fld.get(key)
            if not source or (key in ("expression", "filter") and fld.get("type") not in ("formula", "rollup")):
                continue
            where = fld.get("from") if key == "filter" else obj.name
            result = checking.check(source, objects, where, kind)
            if problem := checking.first_problem(result):
                found[key] = problem
        for stage in fld.get("stages", []) if fld.get("type") == "stage" else []:
            for kind in ("exit", "entry"):
                for criterion in stage[kind]:
                    result = checking.check(criterion.get("check", ""), objects, obj.name, "rule")
                    if problem := checking.first_problem(result):
                        found[f"stages-{stage['n']}-{kind}-{criterion['n']}-check"] = problem
        if found:
            raise edits.FormProblems(found)

    async def remove_part(request: Request, user, name: str, remove, anchor: str) -> Response:
        """A field or rule taken off the object's draft (`remove(obj)`), back
        to the object's page at `anchor`."""
        seen = seen_of(await form_of(request))

        def edit(snapshot: Snapshot) -> Snapshot:
            return snapshot.with_object(remove(object_or_404(drafts.Draft(0, snapshot, True), name)))

        return await saved(request, user, name, seen, edit, f"/designer/objects/{name}?done=deleted#{anchor}",
                           lambda draft, errors: object_view(request, draft, object_or_404(draft, name), status=422,
                                                             errors=errors))

    @router.post("/objects/{name}/fields/{field_name}/delete")
    async def field_delete(request: Request, name: str, field_name: str, user=Depends(require_admin)):
        return await remove_part(request, user, name, lambda obj: edits.without_field(obj, field_name), "fields")

    # --- layouts ----------------------------------------------------------------------
    def layout_view(request: Request, draft: drafts.Draft, obj: ObjectDef, errors=None, status: int = 200) -> Response:
        records = recent_records(obj.name)
        return render(request, "designer/layout.html", status=status, draft=draft, obj=obj, seen=seen_json(obj),
                      state=layouts.editor_state(obj), errors=errors or {},
                      preview_record=records[0]["id"] if records else None)

    @router.get("/objects/{name}/layout")
    def layout_page(request: Request, name: str):
        draft = drafts.read(engine)
        return layout_view(request, draft, object_or_404(draft, name))

    @router.post("/objects/{name}/layout")
    async def layout_save(request: Request, name: str, user=Depends(require_admin)):
        form = await form_of(request)
        seen = seen_of(form)

        def edit(snapshot: Snapshot) -> Snapshot:
            obj = object_or_404(drafts.Draft(0, snapshot, True), name)
            return snapshot.with_object(layouts.with_layouts(obj, layouts.layouts_from(obj, form)))

        return await saved(request, user, name, seen, edit, f"/designer/objects/{name}/layout?done=saved",
                           lambda draft, errors: layout_view(request, draft, object_or_404(draft, name), errors, 422))

    @router.get("/objects/{name}/layout/preview")
    def layout_preview(request: Request, name: str, record: str, user=Depends(require_admin)):
        """A real record's page laid out as the draft says (the fields the
        table does not have yet show empty)."""
        draft = drafts.read(engine)
        obj = object_or_404(draft, name)
        schema = runtime.schema()
        if schema.object(name) is None:
            raise HTTPException(status_code=404, detail=N_("There is no such page."))
        live = schema.object(name)
        shown = obj.model_copy(update={"fields": [f for f in obj.fields if live.field(f.name) is not None]})
        try:
            context = record_page(runtime, schema, shown, record[:64], page_context(request)["locale"], user=user)
        except RecordError:
            raise HTTPException(status_code=404, detail=N_("There is no such page.")) from None
        return templates.TemplateResponse(request, "forms/record.html", page_context(request, record_title=record_title,
                                                                                     **context))

    # --- validation rules -----------------------------------------------------------
    def rule_view(request: Request, draft: drafts.Draft, obj: ObjectDef, rule: str | None, values: dict,
                  errors=None, status: int = 200) -> Response:
        return render(request, "designer/rule.html", status=status, draft=draft, obj=obj, rule=rule,
                      seen=seen_json(obj), v=values, errors=errors or {}, records=recent_records(obj.name))

    @router.get("/objects/{name}/rules/new")
    def rule_new(request: Request, name: str):
        draft = drafts.read(engine)
        return rule_view(request, draft, object_or_404(draft, name), None, {"active": "on"})

    @router.get("/objects/{name}/rules/{rule_name}")
    def rule_edit(request: Request, name: str, rule_name: str):
        draft = drafts.read(engine)
        obj = object_or_404(draft, name)
        rule = next((r for r in obj.validation_rules if r.name == rule_name), None)
        if rule is None:
            raise HTTPException(status_code=404, detail=N_("There is no such rule in the draft."))
        values = {"name": rule.name, "check": rule.check, "when": rule.when or "", "field": rule.field or "",
                  "active": "on" if rule.active else "", **texts_of("message", rule.message)}
        return rule_view(request, draft, obj, rule_name, values)

    @router.post("/objects/{name}/rules")
    async def rule_create(request: Request, name: str, user=Depends(require_admin)):
        return await rule_save(request, name, None, user)

    @router.post("/objects/{name}/rules/{rule_name}")
    async def rule_update(request: Request, name: str, rule_name: str, user=Depends(require_admin)):
        return await rule_save(request, name, rule_name, user)

    async def rule_save(request: Request, name: str, rule_name: str | None, user) -> Response:
        form = await form_of(request)
        seen = seen_of(form)
        values = {k: str(v) for k, v in form.items()}

        def edit(snapshot: Snapshot) -> Snapshot:
            obj = object_or_404(drafts.Draft(0, snapshot, True), name)
            objects = {o.name: o for o in snapshot.objects}
            found = {}
            for key, kind in (("check", "rule"), ("when", "condition")):
                result = checking.check(values.get(key, ""), objects, name, kind)
                if problem := checking.first_problem(result):
                    found[key] = problem
            if found:
                raise edits.FormProblems(found)
            return snapshot.with_object(edits.with_rule(obj, form, rule_name))

        return await saved(request, user, name, seen, edit, f"/designer/objects/{name}?done=saved#rules",
                           lambda draft, errors: rule_view(request, draft, object_or_404(draft, name), rule_name,
                                                           values, errors, status=422))

    @router.post("/objects/{name}/rules/{rule_name}/delete")
    async def rule_delete(request: Request, name: str, rule_name: str, user=Depends(require_admin)):
        return await remove_part(request, user, name, lambda obj: edits.without_rule(obj, rule_name), "rules")

    # --- live checking ---------------------------------------------------------------
    @router.post("/check")
    async def check_endpoint(request: Request):
        body = await _json_body(request)
        draft = drafts.read(engine)
        objects = {o.name: o for o in draft.snapshot.objects}
        name, source = str(body.get("object") or ""), str(body.get("source") or "")
        if name not in objects:
            return JSONResponse({"errors": [{"code": "unknown_object", "message": "no such object", "line": 1, "column": 1}]},
                                status_code=404)
        result = checking.check(source, objects, name, str(body.get("kind") or "rule"))
        base = page_context(request)
        result["errors"] = checking.localized_errors(result["errors"], base["_"], base["locale"])
        cursor = body.get("cursor")
        if isinstance(cursor, int):
            token, found = checking.complete(source, cursor, objects, name, page_context(request)["locale"])
            result |= {"token": token, "completions": [c.__dict__ for c in found]}
        return JSONResponse(result)

    @router.post("/try")
    async def try_endpoint(request: Request, user=Depends(require_admin)):
        body = await _json_body(request)
        outcome = await run_in_threadpool(checking.try_on_record, runtime, str(body.get("source") or "")[:checking.MAX_SOURCE],
                                          str(body.get("object") or ""), str(body.get("record") or "")[:64], user)
        return JSONResponse(outcome)

    async def _json_body(request: Request) -> dict:
        auth.check_csrf(auth.request_session(request), request.headers.get("x-csrf-token"))
        raw = await request.body()
        if len(raw) > 64_000:
            raise HTTPException(status_code=413, detail=N_("The form is too large."))
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            raise HTTPException(status_code=400, detail=N_("The form is damaged: reload the page.")) from None
        if not isinstance(body, dict):
            raise HTTPException(status_code=400, detail=N_("The form is damaged: reload the page."))
        return body


def field_inputs(fld: dict[str, Any]) -> dict[str, Any]:
    """A field's JSON as the values of the field form's inputs."""
    values: dict[str, Any] = {k: ("" if v is None else str(v)) for k, v in fld.items()
                              if not isinstance(v, (dict, list, bool))}
    for key in ("label", "help"):
        values |= texts_of(key, fld.get(key))
    for flag in edits.FLAGS:
        values[flag] = "on" if fld.get(flag) else ""
    values["options"] = [{"value": o["value"], **texts_of("label", o.get("label")), "color": o.get("color", ""),
                          "was": o["value"], "previous": ",".join(o.get("previous", [])),
                          "state": "retired" if o.get("retired") else "active"} for o in fld.get("options", [])]
    values["to_list"] = fld["to"] if isinstance(fld.get("to"), list) else []
    values["stages"] = [{
        "n": str(i), "value": st["value"], "category": st.get("category", "open"),
        "probability": "" if st.get("probability") is None else str(st["probability"]), "color": st.get("color", ""),
        **texts_of("label", st.get("label")), **texts_of("guidance", st.get("guidance")),
        "required_fields": st.get("required_fields", []),
        **{kind: [{"n": str(j), "check": c["check"], "field": c.get("field", ""), "name": c.get("name", ""),
                   **texts_of("message", c.get("message"))} for j, c in enumerate(st.get(f"{kind}_criteria", []))]
           for kind in ("exit", "entry")}} for i, st in enumerate(fld.get("stages", []))]
    values["allow_backward"] = "on" if fld.get("allow_backward", True) else ""
    return values


def form_inputs(form) -> dict[str, Any]:
    """The submitted field form, shaped as `field_inputs` shapes a field."""
    values: dict[str, Any] = {k: str(v) for k, v in form.items() if isinstance(v, str)}
    values["options"] = [{"value": v, "label_en": en, "label_zh": zh, "color": c, "was": w, "previous": p, "state": st}
                         for v, en, zh, c, w, p, st in zip(
        form.getlist("option_value"), form.getlist("option_label_en"), form.getlist("option_label_zh"),
        form.getlist("option_color"), form.getlist("option_was"), form.getlist("option_previous"),
        form.getlist("option_state"))]
    values["to_list"] = form.getlist("targets")
    values["stages"] = edits.stage_inputs(form)
    return values

