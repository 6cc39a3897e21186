"""The JSON Schema (draft 2020-12) of the bundle format, generated from the
models of `model.py`, and the schema pass of `loom pack validate`.

The schema is exported to `bundle.schema.json` beside this module, for pack
authors' editors and CI pipelines. Its `$defs` hold one definition per model;
`#/$defs/manifest`, `#/$defs/object`, `#/$defs/workflow`, `#/$defs/role`,
`#/$defs/report`, `#/$defs/dashboard`, `#/$defs/pool`, `#/$defs/approval`,
`#/$defs/calendar`, `#/$defs/extension`, `#/$defs/survey` and `#/$defs/web_form` are the file kinds (`bundle.json`, `objects/*.json`,
`workflows/*.json`, `roles/*.json`, `reports/*.json`, `dashboards/*.json`,
`pools/*.json`, `approvals/*.json`, `calendars/*.json`, `extensions/*.json`, `surveys/*.json`, `web_forms/*.json`).
Rewrite the
file after a model change with:

    python -m loomcrm.metadata.schema

Pydantic's output is reshaped so that a validator's errors point at the
offending key instead of at a whole union:

- a discriminated union (`oneOf` + `discriminator`, which validators ignore)
  becomes an `enum` of the tags plus one `if`/`then` per tag, so a wrong
  `type` reads `'curency' is not one of [...]` and a right `type` gives the
  errors of its own branch only;
- the `null` branch of optional keys is dropped (omit the key instead), and
  a union left with one branch is that branch;
- maps with constrained keys use `propertyNames`, so a bad key is refused
  exactly as the models refuse it.

Every file may carry a top-level `"$schema"` (a string, for editors); the
bundle reader removes it before the models see the file.
"""

from __future__ import annotations

import difflib
import json
import sys
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from pydantic import ConfigDict, TypeAdapter
from pydantic.json_schema import models_json_schema

from . import model
from .bundle import Problem, json_path

SCHEMA_FILE = Path(__file__).with_name("bundle.schema.json")
SCHEMA_ID = "https://loomcrm.org/schema/loom-1/bundle.schema.json"
DIALECT = "https://json-schema.org/draft/2020-12/schema"

# The file kinds and the `$defs` entry of each.
KINDS = {"manifest": "BundleManifest", "object": "ObjectDef", "workflow": "Workflow", "role": "Role",
         "report": "Report", "dashboard": "Dashboard", "pool": "Pool",
         "approval": "ApprovalProcess", "calendar": "BusinessCalendar", "extension": "ObjectExtension",
         "survey": "Survey", "web_form": "WebForm"}


# --- generation ------------------------------------------------------------------

def build_schema() -> dict[str, Any]:
    """The bundle format's JSON Schema, as a dict (what the exported file holds)."""
    _, generated = models_json_schema(
        [(getattr(model, name), "validation") for name in KINDS.values()],
        ref_template="#/$defs/{model}",
    )
    defs: dict[str, Any] = {name: _reshape(d) for name, d in generated["$defs"].items()}
    for kind, name in KINDS.items():
        root = defs[name]
        root["properties"] = {"$schema": {"type": "string", "description": "the schema, for editors"}, **root["properties"]}
        defs[kind] = {"$ref": f"#/$defs/{name}"}
    return {
        "$schema": DIALECT,
        "$id": SCHEMA_ID,
        "title": f"Loom metadata bundle, format {model.FORMAT}",
        "description": (
            "One definition per file kind: #/$defs/manifest for bundle.json, #/$defs/object for "
            "objects/<name>.json, #/$defs/workflow for workflows/<name>.json, #/$defs/role for "
            "roles/<name>.json, #/$defs/report for reports/<name>.json, #/$defs/dashboard for "
            "dashboards/<name>.json, #/$defs/pool for pools/<name>.json, #/$defs/approval for "
            "approvals/<name>.json, #/$defs/calendar for calendars/<name>.json, #/$defs/extension for "
            "extensions/<object>.json, #/$defs/survey for surveys/<name>.json, #/$defs/web_form for "
            "web_forms/<name>.json. Cross references "
            "(lookups, layouts, expressions, ...) are checked by `loom pack validate`."
        ),
        "$defs": dict(sorted(defs.items())),
    }


