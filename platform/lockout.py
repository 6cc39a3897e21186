"""Sign-in lockout: after `USER_LIMIT` failed attempts for one user name, or
`ADDRESS_LIMIT` from one address, within `WINDOW`, sign-ins are refused
(without even checking the password) until `LOCKED_FOR` has passed. A lock
ends by itself; a success clears the user's count. Counted in the database,
so every web process sees the same count."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from . import systemdb
from .db import stored_utc, write_transaction

USER_LIMIT = 5
ADDRESS_LIMIT = 30
WINDOW = timedelta(minutes=15)
LOCKED_FOR = timedelta(minutes=15)
_table = systemdb.login_failures


def _now() -> datetime:
    return datetime.now(timezone.utc)


def keys(username: str, address: str | None) -> list[str]:
    return [f"user:{username.lower()[:150]}"] + ([f"address:{address[:45]}"] if address else [])


def minutes_left(engine: Engine, username: str, address: str | None) -> int:
    """Whole minutes (rounded up) until the lock on this user name or address
    ends; 0 when there is none."""
    now = _now()
    with engine.connect() as conn:
        rows = conn.execute(sa.select(_table.c.locked_until).where(_table.c.key.in_(keys(username, address)))).scalars()
        ends = [stored_utc(r) for r in rows if r is not None and stored_utc(r) > now]
    return math.ceil((max(ends) - now).total_seconds() / 60) if ends else 0


def failed(engine: Engine, username: str, address: str | None) -> None:
    now = _now()
    dialect = {"postgresql": postgresql, "sqlite": sqlite}[engine.dialect.name]
    with write_transaction(engine) as conn:
        for key in keys(username, address):
            limit = USER_LIMIT if key.startswith("user:") else ADDRESS_LIMIT
            conn.execute(dialect.insert(_table).values(key=key, failures=0, first_at=now).on_conflict_do_nothing())
            row = conn.execute(sa.select(_table).where(_table.c.key == key)).first()
            fresh = stored_utc(row.first_at) < now - WINDOW
            failures = 1 if fresh else row.failures + 1
            conn.execute(sa.update(_table).where(_table.c.key == key).values(
                failures=failures, first_at=now if fresh else row.first_at,
                locked_until=now + LOCKED_FOR if failures >= limit else row.locked_until))


def succeeded(engine: Engine, username: str) -> None:
    with write_transaction(engine) as conn:
        conn.execute(sa.delete(_table).where(_table.c.key == keys(username, None)[0]))
