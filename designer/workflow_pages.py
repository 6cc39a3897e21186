"""The workflows' screens: the list with each one's run log, and the editor."""

from __future__ import annotations

import json

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from loomcrm.metadata.model import Workflow, as_json, localized
from loomcrm.metadata.versions import DraftConflict, Snapshot
from loomcrm.runtime import drafts
from loomcrm.runtime.forms.views import N_

from . import edits, flows
from .pages import require_admin, rule_problems


def add_routes(router: APIRouter, pages) -> None:
    runtime, engine, page_context = pages.runtime, pages.engine, pages.page_context
    render, form_of = pages.render, pages.form_of
    conflict_text = pages.conflict_text

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
    async def workflow_create(request: Request, user=Depends(require_admin)):
        return await workflow_save(request, None, user)

    @router.post("/workflows/{flow_name}")
    async def workflow_update(request: Request, flow_name: str, user=Depends(require_admin)):
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
    async def workflow_delete(request: Request, flow_name: str, user=Depends(require_admin)):
        await form_of(request)
        await run_in_threadpool(lambda: drafts.change(runtime, user.id, lambda s: s.without_workflow(flow_name)))
        return RedirectResponse("/designer/workflows?done=deleted", status_code=303)

