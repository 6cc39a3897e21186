"""Pydantic models and JSON Schemas per object, built once per metadata
version and cached on the compiled schema (never per request)."""

from __future__ import annotations

from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, create_model
from typing_extensions import Annotated

from ..fields import field_type
from ..tables import CompiledSchema

SYSTEM_SCHEMA = {
    "id": {"type": "string", "readOnly": True},
    "version": {"type": "integer", "readOnly": True},
    "created_at": {"type": "string", "format": "date-time", "readOnly": True},
    "updated_at": {"type": "string", "format": "date-time", "readOnly": True},
    "created_by": {"type": ["string", "null"], "readOnly": True},
    "updated_by": {"type": ["string", "null"], "readOnly": True},
    "owner": {"type": ["string", "null"], "maxLength": 32},
}


def _nullable(schema: dict) -> dict:
    return {"anyOf": [schema, {"type": "null"}]}


def _read_schema(kind, f, objects) -> dict:
    """A value's schema as read; a computed one's from its result's type,
    which may depend on other objects (a rollup's min of dates is a date)."""
    result_type = getattr(kind, "result_type", None)
    if result_type is None:
        return kind.json_schema(f)
    inner, like = result_type(f, objects)
    return {**inner.json_schema(like), "readOnly": True}


def object_schemas(schema: CompiledSchema, name: str) -> dict[str, dict]:
    """JSON Schemas of a record (read), its create body and its patch body."""
    cache = schema.extra.setdefault("json_schemas", {})
    if name in cache:
        return cache[name]
    obj = schema.objects[name]
    read_props = dict(SYSTEM_SCHEMA)
    write_props: dict[str, Any] = {"owner": {"type": ["string", "null"], "maxLength": 32}}
    required = []
    for f in obj.fields:
        kind = field_type(f)
        read_props[f.name] = _nullable(_read_schema(kind, f, schema.objects))
        if kind.writable and not f.read_only:
            write_props[f.name] = _nullable(kind.json_schema(f)) if not f.required else kind.json_schema(f)
            if f.required and f.default is None and not f.default_expr and not f.required_if:
                required.append(f.name)
    result = {
        "read": {"type": "object", "title": name, "properties": read_props, "required": ["id", "version"]},
        "create": {"type": "object", "title": f"{name}_create", "properties": write_props, "required": required,
                   "additionalProperties": False},
        "patch": {"type": "object", "title": f"{name}_patch", "additionalProperties": False,
                  "properties": {k: (v if "anyOf" in v else _nullable(v)) for k, v in write_props.items()}},
    }
    cache[name] = result
    return result


def object_model(schema: CompiledSchema, name: str) -> type[BaseModel]:
    """A pydantic model of a record's input, its JSON Schema the registry's."""
    cache = schema.extra.setdefault("models", {})
    if name not in cache:
        obj = schema.objects[name]
        fields: dict[str, Any] = {}
        for f in obj.fields:
            kind = field_type(f)
            if not kind.writable:
                continue
            annotated = Annotated[Optional[Any], WithJsonSchema(_nullable(kind.json_schema(f)))]
            fields[f.name] = (annotated, Field(default=None))
        cache[name] = create_model(f"{name}_input", __config__=ConfigDict(extra="forbid"), **fields)
    return cache[name]
