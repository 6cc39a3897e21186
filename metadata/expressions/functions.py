"""Signatures of the function library (SPEC 4): names, arity, argument and
result types. The implementations live in `loomcrm.runtime.expressions`;
this table is what `loom pack validate` checks calls against."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from . import types as t

SCALARS = frozenset({t.TEXT, t.NUMBER, t.BOOLEAN, t.DATE, t.DATETIME})
VALUES = SCALARS | {t.LIST}          # everything but a related_to link
TEMPORAL = frozenset({t.DATE, t.DATETIME})
_TEXT = frozenset({t.TEXT})
_NUMBER = frozenset({t.NUMBER})


@dataclass(frozen=True)
class Signature:
    name: str
    min_args: int
    max_args: int | None                       # None: any number of arguments
    params: tuple[frozenset[str], ...]          # allowed types per position; the last repeats
    returns: str | Callable[[list[str]], str | None]
    field_ref: str | None = None                # "any" or "stage": the argument names a field of the record
    context: bool = False                       # reads the evaluation context (user, clock, change set)

    def arity_text(self) -> str:
        if self.max_args is None:
            return f"at least {self.min_args} argument{'s' * (self.min_args != 1)}"
        if self.min_args == self.max_args:
            return f"{self.min_args} argument{'s' * (self.min_args != 1)}"
        return f"{self.min_args} to {self.max_args} arguments"

    def param(self, index: int) -> frozenset[str]:
        return self.params[min(index, len(self.params) - 1)] if self.params else frozenset()


def _same(kinds: list[str]) -> str | None:
    result = t.NULL
    for kind in kinds:
        result = t.unify(result, kind)
        if result is None:
            return None
    return result


def _first(kinds: list[str]) -> str | None:
    return kinds[0] if kinds else t.ANY


_SIGNATURES = [
    Signature("is_blank", 1, 1, (VALUES | {t.LINK},), t.BOOLEAN),
    Signature("coalesce", 1, None, (VALUES,), _same),
    Signature("len", 1, 1, (frozenset({t.TEXT, t.LIST}),), t.NUMBER),
    Signature("lower", 1, 1, (_TEXT,), t.TEXT),
    Signature("upper", 1, 1, (_TEXT,), t.TEXT),
    Signature("trim", 1, 1, (_TEXT,), t.TEXT),
    Signature("contains", 2, 2, (_TEXT,), t.BOOLEAN),
    Signature("starts_with", 2, 2, (_TEXT,), t.BOOLEAN),
    Signature("ends_with", 2, 2, (_TEXT,), t.BOOLEAN),
    Signature("matches", 2, 2, (_TEXT,), t.BOOLEAN),
    Signature("concat", 1, None, (VALUES,), t.TEXT),
    Signature("text", 1, 1, (VALUES,), t.TEXT),
    Signature("number", 1, 1, (frozenset({t.TEXT, t.NUMBER}),), t.NUMBER),
    Signature("round", 1, 2, (_NUMBER,), t.NUMBER),
    Signature("abs", 1, 1, (_NUMBER,), t.NUMBER),
    Signature("min", 1, None, (t.ORDERED,), _same),
    Signature("max", 1, None, (t.ORDERED,), _same),
    Signature("today", 0, 0, (), t.DATE, context=True),
    Signature("now", 0, 0, (), t.DATETIME, context=True),
    Signature("date", 3, 3, (_NUMBER,), t.DATE),
    Signature("add_days", 2, 2, (TEMPORAL, _NUMBER), _first),
    Signature("add_months", 2, 2, (TEMPORAL, _NUMBER), _first),
    Signature("days_between", 2, 2, (TEMPORAL,), t.NUMBER),
    Signature("year", 1, 1, (TEMPORAL,), t.NUMBER),
    Signature("month", 1, 1, (TEMPORAL,), t.NUMBER),
    Signature("day", 1, 1, (TEMPORAL,), t.NUMBER),
    Signature("weekday", 1, 1, (TEMPORAL,), t.NUMBER),
    Signature("includes", 2, 2, (frozenset({t.LIST}), _TEXT), t.BOOLEAN),
    Signature("is_new", 0, 0, (), t.BOOLEAN, context=True),
    Signature("is_changed", 1, 1, (VALUES | {t.LINK},), t.BOOLEAN, field_ref="any", context=True),
    Signature("prior_value", 1, 1, (VALUES | {t.LINK},), _first, field_ref="any", context=True),
    Signature("current_user", 0, 0, (), t.TEXT, context=True),
    Signature("has_role", 1, 1, (_TEXT,), t.BOOLEAN, context=True),
    Signature("approval_status", 0, 0, (), t.TEXT, context=True),
    Signature("stage_probability", 1, 1, (_TEXT,), t.NUMBER, field_ref="stage"),
    Signature("stage_category", 1, 1, (_TEXT,), t.TEXT, field_ref="stage"),
]

SIGNATURES: dict[str, Signature] = {s.name: s for s in _SIGNATURES}
