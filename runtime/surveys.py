"""Satisfaction surveys (`surveys/<name>.json`): CSAT and NPS, once per record.

A save that makes a survey's `when` true (a ticket closed) leaves an
invitation in `loom_surveys` in the same transaction, addressed by `to`;
the automation pump mails the invitations (through the mail outbox) with a
link to the public survey page, `/s/<id>.<signature>`: the signature is a
keyed hash of the invitation's id, so a forged or altered link finds
nothing. The page answers once, until the invitation expires; the answers
are written on the record through the record service (source `form`).
"""

from __future__ import annotations

import hmac
import re
import uuid
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from loomcrm.metadata.expressions import ExpressionError, Scope
from loomcrm.metadata.model import Survey, localized
from loomcrm.platform import auth, i18n, systemdb
from loomcrm.platform.db import stored_utc, write_transaction

from .expressions import compile_expression
from .records import Actor, NotFound, Origin, RecordError, now_utc, record_title
from .rules.engine import RecordView

INVITES = systemdb.surveys
FORM = Origin("form")
SYSTEM = Actor(None, "admin")      # the customer answers without an account: Loom writes for them
TEXTS = {
    "link": "Answer here (the link works once, until %(date)s):",
    "expired": "This survey has expired.",
    "answered": "This survey was answered already. Thank you!",
    "unknown": "This survey link is not valid.",
    "thanks": "Thank you for your answer!",
}


class SurveyRefused(RecordError):
    status, title = 410, "Survey closed"

    def __init__(self, reason: str, status: int = 410):
        super().__init__(TEXTS[reason], [{"field": None, "code": reason, "message": TEXTS[reason]}], status)
        self.reason = reason


# --- a save leaves an invitation -------------------------------------------------------------

def _compiled(ctx, survey: Survey) -> tuple[Any, Any]:
    cache = ctx.schema.extra.setdefault("survey_expressions", {})
    found = cache.get(survey.name)
    if found is None:
        scope = Scope(ctx.schema.objects, survey.object, version=ctx.schema.version)
        found = cache[survey.name] = (compile_expression(survey.when, scope, expect="boolean"),
                                      compile_expression(survey.to, scope))
    return found


def on_save(ctx, run, now: datetime) -> None:
    """An invitation for each survey of the record's object whose `when`
    this save made true, unless the record has one already. Imports load
    history: they ask nobody."""
    if ctx.origin.source == "import":
        return
    for survey in ctx.schema.surveys.values():
        if survey.object != ctx.obj.name:
            continue
        try:
            when, to = _compiled(ctx, survey)
            if run.evaluate(when) is not True:
                continue
            if not ctx.is_new and run.evaluate(when, RecordView(run.rules.objects, ctx.obj.name, ctx.old, run.fetch,
                                                                {})) is True:
                continue          # true before this save: not this save's doing (an edit of a closed ticket)
            address = run.evaluate(to)
        except ExpressionError as exc:
            raise RecordError(f"survey {survey.name}: {exc}", status=422) from None
        if not isinstance(address, str) or "@" not in address:
            continue              # nobody to ask
        exists = sa.select(INVITES.c.id).where(INVITES.c.survey == survey.name, INVITES.c.object == ctx.obj.name,
                                               INVITES.c.record_id == ctx.values["id"])
        if ctx.conn.execute(exists).first() is not None:
            continue
        ctx.conn.execute(sa.insert(INVITES).values(
            id=uuid.uuid4().hex, survey=survey.name, object=ctx.obj.name, record_id=ctx.values["id"],
            address=address.strip()[:320], created_at=now, expires_at=now + timedelta(days=survey.expires_days)))


# --- links -------------------------------------------------------------------------------------

def link_token(secret: str, invite_id: str) -> str:
    return f"{invite_id}.{auth.keyed_hash(secret, 'survey:' + invite_id)[:32]}"


_TOKEN = re.compile(r"^[0-9a-f]{32}\.[0-9a-f]{32}$")


def _invite_of(conn, secret: str, token: str):
    invite_id = token.partition(".")[0]
    if not _TOKEN.match(token) or not hmac.compare_digest(link_token(secret, invite_id), token):
        raise SurveyRefused("unknown", 404)
    row = conn.execute(sa.select(INVITES).where(INVITES.c.id == invite_id)).first()
    if row is None:
        raise SurveyRefused("unknown", 404)
    return row


