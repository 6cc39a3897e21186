"""The draft's review and publishing, and the history of published versions
with rollback."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from loomcrm.metadata import diff as d
from loomcrm.metadata.model import as_json
from loomcrm.metadata.versions import DraftConflict, Snapshot
from loomcrm.platform import systemdb
from loomcrm.runtime import drafts
from loomcrm.runtime.forms.views import N_
from loomcrm.runtime.migrate.execute import PublishRefused, plan_for, publish
from loomcrm.runtime.migrate.plan import CLEAR
from loomcrm.runtime.migrate.preflight import old_table_of

from . import words
from .pages import PROBLEM_TEXTS, place_of, require_admin, rule_problems

# Publishes running in this process: token -> the last step done, for the
# plan page's progress line (a long conversion on a big table takes a while).
PROGRESS: dict[str, dict[str, Any]] = {}
FLOW_CHANGE_TEXTS = {"added": "Workflow %(name)s added", "removed": "Workflow %(name)s removed",
                     "changed": "Workflow %(name)s changed"}


def add_routes(router: APIRouter, pages) -> None:
    runtime, engine, page_context = pages.runtime, pages.engine, pages.page_context
    render, form_of = pages.render, pages.form_of
    conflict_text = pages.conflict_text

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
    async def publish_draft(request: Request, user=Depends(require_admin)):
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
    async def rollback(request: Request, version: int, user=Depends(require_admin)):
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

