"""RFC 9457 problem responses and exact JSON (decimals as JSON numbers)."""

from __future__ import annotations

import json
import re
import secrets
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from fastapi.responses import Response

from ..fields.dates import iso_utc

PROBLEM_TYPE = "application/problem+json"
TITLES = {400: "Bad request", 401: "Unauthorized", 403: "Forbidden", 404: "Not found", 405: "Method not allowed",
          409: "Conflict", 412: "Precondition failed", 413: "Content too large", 415: "Unsupported media type",
          422: "Invalid values", 500: "Internal server error"}

# A marker no client can send: a NUL and a secret of this process.
_SECRET = secrets.token_hex(8)
_MARK = f"\u0000{_SECRET}:"
_MARKED = re.compile(rf'"\\u0000{_SECRET}:(-?[0-9.E+-]+)"')


def _default(value: Any) -> Any:
    # Called by the C encoder for what JSON lacks; a Decimal becomes a
    # marked string that `dumps` turns back into a bare number.
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"{value} is not a JSON number")
        return _MARK + format(value, "f")
    if isinstance(value, datetime):
        return iso_utc(value)
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=_default)


def dumps(value: Any) -> bytes:
    """JSON where Decimals are exact JSON numbers (12.50 stays 12.50)."""
    return _MARKED.sub(r"\1", _encoder.encode(value)).encode()


def json_response(value: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(dumps(value), status_code=status, media_type="application/json", headers=headers)


def problem(status: int, detail: str, *, errors: list[dict] | None = None, title: str | None = None,
            headers: dict[str, str] | None = None, **extra: Any) -> Response:
    body: dict[str, Any] = {"type": "about:blank", "status": status, "title": title or TITLES.get(status, "Error"),
                            "detail": detail}
    if errors:
        body["errors"] = [{k: v for k, v in e.items() if v is not None} for e in errors]
    body.update(extra)
    return Response(dumps(body), status_code=status, media_type=PROBLEM_TYPE, headers=headers)