def open_survey(runtime, secret: str, token: str, now: datetime | None = None) -> tuple[Survey, dict[str, Any], Any]:
    """The survey a link opens, the record it asks about and the invitation;
    SurveyRefused for a forged, answered or expired link."""
    now = now or now_utc()
    with runtime.engine.connect() as conn:
        invite = _invite_of(conn, secret, token)
    _check_open(invite, now)
    schema = runtime.schema()
    survey = schema.surveys.get(invite.survey)
    if survey is None or schema.object(invite.object) is None:
        raise SurveyRefused("unknown", 404)
    try:
        record = runtime.records.get(invite.object, invite.record_id, SYSTEM)
    except NotFound:            # the record went to the recycle bin
        raise SurveyRefused("unknown", 404) from None
    return survey, record, invite


def _check_open(invite, now: datetime) -> None:
    if invite.answered_at is not None:
        raise SurveyRefused("answered", 409)
    if stored_utc(invite.expires_at) <= now:
        raise SurveyRefused("expired")


def answer(runtime, secret: str, token: str, form: dict[str, str],
           now: datetime | None = None) -> tuple[Survey, dict[str, Any]]:
    """Store the answers on the record and close the link, in one transaction;
    a refused answer (a CSAT of 9) changes nothing and leaves the link open.
    Answers the survey and the record as saved."""
    now = now or now_utc()
    survey, record, _ = open_survey(runtime, secret, token, now)
    values: dict[str, Any] = {}
    problems = []
    for q in survey.questions:
        text = str(form.get(q.field) or "").strip()
        if not text:
            if q.required:
                problems.append({"field": q.field, "code": "required", "message": f"{q.field} is required"})
            continue
        if q.kind == "text":
            values[q.field] = text[:5000]
            continue
        top = 5 if q.kind == "csat" else 10
        if not text.isdigit() or not (1 if q.kind == "csat" else 0) <= int(text) <= top:
            problems.append({"field": q.field, "code": "invalid", "message": f"{q.field} must be a score up to {top}"})
            continue
        values[q.field] = int(text)
    if problems:
        raise RecordError("some answers are missing or out of range", problems, status=422)
    invite_id = token.partition(".")[0]
    with write_transaction(runtime.engine) as conn:
        closed = conn.execute(sa.update(INVITES).where(INVITES.c.id == invite_id, INVITES.c.answered_at.is_(None))
                              .values(answered_at=now))
        if closed.rowcount != 1:
            raise SurveyRefused("answered", 409)      # two answers at once: the first one counts
        return survey, runtime.records.update(survey.object, record["id"], values, SYSTEM, conn=conn, origin=FORM)


# --- the pump mails the invitations -----------------------------------------------------------

def mail_invitations(runtime, secret: str, base_url: str, now: datetime | None = None, limit: int = 200) -> int:
    """Invitations not mailed yet, into the mail outbox (in both languages)."""
    now = now or now_utc()
    schema = runtime.schema()
    with write_transaction(runtime.engine) as conn:
        query = sa.select(INVITES).where(INVITES.c.mailed_at.is_(None)).limit(limit)
        if conn.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        invites = conn.execute(query).fetchall()
        letters = []
        for invite in invites:
            survey, obj = schema.surveys.get(invite.survey), schema.object(invite.object)
            if survey is None or obj is None:
                continue
            table = schema.table(obj.name)
            row = conn.execute(sa.select(table).where(table.c.id == invite.record_id,
                                                      table.c._deleted_at.is_(None))).first()
            if row is None or stored_utc(invite.expires_at) <= now:
                continue          # in the recycle bin, or too late to ask: never mailed
            title = record_title(obj, dict(row._mapping))
            link = f"{base_url.rstrip('/')}/s/{link_token(secret, invite.id)}"
            parts = []
            for locale in i18n.LOCALE_NAMES:
                intro = localized(survey.message, locale, "") if survey.message else ""
                until = stored_utc(invite.expires_at).strftime("%Y-%m-%d")
                parts.append("\n".join(p for p in (intro.replace("%(record)s", title),
                                                   i18n.gettext(locale, TEXTS["link"]).replace("%(date)s", until), link)
                                       if p))
            subject = " / ".join(dict.fromkeys(localized(survey.subject, loc, "").replace("%(record)s", title)
                                               for loc in i18n.LOCALE_NAMES))
            letters.append({"id": uuid.uuid4().hex, "address": invite.address, "subject": subject[:300],
                            "body": "\n\n".join(dict.fromkeys(parts)) + "\n", "created_at": now, "next_at": now})
        if letters:
            conn.execute(sa.insert(systemdb.mail_outbox), letters)
        if invites:
            conn.execute(sa.update(INVITES).where(INVITES.c.id.in_([i.id for i in invites])).values(mailed_at=now))
    return len(letters)
