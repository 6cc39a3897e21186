"""Lookup, related-to and user fields. The record service checks that the
referenced record or user exists; these classes check the shape."""

from __future__ import annotations

import re

import sqlalchemy as sa

from .registry import EQUALITY_OPS, FieldError, FieldType, register

ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


def check_id(field, value) -> str:
    if not isinstance(value, str) or not ID_PATTERN.match(value):
        raise FieldError("type", f"{field.name} must be a record id")
    return value


@register
class LookupType(FieldType):
    name = "lookup"
    operators = EQUALITY_OPS

    def column_type(self, field, objects):
        return sa.String(32)

    def python_type(self, field):
        return str

    def json_schema(self, field):
        return {"type": "string", "maxLength": 32, "description": f"id of a {field.to} record"}

    def coerce(self, field, value, ctx):
        if isinstance(value, dict) and set(value) == {"id"}:
            value = value["id"]
        return check_id(field, value)


@register
class UserType(FieldType):
    name = "user"
    operators = EQUALITY_OPS

    def column_type(self, field, objects):
        return sa.String(32)

    def python_type(self, field):
        return str

    def json_schema(self, field):
        return {"type": "string", "maxLength": 32, "description": "id of a user"}

    def coerce(self, field, value, ctx):
        return check_id(field, value)


@register
class RelatedToType(FieldType):
    """Stored as "object:id" in one indexed column."""

    name = "related_to"
    operators = ("eq", "isnull")

    def column_type(self, field, objects):
        return sa.String(100)

    def python_type(self, field):
        return dict

    def json_schema(self, field):
        return {
            "type": "object", "additionalProperties": False, "required": ["object", "id"],
            "properties": {"object": {"type": "string", "enum": list(field.to)}, "id": {"type": "string", "maxLength": 32}},
        }

    def coerce(self, field, value, ctx):
        if isinstance(value, str) and ":" in value:
            obj, _, rid = value.partition(":")
            value = {"object": obj, "id": rid}
        if not isinstance(value, dict) or set(value) != {"object", "id"}:
            raise FieldError("type", f'{field.name} must be {{"object": ..., "id": ...}}')
        if value["object"] not in field.to:
            raise FieldError("invalid_option", f"{field.name} cannot link to {str(value['object'])[:63]!r}")
        check_id(field, value["id"])
        return f"{value['object']}:{value['id']}"

    def to_json(self, field, value):
        if value is None:
            return None
        obj, _, rid = value.partition(":")
        return {"object": obj, "id": rid}
