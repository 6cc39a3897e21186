"""Database engines for SQLite (embedded) and PostgreSQL (production).

SQLite runs with WAL and foreign keys on, and with the driver's own
transaction handling switched off so that DDL is transactional too: a
publish that fails half-way leaves the schema as it was (SQLAlchemy's
documented pysqlite recipe). `ddl_transaction` additionally turns foreign
keys off for table rebuilds, which would otherwise cascade deletes.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine, make_url


DDL_LOCK_KEY = 0x4C6F6F6D  # "Loom": the advisory lock that serialises schema changes

# SQLite has one writer at a time. Writers of one process take turns on a
# lock of their own, so that the next one starts as soon as the last one
# commits instead of when SQLite's busy handler next wakes it (it sleeps
# 1, 2, 5 ... 100 ms between tries); other processes still wait on that
# handler. Reentrant: a nested write fails on SQLite's lock as before.
_sqlite_writers: weakref.WeakKeyDictionary[Engine, threading.RLock] = weakref.WeakKeyDictionary()


def normalize_url(url: str | URL) -> URL:
    """A plain `postgresql://` URL gets the psycopg 3 driver."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def create_engine(url: str | URL, **kwargs) -> Engine:
    parsed = normalize_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed, **kwargs)
    if parsed.get_backend_name() == "postgresql":
        kwargs.setdefault("pool_pre_ping", True)
        return sa.create_engine(parsed, **kwargs)
    raise ValueError(f"unsupported database {parsed.get_backend_name()!r}: use SQLite or PostgreSQL")


def _sqlite_engine(url: URL, **kwargs) -> Engine:
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    kwargs.setdefault("connect_args", {}).setdefault("timeout", 30)
    engine = sa.create_engine(url, **kwargs)

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    _sqlite_writers[engine] = threading.RLock()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn):
        # IMMEDIATE takes the write lock up front: two writers never both
        # read, then both fail to upgrade their lock.
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.info.get("write") else "BEGIN")

    return engine


def is_sqlite(bind: Engine | Connection) -> bool:
    return bind.dialect.name == "sqlite"


@contextlib.contextmanager
def ddl_transaction(engine: Engine) -> Iterator[Connection]:
    """One atomic transaction for schema changes plus the metadata rows
    that describe them.

    On SQLite, foreign keys are switched off before BEGIN (a batch table
    rebuild would otherwise fire ON DELETE CASCADE) and checked before
    COMMIT. On PostgreSQL, schema changes take turns on an advisory lock,
    and a lock timeout keeps DDL from queueing behind a long transaction and
    blocking every reader behind it.
    """
    with engine.connect() as conn:
        sqlite = is_sqlite(conn)
        if sqlite:
            _raw_pragma(conn, "foreign_keys=OFF")
        try:
            conn.info["write"] = True
            with conn.begin():
                if sqlite:
                    yield conn
                    broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if broken:
                        raise sa.exc.IntegrityError("PRAGMA foreign_key_check", None, Exception(f"{len(broken)} rows break foreign keys: {broken[:5]}"))
                else:
                    # One schema change at a time across every process: a
                    # second publish waits here, then sees the first one's
                    # version and is refused as stale instead of racing it.
                    conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({DDL_LOCK_KEY})")
                    conn.exec_driver_sql("SET LOCAL lock_timeout = '5s'")
                    yield conn
        finally:
            conn.info.pop("write", None)
            if sqlite:
                _raw_pragma(conn, "foreign_keys=ON")


IN_CHUNK = 500   # values per IN (...): SQLite takes at most 32,766 parameters in one statement


def stored_utc(moment: datetime | None) -> datetime | None:
    """A moment read back from the database: SQLite hands back naive
    datetimes, which were written in UTC."""
    return moment if moment is None or moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def chunks(items: list, size: int = IN_CHUNK) -> Iterator[list]:
    """`items` in slices small enough for one IN (...) each."""
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _raw_pragma(conn: Connection, pragma: str) -> None:
    # Through the driver, outside any transaction: SQLite ignores a
    # foreign_keys pragma inside one, and SQLAlchemy would begin one.
    conn.connection.driver_connection.execute(f"PRAGMA {pragma}")


@contextlib.contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction that will write (BEGIN IMMEDIATE on SQLite)."""
    with _sqlite_writers.get(engine) or contextlib.nullcontext(), engine.connect() as conn:
        conn.info["write"] = True
        try:
            with conn.begin():
                yield conn
        finally:
            conn.info.pop("write", None)
