"""The browser designer under `/designer` (administrators only): objects,
their fields, stages, layouts and validation rules, workflows, the plan of
the draft in plain words with the rules a change breaks, publishing, the
history of published versions with rollback, and bundles as zips.

Every change goes to the metadata draft through `runtime.drafts` (the
same path as `PUT _meta/objects`), and is published through the migration
planner; the designer has no path of its own to the database. Each form
carries the object as the admin saw it, so that a change made meanwhile by
another admin is named, never overwritten.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any, Callable

import sqlalchemy as sa
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from loomcrm.metadata import diff as d
from loomcrm.metadata.checks import check_bundle
from loomcrm.metadata.model import Bundle, BundleManifest, ObjectDef, Workflow, as_json, localized
from loomcrm.metadata.validate import validate_bundle
from loomcrm.metadata.versions import DraftConflict, Snapshot
from loomcrm.platform import auth, systemdb
from loomcrm.runtime import drafts
from loomcrm.runtime.forms.refs import record_title
from loomcrm.runtime.forms.views import N_, record_page
from loomcrm.runtime.install import install_bundle, list_archive, restore_into_draft
from loomcrm.runtime.migrate.execute import PublishRefused, plan_for, publish
from loomcrm.runtime.migrate.plan import CLEAR
from loomcrm.runtime.migrate.preflight import old_table_of
from loomcrm.runtime.records import RecordError

from . import bundles, checking, edits, flows, layouts, words
from .starters import STARTER_TEXTS, STARTERS

TEMPLATE_DIR = Path(__file__).with_name("templates")
STATIC_DIR = Path(__file__).with_name("static")
MAX_FORM = 500_000
# Publishes running in this process: token -> the last step done, for the
# plan page's progress line (a long conversion on a big table takes a while).
PROGRESS: dict[str, dict[str, Any]] = {}
NOTICE_TEXTS = {"created": "Created in the draft.", "saved": "Saved in the draft.", "deleted": "Removed from the draft.",
                "published": "Published: the database and the forms follow the new version.",
                "discarded": "The draft was discarded.", "rolled_back": "The draft now holds the chosen version: review and publish it.",
                "restored": "Restored into the draft."}
FLOW_CHANGE_TEXTS = {"added": "Workflow %(name)s added", "removed": "Workflow %(name)s removed",
                     "changed": "Workflow %(name)s changed"}
PROBLEM_TEXTS = {"name_pattern": "Use lower-case letters, digits and _ only, starting with a letter (e.g. project).",
                 "name_taken": "Another object has this name.", "confirm": "Type the name exactly as shown to confirm."}


def _admin(request: Request) -> auth.User:
    user = auth.page_user(request)
    if not user.is_admin:
        raise HTTPException(status_code=403, detail=N_("Only administrators may open the designer."))
    return user


def _length(request: Request) -> int:
    """The body's announced length (a malformed header reads as too large)."""
    text = request.headers.get("content-length") or "0"
    return int(text) if text.isdigit() else 1 << 62


def _seen(form) -> ObjectDef | None:
    """The object as the form showed it (None: it did not exist)."""
    text = str(form.get("seen") or "null")
    try:
        data = json.loads(text)
        return ObjectDef.model_validate(data) if data else None
    except (ValueError, TypeError):
        raise HTTPException(status_code=400, detail=N_("The form is damaged: reload the page.")) from None


def _seen_json(obj: ObjectDef | None) -> str:
    return json.dumps(as_json(obj) if obj else None, ensure_ascii=False, separators=(",", ":"))


def rule_problems(snapshot: Snapshot) -> list[dict[str, str]]:
    """Every rule of the draft that no longer checks (a formula reading a
    renamed field, ...), with its place."""
    bundle = Bundle(manifest=BundleManifest(format="loom/1", name="draft", version="1.0.0"),
                    objects=snapshot.objects, workflows=snapshot.workflows, roles=snapshot.roles)
    return [{"file": p.file, "path": p.path, "message": p.message, "code": p.code} for p in check_bundle(bundle)]


