"""Stored values as the end user reads them, per field type and locale:
money as `¥1,234,567.00`, dates as `2026-11-22` in Chinese, picklist
options as coloured chips, lookups as links to the target's title.

Every value from data is escaped here or by the template (autoescape is on);
only http(s) URLs become links.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from markupsafe import Markup, escape

from loomcrm.metadata.model import FieldDef, ObjectDef, localized
from loomcrm.platform import i18n

from ..fields.text import sanitized

SAFE_SCHEMES = ("http://", "https://")


def value_kind(f: FieldDef, objects: dict[str, ObjectDef]) -> str:
    """The type a value displays as: a formula shows as what it returns, a
    rollup as what it aggregates."""
    if f.type == "formula":
        return f.returns
    if f.type == "rollup":
        if f.function == "count":
            return "integer"
        child = objects.get(f.from_)
        source = child.field(f.field) if child is not None and f.field else None
        return value_kind(source, objects) if source is not None else "decimal"
    return f.type


_PATH = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*){1,3}$")


def shown_like(obj: ObjectDef, f: FieldDef, objects: dict[str, ObjectDef]) -> FieldDef:
    """The field a value shows like: a text formula that only reads a
    picklist or stage through lookups (a ticket's `account.region`) shows
    that field's labels and colours; any other field, itself."""
    if f.type != "formula" or f.returns != "text" or not _PATH.match(f.expression.strip()):
        return f
    *hops, last = f.expression.strip().split(".")
    current = obj
    for hop in hops:
        link = current.field(hop) if current is not None else None
        current = objects.get(link.to) if link is not None and link.type == "lookup" else None
    source = current.field(last) if current is not None else None
    return source if source is not None and source.type in ("picklist", "stage") else f


def option_map(f: FieldDef) -> dict[str, Any]:
    if f.type == "stage":
        return {s.value: s for s in f.stages}
    return {o.value: o for o in getattr(f, "options", None) or []}


def chip(label: str, color: str | None) -> Markup:
    # Colours come from metadata, whose schema allows only #rrggbb or a word.
    style = f' style="--chip: {escape(color)}"' if color else ""
    return Markup(f'<span class="chip"{style}>{escape(label)}</span>')


def safe_url(value: Any) -> str | None:
    text = str(value or "").strip()
    return text if text.lower().startswith(SAFE_SCHEMES) else None


class Display:
    """Formats values for one locale. `refs` resolves lookup ids and user ids
    to titles (see `refs.Refs`)."""

    def __init__(self, objects: dict[str, ObjectDef], locale: str, tz, refs=None):
        self.objects = objects
        self.locale = locale
        self.tz = tz
        self.refs = refs
        self._kinds: dict[tuple[str, str], str] = {}
        self._labels: dict[int, tuple[Any, str]] = {}
        self._options: dict[int, dict[str, Any]] = {}
        self.yes = i18n.gettext(locale, "Yes")
        self.unseen = i18n.gettext(locale, "(a record you cannot see)")
        self.no = i18n.gettext(locale, "No")

    def kind(self, obj: ObjectDef, f: FieldDef) -> str:
        key = (obj.name, f.name)
        kind = self._kinds.get(key)
        if kind is None:
            kind = self._kinds[key] = value_kind(shown_like(obj, f, self.objects), self.objects)
        return kind

    def label(self, thing, fallback: str = "") -> str:
        key = id(thing)
        cached = self._labels.get(key)
        if cached is not None and cached[0] is thing:
            return cached[1] or fallback
        text = localized(getattr(thing, "label", None), self.locale, getattr(thing, "name", "") or getattr(thing, "value", ""))
        self._labels[key] = (thing, text)
        return text or fallback

    def localize(self, text) -> str:
        return localized(text, self.locale, "")

    def plural(self, obj: ObjectDef) -> str:
        return localized(obj.plural_label, self.locale, "") or self.label(obj)

    def options(self, f: FieldDef) -> dict[str, Any]:
        cached = self._options.get(id(f))
        if cached is None:
            cached = self._options[id(f)] = option_map(f)
        return cached

    def option_label(self, f: FieldDef, value: str) -> str:
        option = self.options(f).get(value)
        return self.label(option, value) if option is not None else value

    # -- plain text (CSV, titles, sums) ---------------------------------------------
    def money(self, value) -> str:
        return i18n.format_money(Decimal(value), self.locale)

    def number(self, value) -> str:
        return i18n.format_number(value, self.locale)

    def day(self, value) -> str:
        if isinstance(value, str):
            value = date.fromisoformat(value)
        return i18n.format_day(value, self.locale)

    def moment(self, value) -> str:
        if isinstance(value, str):
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return i18n.format_moment(value, self.locale, self.tz)

    def text(self, obj: ObjectDef, f: FieldDef, value: Any) -> str:
        """A value as plain text (for titles and aria labels)."""
        if value is None or value == [] or value == "":
            return ""
        kind = self.kind(obj, f)
        if kind == "currency":
            return self.money(value)
        if kind in ("integer", "decimal"):
            return self.number(value)
        if kind == "percent":
            return f"{self.number(value)} %"
        if kind == "date":
            return self.day(value)
        if kind == "datetime":
            return self.moment(value)
        if kind == "boolean":
            return self.yes if value else self.no
        if kind in ("picklist", "stage"):
            return self.option_label(shown_like(obj, f, self.objects), value)
        if kind == "multi_picklist":
            return ", ".join(self.option_label(f, v) for v in value)
        if kind == "lookup":
            return (self.refs.title(f.to, value) or self.unseen) if self.refs else str(value)
        if kind == "related_to":
            target, rid = _related(value)
            return (self.refs.title(target, rid) or self.unseen) if self.refs else f"{target}:{rid}"
        if kind == "user" or f.name == "owner":
            return self.refs.user(value) if self.refs else str(value)
        return str(value)

    # -- HTML -----------------------------------------------------------------------
    def cell(self, obj: ObjectDef, f: FieldDef, value: Any) -> Markup:
        """A value as safe HTML for lists, cards and the record page (every
        piece of data goes through `escape`)."""
        if value is None or value == [] or value == "":
            return Markup(f'<span class="empty" aria-label="{escape(i18n.gettext(self.locale, "empty"))}">—</span>')
        kind = self.kind(obj, f)
        if kind in ("picklist", "stage"):
            option = self.options(shown_like(obj, f, self.objects)).get(value)
            return chip(self.label(option, value) if option is not None else value, getattr(option, "color", None))
        if kind == "multi_picklist":
            options = self.options(f)
            return Markup(" ").join(chip(self.label(options.get(v), v) if v in options else v,
                                         getattr(options.get(v), "color", None)) for v in value)
        if kind == "lookup":
            if self.refs is not None and self.refs.title(f.to, value) is None:
                return Markup(f'<span class="muted">{escape(self.unseen)}</span>')   # a record the user may not read
            return Markup(f'<a href="/app/{escape(f.to)}/{escape(value)}">{escape(self.text(obj, f, value))}</a>')
        if kind == "related_to":
            target, rid = _related(value)
            if self.refs is not None and self.refs.title(target, rid) is None:
                return Markup(f'<span class="muted">{escape(self.unseen)}</span>')
            target_obj = self.objects.get(target)
            prefix = self.label(target_obj) if target_obj is not None else target
            return Markup(f'<a href="/app/{escape(target)}/{escape(rid)}"><span class="muted">{escape(prefix)}:</span> '
                          f'{escape(self.text(obj, f, value))}</a>')
        if kind == "url":
            url = safe_url(value)
            if url:
                return Markup(f'<a href="{escape(url)}" rel="noopener noreferrer nofollow" target="_blank">{escape(value)}</a>')
            return escape(value)
        if kind == "email":
            return Markup(f'<a href="mailto:{escape(value)}">{escape(value)}</a>')
        if kind == "phone":
            return Markup(f'<a href="tel:{escape(value)}">{escape(value)}</a>')
        if kind == "long_text":
            if getattr(f, "format", None) == "html":
                return Markup(f'<div class="prose rich">{sanitized(str(value))}</div>')
            return Markup(f'<span class="prose">{escape(value)}</span>')
        if kind in ("currency", "integer", "decimal", "percent"):
            return Markup(f'<span class="num">{escape(self.text(obj, f, value))}</span>')
        return escape(self.text(obj, f, value))


def _related(value) -> tuple[str, str]:
    if isinstance(value, dict):
        return value.get("object", ""), value.get("id", "")
    target, _, rid = str(value).partition(":")
    return target, rid
