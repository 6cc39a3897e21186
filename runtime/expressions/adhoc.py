"""Evaluating an expression over free variables, as `loom expr eval` does:
the names are the variables' keys, their types come from their values."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any, Mapping

from loomcrm.metadata.expressions import ExprError, ExpressionError, Scope

from .compiled import compile_expression
from .context import EvalContext, default_context
from .values import EvalFailure, admit

_IDENTIFIER_HINT = "variable names must be identifiers (letters, digits, '_'), e.g. amount"


def _type_of(value: Any) -> str:
    kind = type(value)
    if kind is bool:
        return "boolean"
    if kind in (int, Decimal):
        return "number"
    if kind is str:
        return "text"
    if kind is datetime:
        return "datetime"
    if kind is date:
        return "date"
    if kind is list:
        return "list"
    return "any"   # None: the value fits any use


def evaluate_with_vars(source: str, variables: Mapping[str, Any], context: EvalContext | None = None) -> Any:
    """Check and run `source` with `variables` (already plain values, see
    jsonio.from_json); ExpressionError on any problem."""
    ctx = context or default_context()
    if not isinstance(variables, Mapping):
        raise ExpressionError(ExprError("invalid_value", "vars must be a JSON object"))
    record: dict[str, Any] = {}
    for name, value in variables.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise ExpressionError(ExprError("invalid_value", f"invalid variable name {name!r}: {_IDENTIFIER_HINT}"))
        try:
            record[name] = admit(value, ctx.tz)
        except EvalFailure as failure:
            raise ExpressionError(ExprError(failure.code, f"variable '{name}': {failure.message}")) from None
    scope = Scope(objects={}, object_name="", extra_names={k: _type_of(v) for k, v in record.items()})
    return compile_expression(source, scope).evaluate(record, context=ctx)
