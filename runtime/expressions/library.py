"""The function library of SPEC 4, as run by the evaluator.

Every function takes the running evaluation `ev` first (it carries the
time zone, the context and the record) and then the argument values. The
signatures (arity, types) are checked before anything runs, in
`loomcrm.metadata.expressions.functions`; the functions still refuse wrong
types at run time, because an expression whose names have unknown types
(e.g. `loom expr eval` with a None variable) reaches them unchecked.
"""

from __future__ import annotations

import calendar
import re
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Context, Decimal, InvalidOperation
from functools import lru_cache
from typing import Any, Callable

import re2

from .values import MAX_TEXT, EvalFailure, check_number, check_text, to_text

ROUNDING = Context(prec=250, rounding=ROUND_HALF_UP, traps=[InvalidOperation])
_NUMBER_TEXT = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")


def _type_error(name: str, value: Any) -> EvalFailure:
    kind = {str: "text", int: "number", Decimal: "number", bool: "boolean", date: "date",
            datetime: "datetime", list: "list"}.get(type(value), type(value).__name__)
    return EvalFailure("type_mismatch", f"{name}() cannot take a {kind} value")


def _text_arg(name: str, value: Any) -> str:
    if type(value) is not str:
        raise _type_error(name, value)
    return value


def _number_arg(name: str, value: Any) -> int | Decimal:
    if type(value) not in (int, Decimal):
        raise _type_error(name, value)
    return value


def _whole(name: str, value: Any) -> int:
    value = _number_arg(name, value)
    if type(value) is Decimal:
        if value != value.to_integral_value():
            raise EvalFailure("invalid_argument", f"{name}() needs a whole number, not {value}")
        value = int(value)
    return value


def _local_date(ev, value: Any, name: str) -> date:
    if type(value) is datetime:
        return value.astimezone(ev.tz).date()
    if type(value) is date:
        return value
    raise _type_error(name, value)


# --- blanks and text ------------------------------------------------------------

def is_blank(ev, x):
    if x is None:
        return True
    kind = type(x)
    if kind is str:
        return not x.strip()
    if kind is list:
        return not x
    if kind is dict:
        return not x.get("id")
    return False


def coalesce(ev, *values):
    for v in values:
        if v is not None:
            return v
    return None


def len_(ev, s):
    if s is None:
        return 0
    if type(s) not in (str, list):
        raise _type_error("len", s)
    return len(s)


def lower(ev, s):
    return None if s is None else check_text(_text_arg("lower", s).lower())


def upper(ev, s):
    # upper() can grow a text ('ß' -> 'SS'): checked like any new text.
    return None if s is None else check_text(_text_arg("upper", s).upper())


def trim(ev, s):
    return None if s is None else _text_arg("trim", s).strip()


def contains(ev, s, part):
    if s is None or part is None:
        return False
    return _text_arg("contains", part) in _text_arg("contains", s)


def starts_with(ev, s, prefix):
    if s is None or prefix is None:
        return False
    return _text_arg("starts_with", s).startswith(_text_arg("starts_with", prefix))


def ends_with(ev, s, suffix):
    if s is None or suffix is None:
        return False
    return _text_arg("ends_with", s).endswith(_text_arg("ends_with", suffix))


_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.max_mem = 8 << 20   # a pattern needing more is refused, not built
_RE2_OPTIONS.log_errors = False
MAX_PATTERN = 10_000


@lru_cache(maxsize=512)
def compile_regex(pattern: str):
    """A linear-time (RE2) pattern: no input can make it backtrack."""
    if len(pattern) > MAX_PATTERN:
        raise EvalFailure("value_too_large", f"a regular expression may have at most {MAX_PATTERN:,} characters")
    try:
        return re2.compile(pattern, _RE2_OPTIONS)
    except Exception as exc:  # re2.error, and the wrapper's own TypeErrors
        raise EvalFailure("invalid_regex", f"invalid regular expression {pattern[:80]!r}: {exc}") from None


def matches(ev, s, pattern):
    if s is None or pattern is None:
        return False
    regex = compile_regex(_text_arg("matches", pattern))
    return regex.search(_text_arg("matches", s)) is not None


def concat(ev, *values):
    parts = []
    size = 0
    for v in values:
        piece = to_text(v, ev.tz)
        size += len(piece)
        if size > MAX_TEXT:
            raise EvalFailure("value_too_large", f"a text value exceeds {MAX_TEXT:,} characters")
        parts.append(piece)
    return "".join(parts)


def text(ev, x):
    return check_text(to_text(x, ev.tz))


# --- numbers --------------------------------------------------------------------

def number(ev, x):
    if x is None:
        return None
    kind = type(x)
    if kind in (int, Decimal):
        return x
    if kind is not str:
        raise _type_error("number", x)
    s = x.strip()
    if not s:
        return None
    if len(s) > 120 or not _NUMBER_TEXT.fullmatch(s):
        raise EvalFailure("invalid_number", f"{x[:60]!r} is not a number")
    if "." not in s:
        return check_number(int(s))
    return check_number(Decimal(s))


