"""The end-user pages generated from metadata: lists, record pages, forms,
pipeline boards, global search and the recycle bin, under `/app`.

Mount with

    router = build_forms_router(runtime, templates=templates, page_context=page_context)
    app.include_router(router)

Every write goes through the record service with the signed-in user; its
errors are what the pages show. Pages are server-rendered (Jinja2) and
enhanced with htmx; cookie-authenticated writes carry the session's CSRF
token (htmx sends it from `hx-headers` on <body>, plain forms as a field).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
from typing import Any, Callable

import sqlalchemy as sa
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from markupsafe import Markup
from starlette.concurrency import run_in_threadpool

from loomcrm.metadata.model import ObjectDef, localized
from loomcrm.platform import auth, i18n

from .. import approvals, conversion, merging
from ..query import BadQuery, ListParams, compile_filter, list_records
from ..records import NotFound, Origin, PreconditionFailed, RecordError, record_json
from ..search import ranked, searches
from ..slas import clocks_json
from . import dryrun, merge, savedviews
from .board import build_board, totals
from .conditions import FieldState, field_states, working_record
from .display import Display
from .listing import COUNT_CAP, count_capped, example_filter, export_csv, list_params, searchable, sortable
from .refs import Refs, record_title, title_column
from .related import list_columns, related_lists, timeline
from .widgets import editable, form_fields, input_value, parse_form, sections, widget

SEARCH_ROWS = 5
FORM = Origin("form")
ERROR_TEXTS = {  # field error codes whose server message names the field in English: say it in the user's words
    "required": "This field is required.",
    "type": "Enter a valid value.",
    "too_long": "This is too long.",
    "pattern": "This does not have the expected format.",
    "invalid_option": "Choose one of the options.",
    "not_found": "The linked record does not exist.",
    "unique": "Another record already has this value.",
    "read_only": "This field cannot be changed.",
}


# Expression problems in a filter, by code, in the user's words; English
# pages show the checker's own, more precise message.
EXPRESSION_TEXTS = {
    "syntax": "The filter is not written correctly here.",
    "forbidden_syntax": "This is not allowed in a filter.",
    "unknown_name": "There is no such field: %(name)s",
    "unknown_function": "There is no such function: %(name)s",
    "arity": "This function is given the wrong number of values.",
    "type_mismatch": "These values cannot be compared or combined.",
    "not_a_field": "This function needs a field name here.",
    "too_long": "The filter is too long.",
    "too_deep": "The filter is nested too deeply.",
    "not_sql": "This part cannot be used in a list filter.",
    "invalid_regex": "This pattern is not a valid regular expression.",
}


def filter_problem(exc: RecordError, locale: str) -> str:
    """A refused list filter or query, in the user's words, with the line
    and column of an expression problem."""
    found = [e for e in exc.errors if e.get("line")]
    if not found:
        message = exc.errors[0].get("message") if exc.errors else exc.detail
        return message if locale == "en" else i18n.gettext(locale, "The list cannot be shown with these settings.")
    e = found[0]
    message = e.get("message", "")
    if locale != "en" and e.get("code") in EXPRESSION_TEXTS:
        quoted = re.search(r"'([^']{1,63})'", message)
        message = i18n.gettext(locale, EXPRESSION_TEXTS[e["code"]]).replace("%(name)s", quoted.group(1) if quoted else "")
    where = i18n.gettext(locale, "Line %(line)s, column %(column)s:")
    return where.replace("%(line)s", str(e["line"])).replace("%(column)s", str(e["column"])) + " " + message


def redirect_after(request: Request, target: str):
    """To `target` after a save: htmx follows HX-Redirect, a plain form a 303."""
    if request.headers.get("hx-request"):
        return HTMLResponse("", headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=303)


def N_(message: str) -> str:
    """Marks a page error's text for translation: the error page shows it in the user's language."""
    return message


def _locale_user(user, locale: str):
    """The user as the rules see them: messages in the page's language."""
    return dataclasses.replace(user, locale=locale) if dataclasses.is_dataclass(user) else user


class Pages:
    """What every page handler shares: the runtime, templates and the
    platform's page context."""

    def __init__(self, runtime, templates, page_context: Callable[..., dict]):
        self.runtime = runtime
        self.templates = templates
        self.page_context = page_context

    @property
    def tz(self):
        return self.runtime.context.timezone

    def obj(self, name: str, user) -> tuple[Any, ObjectDef, Any]:
        """(schema, the object as the user knows it, the user's access); 404
        for an object it has no right to see any record of."""
        schema = self.runtime.schema()
        obj = schema.object(name)
        access = self.runtime.access.of(user)
        if obj is None or not access.may_see_object(obj.name):
            raise HTTPException(status_code=404, detail=N_("There is no such page."))
        return schema, access.view(obj), access

    def render(self, request: Request, template: str, status: int = 200, headers=None, **context) -> HTMLResponse:
        return self.templates.TemplateResponse(request, template, self.page_context(request, **context),
                                               status_code=status, headers=headers)

    def display(self, schema, locale: str, refs: Refs | None = None) -> Display:
        return Display(schema.objects, locale, self.tz, refs)

    def gettext(self, request: Request) -> Callable[[str], str]:
        locale = self.page_context(request)["locale"]
        return lambda message: i18n.gettext(locale, message)


