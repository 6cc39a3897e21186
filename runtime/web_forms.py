"""Public web forms (`web_forms/<name>.json`): web-to-lead, web-to-case.

A visitor's post becomes a record through the record service, with every
rule, as Loom's system user and with source `form`; the form's fixed
`values` go on top of what the visitor typed (a channel, a source). Bots
are kept out twice: a honeypot field people never see (a post that fills
it is thanked and dropped) and at most `per_hour` posts per form from one
address (an IPv6 /64), counted in `loom_form_posts` under a keyed hash of
it. Behind a proxy, run uvicorn with --proxy-headers and
--forwarded-allow-ips so that the address is the visitor's.
"""

from __future__ import annotations

import ipaddress
from datetime import datetime, timedelta
from typing import Any, Mapping

import sqlalchemy as sa

from loomcrm.metadata.model import WebForm
from loomcrm.platform import auth, systemdb
from loomcrm.platform.db import write_transaction

from .fields import FieldError, field_type
from .records import Actor, NotFound, Origin, RecordError, now_utc
from .rules.hooks import skip_rules

POSTS = systemdb.form_posts
HONEYPOT = "website_url"          # a field name bots fill and people never see
FORM = Origin("form")
SYSTEM = Actor(None, "admin")
MAX_TEXT = 20_000


class TooManyPosts(RecordError):
    status, title = 429, "Too many posts"


def form_of(schema, name: str) -> WebForm:
    form = schema.web_forms.get(name) if isinstance(name, str) else None
    if form is None or not form.active or schema.object(form.object) is None:
        raise NotFound(f"no web form {str(name)[:63]!r}")
    return form


def submit(runtime, secret: str, name: str, data: Mapping[str, Any], address: str | None,
           now: datetime | None = None) -> dict[str, Any] | None:
    """Save one visitor's post; None when the honeypot caught it. Every
    post counts towards the limit, refused or not. RecordError (422) names
    the fields the rules refused; duplicate rules do not refuse (a visitor
    must not learn what is in the CRM): the skip is in the record's history."""
    now = now or now_utc()
    schema = runtime.schema()
    form = form_of(schema, name)
    _count(runtime, form, auth.keyed_hash(secret, f"form:{_bucket(address)}")[:64], now)
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
    with skip_rules(f"web form {form.name}: a visitor is not told of records that exist", kinds=("duplicates",)):
        return runtime.records.create(form.object, values, SYSTEM, origin=FORM)


def _bucket(address: str | None) -> str:
    """Whom a post counts against: an IPv4 address, an IPv6 /64 network (one
    customer's)."""
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return "-"
    return str(ipaddress.ip_network(f"{ip}/64", strict=False)) if ip.version == 6 else str(ip)


def _count(runtime, form: WebForm, sender: str, now: datetime) -> None:
    """Count the post, or refuse it past the form's hourly limit (one at a
    time per sender on PostgreSQL, so that a burst cannot pass it)."""
    hour_ago = now - timedelta(hours=1)
    with write_transaction(runtime.engine) as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": f"{form.name}:{sender}"})
        mine = (POSTS.c.form == form.name) & (POSTS.c.sender == sender)
        conn.execute(sa.delete(POSTS).where(mine, POSTS.c.posted_at <= hour_ago))      # what no longer counts
        recent = conn.execute(sa.select(sa.func.count()).select_from(POSTS).where(mine)).scalar()
        if recent >= form.per_hour:
            raise TooManyPosts("too many posts from your address; try again in an hour")
        conn.execute(sa.insert(POSTS).values(form=form.name, sender=sender, posted_at=now))
