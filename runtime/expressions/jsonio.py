"""JSON in and out for `loom expr eval` (SPEC 2 and 4): numbers with a
fraction are decimals, ISO 8601 date and datetime strings are dates and
datetimes; results print decimals as JSON numbers and dates as ISO text."""

from __future__ import annotations

import json
import re
from datetime import date, datetime, tzinfo
from decimal import Decimal
from typing import Any

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:?\d{2})?")


def loads(text: str) -> Any:
    """Parse JSON; fractions become Decimal (never float)."""
    return json.loads(text, parse_float=Decimal, parse_constant=_no_constant)


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def from_json(value: Any, tz: tzinfo) -> Any:
    """A JSON value as an expression value: ISO strings become dates and
    datetimes (naive ones in the company's time zone)."""
    if isinstance(value, str):
        if _DATE.fullmatch(value):
            try:
                return date.fromisoformat(value)
            except ValueError:
                return value
        if _DATETIME.fullmatch(value):
            try:
                parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                return value
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=tz)
        return value
    if isinstance(value, list):
        return [from_json(v, tz) for v in value]
    if isinstance(value, dict):
        return {k: from_json(v, tz) for k, v in value.items()}
    return value


def dumps(value: Any) -> str:
    """JSON text of an expression value: decimals as exact JSON numbers."""
    if value is None:
        return "null"
    kind = type(value)
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return str(value)
    if kind is Decimal:
        text = format(value, "f")
        return text if text not in ("-0",) else "0"
    if kind in (date, datetime):
        return json.dumps(value.isoformat())
    if kind is str:
        return json.dumps(value, ensure_ascii=False)
    if kind in (list, tuple):
        return "[" + ", ".join(dumps(v) for v in value) + "]"
    if kind is dict:
        return "{" + ", ".join(f"{json.dumps(str(k), ensure_ascii=False)}: {dumps(v)}" for k, v in value.items()) + "}"
    return json.dumps(str(value), ensure_ascii=False)
