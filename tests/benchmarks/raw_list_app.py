"""The hand-written counterpart of one Loom list, for the lists benchmark:
proposals by amount, largest first, 50 a page, served by FastAPI from
Loom's own `o_opportunity` table with the raw SQL below, the way a careful
developer would write that one endpoint without a platform.

Per request, the same work as Loom's API: the bearer token checked against
a table of token hashes (`baseline_app.bearer_user`: one indexed SELECT),
the cursor decoded and the next one encoded (base64 JSON of the last
amount and id), the rows answered in Loom's JSON shape (every column of
the record, decimals as numbers, timestamps ISO in UTC) as
`{"data": [...], "next_cursor": ...}`. The JSON is written with
`json.dumps` straight into the response, the leanest path FastAPI offers.
Like `loom serve`, it logs each request at level info.

    python raw_list_app.py DATABASE_URL token              -> prints a new API token
    python raw_list_app.py DATABASE_URL PORT [LOG_LEVEL]
"""

from __future__ import annotations

import base64
import binascii
import json
import sys
from datetime import date, datetime, timezone
from decimal import Decimal

import sqlalchemy as sa
import uvicorn
from fastapi import Depends, FastAPI, HTTPException, Response

from baseline_app import AUTH_TABLES, bearer_user, create_token, open_engine

PAGE = 50
# The best hand-written SQL for the page Loom returns: the same filter,
# page size and order, nulls last (`-amount` puts the deals without an
# amount at the end, and a page may run from the last amounts into them).
# A btree read backwards gives DESC NULLS FIRST, so a single ORDER BY
# amount DESC NULLS LAST cannot use the (stage, amount) index and sorts
# every proposal; the amounts and the nulls are read as two ordered
# branches instead, the second only when the first falls short of a page.
PROPOSALS = "SELECT * FROM o_opportunity WHERE stage = 'proposal' AND _deleted_at IS NULL"
RAW_FIRST = (f"({PROPOSALS} AND amount IS NOT NULL ORDER BY amount DESC, id DESC LIMIT 51) UNION ALL "
             f"({PROPOSALS} AND amount IS NULL ORDER BY id DESC LIMIT 51) LIMIT 51")
RAW_AFTER = (f"({PROPOSALS} AND amount IS NOT NULL AND (amount, id) < (%s, %s) ORDER BY amount DESC, id DESC LIMIT 51) "
             f"UNION ALL ({PROPOSALS} AND amount IS NULL ORDER BY id DESC LIMIT 51) LIMIT 51")
# A cursor already among the deals without an amount.
RAW_AFTER_NULL = f"{PROPOSALS} AND amount IS NULL AND id < %s ORDER BY id DESC LIMIT 51"


def encode_cursor(amount: Decimal | None, record_id: str) -> str:
    raw = json.dumps([None if amount is None else str(amount), record_id], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode()


def decode_cursor(cursor: str) -> tuple[Decimal | None, str]:
    try:
        amount, record_id = json.loads(base64.urlsafe_b64decode(cursor))
        if not isinstance(record_id, str) or not (amount is None or isinstance(amount, str)):
            raise ValueError("types")
        amount = None if amount is None else Decimal(amount)
        if amount is not None and not amount.is_finite():
            raise ValueError("not a number")
    except (ValueError, TypeError, ArithmeticError, binascii.Error, UnicodeDecodeError):
        raise HTTPException(400, "malformed cursor: start again without it") from None
    return amount, record_id


def _json_value(value):
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    return value


def _record(row: sa.Row) -> dict:
    # The `_deleted_*` columns are the recycle bin's bookkeeping, not part of a record.
    return {key: _json_value(value) for key, value in row._mapping.items() if not key.startswith("_")}


def create_app(url: str) -> FastAPI:
    engine = open_engine(url, AUTH_TABLES)
    app = FastAPI()
    current_user = bearer_user(engine)

    @app.get("/opportunity")
    def proposals(cursor: str | None = None, user=Depends(current_user)):
        if cursor is None:
            sql, params = RAW_FIRST, ()
        else:
            amount, last_id = decode_cursor(cursor)
            sql, params = (RAW_AFTER_NULL, (last_id,)) if amount is None else (RAW_AFTER, (amount, last_id))
        with engine.connect() as conn:
            rows = conn.exec_driver_sql(sql, params).all()
        next_cursor = encode_cursor(rows[PAGE - 1].amount, rows[PAGE - 1].id) if len(rows) > PAGE else None
        body = {"data": [_record(r) for r in rows[:PAGE]], "next_cursor": next_cursor}
        return Response(json.dumps(body, separators=(",", ":")), media_type="application/json")

    return app


if __name__ == "__main__":
    if sys.argv[2] == "token":
        print(create_token(sys.argv[1]))
        sys.exit(0)
    uvicorn.run(create_app(sys.argv[1]), host="127.0.0.1", port=int(sys.argv[2]),
                log_level=sys.argv[3] if len(sys.argv) > 3 else "info")