# Problems with a value itself: a rule or criterion on the same field was
# judged on a value that is missing or was refused, and would only repeat it.
VALUE_CODES = frozenset({"required", "type", "too_long", "pattern", "invalid_option", "min", "max", "not_found"})


def localize_errors(errors: list[dict], obj: ObjectDef, locale: str, *, links: bool = False) -> dict[str | None, list[str]]:
    """Errors by field name (None: the record as a whole), in the user's
    words, each message once. With `links`, a duplicate names the records
    it matches with links to them (HTML-safe Markup)."""
    out: dict[str | None, list[str]] = {}
    refused = {e.get("field") for e in errors if e.get("code") in VALUE_CODES and e.get("field")}
    for e in errors:
        name = e.get("field")
        if name is not None and obj.field(name) is None and name != "owner":
            name = None
        code = e.get("code")
        if code in ("rule", "stage_criteria") and name in refused:
            continue
        if code in ERROR_TEXTS and not e.get("rule") and not e.get("stage"):
            message = i18n.gettext(locale, ERROR_TEXTS[code])
        elif code == "required" and e.get("stage"):
            message = i18n.gettext(locale, "Required to leave the stage %(stage)s.").replace(
                "%(stage)s", _stage_label(obj, e["stage"], locale))
        elif code in ("min", "max") and not e.get("rule"):
            f = obj.field(name) if name else None
            bound = getattr(f, code, None)
            message = i18n.gettext(locale, "At least %(n)s." if code == "min" else "At most %(n)s.").replace("%(n)s", str(bound))
        else:
            message = e.get("message") or code or ""
        if links and e.get("matches"):
            message = _with_links(message, obj, e["matches"], locale)
        out.setdefault(name, [])
        if message not in out[name]:
            out[name].append(message)
    return out


def _stage_label(obj: ObjectDef, value: str, locale: str) -> str:
    stage = next((s for f in obj.fields if f.type == "stage" for s in f.stages if s.value == value), None)
    return localized(stage.label, locale, value) if stage is not None else value


def _with_links(message: str, obj: ObjectDef, ids: list[str], locale: str) -> Markup:
    """A duplicate's message followed by links to the records it matches."""
    if len(ids) == 1:
        anchors = [(ids[0], i18n.gettext(locale, "Open the existing record"))]
    else:
        anchors = [(rid, i18n.gettext(locale, "Match %(n)s").replace("%(n)s", str(n))) for n, rid in enumerate(ids[:5], 1)]
    return Markup("{} {}").format(message, Markup(" ").join(
        Markup('<a href="/app/{}/{}" target="_blank" rel="noopener">{}</a>').format(obj.name, rid, text) for rid, text in anchors))


# --- the record page (also used by the benchmark) ------------------------------------

CLOCK_TEXTS = {"running": "On track", "warning": "Due soon", "paused": "Paused", "breached": "Overdue",
               "stopped": "Done"}


def record_page(runtime, schema, obj: ObjectDef, rid: str, locale: str, *, user=None,
                timeline_extras: Callable | None = None) -> dict[str, Any]:
    """Everything the record page shows, read in one connection.
    `timeline_extras(conn, schema, obj, record, user)` adds timeline items
    of other parts of Loom (automation's runs)."""
    access = runtime.access.of(user)
    obj = access.view(obj)
    with runtime.engine.connect() as conn:
        record = runtime.records.get(obj.name, rid, user, conn=conn, schema=schema)
        related = related_lists(conn, schema, obj, rid, access=access)
        events = timeline(conn, schema, obj, record, access=access)
        if timeline_extras is not None:
            events = sorted(events + timeline_extras(conn, schema, obj, record, user), key=lambda e: e.at, reverse=True)
        clocks = clocks_json(conn, schema, obj, rid) if obj.slas else []
        suggested = suggestions(conn, schema, obj, record, access)
        refs = Refs(schema, conn, access).collect(obj, [record])
        for item in related:
            refs.collect(item.obj, item.rows)
        for e in events:
            if e.record is not None:
                refs.collect(e.obj, [e.record])
        refs.load({}, {e.user for e in events if e.user} | {u for e in events if e.kind == "owner" for u in (e.old, e.new) if u}
                  | {e.data["to"] for e in events if e.kind == "approval" and e.data.get("to")})
    ui = Display(schema.objects, locale, runtime.context.timezone, refs)
    stage_field = next((f for f in obj.fields if f.type == "stage"), None)
    path = None
    if stage_field is not None:
        current = record.get(stage_field.name)
        index = next((i for i, s in enumerate(stage_field.stages) if s.value == current), -1)
        path = {"field": stage_field, "stages": stage_field.stages, "index": index,
                "current": stage_field.stages[index] if index >= 0 else None}
    return {"obj": obj, "record": record, "title": record_title(obj, record), "sections": sections(obj),
            "related": related, "timeline": events, "ui": ui, "stage_path": path, "clocks": clocks,
            "clock_texts": CLOCK_TEXTS, "suggested": suggested}


