"""Public web forms (`web_forms/<name>.json`): web-to-lead, web-to-case.

A visitor's post becomes a record through the record service, with every
rule, as Loom's system user and with source `form`; the form's fixed
`values` go on top of what the visitor typed (a channel, a source). Bots
are kept out twice: a honeypot field people never see (a post that fills
it is thanked and dropped) and at most `per_hour` posts per form from one
address, counted in `loom_form_posts` under a keyed hash of the address.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, Mapping

import sqlalchemy as sa

from loomcrm.metadata.model import WebForm
from loomcrm.platform import auth, systemdb
from loomcrm.platform.db import write_transaction

from .fields import FieldError, field_type
from .records import Actor, NotFound, Origin, RecordError

POSTS = systemdb.form_posts
HONEYPOT = "website_url"          # a field name bots fill and people never see
FORM = Origin("form")
SYSTEM = Actor(None, "admin")
MAX_TEXT = 20_000


class TooManyPosts(RecordError):
    status, title = 429, "Too many posts"


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def form_of(schema, name: str) -> WebForm:
    form = schema.web_forms.get(name) if isinstance(name, str) else None
    if form is None or not form.active or schema.object(form.object) is None:
        raise NotFound(f"no web form {str(name)[:63]!r}")
    return form


def submit(runtime, secret: str, name: str, data: Mapping[str, Any], address: str | None,
           now: datetime | None = None) -> dict[str, Any] | None:
    """Save one visitor's post; None when the honeypot caught it.
    RecordError (422) names the fields the rules refused."""
    now = now or utcnow()
    schema = runtime.schema()
    form = form_of(schema, name)
    if str(data.get(HONEYPOT) or "").strip():
        return None
    obj = schema.object(form.object)
    values: dict[str, Any] = {}
    problems: list[dict[str, Any]] = []
    for field_name in form.fields:
        f = obj.field(field_name)
        text = data.get(field_name)
        if f is None or not isinstance(text, str) or not text.strip():
            continue
        try:
            values[field_name] = field_type(f).text_input(f, text.strip()[:MAX_TEXT], runtime.context)
        except FieldError as exc:
            problems.append({"field": field_name, "code": exc.code, "message": exc.message})
    if problems:
        raise RecordError("some fields are not valid", problems, status=422)
    values.update(form.values)
    sender = auth.keyed_hash(secret, f"form:{address or '-'}")[:64]
    with write_transaction(runtime.engine) as conn:     # a refused post counts too
        recent = conn.execute(sa.select(sa.func.count()).select_from(POSTS).where(
            POSTS.c.form == form.name, POSTS.c.sender == sender, POSTS.c.posted_at > now - timedelta(hours=1))).scalar()
        if recent >= form.per_hour:
            raise TooManyPosts("too many posts from your address; try again in an hour")
        conn.execute(sa.insert(POSTS).values(form=form.name, sender=sender, posted_at=now))
    return runtime.records.create(form.object, values, SYSTEM, origin=FORM)
