"""Picklist, multi-picklist and stage fields."""

from __future__ import annotations

import sqlalchemy as sa

from .registry import EQUALITY_OPS, FieldError, FieldType, register


# id(field) -> (field, its texts): built once per field definition (a plain
# dict: its single operations are safe across import threads)
_by_text: dict[int, tuple] = {}


def _options_by_text(field) -> dict[str, str]:
    """What an imported cell may say for each option: its value or any of
    its labels, case aside ("Pending customer response", "待客户回复")."""
    kept = _by_text.get(id(field))
    if kept is not None and kept[0] is field:
        return kept[1]
    out: dict[str, str] = {}
    for option in getattr(field, "options", None) or getattr(field, "stages", None) or []:
        if getattr(option, "retired", False):
            continue
        label = option.label
        texts = [label] if isinstance(label, str) else list(label.values()) if isinstance(label, dict) else []
        for text in (option.value, *texts):
            out.setdefault(text.strip().casefold(), option.value)
    if len(_by_text) > 1024:          # old metadata versions' fields
        _by_text.clear()
    _by_text[id(field)] = (field, out)
    return out


class _OneOf(FieldType):
    operators = EQUALITY_OPS

    def text_input(self, field, text, ctx):
        return _options_by_text(field).get(text.strip().casefold(), text)

    def parse_text(self, field, text, ctx):
        return self.coerce(field, self.text_input(field, text, ctx), ctx)

    def values(self, field) -> list[str]:
        raise NotImplementedError

    def column_type(self, field, objects):
        return sa.String(100)

    def python_type(self, field):
        return str

    def json_schema(self, field):
        return {"type": "string", "enum": self.values(field)}

    def coercer(self, field):
        allowed = frozenset(self.values(field))

        def coerce(value, ctx):
            if not isinstance(value, str):
                raise FieldError("type", f"{field.name} must be one of its option values")
            if value not in allowed:
                raise FieldError("invalid_option", f"{value[:100]!r} is not an option of {field.name}")
            return value
        return coerce

    def coerce(self, field, value, ctx):
        return self.coercer(field)(value, ctx)


def retired_kept(field, raw, stored):
    """`raw` as the field's value when it differs from the active options
    only by retired values the record already holds (a retired option stays
    on old records, but is not chosen anew); else None."""
    retired = {o.value for o in getattr(field, "options", None) or [] if o.retired}
    if not retired:
        return None
    active = {o.value for o in field.options if not o.retired}
    held = set(stored) if isinstance(stored, list) else {stored}
    chosen = raw if isinstance(raw, list) else [raw]
    if not all(isinstance(v, str) and (v in active or (v in retired and v in held)) for v in chosen):
        return None
    if field.type == "multi_picklist":
        return [o.value for o in field.options if o.value in set(chosen)]
    return raw


@register
class PicklistType(_OneOf):
    name = "picklist"

    def values(self, field):
        return [option.value for option in field.options if not option.retired]


@register
class StageType(_OneOf):
    name = "stage"

    def values(self, field):
        return [stage.value for stage in field.stages]


@register
class MultiPicklistType(FieldType):
    name = "multi_picklist"
    operators = ("includes", "isnull")

    def values(self, field):
        return [option.value for option in field.options if not option.retired]

    def column_type(self, field, objects):
        return sa.JSON()

    def python_type(self, field):
        return list[str]

    def json_schema(self, field):
        return {"type": "array", "items": {"type": "string", "enum": self.values(field)}, "uniqueItems": True}

    def coercer(self, field):
        allowed = self.values(field)
        known = frozenset(allowed)

        def coerce(value, ctx):
            if isinstance(value, str):  # a single value, or CSV's "a;b"
                value = [part.strip() for part in value.replace(",", ";").split(";") if part.strip()]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise FieldError("type", f"{field.name} must be a list of option values")
            unknown = [v for v in value if v not in known]
            if unknown:
                raise FieldError("invalid_option", f"{unknown[0][:100]!r} is not an option of {field.name}")
            chosen = set(value)
            return [v for v in allowed if v in chosen]  # option order, no duplicates
        return coerce

    def coerce(self, field, value, ctx):
        return self.coercer(field)(value, ctx)

    def text_input(self, field, text, ctx):
        known = _options_by_text(field)
        return [known.get(part.strip().casefold(), part.strip()) for part in text.replace(",", ";").split(";") if part.strip()]

    def parse_text(self, field, text, ctx):
        return self.coerce(field, self.text_input(field, text, ctx), ctx)
