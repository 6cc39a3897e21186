"""The OpenAPI document from metadata: a schema and paths per object,
built once per metadata version (so it refreshes on publish)."""

from __future__ import annotations

import copy
from typing import Any

from ..tables import CompiledSchema
from .models import object_schemas

PROBLEM = {
    "type": "object",
    "properties": {
        "type": {"type": "string"}, "status": {"type": "integer"}, "title": {"type": "string"},
        "detail": {"type": "string"},
        "errors": {"type": "array", "items": {"type": "object", "properties": {
            "field": {"type": "string"}, "code": {"type": "string"}, "message": {"type": "string"},
            "rule": {"type": "string"}, "stage": {"type": "string"}}}},
    },
    "required": ["status", "title"],
}


def _problems(*statuses: int) -> dict[str, Any]:
    return {str(s): {"description": "a problem", "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}
            for s in statuses}


def _json(ref: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}


def object_paths(name: str, prefix: str = "/api/v1") -> dict[str, Any]:
    id_param = {"name": "id", "in": "path", "required": True, "schema": {"type": "string", "maxLength": 32}}
    list_params = [
        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 500}},
        {"name": "cursor", "in": "query", "schema": {"type": "string"}},
        {"name": "sort", "in": "query", "schema": {"type": "string"}},
        {"name": "q", "in": "query", "schema": {"type": "string"}},
        {"name": "filter", "in": "query", "schema": {"type": "string"}},
    ]
    page = {"type": "object", "properties": {"data": {"type": "array", "items": {"$ref": f"#/components/schemas/{name}"}},
                                             "next_cursor": {"type": ["string", "null"]}}, "required": ["data", "next_cursor"]}
    tag = [name]
    return {
        f"{prefix}/{name}": {
            "get": {"tags": tag, "operationId": f"list_{name}", "parameters": list_params,
                    "responses": {"200": {"description": "a page", "content": {"application/json": {"schema": page}}}, **_problems(400, 401)}},
            "post": {"tags": tag, "operationId": f"create_{name}",
                     "requestBody": {"required": True, "content": _json(f"{name}_create")},
                     "responses": {"201": {"description": "created", "content": _json(name)}, **_problems(400, 401, 409, 422)}},
        },
        f"{prefix}/{name}/{{id}}": {
            "parameters": [id_param],
            "get": {"tags": tag, "operationId": f"get_{name}",
                    "responses": {"200": {"description": "the record", "content": _json(name)}, **_problems(401, 404)}},
            "patch": {"tags": tag, "operationId": f"update_{name}",
                      "parameters": [{"name": "If-Match", "in": "header", "schema": {"type": "string"}}],
                      "requestBody": {"required": True, "content": _json(f"{name}_patch")},
                      "responses": {"200": {"description": "the record", "content": _json(name)}, **_problems(400, 401, 404, 409, 412, 422)}},
            "delete": {"tags": tag, "operationId": f"delete_{name}",
                       "responses": {"204": {"description": "in the recycle bin"}, **_problems(401, 404, 409)}},
        },
        f"{prefix}/{name}/{{id}}/restore": {
            "parameters": [id_param],
            "post": {"tags": tag, "operationId": f"restore_{name}",
                     "responses": {"200": {"description": "the record", "content": _json(name)}, **_problems(401, 404, 409)}},
        },
    }


def build_openapi(schema: CompiledSchema, base: dict[str, Any], prefix: str = "/api/v1") -> dict[str, Any]:
    doc = copy.deepcopy(base)
    doc.setdefault("openapi", "3.1.0")
    paths = doc.setdefault("paths", {})
    components = doc.setdefault("components", {}).setdefault("schemas", {})
    components["Problem"] = PROBLEM
    for name in sorted(schema.objects):
        shapes = object_schemas(schema, name)
        components[name] = shapes["read"]
        components[f"{name}_create"] = shapes["create"]
        components[f"{name}_patch"] = shapes["patch"]
        paths.update(object_paths(name, prefix))
    doc.setdefault("info", {})["x-loom-metadata-version"] = schema.version
    return doc


def install_openapi(app, runtime, prefix: str = "/api/v1") -> None:
    """Make `app.openapi()` (and so `/openapi.json`) include a schema per
    object of the published metadata, rebuilt when the version changes."""
    from fastapi.openapi.utils import get_openapi

    def openapi() -> dict[str, Any]:
        schema = runtime.schema()
        return schema.cached("openapi", lambda: build_openapi(
            schema, get_openapi(title=app.title, version=app.version, openapi_version="3.1.0", routes=app.routes), prefix))

    app.openapi = openapi
