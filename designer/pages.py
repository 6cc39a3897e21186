"""What every designer screen shares: the admins-only guard, the page
rendering with the draft and the published metadata, reading a form with
its CSRF token, saving a change to the draft (with the other admin's
change named instead of overwritten), and the rules a draft breaks."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Callable

import sqlalchemy as sa
from fastapi import HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from loomcrm.metadata.bundle import FOLDERS
from loomcrm.metadata.checks import check_bundle
from loomcrm.metadata.model import Bundle, BundleManifest, ObjectDef, as_json, localized
from loomcrm.metadata.versions import DraftConflict, Snapshot
from loomcrm.platform import auth
from loomcrm.runtime import drafts
from loomcrm.runtime.forms.views import N_
from loomcrm.runtime.records import RecordError

from . import edits, words
from .starters import STARTER_TEXTS

MAX_FORM = 500_000
NOTICE_TEXTS = {"created": "Created in the draft.", "saved": "Saved in the draft.", "deleted": "Removed from the draft.",
                "published": "Published: the database and the forms follow the new version.",
                "discarded": "The draft was discarded.", "rolled_back": "The draft now holds the chosen version: review and publish it.",
                "restored": "Restored into the draft."}
PROBLEM_TEXTS = {"name_pattern": "Use lower-case letters, digits and _ only, starting with a letter (e.g. project).",
                 "name_taken": "Another object has this name.", "confirm": "Type the name exactly as shown to confirm."}


def require_admin(request: Request) -> auth.User:
    user = auth.page_user(request)
    if not user.is_admin:
        raise HTTPException(status_code=403, detail=N_("Only administrators may open the designer."))
    return user


def body_length(request: Request) -> int:
    """The body's announced length (a malformed header reads as too large)."""
    text = request.headers.get("content-length") or "0"
    return int(text) if text.isdigit() else 1 << 62


def seen_of(form) -> ObjectDef | None:
    """The object as the form showed it (None: it did not exist)."""
    text = str(form.get("seen") or "null")
    try:
        data = json.loads(text)
        return ObjectDef.model_validate(data) if data else None
    except (ValueError, TypeError):
        raise HTTPException(status_code=400, detail=N_("The form is damaged: reload the page.")) from None


def seen_json(obj: ObjectDef | None) -> str:
    return json.dumps(as_json(obj) if obj else None, ensure_ascii=False, separators=(",", ":"))


def rule_problems(snapshot: Snapshot) -> list[dict[str, str]]:
    """Every rule of the draft that no longer checks (a formula reading a
    renamed field, a report grouping by a dropped one, ...), with its place."""
    bundle = Bundle(manifest=BundleManifest(format="loom/1", name="draft", version="1.0.0"),
                    **{folder: getattr(snapshot, folder) for folder in FOLDERS if folder != "extensions"})
    return [{"file": p.file, "path": p.path, "message": p.message, "code": p.code} for p in check_bundle(bundle)]


def place_of(snapshot: Snapshot, problem: dict[str, str], locale: str) -> str:
    """`objects/deal.json` + `fields[3].expression` as "Deal › Amount › expression"."""
    parts = []
    file = problem["file"]
    kind, _, rest = file.partition("/")
    name = rest.removesuffix(".json")
    obj = snapshot.object(name) if kind == "objects" else None
    report = snapshot.report(name) if kind == "reports" else None
    parts.append(localized(obj.label, locale, name) if obj else localized(report.label, locale, name) if report else name)
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



def _exact_text(value, locale: str) -> str:
    """A localized text in exactly `locale` (a plain string is English):
    the designer edits each language, it does not fall back."""
    if isinstance(value, dict):
        return value.get(locale, "")
    return value or "" if locale == "en" else ""


def shared(runtime, templates, page_context: Callable[..., dict]) -> SimpleNamespace:
    """The helpers the screens' routes use, bound to this app."""
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
        if body_length(request) > MAX_FORM:
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

    def recent_records(name: str) -> list[dict[str, str]]:
        """The records "try it" offers: the newest of the published object."""
        schema = runtime.schema()
        obj = schema.object(name)
        if obj is None:
            return []
        table = schema.table(name)
        title = table.c[obj.title_field] if obj.title_field in table.c else table.c.id
        with engine.connect() as conn:
            rows = conn.execute(sa.select(table.c.id, title).where(table.c._deleted_at.is_(None))
                                .order_by(table.c.updated_at.desc()).limit(20)).all()
        return [{"id": r[0], "title": str(r[1] if r[1] is not None else r[0])} for r in rows]

    return SimpleNamespace(runtime=runtime, engine=engine, templates=templates, page_context=page_context,
                           render=render, form_of=form_of, object_or_404=object_or_404, change=change,
                           conflict_text=conflict_text, saved=saved, recent_records=recent_records)
