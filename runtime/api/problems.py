"""RFC 9457 problem responses and exact JSON (decimals as JSON numbers)."""

from __future__ import annotations

import json
import re
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from fastapi.responses import Response

from ..fields.dates import iso_utc

PROBLEM_TYPE = "application/problem+json"
TITLES = {400: "Bad request", 401: "Unauthorized", 403: "Forbidden", 404: "Not found", 405: "Method not allowed",
          409: "Conflict", 412: "Precondition failed", 413: "Content too large", 415: "Unsupported media type",
          422: "Invalid values", 500: "Internal server error"}

_MARK = "\u0000dec:"
_MARKED = re.compile(r'"\\u0000dec:(-?[0-9.E+-]+)"')


def _prepare(value: Any) -> Any:
    if isinstance(value, Decimal):
        return _MARK + format(value, "f")
    if isinstance(value, datetime):
        return iso_utc(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _prepare(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_prepare(v) for v in value]
    return value


def dumps(value: Any) -> bytes:
    """JSON where Decimals are exact JSON numbers (12.50 stays 12.50)."""
    text = json.dumps(_prepare(value), ensure_ascii=False, separators=(",", ":"))
    return _MARKED.sub(lambda m: m.group(1), text).encode()


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
