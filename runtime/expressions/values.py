"""The values expressions work on, and the limits on them (SPEC 4).

Only plain values ever reach an expression: str, int, Decimal, bool,
date, datetime (always aware), None, and lists of these. Anything else a
caller passes is converted (float -> Decimal, naive datetime -> the company's
time zone, tuple -> list) or refused, so no expression can reach an object
with methods worth calling.
"""

from __future__ import annotations

import math
from datetime import date, datetime, tzinfo
from decimal import Context, Decimal, ROUND_HALF_EVEN, InvalidOperation, Overflow, DivisionByZero
from typing import Any, Mapping

MAX_TEXT = 100_000
MAX_LIST = 10_000
# Numbers beyond 10**100 have no business in a CRM; bounding them keeps
# every arithmetic step cheap whatever an attacker chains together.
MAX_NUMBER = 10 ** 100
# The same bound as a Decimal: comparing a Decimal with the int converts
# the 101-digit int on every comparison.
MAX_DECIMAL = Decimal(MAX_NUMBER)

# Exact decimal arithmetic without touching the caller's thread-local
# decimal context: every operation names this context explicitly.
DECIMALS = Context(prec=34, rounding=ROUND_HALF_EVEN, Emax=999, Emin=-999,
                   traps=[InvalidOperation, Overflow, DivisionByZero])


class EvalFailure(Exception):
    """A run-time failure inside the sandbox; the interpreter adds where."""

    def __init__(self, code: str, message: str, node: Any = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.node = node


NUMBER_TYPES = (int, Decimal)
# Values an expression takes as they are (anything else goes through `admit`)
PLAIN = frozenset({int, bool, Decimal, type(None), date})


def check_number(value: Any) -> Any:
    limit = MAX_DECIMAL if type(value) is Decimal else MAX_NUMBER
    if -limit < value < limit:
        return value
    raise EvalFailure("value_too_large", "a number exceeds 10**100")


def check_text(value: str) -> str:
    if len(value) > MAX_TEXT:
        raise EvalFailure("value_too_large", f"a text value exceeds {MAX_TEXT:,} characters")
    return value


def admit_read(value: Any, tz: tzinfo) -> Any:
    """A record's value as an expression reads it, for a value not of a
    `PLAIN` type: text up to MAX_TEXT as it is (the common case), anything
    else through `admit`."""
    if type(value) is str and len(value) <= MAX_TEXT:
        return value
    return admit(value, tz)


def admit(value: Any, tz: tzinfo, *, nested: bool = False) -> Any:
    """The plain value for `value` as given by a caller, or EvalFailure."""
    kind = type(value)
    if value is None or kind in (bool, int, Decimal, date):
        if kind is Decimal and not value.is_finite():
            raise EvalFailure("invalid_value", "a decimal value is not finite")
        return value if kind is not int else check_number(value)
    if kind is str:
        return check_text(value)
    if kind is datetime:
        return value if value.tzinfo is not None else value.replace(tzinfo=tz)
    if kind is float:
        if not math.isfinite(value):
            raise EvalFailure("invalid_value", "a number is not finite")
        return check_number(Decimal(repr(value)))
    if kind in (list, tuple) and not nested:
        if len(value) > MAX_LIST:
            raise EvalFailure("value_too_large", f"a list exceeds {MAX_LIST:,} items")
        return [admit(v, tz, nested=True) for v in value]
    if isinstance(value, Mapping) and not nested:
        # A related_to link ({"object", "id"}); the checker only lets
        # is_blank() see it, so keep just the two plain strings.
        return {k: admit(value.get(k), tz, nested=True) for k in ("object", "id")}
    # Subclasses (str enums, int flags...) become their plain base value;
    # their methods must never be reachable from an expression.
    for base in (bool, int, str):
        if isinstance(value, base):
            return admit(base.__new__(base, value) if base is not bool else bool(value), tz, nested=nested)
    raise EvalFailure("invalid_value", f"a value of type {kind.__name__} cannot be used in an expression")


def to_text(value: Any, tz: tzinfo) -> str:
    """How `text()` and `concat()` write a value."""
    kind = type(value)
    if value is None:
        return ""
    if kind is str:
        return value
    if kind is bool:
        return "true" if value else "false"
    if kind is Decimal:
        return format(value, "f")
    if kind is datetime:
        return value.astimezone(tz).isoformat()
    if kind is date:
        return value.isoformat()
    if kind is list:
        return ", ".join(to_text(v, tz) for v in value)
    return str(value)