def place_of(snapshot: Snapshot, problem: dict[str, str], locale: str) -> str:
    """`objects/deal.json` + `fields[3].expression` as "Deal › Amount › expression"."""
    parts = []
    file = problem["file"]
    kind, _, rest = file.partition("/")
    name = rest.removesuffix(".json")
    obj = snapshot.object(name) if kind == "objects" else None
    parts.append(localized(obj.label, locale, name) if obj else name)
    path = problem["path"]
    head, _, tail = path.partition(".")
    if obj is not None and head.startswith("fields[") and head.endswith("]") and head[7:-1].isdigit():
        index = int(head[7:-1])
        if index < len(obj.fields):
            f = obj.fields[index]
            parts.append(localized(f.label, locale, f.name))
            path = tail
    elif obj is not None and head.startswith("validation_rules[") and head[17:-1].isdigit():
        index = int(head[17:-1])
        if index < len(obj.validation_rules):
            parts.append(obj.validation_rules[index].name)
            path = tail
    if path:
        parts.append(path)
    return " › ".join(parts)


def build_designer(runtime, *, templates, page_context: Callable[..., dict]) -> APIRouter:
    router = APIRouter(prefix="/designer", include_in_schema=False, dependencies=[Depends(_admin)])
    engine = runtime.engine

    def render(request: Request, template: str, status: int = 200, **context) -> Response:
        base = page_context(request)
        locale = base["locale"]
        gettext = base["_"]
        draft = context.pop("draft", None) or drafts.read(engine)
        with engine.connect() as conn:
            published_version, published = runtime.store.published(conn)
        return templates.TemplateResponse(request, template, {
            **base, "draft": draft, "published": published, "published_version": published_version,
            "label": lambda thing: localized(getattr(thing, "label", None), locale, thing.name),
            "text": _exact_text,
            "type_text": lambda kind: words.type_text(gettext, kind), "notice_texts": NOTICE_TEXTS,
            "notice": request.query_params.get("done"),
            "starter_choices": [(k, gettext(v)) for k, v in STARTER_TEXTS.items()], **context}, status_code=status)

    async def form_of(request: Request):
        if _length(request) > MAX_FORM:
            raise HTTPException(status_code=413, detail=N_("The form is too large."))
        form = await request.form()
        auth.check_csrf(auth.request_session(request), form.get("csrf_token") or request.headers.get("x-csrf-token"))
        return form

    def object_or_404(draft: drafts.Draft, name: str) -> ObjectDef:
        obj = draft.snapshot.object(name)
        if obj is None:
            raise HTTPException(status_code=404, detail=N_("There is no such object in the draft."))
        return obj

    def change(user, name: str | None, seen: ObjectDef | None, edit: Callable[[Snapshot], Snapshot]) -> Snapshot:
        return drafts.change(runtime, user.id, edit, object_name=name, seen_object=seen)

    def conflict_text(request: Request, exc: DraftConflict) -> str:
        _ = page_context(request)["_"]
        if isinstance(exc, drafts.DraftChanged):
            text = _("%(who)s changed this since you opened it: %(changes)s. Your change was not saved: check theirs, then save again.")
            return words.fill(text, {"who": exc.who or _("Another administrator"), "changes": "; ".join(exc.changes[:5])})
        return str(exc)

    # --- objects ------------------------------------------------------------------
    @router.get("")
    def objects_page(request: Request):
        draft = drafts.read(engine)
        return render(request, "designer/objects.html", draft=draft, values={}, errors={},
                      archive=[e for e in list_archive(engine) if e["kind"] == "object"])

    @router.post("/objects")
    async def object_create(request: Request, user=Depends(_admin)):
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
        return render(request, "designer/object.html", status=status, draft=draft, obj=obj, seen=_seen_json(obj),
                      errors=errors or {}, values=values, field_types=edits.FIELD_TYPES,
                      problems=[{**p, "place": place_of(draft.snapshot, p, page_context(request)["locale"])}
                                for p in problems])

    @router.post("/objects/{name}/settings")
    async def object_settings(request: Request, name: str, user=Depends(_admin)):
        form = await form_of(request)
        seen = _seen(form)
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
    async def object_delete(request: Request, name: str, user=Depends(_admin)):
        form = await form_of(request)
        seen = _seen(form)
        if str(form.get("confirm") or "").strip() != name:
            draft = drafts.read(engine)
            return object_view(request, draft, object_or_404(draft, name), status=422,
                               errors={"confirm": PROBLEM_TEXTS["confirm"]})
        return await saved(request, user, name, seen, lambda s: s.without_object(name), "/designer?done=deleted",
                           lambda draft, errors: object_view(request, draft, object_or_404(draft, name), status=422,
                                                             errors=errors))

    @router.post("/archive/{entry_id}/restore")
    async def archive_restore(request: Request, entry_id: str, user=Depends(_admin)):
        await form_of(request)
        try:
            await run_in_threadpool(restore_into_draft, runtime, entry_id, user.id)
        except RecordError as exc:
            raise HTTPException(status_code=exc.status, detail=exc.detail) from None
        return RedirectResponse("/designer?done=restored", status_code=303)

    @router.post("/objects/{name}/order")
    async def field_order(request: Request, name: str, user=Depends(_admin)):
        form = await form_of(request)
        seen = _seen(form)
        order = [str(n) for n in form.getlist("field")]

        def edit(snapshot: Snapshot) -> Snapshot:
            return snapshot.with_object(edits.reordered(object_or_404(drafts.Draft(0, snapshot, True), name), order))

        return await saved(request, user, name, seen, edit, f"/designer/objects/{name}?done=saved",
                           lambda draft, errors: object_view(request, draft, object_or_404(draft, name), status=422,
                                                             errors=errors))

    async def saved(request: Request, user, name: str | None, seen: ObjectDef | None, edit, target: str,
                    again: Callable[[drafts.Draft, dict], Response]) -> Response:
        """Apply `edit` and go to `target`; on a problem, the page again
        (`again`) with the problems, or the other admin's change named."""
        gettext = page_context(request)["_"]
        try:
            await run_in_threadpool(change, user, name, seen, edit)
        except edits.FormProblems as exc:
            return again(drafts.read(engine), {k: gettext(v) for k, v in exc.problems.items()})
        except drafts.DraftChanged as exc:
            response = again(drafts.read(engine), {None: conflict_text(request, exc)})
            response.status_code = 409
            return response
        except (DraftConflict, RecordError) as exc:
            detail = getattr(exc, "detail", None) or str(exc)
            errors = getattr(exc, "errors", None) or []
            return again(drafts.read(engine), {None: "; ".join([detail, *(e["message"] for e in errors[:5])])})
        return RedirectResponse(target, status_code=303)

    # --- fields -------------------------------------------------------------------
    def field_view(request: Request, draft: drafts.Draft, obj: ObjectDef, field: dict | None, *, values: dict,
                   errors=None, status: int = 200) -> Response:
        return render(request, "designer/field.html", status=status, draft=draft, obj=obj, field=field,
                      seen=_seen_json(obj), v=values, errors=errors or {}, field_types=edits.FIELD_TYPES,
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
    async def field_create(request: Request, name: str, user=Depends(_admin)):
        return await field_save(request, name, None, user)

    @router.post("/objects/{name}/fields/{field_name}")
    async def field_update(request: Request, name: str, field_name: str, user=Depends(_admin)):
        return await field_save(request, name, field_name, user)

    async def field_save(request: Request, name: str, field_name: str | None, user) -> Response:
        form = await form_of(request)
        seen = _seen(form)
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
            if result["errors"]:
                e = result["errors"][0]
                found[key] = f"{e['message']} (line {e['line']}, column {e['column']})"
        for stage in fld.get("stages", []) if fld.get("type") == "stage" else []:
            for kind in ("exit", "entry"):
                for criterion in stage[kind]:
                    result = checking.check(criterion.get("check", ""), objects, obj.name, "rule")
                    if result["errors"]:
                        e = result["errors"][0]
                        key = f"stages-{stage['n']}-{kind}-{criterion['n']}-check"
                        found[key] = f"{e['message']} (line {e['line']}, column {e['column']})"
        if found:
            raise edits.FormProblems(found)

    @router.post("/objects/{name}/fields/{field_name}/delete")
    async def field_delete(request: Request, name: str, field_name: str, user=Depends(_admin)):
        form = await form_of(request)
        seen = _seen(form)

        def edit(snapshot: Snapshot) -> Snapshot:
            obj = object_or_404(drafts.Draft(0, snapshot, True), name)
            return snapshot.with_object(edits.without_field(obj, field_name))

        return await saved(request, user, name, seen, edit, f"/designer/objects/{name}?done=deleted#fields",
                           lambda draft, errors: object_view(request, draft, object_or_404(draft, name), status=422,
                                                             errors=errors))

    # --- layouts ----------------------------------------------------------------------
    def layout_view(request: Request, draft: drafts.Draft, obj: ObjectDef, errors=None, status: int = 200) -> Response:
        records = recent_records(obj.name)
        return render(request, "designer/layout.html", status=status, draft=draft, obj=obj, seen=_seen_json(obj),
                      state=layouts.editor_state(obj), errors=errors or {},
                      preview_record=records[0]["id"] if records else None)

    @router.get("/objects/{name}/layout")
    def layout_page(request: Request, name: str):
        draft = drafts.read(engine)
        return layout_view(request, draft, object_or_404(draft, name))

    @router.post("/objects/{name}/layout")
    async def layout_save(request: Request, name: str, user=Depends(_admin)):
        form = await form_of(request)
        seen = _seen(form)

        def edit(snapshot: Snapshot) -> Snapshot:
            obj = object_or_404(drafts.Draft(0, snapshot, True), name)
            return snapshot.with_object(layouts.with_layouts(obj, layouts.layouts_from(obj, form)))

        return await saved(request, user, name, seen, edit, f"/designer/objects/{name}/layout?done=saved",
                           lambda draft, errors: layout_view(request, draft, object_or_404(draft, name), errors, 422))

    @router.get("/objects/{name}/layout/preview")
    def layout_preview(request: Request, name: str, record: str, user=Depends(_admin)):
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
                      seen=_seen_json(obj), v=values, errors=errors or {}, records=recent_records(obj.name))

    def recent_records(name: str) -> list[dict[str, str]]:
        """The records "try it" offers: the newest of the published object."""
        schema = runtime.schema()
        obj = schema.object(name)
        if obj is None:
            return []
        table = schema.table(name)
        title = table.c[obj.title_field] if obj.title_field in table.c else table.c.id
        with engine.connect() as conn:
            rows = conn.execute(sa.select(table.c.id, title).where(table.c._deleted_at.is_(None)).order_by(table.c.updated_at.desc()).limit(20)).all()
        return [{"id": r[0], "title": str(r[1] if r[1] is not None else r[0])} for r in rows]

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
                  "active": "on" if rule.active else "", **_texts("message", rule.message)}
        return rule_view(request, draft, obj, rule_name, values)

    @router.post("/objects/{name}/rules")
    async def rule_create(request: Request, name: str, user=Depends(_admin)):
        return await rule_save(request, name, None, user)

    @router.post("/objects/{name}/rules/{rule_name}")
    async def rule_update(request: Request, name: str, rule_name: str, user=Depends(_admin)):
        return await rule_save(request, name, rule_name, user)

    async def rule_save(request: Request, name: str, rule_name: str | None, user) -> Response:
        form = await form_of(request)
        seen = _seen(form)
        values = {k: str(v) for k, v in form.items()}

        def edit(snapshot: Snapshot) -> Snapshot:
            obj = object_or_404(drafts.Draft(0, snapshot, True), name)
            objects = {o.name: o for o in snapshot.objects}
            found = {}
            for key, kind in (("check", "rule"), ("when", "condition")):
                result = checking.check(values.get(key, ""), objects, name, kind)
                if result["errors"]:
                    e = result["errors"][0]
                    found[key] = f"{e['message']} (line {e['line']}, column {e['column']})"
            if found:
                raise edits.FormProblems(found)
            return snapshot.with_object(edits.with_rule(obj, form, rule_name))

        return await saved(request, user, name, seen, edit, f"/designer/objects/{name}?done=saved#rules",
                           lambda draft, errors: rule_view(request, draft, object_or_404(draft, name), rule_name,
                                                           values, errors, status=422))

    @router.post("/objects/{name}/rules/{rule_name}/delete")
    async def rule_delete(request: Request, name: str, rule_name: str, user=Depends(_admin)):
        form = await form_of(request)
        seen = _seen(form)

        def edit(snapshot: Snapshot) -> Snapshot:
            obj = object_or_404(drafts.Draft(0, snapshot, True), name)
            return snapshot.with_object(edits.without_rule(obj, rule_name))

        return await saved(request, user, name, seen, edit, f"/designer/objects/{name}?done=deleted#rules",
                           lambda draft, errors: object_view(request, draft, object_or_404(draft, name), status=422,
                                                             errors=errors))

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
    async def try_endpoint(request: Request, user=Depends(_admin)):
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

    # --- workflows --------------------------------------------------------------------
    @router.get("/workflows")
    def workflows_page(request: Request):
        draft = drafts.read(engine)
        return render(request, "designer/workflows.html", draft=draft, trigger_texts=flows.TRIGGER_TEXTS)

    def workflow_view(request: Request, draft: drafts.Draft, object_name: str, flow_name: str | None, values: dict,
                      errors=None, status: int = 200) -> Response:
        base = page_context(request)
        locale, gettext = base["locale"], base["_"]
        obj = draft.snapshot.object(object_name)
        if obj is None:
            raise HTTPException(status_code=404, detail=N_("There is no such object in the draft."))
        current = draft.snapshot.workflow(flow_name) if flow_name else None
        return render(request, "designer/workflow.html", status=status, draft=draft, obj=obj, flow_name=flow_name,
                      seen=json.dumps(flows.as_flow_json(current), ensure_ascii=False), v=values, errors=errors or {},
                      action_texts=flows.ACTION_TEXTS, trigger_texts=flows.TRIGGER_TEXTS,
                      strategy_choices=[(k, gettext(t)) for k, t in flows.STRATEGY_TEXTS.items()],
                      object_choices=[(o.name, f"{localized(o.label, locale, o.name)} ({o.name})") for o in draft.snapshot.objects],
                      date_choices=[(f.name, localized(f.label, locale, f.name)) for f in obj.fields if f.type in ("date", "datetime")])

    @router.get("/workflows/new")
    def workflow_new(request: Request, object: str = ""):
        draft = drafts.read(engine)
        name = object if draft.snapshot.object(object) else draft.snapshot.objects[0].name
        values = {"active": "", "sources": list(flows.SOURCES), "trigger_on": "create",
                  "actions": [{"n": "0", "type": "notify", "to": "owner", "values": []}]}
        return workflow_view(request, draft, name, None, values)

    @router.get("/workflows/{flow_name}")
    def workflow_edit(request: Request, flow_name: str):
        draft = drafts.read(engine)
        flow = draft.snapshot.workflow(flow_name)
        if flow is None:
            raise HTTPException(status_code=404, detail=N_("There is no such workflow in the draft."))
        return workflow_view(request, draft, flow.object, flow_name, flows.workflow_inputs(as_json(flow)))

    @router.post("/workflows")
    async def workflow_create(request: Request, user=Depends(_admin)):
        return await workflow_save(request, None, user)

    @router.post("/workflows/{flow_name}")
    async def workflow_update(request: Request, flow_name: str, user=Depends(_admin)):
        return await workflow_save(request, flow_name, user)

    async def workflow_save(request: Request, flow_name: str | None, user) -> Response:
        form = await form_of(request)
        values = flows.form_values(form)
        object_name = str(form.get("object") or "")
        try:
            seen = json.loads(str(form.get("seen") or "null"))
        except ValueError:
            raise HTTPException(status_code=400, detail=N_("The form is damaged: reload the page.")) from None
        gettext = page_context(request)["_"]

        def edit(snapshot: Snapshot) -> Snapshot:
            if snapshot.object(object_name) is None:
                raise edits.FormProblems({None: N_("There is no such object in the draft.")})
            data = flows.workflow_from(form, object_name)
            if data["name"] != flow_name and snapshot.workflow(data["name"]) is not None:
                raise edits.FormProblems({"name": N_("Another workflow has this name.")})
            flow = Workflow.model_validate(data)
            changed = snapshot.without_workflow(flow_name) if flow_name and flow_name != flow.name else snapshot
            changed = changed.with_workflow(flow)
            problems = [p for p in rule_problems(changed) if p["file"] == f"workflows/{flow.name}.json"]
            if problems:
                raise edits.FormProblems({None: "; ".join(f"{p['path']}: {p['message']}" for p in problems[:8])})
            return changed

        try:
            await run_in_threadpool(lambda: drafts.change(runtime, user.id, edit, workflow_name=flow_name or "",
                                                          seen_workflow=seen))
        except edits.FormProblems as exc:
            errors = {k: gettext(v) for k, v in exc.problems.items()}
        except DraftConflict as exc:
            errors = {None: conflict_text(request, exc)}
        else:
            return RedirectResponse(f"/designer/workflows/{values.get('name', '')}?done=saved", status_code=303)
        return workflow_view(request, drafts.read(engine), object_name, flow_name, values, errors, 422)

    @router.post("/workflows/{flow_name}/delete")
    async def workflow_delete(request: Request, flow_name: str, user=Depends(_admin)):
        await form_of(request)
        await run_in_threadpool(lambda: drafts.change(runtime, user.id, lambda s: s.without_workflow(flow_name)))
        return RedirectResponse("/designer/workflows?done=deleted", status_code=303)

    # --- bundles ----------------------------------------------------------------------
    def bundles_view(request: Request, *, status: int = 200, problems=None, upload_error: str | None = None) -> Response:
        t = systemdb.bundles
        with engine.connect() as conn:
            installed = conn.execute(sa.select(t.c.name, t.c.version, t.c.installed_at).order_by(t.c.name)).all()
        return render(request, "designer/bundles.html", status=status, installed=installed, problems=problems or [],
                      upload_error=upload_error)

    @router.get("/bundles")
    def bundles_page(request: Request):
        return bundles_view(request)

    @router.get("/bundles/{name}.zip")
    def bundle_download(name: str):
        try:
            body = bundles.export_own(engine) if name == "_own" else bundles.export_zip(engine, name)
            name = bundles.OWN if name == "_own" else name
        except RecordError as exc:
            raise HTTPException(status_code=exc.status, detail=exc.detail) from None
        return Response(body, media_type="application/zip",
                        headers={"Content-Disposition": f'attachment; filename="{name}.zip"'})

    @router.post("/bundles")
    async def bundle_upload(request: Request, user=Depends(_admin)):
        if _length(request) > bundles.MAX_UNPACKED:
            raise HTTPException(status_code=413, detail=N_("The upload is too large."))
        form = await request.form()
        auth.check_csrf(auth.request_session(request), form.get("csrf_token"))
        uploads = [f for f in form.getlist("files") if hasattr(f, "read") and f.filename]
        try:
            if not uploads:
                raise bundles.UploadProblem(N_("Choose a zip file or a bundle folder."))
            if len(uploads) == 1 and uploads[0].filename.lower().endswith(".zip"):
                files = bundles.zip_members(await uploads[0].read())
            else:
                files = [(u.filename, await u.read()) for u in uploads]
            return await run_in_threadpool(install_upload, files, user)
        except bundles.UploadProblem as exc:
            return bundles_view(request, status=422, upload_error=str(exc))
        except ValidationProblems as exc:
            return bundles_view(request, status=422, problems=exc.rows)
        except PublishRefused as exc:
            return bundles_view(request, status=409, problems=[
                {"file": "—", "path": p["key"], "message": p["message"], "code": "needs_decision"} for p in exc.problems])
        except (RecordError, DraftConflict) as exc:
            return bundles_view(request, status=422, upload_error=getattr(exc, "detail", None) or str(exc))

    def install_upload(files: list[tuple[str, bytes]], user) -> Response:
        """Unpack, validate as `loom pack validate` does, then install: all
        of it, or nothing when any file is wrong."""
        with tempfile.TemporaryDirectory(prefix="loom-upload-") as tmp:
            folder = Path(tmp) / "bundle"
            folder.mkdir()
            bundles.unpack(files, folder)
            problems = validate_bundle(folder)
            if problems:
                raise ValidationProblems(bundles.problem_rows(problems))
            install_bundle(engine, folder, user_id=user.id, ctx=runtime.context)
        runtime.invalidate()
        return RedirectResponse("/designer/history?done=published", status_code=303)

    # --- plan, publish, history -----------------------------------------------------
    def plan_view(request: Request, *, status: int = 200, errors=None, refused: list | None = None,
                  values: dict | None = None) -> Response:
        base = page_context(request)
        locale, gettext = base["locale"], base["_"]
        draft = drafts.read(engine)
        plan = plan_for(engine, None, ctx=runtime.context)
        totals = _row_counts(plan)
        steps = []
        for i, step in enumerate(plan.steps):
            pf = step.preflight
            rows = pf.rows if pf else 0
            total = totals.get(step.op.obj.uid or step.op.obj.name)     # None: no table yet
            if step.op.kind == "update_object":
                total = None                                            # metadata only: no row is touched
            steps.append({
                "n": i, "key": step.key, "kind": step.op.kind, "text": words.step_text(step.op, gettext, locale),
                "object": step.op.obj.name, "destructive": words.destructive(step.op.kind, total),
                "rows": total, "blocked_rows": rows, "refused": bool(pf and rows and not pf.options),
                "problem": words.preflight_text(step.op, rows, total or 0, gettext) if rows else "",
                "sample": sample_titles(plan, step) if pf and rows else []})
        problems = [{**p, "place": place_of(draft.snapshot, p, locale)} for p in rule_problems(draft.snapshot)]
        return render(request, "designer/plan.html", status=status, draft=draft, steps=steps, problems=problems,
                      errors=errors or {}, refused=refused or [], changed=not plan.empty or draft.exists,
                      values=values or {})

    def sample_titles(plan, step) -> list[tuple[str, str]]:
        """(id, title) of the records a step's preflight names, so that the
        admin sees which ones (ids when the title cannot be read)."""
        ids = [i for i in step.preflight.sample if isinstance(i, str)]
        old = next((o for o in plan.old.objects if o.uid == step.op.obj.uid), None)
        table = old_table_of(plan, step.op.obj)
        if not ids or old is None or table is None or not old.title_field or old.field(old.title_field) is None:
            return [(i, i) for i in ids]
        t = sa.table(table, sa.column("id"), sa.column(old.title_field))
        with engine.connect() as conn:
            titles = dict(conn.execute(sa.select(t.c.id, t.c[old.title_field]).where(t.c.id.in_(ids))).all())
        return [(i, str(titles.get(i) or i)) for i in ids]

    def _row_counts(plan) -> dict[str, int]:
        counts = {}
        with engine.connect() as conn:
            for step in plan.steps:
                key = step.op.obj.uid or step.op.obj.name
                table = old_table_of(plan, step.op.obj)
                if key in counts or table is None:
                    continue
                counts[key] = conn.execute(sa.select(sa.func.count()).select_from(sa.table(table))).scalar() or 0
        return counts

    @router.get("/plan")
    def plan_page(request: Request):
        return plan_view(request)

    @router.post("/publish")
    async def publish_draft(request: Request, user=Depends(_admin)):
        form = await form_of(request)
        plan = await run_in_threadpool(plan_for, engine, None, ctx=runtime.context)
        draft = drafts.read(engine)
        if rule_problems(draft.snapshot):
            return plan_view(request, status=409)
        confirm, errors = {}, {}
        totals = _row_counts(plan)
        for i, step in enumerate(plan.steps):
            pf = step.preflight
            rows = pf.rows if pf else 0
            if words.destructive(step.op.kind, totals.get(step.op.obj.uid or step.op.obj.name)):
                if str(form.get(f"confirm_{i}") or "").strip() != step.op.obj.name:
                    errors[f"confirm_{i}"] = PROBLEM_TEXTS["confirm"]
                elif pf and rows and CLEAR in pf.options:
                    confirm[step.key] = CLEAR
        if errors:
            return plan_view(request, status=422, errors=errors, values=dict(form))
        comment = str(form.get("comment") or "")[:2000]
        token = str(form.get("progress") or "")[:40]
        gettext, locale = page_context(request)["_"], page_context(request)["locale"]

        def step_done(index: int, step) -> None:
            if token:
                PROGRESS[token] = {"done": index + 1, "total": len(plan.steps),
                                   "text": words.step_text(step.op, gettext, locale)}

        try:
            await run_in_threadpool(lambda: publish(engine, None, comment=comment, user_id=user.id, confirm=confirm,
                                                    ctx=runtime.context, on_step=step_done))
        except PublishRefused as exc:
            return plan_view(request, status=409, refused=[p["message"] for p in exc.problems], values=dict(form))
        except DraftConflict as exc:
            return plan_view(request, status=409, refused=[str(exc)], values=dict(form))
        finally:
            PROGRESS.pop(token, None)
        runtime.invalidate()
        return RedirectResponse("/designer/history?done=published", status_code=303)

    @router.get("/publish/progress")
    def publish_progress(token: str = ""):
        """How far a publish of this process has got (the page polls it)."""
        return JSONResponse(PROGRESS.get(token[:40]) or {"done": 0, "total": 0, "text": ""})

    @router.post("/discard")
    async def discard(request: Request):
        await form_of(request)

        def run():
            with engine.begin() as conn:
                runtime.store.discard_draft(conn)

        await run_in_threadpool(run)
        return RedirectResponse("/designer?done=discarded", status_code=303)

    @router.get("/history")
    def history(request: Request):
        base = page_context(request)
        locale, gettext = base["locale"], base["_"]
        with engine.connect() as conn:
            versions = runtime.store.history(conn)[:50]
            names = dict(conn.execute(sa.select(systemdb.users.c.id, systemdb.users.c.username)).all())
            snapshots = {v.version: runtime.store.snapshot(conn, v.version) for v in versions}
            if versions and versions[-1].version - 1 >= 0:
                older = versions[-1].version - 1
                snapshots[older] = runtime.store.snapshot(conn, older)
        rows = []
        for v in versions:
            before = snapshots.get(v.version - 1, Snapshot())
            ops = d.diff(before.objects, snapshots[v.version].objects, d.Archive())
            had = {w.name: as_json(w) for w in before.workflows}
            has = {w.name: as_json(w) for w in snapshots[v.version].workflows}
            flow_changes = ([(n, "added") for n in sorted(has.keys() - had.keys())]
                            + [(n, "removed") for n in sorted(had.keys() - has.keys())]
                            + [(n, "changed") for n in sorted(had.keys() & has.keys()) if had[n] != has[n]])
            rows.append({"version": v.version, "who": names.get(v.created_by, v.created_by or "—"),
                         "when": v.created_at, "comment": v.comment,
                         "changes": [words.step_text(op, gettext, locale) for op in ops][:40],
                         "workflows": flow_changes})
        return render(request, "designer/history.html", versions=rows, flow_change_texts=FLOW_CHANGE_TEXTS)

    @router.post("/history/{version}/rollback")
    async def rollback(request: Request, version: int, user=Depends(_admin)):
        form = await form_of(request)
        seen_tag = str(form.get("draft_tag") or "") or None

        def run():
            with engine.connect() as conn:
                target = runtime.store.snapshot(conn, version)
            return drafts.change(runtime, user.id, lambda _snapshot: target, seen_tag=seen_tag)

        try:
            await run_in_threadpool(run)
        except KeyError:
            raise HTTPException(status_code=404, detail=N_("There is no such version.")) from None
        except DraftConflict as exc:
            raise HTTPException(status_code=409, detail=conflict_text(request, exc)) from None
        return RedirectResponse("/designer/plan?done=rolled_back", status_code=303)

    return router