def round_(ev, x, digits=0):
    if x is None or digits is None:
        return None
    x = _number_arg("round", x)
    digits = _whole("round", digits)
    if not -30 <= digits <= 30:
        raise EvalFailure("invalid_argument", "round() takes digits between -30 and 30")
    if type(x) is int and digits >= 0:
        return x
    # Half away from zero, as spreadsheets do (round(2.675, 2) == 2.68);
    # exact because 2.675 is a decimal, not a float.
    result = ROUNDING.quantize(Decimal(x), Decimal(1).scaleb(-digits))
    if type(x) is int:
        return int(result)
    return result if digits > 0 else ROUNDING.quantize(result, Decimal(1))


def abs_(ev, x):
    return None if x is None else abs(_number_arg("abs", x))


def _extreme(pick: Callable, name: str):
    def extreme(ev, *values):
        present = [v for v in values if v is not None]
        if not present:
            return None
        try:
            return pick(present)
        except TypeError:
            raise EvalFailure("type_mismatch", f"{name}() needs values of one type") from None
    extreme.__name__ = name
    return extreme


# --- dates ----------------------------------------------------------------------

def today(ev):
    return ev.now().date()


def now(ev):
    return ev.now()


def date_(ev, y, m, d):
    if y is None or m is None or d is None:
        return None
    try:
        return date(_whole("date", y), _whole("date", m), _whole("date", d))
    except (ValueError, OverflowError):
        raise EvalFailure("invalid_date", f"date({y}, {m}, {d}) is not a valid date") from None


def add_days(ev, d, n):
    if d is None or n is None:
        return None
    if type(d) not in (date, datetime):
        raise _type_error("add_days", d)
    try:
        return d + timedelta(days=_whole("add_days", n))
    except OverflowError:
        raise EvalFailure("invalid_date", "add_days() went past the supported dates (years 1 to 9999)") from None


def add_months(ev, d, n):
    if d is None or n is None:
        return None
    n = _whole("add_months", n)
    kind = type(d)
    if kind is datetime:
        d = d.astimezone(ev.tz)   # months are calendar months where the company is
    elif kind is not date:
        raise _type_error("add_months", d)
    if abs(n) > 120_000:
        raise EvalFailure("invalid_date", "add_months() went past the supported dates (years 1 to 9999)")
    year, month0 = divmod(d.year * 12 + d.month - 1 + n, 12)
    if not 1 <= year <= 9999:
        raise EvalFailure("invalid_date", "add_months() went past the supported dates (years 1 to 9999)")
    # Clamp to the month's last day: Jan 31 + 1 month is Feb 28 (or 29).
    day = min(d.day, calendar.monthrange(year, month0 + 1)[1])
    return d.replace(year=year, month=month0 + 1, day=day)


def days_between(ev, a, b):
    if a is None or b is None:
        return None
    return (_local_date(ev, b, "days_between") - _local_date(ev, a, "days_between")).days


def year(ev, d):
    return None if d is None else _local_date(ev, d, "year").year


def month(ev, d):
    return None if d is None else _local_date(ev, d, "month").month


def day(ev, d):
    return None if d is None else _local_date(ev, d, "day").day


def weekday(ev, d):
    return None if d is None else _local_date(ev, d, "weekday").isoweekday()


def includes(ev, multi, value):
    if multi is None:
        return False
    if type(multi) is not list:
        raise _type_error("includes", multi)
    return value in multi


# --- context: the change set, the user --------------------------------------------

def is_new(ev):
    return ev.ctx.is_new


def has_role(ev, name):
    return name is not None and name in ev.ctx.roles


def current_user(ev):
    return ev.ctx.user_id


def approval_status(ev):
    return ev.ctx.approval


# Functions that take a field *name* (the argument is not evaluated): they
# read the record and the change set through `ev` themselves.

def is_changed(ev, name):
    ctx = ev.ctx
    if ctx.is_new or ctx.prior is None:
        return False   # SPEC 4: false on create
    return ev.field(name) != ev.admit(ctx.prior.get(name))


def prior_value(ev, name):
    ctx = ev.ctx
    if ctx.is_new:
        return None
    if ctx.prior is None:
        return ev.field(name)
    return ev.admit(ctx.prior.get(name))


def stage_probability(ev, name, stages):
    entry = stages.get(ev.field(name))
    return None if entry is None else entry[0]


def stage_category(ev, name, stages):
    entry = stages.get(ev.field(name))
    return None if entry is None else entry[1]


FUNCTIONS: dict[str, Callable] = {
    "is_blank": is_blank, "coalesce": coalesce, "len": len_, "lower": lower, "upper": upper,
    "trim": trim, "contains": contains, "starts_with": starts_with, "ends_with": ends_with,
    "matches": matches, "concat": concat, "text": text, "number": number, "round": round_,
    "abs": abs_, "min": _extreme(min, "min"), "max": _extreme(max, "max"), "today": today,
    "now": now, "date": date_, "add_days": add_days, "add_months": add_months,
    "days_between": days_between, "year": year, "month": month, "day": day, "weekday": weekday,
    "includes": includes, "is_new": is_new, "is_changed": is_changed, "prior_value": prior_value,
    "current_user": current_user, "has_role": has_role, "approval_status": approval_status, "stage_probability": stage_probability,
    "stage_category": stage_category,
}
FIELD_FUNCTIONS = frozenset({"is_changed", "prior_value", "stage_probability", "stage_category"})