def _reshape(node: Any) -> Any:
    if isinstance(node, list):
        return [_reshape(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _reshape(value) for key, value in node.items()}
    # Titles are pydantic's spelling of the key; `default: null` only says "optional".
    if isinstance(node.get("title"), str):
        del node["title"]
    if "default" in node and node["default"] is None:
        del node["default"]
    if "discriminator" in node and "oneOf" in node:
        node = _discriminated(node)
    if "anyOf" in node:
        branches = [b for b in node["anyOf"] if b != {"type": "null"}]
        if all(set(b) == {"type"} and isinstance(b["type"], str) for b in branches) and len(branches) > 1:
            merged = []
            for b in branches:
                if b["type"] not in merged:
                    merged.append(b["type"])
            if "integer" in merged and "number" in merged:
                merged.remove("integer")
            branches = [{"type": merged if len(merged) > 1 else merged[0]}]
        del node["anyOf"]
        if len(branches) == 1:
            node = {**branches[0], **node}
        else:
            node["anyOf"] = branches
    if "patternProperties" in node and "properties" not in node and len(node["patternProperties"]) == 1:
        (pattern, value), = node.pop("patternProperties").items()
        node["propertyNames"] = {"pattern": pattern}
        if "additionalProperties" not in node:
            node["additionalProperties"] = value
    return node


def _discriminated(node: dict[str, Any]) -> dict[str, Any]:
    tag = node["discriminator"]["propertyName"]
    by_ref = {ref: value for value, ref in node["discriminator"]["mapping"].items()}
    # The union's own order (FIELD_TYPES order for fields), not the mapping's sorted one.
    mapping = {by_ref[branch["$ref"]]: branch["$ref"] for branch in node["oneOf"] if branch.get("$ref") in by_ref}
    return {
        "type": "object",
        "required": [tag],
        "properties": {tag: {"enum": list(mapping)}},
        "allOf": [
            {
                "if": {"type": "object", "required": [tag], "properties": {tag: {"const": value}}},
                "then": {"$ref": ref},
            }
            for value, ref in mapping.items()
        ],
    }


def schema_text() -> str:
    return json.dumps(build_schema(), indent=2, ensure_ascii=False) + "\n"


def write_schema(path: Path = SCHEMA_FILE) -> Path:
    path.write_text(schema_text(), encoding="utf-8")
    return path


@lru_cache(maxsize=1)
def _validators() -> dict[str, Draft202012Validator]:
    schema = build_schema()
    return {
        kind: Draft202012Validator({"$ref": f"#/$defs/{name}", "$defs": schema["$defs"]})
        for kind, name in KINDS.items()
    }


# --- the schema pass --------------------------------------------------------------

def _pattern_of(annotation: Any) -> str:
    return TypeAdapter(annotation, config=ConfigDict(regex_engine="python-re")).json_schema()["pattern"]


@lru_cache(maxsize=1)
def _pattern_words() -> dict[str, str]:
    """Readable descriptions of the format's regular expressions."""
    return {
        model.NAME_PATTERN: "is not a valid name (lowercase letters, digits and '_', starting with a letter, "
                            "at most 63 characters, no '__')",
        _pattern_of(model.LocaleTag): "is not a locale tag like 'en' or 'zh-CN'",
        _pattern_of(model.Uid): "is not a valid uid (letters, digits and '_.:-')",
        _pattern_of(model.VersionRange): "is not a version range like '>=1.0,<2'",
        _pattern_of(model.SemVer): "is not a version like '1.2.0'",
        _pattern_of(model.IsoDate): "is not a date like '2024-12-31'",
        _pattern_of(model.IsoDateTime): "is not a date and time like '2024-12-31T17:30:00Z'",
        _pattern_of(model.Color): "is not a colour like '#1e88e5' or 'green'",
        _pattern_of(model.SortSpec): "is not a sort like '-amount,name'",
        _pattern_of(model.Offset): "is not an offset like '-3d' (a number and m, h, d or w)",
        _pattern_of(model.Cron): "is not a cron expression of 5 fields like '0 8 * * 1'",
    }


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    if isinstance(value, (dict, list)):
        text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _one_of(value: Any, options: Sequence[Any]) -> str:
    listed = [repr(o) for o in options[:10]]
    more = f", … {len(options) - 10} more" if len(options) > 10 else ""
    text = f"{_short(value)} is not one of [{', '.join(listed)}{more}]"
    if isinstance(value, str):
        close = difflib.get_close_matches(value, [o for o in options if isinstance(o, str)], n=1, cutoff=0.6)
        if close:
            text += f"; did you mean {close[0]!r}?"
    return text


_TYPE_WORDS = {"string": "a string", "integer": "an integer", "number": "a number", "boolean": "true or false",
               "object": "an object", "array": "a list", "null": "null"}


def _type_message(value: Any, expected: str | list[str]) -> str:
    names = [expected] if isinstance(expected, str) else list(expected)
    return f"{_short(value)} is not {' or '.join(_TYPE_WORDS.get(n, n) for n in names)}"


def schema_problems(kind: str, data: Any, file: str) -> list[Problem]:
    """Every problem the JSON Schema finds in `data`, a file of `kind`
    ("manifest", "object", "workflow" or "role"), reported against `file`."""
    validator = _validators()[kind]
    problems: list[Problem] = []
    for error in sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path))):
        problems.extend(_convert(error, file))
    seen: set[Problem] = set()
    unique = []
    for p in problems:
        if p not in seen:
            seen.add(p)
            unique.append(p)
    return unique


