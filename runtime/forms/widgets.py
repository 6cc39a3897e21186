"""Form widgets per field type, and submitted form text back to the JSON
values the record service takes (the same values the API would send).

The record service does every check; parsing here only undoes what the
widgets add for people: currency symbols and group separators, empty
inputs, checkbox and multi-select encodings, local date-times.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any, Mapping

from loomcrm.metadata.model import FieldDef, ObjectDef

from ..fields import field_type
from ..fields.text import sanitized

# The template macro that renders each kind (`forms/_field.html`).
WIDGETS = {
    "text": "text", "long_text": "textarea", "integer": "number", "decimal": "number", "percent": "number",
    "currency": "currency", "boolean": "checkbox", "date": "date", "datetime": "datetime", "email": "email",
    "phone": "tel", "url": "url", "picklist": "choice", "stage": "choice", "multi_picklist": "multi",
    "lookup": "lookup", "related_to": "related", "user": "user",
    "formula": "computed", "rollup": "computed", "auto_number": "computed",
}
CHIP_LIMIT = 6   # up to this many options show as tappable chips, more as a select
_NUMBER_JUNK = re.compile(r"[\s,_¥$€£]|CN¥|RMB|CNY", re.IGNORECASE)


def widget(f: FieldDef) -> str:
    if f.type == "long_text" and f.format == "html":
        return "richtext"
    if f.type in ("picklist", "stage") and len(f.options if f.type == "picklist" else f.stages) > CHIP_LIMIT:
        return "select"
    return WIDGETS.get(f.type, "text")


def editable(f: FieldDef) -> bool:
    return field_type(f).writable and not f.read_only


def input_value(f: FieldDef, value: Any, tz) -> Any:
    """A stored (JSON) value as the widget's initial value."""
    if value is None:
        return [] if f.type == "multi_picklist" else ""
    if f.type == "datetime" and isinstance(value, str):
        moment = datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(tz)
        return moment.strftime("%Y-%m-%dT%H:%M")
    if f.type == "currency" and not isinstance(value, (str, bool)):
        return f"{value:,}"
    if f.type == "related_to" and isinstance(value, dict):
        return f"{value['object']}:{value['id']}"
    if f.type == "long_text" and f.format == "html" and isinstance(value, str):
        return sanitized(value)      # a refused form shows back what was typed: never as it was typed
    return value


def parse_value(f: FieldDef, values: list[str], tz) -> Any:
    """The submitted strings of one field -> a JSON value (None clears)."""
    if f.type == "multi_picklist":
        return [v for v in values if v] or None
    if f.type == "boolean":
        return bool(values) and values[-1] in ("true", "on", "1")
    text = (values[-1] if values else "").strip()
    if text == "":
        return None
    if f.type in ("currency", "decimal", "percent", "integer"):
        cleaned = _NUMBER_JUNK.sub("", text.replace("，", ",").replace("％", "").rstrip("%"))
        return cleaned or text
    if f.type == "datetime" and "T" in text and len(text) <= 19:
        try:
            return datetime.fromisoformat(text).replace(tzinfo=tz).astimezone(timezone.utc).isoformat()
        except ValueError:
            return text
    return text


def form_fields(obj: ObjectDef) -> list[FieldDef]:
    """The fields a form shows: the form layout's, else every field."""
    names: list[str] = []
    for section in obj.layouts.form:
        names += [n for n in section.fields if n not in names]
    fields = [obj.field(n) for n in names]
    fields = [f for f in fields if f is not None]
    return fields or list(obj.fields)


def parse_form(obj: ObjectDef, form: Mapping[str, list[str]], tz, *, only_present: bool = True) -> dict[str, Any]:
    """The record values of a submitted form: editable fields of the layout.
    Checkboxes and multi-selects send a `_present` marker so that "none
    checked" still clears them."""
    data: dict[str, Any] = {}
    present = set(form.get("_present", []))
    for f in form_fields(obj):
        if not editable(f):
            continue
        if f.name in form or f.name in present or not only_present:
            data[f.name] = parse_value(f, list(form.get(f.name, [])), tz)
    owner = (form.get("owner") or [""])[-1].strip()
    if owner:   # the owner select; a form without one leaves the owner alone
        data["owner"] = owner
    return data


def sections(obj: ObjectDef) -> list[tuple[Any, int, list[FieldDef]]]:
    """(label, columns, fields) of the form layout; one section of every
    field when the object has no form layout."""
    out = []
    for section in obj.layouts.form:
        fields = [obj.field(n) for n in section.fields]
        out.append((section.label, section.columns, [f for f in fields if f is not None]))
    return out or [(None, 2, list(obj.fields))]
