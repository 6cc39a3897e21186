"""Formula, rollup and auto-number fields: stored, never written by users.

Formulas and rollups are computed by the rules layer (see
`loomcrm.runtime.records.RuleHooks`); auto-numbers by the record service
from a per-field counter, so a number is never reused.
"""

from __future__ import annotations

from datetime import date, datetime

import sqlalchemy as sa

from .registry import COMPARISON_OPS, TEXT_OPS, FieldType, field_type, register


class _Computed(FieldType):
    writable = False

    def result_type(self, field, objects) -> tuple[FieldType, object]:
        raise NotImplementedError

    def column_type(self, field, objects):
        kind, like = self.result_type(field, objects)
        return kind.column_type(like, objects)

    def to_json(self, field, value):
        kind, like = self.result_type(field, {})
        return kind.to_json(like, value)

    def json_schema(self, field):
        kind, like = self.result_type(field, {})
        return {**kind.json_schema(like), "readOnly": True}


class _Like:
    """A stand-in field definition for a computed field's result type."""

    def __init__(self, name: str, **keys):
        self.name = name
        self.min = self.max = None
        self.pattern = None
        for key, value in keys.items():
            setattr(self, key, value)


def _like(field, returns: str, scale: int | None = None):
    if returns == "text":
        return field_type("long_text"), _Like(field.name, max_length=None)
    if returns in ("decimal", "currency", "percent"):
        return field_type("decimal"), _Like(field.name, precision=28, scale=scale if scale is not None else 6)
    return field_type(returns), _Like(field.name)


@register
class FormulaType(_Computed):
    name = "formula"
    operators = COMPARISON_OPS

    def result_type(self, field, objects):
        return _like(field, field.returns, field.scale)


@register
class RollupType(_Computed):
    name = "rollup"
    operators = COMPARISON_OPS

    def result_type(self, field, objects):
        if field.function == "count":
            return field_type("integer"), _Like(field.name)
        if field.function in ("sum", "avg"):
            return _like(field, "decimal", 6)
        child = objects.get(field.from_) if objects else None
        source = child.field(field.field) if child and field.field else None
        if source is not None and source.type in ("date", "datetime"):
            return field_type(source.type), _Like(field.name)
        if source is None and field.field in ("created_at", "updated_at"):   # system fields: datetimes
            return field_type("datetime"), _Like(field.name)
        return _like(field, "decimal", 6)

    def to_json(self, field, value):
        # without the objects a min or max does not know its child's type:
        # the value tells
        if isinstance(value, datetime):
            return field_type("datetime").to_json(_Like(field.name), value)
        if isinstance(value, date):
            return field_type("date").to_json(_Like(field.name), value)
        if isinstance(value, str) and field.function in ("min", "max"):
            return value   # JSON already: a date or a time in ISO form
        return super().to_json(field, value)


@register
class AutoNumberType(FieldType):
    name = "auto_number"
    writable = False
    searchable = True
    operators = TEXT_OPS

    def column_type(self, field, objects):
        return sa.String(len(field.prefix) + max(field.digits, 18) + 2)

    def python_type(self, field):
        return str

    def json_schema(self, field):
        return {"type": "string", "readOnly": True}

    def format(self, field, number: int) -> str:
        return f"{field.prefix}{number:0{field.digits}d}"
