"""Two people editing one record: what this user changed, and whether it
clashes with what others saved since the form was opened.

An edit form carries the values it started from (`_base`, the stored
record's editable fields as JSON) and their version. On save, only the
fields the user changed against that base are sent, so a field someone
else changed meanwhile keeps their value. When the record moved on, the
save goes through on top of it unless both changed one field to different
values: then the form shows exactly those fields, and a second save keeps
the user's values for them.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from loomcrm.metadata.model import FieldDef, ObjectDef

from ..api.problems import dumps
from ..fields import FieldError, field_type
from .widgets import editable, form_fields


def base_json(obj: ObjectDef, record: dict[str, Any]) -> str:
    """The form's `_base`: the editable values of the record it edits."""
    return dumps({"owner": record.get("owner"),
                  **{f.name: record.get(f.name) for f in form_fields(obj) if editable(f)}}).decode()


def parse_base(obj: ObjectDef, text: str | None) -> dict[str, Any] | None:
    """The `_base` a form sent back; None when missing or not an object."""
    if not text:
        return None
    try:
        base = json.loads(text, parse_float=Decimal)
    except ValueError:
        return None
    return base if isinstance(base, dict) else None


class Merge:
    """Compares values as the record service would store them, so that
    `1,200.50` typed in a form equals a stored 1200.5."""

    def __init__(self, obj: ObjectDef, ctx):
        self.obj, self.ctx = obj, ctx

    def same(self, f: FieldDef | None, a: Any, b: Any) -> bool:
        if f is None:   # the owner: a user id
            return (a or None) == (b or None)
        return self._stored(f, a) == self._stored(f, b)

    def _stored(self, f: FieldDef, value: Any) -> Any:
        if value is None or value == "" or value == []:
            return None
        try:
            return field_type(f).coercer(f)(value, self.ctx)
        except (FieldError, TypeError, ValueError):
            return ("not a valid value", repr(value))

    def changes(self, data: dict[str, Any], base: dict[str, Any] | None) -> dict[str, Any]:
        """The values of `data` the user changed against `base` (all of them without a base)."""
        if base is None:
            return dict(data)
        return {name: value for name, value in data.items()
                if not self.same(self.obj.field(name), value, base.get(name))}

    def clashes(self, mine: dict[str, Any], base: dict[str, Any] | None, current: dict[str, Any]) -> list[FieldDef]:
        """Fields the user changed that someone else also changed, to another value."""
        out = []
        for name, value in mine.items():
            f = self.obj.field(name)
            if f is None or self.same(f, value, current.get(name)):
                continue   # (a clash over the owner is not shown: the last reassignment wins)
            if base is None or not self.same(f, base.get(name), current.get(name)):
                out.append(f)
        return out