def suggestions(conn, schema, obj: ObjectDef, record: dict[str, Any], access) -> dict[str, Any] | None:
    """What the object's `suggest` offers for this record (articles for a ticket's subject)."""
    suggest = obj.suggest
    target = schema.object(suggest.object) if suggest is not None else None
    text = record.get(suggest.from_) if suggest is not None else None
    if target is None or not access.may_see_object(target.name) or not isinstance(text, str) or not text.strip() \
            or not searches(target, access.view(target)):     # never past fields the user may not see
        return None
    rows = ranked(conn, schema, target, text, access, limit=suggest.limit * 4 if suggest.filter else suggest.limit,
                  every=False)
    if suggest.filter and rows:
        table = schema.table(target.name)
        clause, joined = compile_filter(schema, target, suggest.filter, access)
        allowed = set(conn.execute(sa.select(table.c.id).select_from(joined)
                                   .where(clause, table.c.id.in_([r["id"] for r in rows]))).scalars())
        rows = [r for r in rows if r["id"] in allowed]
    return {"obj": access.view(target), "label": suggest.label, "rows": rows[:suggest.limit]}


def build_forms_router(runtime, *, templates, page_context: Callable[..., dict],
                       timeline_extras: Callable | None = None) -> APIRouter:
    router = APIRouter(prefix="/app", include_in_schema=False)
    pages = Pages(runtime, templates, page_context)

    def locale_of(request: Request) -> str:
        return page_context(request)["locale"]

    # --- global search ------------------------------------------------------------
    @router.get("/search", response_class=HTMLResponse)
    def search(request: Request, q: str = "", user=Depends(auth.page_user)):
        schema = runtime.schema()
        locale = locale_of(request)
        groups = []
        text = q.strip()[:200]
        if text:
            access = runtime.access.of(user)
            with runtime.engine.connect() as conn:
                refs = Refs(schema, conn, access)
                for obj in schema.objects.values():
                    obj = access.view(obj)
                    if not access.may_see_object(obj.name) or not searchable(obj):
                        continue
                    rows, more = list_records(conn, schema, obj, ListParams(limit=SEARCH_ROWS, q=text), access)
                    if rows:
                        refs.collect(obj, rows)
                        groups.append({"obj": obj, "rows": rows, "more": bool(more), "columns": list_columns(obj, limit=4)})
        return pages.render(request, "forms/search.html", q=text, search_q=text, groups=groups,
                            ui=pages.display(schema, locale, refs if text else None), record_title=record_title)

    # --- recycle bin ----------------------------------------------------------------
    @router.get("/bin", response_class=HTMLResponse)
    def recycle_bin(request: Request, user=Depends(auth.page_user)):
        schema = runtime.schema()
        access = runtime.access.of(user)
        items = []
        with runtime.engine.connect() as conn:
            refs = Refs(schema, conn, access)
            for obj in schema.objects.values():
                if not access.may_see_object(obj.name):
                    continue
                obj = access.view(obj)
                table = schema.table(obj.name)
                query = (sa.select(table).where(table.c._deleted_at.is_not(None))
                         .order_by(table.c._deleted_at.desc()).limit(100))
                clause = access.clause(table, obj.name, "read")
                rows = conn.execute(query if clause is None else query.where(clause)).fetchall()
                for row in rows:
                    data = dict(row._mapping)
                    items.append({"obj": obj, "record": record_json(obj, data), "deleted_at": data["_deleted_at"],
                                  "deleted_by": data["_deleted_by"]})
            refs.load({}, {i["deleted_by"] for i in items if i["deleted_by"]})
        items.sort(key=lambda i: i["deleted_at"], reverse=True)
        return pages.render(request, "forms/bin.html", items=items[:200], record_title=record_title,
                            ui=pages.display(schema, locale_of(request), refs))

    @router.get("/_lookup", response_class=HTMLResponse)
    def lookup(request: Request, q: str = "", user=Depends(auth.page_user)):
        """Typeahead options of a lookup widget: records of `object` (or of
        the object chosen in a related-to widget) matching `q`, else the
        first ones in list order."""
        name = request.query_params.get("object") or next(
            (v for k, v in request.query_params.items() if k.startswith("_object_")), "")
        schema, obj, access = pages.obj(name, user)
        params = ListParams(limit=8, q=q.strip()[:200] or None)
        if obj.layouts.list_ and obj.layouts.list_.sort:
            params.sort = [(p.lstrip("-"), p.startswith("-")) for p in obj.layouts.list_.sort.split(",")]
        with runtime.engine.connect() as conn:
            rows, _cursor = list_records(conn, schema, obj, params, access)
            refs = Refs(schema, conn, access).collect(obj, rows)
        second = list_columns(obj, without=title_column(obj), limit=2)
        return pages.render(request, "forms/_lookup_results.html", obj=obj, rows=rows, second=second,
                            record_title=record_title, ui=pages.display(schema, locale_of(request), refs))

    # --- lists ------------------------------------------------------------------------
    @router.get("/{object_name}", response_class=HTMLResponse)
    def list_page(object_name: str, request: Request, user=Depends(auth.page_user)):
        schema, obj, access = pages.obj(object_name, user)
        locale = locale_of(request)
        items = list(request.query_params.multi_items())
        view_id = request.query_params.get("view")
        view = savedviews.get_view(runtime.engine, user.id, obj.name, view_id) if view_id else None
        if view is not None:
            for key, value in (("filter", view.filter), ("sort", view.sort), ("q", view.q)):
                if value and not request.query_params.get(key):
                    items.append((key, value))
        layout = obj.layouts.list_
        columns = list_columns(obj, limit=8) if layout else [f for f in obj.fields][:6]
        current = {k: v for k, v in items if k in ("filter", "sort", "q")}
        error, rows, cursor, count, exact = None, [], None, 0, True
        try:
            params = list_params(items, obj, runtime.context, default_sort=layout.sort if layout else None)
            with runtime.engine.connect() as conn:
                rows, cursor = list_records(conn, schema, obj, params, access)
                if not params.cursor:
                    count, exact = count_capped(conn, schema, obj, params, access=access)
                refs = Refs(schema, conn, access).collect(obj, rows)
        except BadQuery as exc:
            error = exc
            refs = None
        sort = params.sort if error is None else []
        extra = [(k, v) for k, v in items if k not in ("filter", "sort", "q", "cursor", "view", "limit")]
        context = dict(obj=obj, columns=columns, rows=rows, cursor=cursor, count=count, exact=exact, cap=COUNT_CAP,
                       error=filter_problem(error, locale) if error else None, current=current, sort=sort,
                       extra=extra, view=view, filter_example=example_filter(obj),
                       views=savedviews.list_views(runtime.engine, user.id, obj.name),
                       ui=pages.display(schema, locale, refs), record_title=record_title, sortable=sortable,
                       filter_fields=filter_fields(obj, pages.display(schema, locale)),
                       has_board=obj.layouts.kanban is not None,
                       may_merge=access.scope(obj.name, "delete") != "none")
        if request.headers.get("hx-request") and request.query_params.get("cursor"):
            return pages.render(request, "forms/_rows.html", **context)
        return pages.render(request, "forms/list.html", status=400 if error else 200, **context)

    @router.get("/{object_name}/export.csv")
    def export(object_name: str, request: Request, user=Depends(auth.page_user)):
        schema, obj, access = pages.obj(object_name, user)
        items = list(request.query_params.multi_items())
        ids = [v for k, v in items if k == "ids"]
        try:
            params = list_params(items, obj, runtime.context)
        except BadQuery as exc:
            raise HTTPException(status_code=400, detail=filter_problem(exc, locale_of(request))) from None
        if not access.may_export(obj.name):
            raise HTTPException(status_code=403, detail=N_("You may not export these records."))
        with runtime.engine.connect() as conn:
            body = export_csv(conn, schema, obj, params, ids or None, access=access)
        return Response(body.encode("utf-8"), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{obj.name}.csv"'})

    @router.post("/{object_name}/bulk-delete", dependencies=[Depends(auth.page_csrf)])
    async def bulk_delete(object_name: str, request: Request, user=Depends(auth.page_user)):
        schema, obj, access = pages.obj(object_name, user)
        form = await request.form()
        ids = form.getlist("ids")[:500]
        _ = pages.gettext(request)
        failed, deleted = [], []
        locale = locale_of(request)

        def run():
            for rid in ids:
                try:
                    runtime.records.delete(obj.name, rid, user, origin=FORM)
                    deleted.append(rid)
                except RecordError as exc:
                    failed.append((rid, exc))
            with runtime.engine.connect() as conn:
                refs = Refs(schema, conn)
                refs.load({obj.name: {rid for rid, _exc in failed}})
            return [{"text": f"{refs.title(obj.name, rid)}: {problem['text']}", "links": problem.get("links")}
                    for rid, exc in failed for problem in _delete_problems(runtime, schema, exc, locale, access)]

        details = await run_in_threadpool(run)
        message = _("%(n)s records moved to the recycle bin.").replace("%(n)s", str(len(deleted)))
        if failed:
            message += " " + _("%(n)s records could not be deleted:").replace("%(n)s", str(len(failed)))
        # the deleted rows leave the list in place (out-of-band); the notice says where they went
        return pages.render(request, "forms/_notice.html", kind="error" if failed else "success", message=message,
                            details=details, link=("/app/bin", _("Open the recycle bin")) if deleted else None,
                            removed_rows=deleted)

    @router.post("/{object_name}/views", dependencies=[Depends(auth.page_csrf)])
    async def save_view(object_name: str, request: Request, user=Depends(auth.page_user)):
        schema, obj, access = pages.obj(object_name, user)
        form = await request.form()
        try:
            view = savedviews.save_view(runtime.engine, user.id, obj.name, str(form.get("name", "")),
                                        filter=str(form.get("filter", "")), sort=str(form.get("sort", "")),
                                        q=str(form.get("q", "")))
        except ValueError as exc:
            raise HTTPException(status_code=400, detail=str(exc)) from None
        return RedirectResponse(f"/app/{obj.name}?view={view.id}", status_code=303)

    @router.post("/{object_name}/views/{view_id}/delete", dependencies=[Depends(auth.page_csrf)])
    def delete_view(object_name: str, view_id: str, user=Depends(auth.page_user)):
        savedviews.delete_view(runtime.engine, user.id, view_id)
        return RedirectResponse(f"/app/{object_name}", status_code=303)

    # --- the pipeline board -------------------------------------------------------------
    @router.get("/{object_name}/board", response_class=HTMLResponse)
    def board(object_name: str, request: Request, user=Depends(auth.page_user)):
        schema, obj, access = pages.obj(object_name, user)
        if obj.layouts.kanban is None:
            raise HTTPException(status_code=404, detail=N_("This object has no board."))
        locale = locale_of(request)
        items = list(request.query_params.multi_items())
        layout = obj.layouts.list_
        error = None
        columns = []
        try:
            params = list_params(items, obj, runtime.context, default_sort=layout.sort if layout else None)
            with runtime.engine.connect() as conn:
                columns = build_board(conn, schema, obj, params, access=access)
                refs = Refs(schema, conn, access).collect(obj, [c for col in columns for c in col.cards])
        except BadQuery as exc:
            error, refs = exc, None
        kanban = obj.layouts.kanban
        card_fields = [obj.field(n) for n in kanban.card if obj.field(n) is not None]
        return pages.render(request, "forms/board.html", obj=obj, columns=columns,
                            error=filter_problem(error, locale) if error else None,
                            group=obj.field(kanban.group_by), sum_field=obj.field(kanban.sum) if kanban.sum else None,
                            card_fields=card_fields, ui=pages.display(schema, locale, refs), record_title=record_title,
                            current={k: v for k, v in items if k in ("filter", "q")})

    # --- create -------------------------------------------------------------------------
    @router.get("/{object_name}/new", response_class=HTMLResponse)
    def new_form(object_name: str, request: Request, user=Depends(auth.page_user)):
        schema, obj, access = pages.obj(object_name, user)
        prefill = {f.name: f.default for f in obj.fields if f.default is not None and editable(f)}
        prefill.update({k: v for k, v in request.query_params.items() if obj.field(k) is not None and editable(obj.field(k))})
        return _form_page(request, schema, obj, None, None, prefill, user)

    @router.post("/{object_name}/new", dependencies=[Depends(auth.page_csrf)])
    async def create(object_name: str, request: Request, user=Depends(auth.page_user)):
        schema, obj, access = pages.obj(object_name, user)
        form = await request.form()
        data = parse_form(obj, _multi(form), pages.tz)
        locale = locale_of(request)
        try:
            record = await run_in_threadpool(functools.partial(runtime.records.create, obj.name, data, _locale_user(user, locale),
                                                               origin=FORM))
        except RecordError as exc:
            return _form_page(request, schema, obj, None, None, data, user, errors=exc.errors or [{"field": None, "message": exc.detail}],
                              status=422, touched="*")
        return _saved(request, f"/app/{obj.name}/{record['id']}")

    @router.post("/{object_name}/form/check", dependencies=[Depends(auth.page_csrf)])
    async def check(object_name: str, request: Request, user=Depends(auth.page_user)):
        """Live form state while typing: visible / required / read only per
        field and formula values (in the HX-Trigger header), and the save's
        errors for the fields the user has left (as out-of-band swaps)."""
        schema, obj, access = pages.obj(object_name, user)
        form = _multi(await request.form())
        rid = (form.get("_id") or [None])[-1] or None
        base = merge.parse_base(obj, (form.get("_base") or [None])[-1]) if rid else None
        touched = set(",".join(form.get("_touched", [])).split(",")) - {""}
        data = parse_form(obj, form, pages.tz)
        locale = locale_of(request)
        acting = _locale_user(user, locale)

        def run():
            with runtime.engine.connect() as conn:
                if rid:
                    runtime.records.get(obj.name, rid, user, conn=conn, schema=schema)   # 404 unless the user may see it
                old = _stored(conn, schema, obj, rid) if rid else None
                record = working_record(obj, old, data, runtime.context)
                states, computed = field_states(schema, obj, record, old, acting, conn=conn,
                                                field_context=runtime.context)
                _read_only_by_right(states, obj, access)
                refs = Refs(schema, conn, access)
                computed_json = record_json(obj, {**{"id": "", "version": 0, "created_at": None, "updated_at": None,
                                                     "created_by": None, "updated_by": None, "owner": None}, **computed})
                refs.collect(obj, [computed_json])
            # What a submit would save: the user's changes on top of the record as stored now.
            mine = merge.Merge(obj, runtime.context).changes(data, base) if rid else data
            status, errors = dryrun.check(runtime, obj.name, rid, mine, acting) if touched else (None, [])
            return states, computed_json, refs, errors

        try:
            states, computed, refs, errors = await run_in_threadpool(run)
        except NotFound:
            raise HTTPException(status_code=404, detail=N_("This record does not exist or is in the recycle bin.")) from None
        ui = pages.display(schema, locale, refs)
        by_field = localize_errors(errors, obj, locale, links=True)
        shown = [f for f in form_fields(obj) if f.name in touched or "*" in touched]
        formulas = {f.name: ui.text(obj, f, computed.get(f.name)) for f in form_fields(obj) if not editable(f)}
        trigger = {"loom:state": {"fields": {n: [s.visible, s.required, s.read_only] for n, s in states.items()},
                                  "computed": formulas}}
        response = pages.render(request, "forms/_check.html", fields=shown, errors=by_field)
        response.headers["HX-Trigger"] = json.dumps(trigger, ensure_ascii=True)
        return response

    # --- one record -----------------------------------------------------------------------
    @router.get("/{object_name}/{rid}", response_class=HTMLResponse)
    def record(object_name: str, rid: str, request: Request, user=Depends(auth.page_user)):
        schema, obj, access = pages.obj(object_name, user)
        try:
            context = record_page(runtime, schema, obj, rid, locale_of(request), user=user, timeline_extras=timeline_extras)
        except NotFound:
            raise HTTPException(status_code=404, detail=N_("This record does not exist or is in the recycle bin.")) from None
        from .pool_pages import return_forms   # pool pages build on these

        context["return_forms"] = return_forms(runtime, obj, context["record"], user)
        # offered to whom may do it, as far as the role tells without a query (the service decides)
        mine = context["record"].get("owner") == getattr(user, "id", None)
        may = {action: access.scope(obj.name, action) not in ("none", *(() if mine else ("own",)))
               for action in ("update", "delete")}
        context["convertible"] = obj.conversion is not None and may["update"] \
            and not conversion.converted(obj, context["record"])
        context["duplicates"] = merging.possible_duplicates(runtime, obj, rid, user) if may["delete"] else []
        context["approvable"] = bool(approvals.processes_of(schema, obj.name))
        context["merged"] = bool(request.query_params.get("merged"))
        return pages.render(request, "forms/record.html", record_title=record_title, **context)

    @router.get("/{object_name}/{rid}/edit", response_class=HTMLResponse)
    def edit_form(object_name: str, rid: str, request: Request, user=Depends(auth.page_user)):
        schema, obj, access = pages.obj(object_name, user)
        try:
            current = runtime.records.get(obj.name, rid, user, schema=schema)
        except NotFound:
            raise HTTPException(status_code=404, detail=N_("This record does not exist or is in the recycle bin.")) from None
        return _form_page(request, schema, obj, rid, current, current, user)

    @router.post("/{object_name}/{rid}/edit", dependencies=[Depends(auth.page_csrf)])
    async def update(object_name: str, rid: str, request: Request, user=Depends(auth.page_user)):
        """Saves what the user changed against the values the form started
        from (see `merge`): what others saved meanwhile stays, unless both
        changed one field, which the form then shows side by side."""
        schema, obj, access = pages.obj(object_name, user)
        form = _multi(await request.form())
        data = parse_form(obj, form, pages.tz)
        version = _int(form.get("_version"))
        base = merge.parse_base(obj, (form.get("_base") or [None])[-1])
        edits = merge.Merge(obj, runtime.context)
        mine = edits.changes(data, base)
        acting = _locale_user(user, locale_of(request))

        def save():
            for _attempt in range(3):
                current = runtime.records.get(obj.name, rid, user, schema=schema)
                clashes = []
                if version is not None and current["version"] != version:
                    clashes = edits.clashes(mine, base, current)
                if clashes:
                    return current, clashes
                if not mine:
                    return current, []
                try:
                    runtime.records.update(obj.name, rid, mine, acting, expected_version=current["version"], origin=FORM)
                    return None, []
                except PreconditionFailed:
                    continue   # saved by someone else between the read and the write: look again
            raise PreconditionFailed("the record keeps changing")

        try:
            current, clashes = await run_in_threadpool(save)
        except NotFound:
            raise HTTPException(status_code=404, detail=N_("This record does not exist or is in the recycle bin.")) from None
        except RecordError as exc:
            current = runtime.records.get(obj.name, rid, user, schema=schema)
            return _form_page(request, schema, obj, rid, current, {**current, **mine}, user, status=422, touched="*",
                              errors=exc.errors or [{"field": None, "message": exc.detail}])
        if clashes:
            return _form_page(request, schema, obj, rid, current, {**current, **mine}, user, status=409, conflict=current,
                              clashes=clashes, touched="*")
        return _saved(request, f"/app/{obj.name}/{rid}")

    @router.patch("/{object_name}/{rid}/move", dependencies=[Depends(auth.page_csrf)])
    async def move(object_name: str, rid: str, request: Request, user=Depends(auth.page_user)):
        """A board drop or a click on the path bar: one field changes, through
        the record service; the answer is JSON for the page's script. With
        `from` (the value the page showed), only a change of that field
        meanwhile stops the move: automation stamping other fields does not;
        without it, `version` must still be the record's."""
        schema, obj, access = pages.obj(object_name, user)
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            return JSONResponse({"errors": [{"message": "malformed request"}]}, status_code=400)
        name, value, version = body.get("field"), body.get("value"), body.get("version")
        f = obj.field(name) if isinstance(name, str) else None
        if f is None or f.type not in ("stage", "picklist"):
            return JSONResponse({"errors": [{"message": "not a stage or picklist field"}]}, status_code=400)
        locale = locale_of(request)
        _ = lambda m: i18n.gettext(locale, m)  # noqa: E731

        def save():
            expected = version if isinstance(version, int) else None
            if "from" in body:
                if runtime.records.get(obj.name, rid, user).get(f.name) != body["from"]:
                    raise PreconditionFailed(f"{f.name} changed meanwhile")
                expected = None
            return runtime.records.update(obj.name, rid, {f.name: value}, _locale_user(user, locale),
                                          expected_version=expected, origin=FORM)
        try:
            saved = await run_in_threadpool(save)
        except PreconditionFailed:
            return JSONResponse({"errors": [{"message": _("Someone else changed this record meanwhile. Reload the page to see their changes."), "field": None}]},
                                status_code=412)
        except RecordError as exc:
            by_field = localize_errors(exc.errors or [{"field": None, "message": exc.detail}], obj, locale)
            display = pages.display(schema, locale)
            errors = []
            for field_name, messages in by_field.items():   # one entry per field, its label once
                target = obj.field(field_name) if field_name else None
                errors.append({"field": field_name, "label": display.label(target) if target else None,
                               "message": "; ".join(messages),
                               "fix": f"/app/{obj.name}/{rid}/edit" + (f"#field-{field_name}" if field_name else "")})
            return JSONResponse({"errors": errors}, status_code=exc.status)
        answer: dict[str, Any] = {"version": saved["version"], "value": saved.get(f.name)}
        kanban = obj.layouts.kanban
        if kanban is not None and kanban.group_by == f.name:
            display = pages.display(schema, locale)
            with runtime.engine.connect() as conn:
                counts = totals(conn, schema, obj, ListParams(), access)
            answer["columns"] = {str(k): {"count": c, "sum": display.money(s) if s is not None and obj.field(kanban.sum).type == "currency"
                                          else (display.number(s) if s is not None else None)}
                                 for k, (c, s) in counts.items()}
        return JSONResponse(answer)

    @router.post("/{object_name}/{rid}/delete", dependencies=[Depends(auth.page_csrf)])
    async def delete(object_name: str, rid: str, request: Request, user=Depends(auth.page_user)):
        schema, obj, access = pages.obj(object_name, user)
        try:
            await run_in_threadpool(functools.partial(runtime.records.delete, obj.name, rid, user, origin=FORM))
        except RecordError as exc:
            _ = pages.gettext(request)
            return pages.render(request, "forms/_notice.html", status=exc.status, kind="error",
                                message=_("The record could not be deleted:"),
                                details=_delete_problems(runtime, schema, exc, locale_of(request), access))
        return _saved(request, f"/app/{obj.name}")

    @router.post("/{object_name}/{rid}/restore", dependencies=[Depends(auth.page_csrf)])
    async def restore(object_name: str, rid: str, request: Request, user=Depends(auth.page_user)):
        schema, obj, access = pages.obj(object_name, user)
        try:
            await run_in_threadpool(functools.partial(runtime.records.restore, obj.name, rid, user, origin=FORM))
        except RecordError as exc:
            _ = pages.gettext(request)
            return pages.render(request, "forms/_notice.html", status=exc.status, kind="error",
                                message=_("The record could not be restored:"),
                                details=[e["message"] for e in exc.errors if e.get("message")] or [exc.detail])
        return _saved(request, f"/app/{obj.name}/{rid}")

    # --- helpers ----------------------------------------------------------------------------
    def _form_page(request, schema, obj, rid, current, values, user, *, errors=None, status=200, conflict=None,
                   clashes=(), touched=""):
        """The create/edit form. `values` are JSON values (a record, or what
        the user sent); `current` is the stored record when editing, and
        the values the form starts from (`_base`). `clashes` are the fields
        the user and someone else both changed (with `conflict`, the record
        as they saved it)."""
        locale = locale_of(request)
        acting = _locale_user(user, locale)
        with runtime.engine.connect() as conn:
            old = _stored(conn, schema, obj, rid) if rid else None
            record = working_record(obj, old, {k: v for k, v in values.items() if obj.field(k) is not None}, runtime.context)
            states, computed = field_states(schema, obj, record, old, acting, conn=conn, field_context=runtime.context)
            access = runtime.access.of(user)
            _read_only_by_right(states, obj, access)
            shown = {**(current or {}), **values}
            computed_json = record_json(obj, {**{"id": "", "version": 0, "created_at": None, "updated_at": None,
                                                 "created_by": None, "updated_by": None, "owner": None}, **computed})
            for f in obj.fields:
                if not editable(f) or (rid is None and shown.get(f.name) in (None, "", [])):
                    shown[f.name] = computed_json.get(f.name)  # formulas, and defaults of a new record
            refs = Refs(schema, conn, access).collect(obj, [_jsonish(obj, shown)])
            if conflict is not None:
                refs.collect(obj, [conflict])
        ui = pages.display(schema, locale, refs)
        by_field = localize_errors(errors or [], obj, locale, links=True)
        mine = _jsonish(obj, values)
        differences = [(f, conflict.get(f.name), mine.get(f.name)) for f in clashes] if conflict is not None else []
        return pages.render(request, "forms/form.html", status=status, obj=obj, rid=rid, current=current,
                            values=_jsonish(obj, shown), states=states, errors=by_field, ui=ui, sections=sections(obj),
                            widget=widget, editable=editable, input_value=lambda f, v: input_value(f, v, pages.tz),
                            title=record_title(obj, current) if current else None, conflict=conflict,
                            differences=differences, touched=touched,
                            version=(current or {}).get("version"), FieldState=FieldState,
                            base=merge.base_json(obj, current) if current else "",
                            objects=schema.objects, users=_users(runtime.engine))

    return router


def _delete_problems(runtime, schema, exc: RecordError, locale: str, access=None) -> list[dict[str, Any]]:
    """Why a delete was refused, in words: for `restrict`, how many records
    of which object still link here, with links to the first of them."""
    out = []
    for e in exc.errors or [{"message": exc.detail}]:
        child = schema.object(e.get("object") or "")
        if e.get("code") != "restricted" or child is None:
            out.append({"text": e.get("message", "")})
            continue
        ids = e.get("matches") or []
        with runtime.engine.connect() as conn:
            refs = Refs(schema, conn, access)
            refs.load({child.name: set(ids)})
        ids = [rid for rid in ids if refs.title(child.name, rid) is not None]   # never the name of one the user may not read
        text = i18n.gettext(locale, "%(count)s %(objects)s still link to this record. Delete them or link them elsewhere first:")
        plural = localized(child.plural_label, locale, "") or localized(child.label, locale, child.name)
        out.append({"text": text.replace("%(count)s", str(e.get("count", len(ids)))).replace("%(objects)s", plural),
                    "links": [(f"/app/{child.name}/{rid}", refs.title(child.name, rid)) for rid in ids]})
    return out


def _read_only_by_right(states: dict, obj: ObjectDef, access) -> None:
    """A field the user's role may only read shows as read only."""
    for f in obj.fields:
        if access.field_right(obj.name, f.name) == "read":
            state = states.get(f.name) or FieldState()
            states[f.name] = dataclasses.replace(state, read_only=True)


def _users(engine) -> list[dict[str, str]]:
    from loomcrm.platform import systemdb

    t = systemdb.users
    with engine.connect() as conn:
        rows = conn.execute(sa.select(t.c.id, t.c.display_name, t.c.username).where(t.c.is_active.is_(True))
                            .order_by(t.c.display_name).limit(1000)).fetchall()
    return [{"id": r.id, "name": r.display_name or r.username} for r in rows]


def _saved(request: Request, target: str) -> Response:
    if request.headers.get("hx-request"):
        return Response(status_code=204, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=303)


def _multi(form) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key, value in form.multi_items():
        if isinstance(value, str):
            out.setdefault(key, []).append(value)
    return out


def _int(value) -> int | None:
    if isinstance(value, list):
        value = value[-1] if value else None
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _stored(conn, schema, obj: ObjectDef, rid: str) -> dict[str, Any] | None:
    table = schema.table(obj.name)
    row = conn.execute(sa.select(table).where(table.c.id == rid, table.c._deleted_at.is_(None))).first()
    if row is None:
        raise NotFound(f"no {obj.name} record {rid!r}")
    return dict(row._mapping)


def _jsonish(obj: ObjectDef, values: dict[str, Any]) -> dict[str, Any]:
    """Values as the record's JSON shape: related_to as {"object", "id"}."""
    out = dict(values)
    for f in obj.fields:
        value = out.get(f.name)
        if f.type == "related_to" and isinstance(value, str) and ":" in value:
            target, _, rid = value.partition(":")
            out[f.name] = {"object": target, "id": rid}
        if f.type == "multi_picklist" and isinstance(value, str):
            out[f.name] = [value]
    return out


def filter_fields(obj: ObjectDef, ui: Display) -> list[dict[str, Any]]:
    """What the filter builder offers: every field with its kind and options."""
    out = []
    for f in obj.fields:
        kind = ui.kind(obj, f)
        if kind in ("related_to", "multi_picklist", "user"):
            continue
        entry = {"name": f.name, "label": ui.label(f), "kind": kind}
        if f.type in ("picklist", "stage"):
            entry["options"] = [{"value": o.value, "label": ui.label(o)} for o in (f.stages if f.type == "stage" else f.options)]
        out.append(entry)
    return out


def navigation(schema, locale: str, path: str, access=None) -> list[dict[str, Any]]:
    """The app shell's navigation: every installed object the user may see
    records of, by plural label."""
    items = []
    for obj in schema.objects.values():
        if access is not None and not access.may_see_object(obj.name):
            continue
        href = f"/app/{obj.name}"
        items.append({"href": href, "label": localized(obj.plural_label, locale, "") or localized(obj.label, locale, obj.name),
                      "active": path == href or path.startswith(href + "/"), "icon": obj.icon or ""})
    return items