def _convert(error: ValidationError, file: str) -> Iterable[Problem]:
    path = list(error.absolute_path)
    where = json_path(path)
    validator, value, expected = error.validator, error.instance, error.validator_value
    if validator == "additionalProperties" and isinstance(value, dict) and expected is False:
        known = set(error.schema.get("properties", {}))
        for key in value:
            if key not in known:
                hint = difflib.get_close_matches(key, sorted(known - {"$schema"}), n=1, cutoff=0.7)
                message = "unknown key" + (f" (did you mean {hint[0]!r}?)" if hint else "")
                yield Problem(file, json_path(path + [key]), message, "unknown_key")
        return
    if validator in ("anyOf", "oneOf"):
        yield from _union(error, file)
        return
    if validator == "required":
        missing = [k for k in expected if isinstance(value, dict) and k not in value]
        for key in missing or expected:
            yield Problem(file, where, f"missing required key {key!r}", "missing_key")
        return
    if list(error.absolute_schema_path)[-2:-1] == ["propertyNames"] and isinstance(value, str):
        # The error is about a key (`propertyNames`): report it at the key itself.
        yield Problem(file, json_path(path + [value]), _message(error, value), "schema")
        return
    yield Problem(file, where, _message(error, value), "schema")


def _message(error: ValidationError, value: Any) -> str:
    validator, expected = error.validator, error.validator_value
    if validator == "type":
        return _type_message(value, expected)
    if validator == "enum":
        return _one_of(value, list(expected))
    if validator == "const":
        return f"{_short(value)} should be {expected!r}"
    if validator == "pattern":
        words = _pattern_words().get(expected)
        return f"{_short(value)} {words}" if words else f"{_short(value)} does not match {expected!r}"
    if validator == "minLength":
        return "should not be empty" if expected == 1 else f"should have at least {expected} characters"
    if validator == "maxLength":
        return f"is too long ({len(value)} characters, at most {expected})"
    if validator == "minItems":
        return "should not be empty" if expected == 1 else f"should have at least {expected} items"
    if validator == "maxItems":
        return f"has too many items (at most {expected})"
    if validator == "minProperties":
        return "should not be empty" if expected == 1 else f"should have at least {expected} keys"
    if validator in ("minimum", "exclusiveMinimum"):
        return f"{_short(value)} is less than the minimum of {expected}" if validator == "minimum" \
            else f"{_short(value)} should be more than {expected}"
    if validator in ("maximum", "exclusiveMaximum"):
        return f"{_short(value)} is more than the maximum of {expected}" if validator == "maximum" \
            else f"{_short(value)} should be less than {expected}"
    message = error.message
    return message if len(message) <= 200 else message[:199] + "…"


def _union(error: ValidationError, file: str) -> Iterable[Problem]:
    """An `anyOf` (e.g. a text or a map of locales): report the errors of the
    branch that matches the value's JSON type, else one type error."""
    by_branch: dict[int, list[ValidationError]] = {}
    for sub in error.context or []:
        by_branch.setdefault(sub.schema_path[0], []).append(sub)
    plausible = {
        index: subs for index, subs in by_branch.items()
        if not any(s.validator == "type" and list(s.relative_path) == [] for s in subs)
    }
    if len(plausible) == 1:
        (subs,) = plausible.values()
        for sub in subs:
            yield from _convert(sub, file)
        return
    if not plausible:
        types: list[str] = []
        for branch in error.validator_value:
            t = branch.get("type")
            for name in ([t] if isinstance(t, str) else t or []):
                if name not in types:
                    types.append(name)
        if types:
            yield Problem(file, json_path(list(error.absolute_path)), _type_message(error.instance, types), "schema")
            return
    from jsonschema.exceptions import best_match

    best = best_match(error.context or [error])
    yield from _convert(best, file) if best is not error else [
        Problem(file, json_path(list(error.absolute_path)), _message(error, error.instance), "schema")]


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    target = Path(args[0]) if args else SCHEMA_FILE
    write_schema(target)
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