def _exact_text(value, locale: str) -> str:
    """A localized text in exactly `locale` (a plain string is English):
    the designer edits each language, it does not fall back."""
    if isinstance(value, dict):
        return value.get(locale, "")
    return value or "" if locale == "en" else ""


class ValidationProblems(Exception):
    def __init__(self, rows: list[dict[str, str]]):
        self.rows = rows
        super().__init__(f"{len(rows)} problems")


def _texts(name: str, value) -> dict[str, str]:
    if value is None:
        return {}
    if isinstance(value, str):
        return {f"{name}_en": value}
    return {f"{name}_{suffix}": value.get(locale, "") for suffix, locale in edits.LOCALES}


def field_inputs(fld: dict[str, Any]) -> dict[str, Any]:
    """A field's JSON as the values of the field form's inputs."""
    values: dict[str, Any] = {k: ("" if v is None else str(v)) for k, v in fld.items()
                              if not isinstance(v, (dict, list, bool))}
    for key in ("label", "help"):
        values |= _texts(key, fld.get(key))
    for flag in edits.FLAGS:
        values[flag] = "on" if fld.get(flag) else ""
    values["options"] = [{"value": o["value"], **_texts("label", o.get("label")), "color": o.get("color", ""),
                          "was": o["value"], "previous": ",".join(o.get("previous", [])),
                          "state": "retired" if o.get("retired") else "active"} for o in fld.get("options", [])]
    values["to_list"] = fld["to"] if isinstance(fld.get("to"), list) else []
    values["stages"] = [{
        "n": str(i), "value": st["value"], "category": st.get("category", "open"),
        "probability": "" if st.get("probability") is None else str(st["probability"]), "color": st.get("color", ""),
        **_texts("label", st.get("label")), **_texts("guidance", st.get("guidance")),
        "required_fields": st.get("required_fields", []),
        **{kind: [{"n": str(j), "check": c["check"], "field": c.get("field", ""), "name": c.get("name", ""),
                   **_texts("message", c.get("message"))} for j, c in enumerate(st.get(f"{kind}_criteria", []))]
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
