"""Live help for the rules an admin types: the checker's problems with
their line and column, completion of field names (through lookups) and
functions with their signatures, and "try it" against a real record."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping

import sqlalchemy as sa

from loomcrm.metadata.expressions import SIGNATURES, ExpressionError, Scope, analyze
from loomcrm.metadata.expressions.functions import Signature
from loomcrm.metadata.model import SYSTEM_FIELDS, ObjectDef, localized
from loomcrm.runtime.expressions.compiled import compile_expression
from loomcrm.runtime.expressions.context import EvalContext

MAX_SOURCE = 4000       # the longest expression the metadata takes
MAX_COMPLETIONS = 30
# What each place that takes an expression needs it to answer.
EXPECT = {"rule": "boolean", "condition": "boolean", "formula": None, "default": None}
# Each problem's kind in words, for the pages in other languages than
# English (the checker's own message, precise but English, follows).
PROBLEM_TEXTS = {
    "syntax": "This is not written correctly here.", "forbidden_syntax": "This is not allowed in a rule.",
    "unknown_name": "There is no such field or name.", "unknown_function": "There is no such function.",
    "arity": "The function is given the wrong number of values.", "type_mismatch": "These values do not fit together here.",
    "not_a_field": "This function needs a field name here.", "too_long": "The expression is too long.",
    "too_deep": "The expression is nested too deeply.", "invalid_regex": "This pattern is not a valid regular expression.",
}
_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*$")


@dataclass(frozen=True)
class Completion:
    insert: str         # the text that replaces the token being typed
    label: str          # what the list shows
    detail: str         # a type, or a function's signature


def signature_text(sig: Signature) -> str:
    """`round(number, number?) → number`: each argument's types, optional
    ones marked, a repeating last one as `…`."""
    count = sig.max_args if sig.max_args is not None else max(sig.min_args, len(sig.params), 1)
    names = ["|".join(sorted(sig.param(i))) or "value" for i in range(count)]
    names = [n + ("?" if i >= sig.min_args else "") for i, n in enumerate(names)]
    if sig.max_args is None:
        names.append("…")
    returns = sig.returns if isinstance(sig.returns, str) else "value"
    return f"{sig.name}({', '.join(names)}) → {returns}"


def check(source: str, objects: Mapping[str, ObjectDef], object_name: str, kind: str) -> dict[str, Any]:
    """The problems of `source` and the type it answers."""
    if len(source) > MAX_SOURCE:
        return {"ok": False, "type": None, "errors": [
            {"code": "too_long", "message": f"an expression has at most {MAX_SOURCE} characters", "line": 1, "column": 1}]}
    if not source.strip():
        return {"ok": True, "type": None, "errors": []}
    try:
        checked = analyze(source, Scope(objects, object_name), expect=EXPECT.get(kind))
    except ExpressionError as exc:
        return {"ok": False, "type": None, "errors": [e.as_dict() for e in exc.errors[:10]]}
    return {"ok": True, "type": checked.type, "errors": []}


def first_problem(result: dict[str, Any]) -> str | None:
    """The first problem of a `check` result, with its line and column."""
    if not result["errors"]:
        return None
    e = result["errors"][0]
    return f"{e['message']} (line {e['line']}, column {e['column']})"


def localized_errors(errors: list[dict[str, Any]], gettext, locale: str) -> list[dict[str, Any]]:
    """The problems with their messages in the page's language."""
    if locale == "en":
        return errors
    return [e | {"message": f"{gettext(PROBLEM_TEXTS[e['code']])} ({e['message']})"} if e["code"] in PROBLEM_TEXTS else e
            for e in errors]


def complete(source: str, cursor: int, objects: Mapping[str, ObjectDef], object_name: str,
             locale: str) -> tuple[str, list[Completion]]:
    """(the token before `cursor`, what may complete it)."""
    match = _TOKEN.search(source[: max(0, min(cursor, len(source)))])
    token = match.group(0) if match else ""
    *path, prefix = token.split(".") if token else [""]
    obj = objects.get(object_name)
    for part in path:             # walk the lookups typed so far
        fld = obj.field(part) if obj else None
        obj = objects.get(fld.to) if fld is not None and fld.type == "lookup" else None
    if obj is None:
        return token, []
    lead = ".".join(path + [""]) if path else ""
    found = [Completion(lead + f.name, f.name, f"{localized(f.label, locale, f.name)} · {f.type}")
             for f in obj.fields if f.name.startswith(prefix)]
    found += [Completion(lead + name, name, "system") for name in SYSTEM_FIELDS if name.startswith(prefix)]
    if not path:
        found += [Completion(f"{name}(", name, signature_text(sig)) for name, sig in sorted(SIGNATURES.items())
                  if name.startswith(prefix)]
    return token, found[:MAX_COMPLETIONS]


def try_on_record(runtime, source: str, object_name: str, record_id: str, user) -> dict[str, Any]:
    """The value of `source` on a record of the published metadata, as the
    record service would compute it, or the error."""
    schema = runtime.schema()
    obj = schema.object(object_name)
    if obj is None:
        return {"error": f"{object_name} is not published yet: publish it to try rules on its records"}
    try:
        compiled = compile_expression(source, Scope(schema.objects, object_name, version=schema.version))
    except ExpressionError as exc:
        return {"error": exc.error.message}
    try:
        record = runtime.records.get(object_name, record_id, user)
    except Exception as exc:   # a missing or hidden record: say so, whatever the reason
        return {"error": getattr(exc, "detail", str(exc))}
    values = _typed(runtime, obj, record["id"])
    for path in compiled.paths:
        values[path] = _follow(runtime, schema, obj, values, path.split("."))
    try:
        value = compiled.evaluate(values, context=EvalContext(
            user_id=user.id, roles=frozenset({user.role}), timezone=str(runtime.context.timezone)))
    except ExpressionError as exc:
        return {"error": exc.error.message, "title": record.get(obj.title_field or "id")}
    return {"value": _shown(value), "title": record.get(obj.title_field or "id")}


def _typed(runtime, obj: ObjectDef, rid: str) -> dict[str, Any]:
    """A record's stored values with their Python types (Decimal, date)."""
    table = runtime.schema().table(obj.name)
    with runtime.engine.connect() as conn:
        row = conn.execute(sa.select(table).where(table.c.id == rid)).mappings().first()
    return dict(row) if row else {}


def _follow(runtime, schema, obj: ObjectDef, values: dict[str, Any], parts: list[str]) -> Any:
    current_obj, current = obj, values
    for part in parts[:-1]:
        fld = current_obj.field(part)
        if fld is None or fld.type != "lookup" or not current.get(part):
            return None
        current_obj = schema.object(fld.to)
        current = _typed(runtime, current_obj, current[part])
    return current.get(parts[-1])


def _shown(value: Any) -> str:
    if value is None:
        return "None"
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_shown(v) for v in value) + "]"
    return str(value)
