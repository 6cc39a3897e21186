"""The run table: one row per (workflow, event or moment, action), written
once under a unique key, then claimed by one worker at a time with a
lease.

States (SPEC §3.5): `pending` (may run once `due_at` has come), `running`
(a worker holds its lease), `done`, `skipped` (the condition was false),
`failed` (will be tried again at `due_at`, with exponential backoff and
jitter), `dead` (tries used up or not worth retrying; can be replayed),
`loop` (the chain of workflows went too deep). Loom adds `waiting`: the
action after another of the same workflow run, pending once that is done,
so that a workflow's actions take effect in their order.

Every change of a claimed run is fenced by its lease token: a worker whose
lease was taken over cannot mark the run done, so its transaction (and an
in-database effect made in it) rolls back.
"""

from __future__ import annotations

import base64
import json
import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from loomcrm.platform.systemdb import automation_runs as runs

STATUSES = ("pending", "waiting", "running", "done", "skipped", "failed", "dead", "loop")
FINISHED = ("done", "skipped", "dead", "loop")
RUNNABLE = ("pending", "failed")
MAX_ATTEMPTS = 8
RETRY_CAP = timedelta(hours=1)
MAX_DEPTH = 5   # a chain of workflows stops here (SPEC §3.5)


class LeaseLost(Exception):
    """Another worker took the run over: this one's work must not count."""


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def new_id() -> str:
    return uuid.uuid4().hex


def backoff(attempts: int, first: float) -> timedelta:
    """The wait before try `attempts + 1`: doubling from `first` seconds,
    capped at an hour, with full jitter in its upper half (so a burst of
    failures does not come back all at once)."""
    ceiling = min(first * 2 ** max(attempts - 1, 0), RETRY_CAP.total_seconds())
    return timedelta(seconds=random.uniform(ceiling / 2, ceiling))


def insert(conn: sa.Connection, rows: list[dict[str, Any]]) -> list[str]:
    """Write runs, each once: a key already there is left as it is.
    Answers the ids of the runs written that may run now."""
    if not rows:
        return []
    dialect = {"postgresql": postgresql, "sqlite": sqlite}[conn.dialect.name]
    statement = dialect.insert(runs).on_conflict_do_nothing(index_elements=["key"])
    conn.execute(statement, rows)
    return [r["id"] for r in rows if r["status"] == "pending"]


def chain(template: dict[str, Any], count: int, key: str, status: str, error: str | None = None, *,
          replayable: bool = True) -> list[dict[str, Any]]:
    """The runs of one workflow firing once: one per action, in order, each
    waiting for the one before (all `status` when they will not run).
    Dead ones that are not `replayable` failed before any action could run
    (a condition that could not be evaluated): replaying them would skip it."""
    now = template.get("created_at") or utcnow()
    rows, previous = [], None
    for i in range(count):
        rid = new_id()
        own = status if status != "pending" or i == 0 else "waiting"
        rows.append({**template, "id": rid, "key": f"{key}:{i}", "action": i, "action_type": template["types"][i],
                     "status": own, "after": previous, "error": error, "attempts": 0, "due_at": now,
                     "result": template.get("result") if replayable else {"not_replayable": True},
                     "created_at": now, "updated_at": now,
                     "finished_at": now if own in FINISHED else None})
        previous = rid
    for row in rows:
        row.pop("types", None)
    return rows


# --- claiming -----------------------------------------------------------------------
#
# An action that only changes the database takes its run with a row lock in
# the transaction that also performs it and marks it done (`lock`): a worker
# that dies releases the lock and nothing of its try remains. An action that
# reaches outside takes its run with a lease (`claim`), since no transaction
# stays open over the network; the reaper hands back expired leases.

@dataclass
class Claim:
    id: str
    token: str | None      # the lease's token; None when the caller's transaction holds the row lock
    row: dict[str, Any]


_LOCK = sa.select(runs).where(runs.c.id == sa.bindparam("run_id"), runs.c.status.in_(RUNNABLE),
                              runs.c.due_at <= sa.bindparam("now"))
_LOCK_PG = _LOCK.with_for_update(skip_locked=True)
_CLAIM = (sa.update(runs).where(runs.c.id == sa.bindparam("run_id"), runs.c.status.in_(RUNNABLE),
                                runs.c.due_at <= sa.bindparam("now"))
          .values(status="running", lease_token=sa.bindparam("token"), lease_until=sa.bindparam("until"),
                  attempts=runs.c.attempts + 1, updated_at=sa.bindparam("now")))
_BY_ID = sa.select(runs).where(runs.c.id == sa.bindparam("run_id"))
_NEXT = {status: sa.select(runs.c.id).where(runs.c.status == status, runs.c.due_at <= sa.bindparam("now"))
         .order_by(runs.c.due_at).limit(sa.bindparam("n")) for status in RUNNABLE}


_DUE = {status: sa.select(runs).where(runs.c.status == status, runs.c.due_at <= sa.bindparam("now"))
        .order_by(runs.c.due_at).limit(sa.bindparam("n")) for status in RUNNABLE}
_DUE_PG = {status: query.with_for_update(skip_locked=True) for status, query in _DUE.items()}


def lock_due(conn: sa.Connection, now: datetime, limit: int) -> list[Claim]:
    """Take up to `limit` runs that are due, the longest due first (new ones
    before retries), for the length of the caller's transaction; on
    PostgreSQL, concurrent workers each get others (SKIP LOCKED)."""
    queries = _DUE_PG if conn.dialect.name == "postgresql" else _DUE
    claims: list[Claim] = []
    for status in RUNNABLE:
        rows = conn.execute(queries[status], {"now": now, "n": limit - len(claims)}).fetchall()
        claims += [Claim(row.id, None, dict(row._mapping)) for row in rows]
        if len(claims) >= limit:
            break
    return claims


def lease(conn: sa.Connection, claim: Claim, now: datetime, length: timedelta) -> Claim:
    """Turn a locked run into a leased one (for an action done after the commit)."""
    token = new_id()
    conn.execute(sa.update(runs).where(runs.c.id == claim.id).values(
        status="running", lease_token=token, lease_until=now + length, attempts=runs.c.attempts + 1, updated_at=now))
    return Claim(claim.id, token, {**claim.row, "status": "running", "attempts": claim.row["attempts"] + 1})


def lock(conn: sa.Connection, run_id: str, now: datetime) -> Claim | None:
    """Take run `run_id` for the length of the caller's transaction if it
    may run now (another worker's lock is skipped on PostgreSQL)."""
    row = conn.execute(_LOCK_PG if conn.dialect.name == "postgresql" else _LOCK, {"run_id": run_id, "now": now}).first()
    return Claim(run_id, None, dict(row._mapping)) if row is not None else None


def claim(conn: sa.Connection, run_id: str, now: datetime, lease: timedelta) -> Claim | None:
    """Take run `run_id` with a lease if it may run now; None when another
    worker has it, it is finished, or not due."""
    token = new_id()
    if conn.execute(_CLAIM, {"run_id": run_id, "now": now, "token": token, "until": now + lease}).rowcount != 1:
        return None
    return Claim(run_id, token, dict(conn.execute(_BY_ID, {"run_id": run_id}).first()._mapping))


def due_ids(conn: sa.Connection, before: datetime, limit: int = 500) -> list[str]:
    """Runs that may run and have been due since before `before` (their
    wake-up may have been lost: a broker that was down, a worker killed)."""
    found: list[str] = []
    for status in RUNNABLE:
        found += conn.execute(_NEXT[status], {"now": before, "n": limit - len(found)}).scalars().all()
        if len(found) >= limit:
            break
    return found


def any_due(conn: sa.Connection, now: datetime) -> bool:
    return bool(due_ids(conn, now, 1))


def action_type(conn: sa.Connection, run_id: str) -> str | None:
    return conn.execute(sa.select(runs.c.action_type).where(runs.c.id == run_id)).scalar()


def touch(conn: sa.Connection, ids: list[str], now: datetime) -> None:
    """Mark runs as just woken (their `due_at` moves to now): they count as
    lost again only if nobody claims them for a while."""
    if ids:
        conn.execute(sa.update(runs).where(runs.c.id.in_(ids), runs.c.status.in_(RUNNABLE), runs.c.due_at < now)
                     .values(due_at=now))


# --- finishing ----------------------------------------------------------------------

def _mark(conn: sa.Connection, claim: Claim, values: dict[str, Any]) -> None:
    """Change a claimed run: under its row lock (this try counts now), or
    fenced by its lease token (a lease taken over raises LeaseLost)."""
    if claim.token is None:
        where = (runs.c.id == claim.id, runs.c.status.in_(RUNNABLE))
        values = {**values, "attempts": runs.c.attempts + 1}
    else:
        where = (runs.c.id == claim.id, runs.c.lease_token == claim.token, runs.c.status == "running")
    if conn.execute(sa.update(runs).where(*where).values(**values)).rowcount != 1:
        raise LeaseLost(f"run {claim.id} was taken over by another worker")


def attempts_of(claim: Claim) -> int:
    """The tries of a claimed run, this one included."""
    return claim.row["attempts"] + (1 if claim.token is None else 0)


_DONE_LOCKED = (sa.update(runs).where(runs.c.id == sa.bindparam("run_id"), runs.c.status.in_(RUNNABLE))
                .values(status="done", result=sa.bindparam("result"), error=None, finished_at=sa.bindparam("now"),
                        updated_at=sa.bindparam("now"), attempts=runs.c.attempts + 1))


def finish(conn: sa.Connection, claim: Claim, now: datetime, result: dict[str, Any] | None = None, *,
           has_next: bool = True) -> list[str]:
    """Mark the run done and let the next action of its workflow go;
    answers the ids of the runs that may run now."""
    if claim.token is None:   # the most common case, in every in-database run: one statement built once
        if conn.execute(_DONE_LOCKED, {"run_id": claim.id, "result": result, "now": now}).rowcount != 1:
            raise LeaseLost(f"run {claim.id} was taken over by another worker")
    else:
        _mark(conn, claim, {"status": "done", "result": result, "error": None, "finished_at": now, "updated_at": now,
                            "lease_token": None, "lease_until": None})
    return release_next(conn, claim.id, now) if has_next else []


def release_next(conn: sa.Connection, run_id: str, now: datetime) -> list[str]:
    ids = list(conn.execute(sa.select(runs.c.id).where(runs.c.after == run_id, runs.c.status == "waiting")).scalars())
    if ids:
        conn.execute(sa.update(runs).where(runs.c.id.in_(ids), runs.c.status == "waiting")
                     .values(status="pending", due_at=now, updated_at=now))
    return ids


def give_up(conn: sa.Connection, claim: Claim, now: datetime, error: str, *, retry: bool, first_retry: float,
            result: dict[str, Any] | None = None) -> datetime | None:
    """Record a failed try: `failed` with the next try's time, or `dead`
    when not worth retrying or out of tries. Answers the next try's time."""
    attempts = attempts_of(claim)
    common = {"error": error[:4000], "updated_at": now, "lease_token": None, "lease_until": None, "result": result}
    if retry and attempts < MAX_ATTEMPTS:
        due = now + backoff(attempts, first_retry)
        _mark(conn, claim, {**common, "status": "failed", "due_at": due})
        return due
    _mark(conn, claim, {**common, "status": "dead", "finished_at": now})
    return None


def reap(conn: sa.Connection, now: datetime, first_retry: float) -> int:
    """Hand back runs whose worker stopped (lease expired): tried again after
    the usual backoff, or dead when their tries are used up."""
    expired = sa.and_(runs.c.status == "running", runs.c.lease_until < now)
    error = "the worker running it stopped before it finished"
    count = conn.execute(sa.update(runs).where(expired, runs.c.attempts >= MAX_ATTEMPTS).values(
        status="dead", error=error, finished_at=now, updated_at=now, lease_token=None, lease_until=None)).rowcount
    for run_id, attempts in conn.execute(sa.select(runs.c.id, runs.c.attempts).where(expired)).all():
        count += conn.execute(sa.update(runs).where(runs.c.id == run_id, expired).values(
            status="failed", error=error, due_at=now + backoff(attempts, first_retry), updated_at=now,
            lease_token=None, lease_until=None)).rowcount
    return count


def get(conn: sa.Connection, run_id: str) -> dict[str, Any] | None:
    row = conn.execute(sa.select(runs).where(runs.c.id == run_id)).first()
    return as_json(row) if row is not None else None


def row_of(conn: sa.Connection, run_id: str) -> dict[str, Any] | None:
    """A run's stored row (`get` answers it as the API shows it)."""
    row = conn.execute(sa.select(runs).where(runs.c.id == run_id)).first()
    return dict(row._mapping) if row is not None else None


def previous(conn: sa.Connection, run_id: str) -> dict[str, Any] | None:
    """The run of the same workflow firing whose action comes just before."""
    row = conn.execute(sa.select(runs).where(runs.c.id == sa.select(runs.c.after).where(runs.c.id == run_id)
                                             .scalar_subquery())).first()
    return as_json(row) if row is not None else None


def status_of(conn: sa.Connection, run_id: str) -> str | None:
    return conn.execute(sa.select(runs.c.status).where(runs.c.id == run_id)).scalar()


def replay(conn: sa.Connection, run_id: str, now: datetime, version: int | None = None) -> bool:
    """A dead run goes again, with a full set of tries; with `version`,
    under that metadata version's definition of its workflow (the one an
    admin just fixed)."""
    values = {"status": "pending", "attempts": 0, "due_at": now, "updated_at": now, "finished_at": None,
              "error": None, "result": None}
    if version is not None:
        values["metadata_version"] = version
    result = conn.execute(sa.update(runs).where(runs.c.id == run_id, runs.c.status == "dead").values(**values))
    return result.rowcount == 1


# --- the run log ----------------------------------------------------------------------

def as_json(row) -> dict[str, Any]:
    r = row._mapping if hasattr(row, "_mapping") else row
    return {"id": r["id"], "workflow": r["workflow"], "action": r["action_type"], "action_index": r["action"],
            "object": r["object"], "record": r["record_id"], "event": r["event"], "event_id": r["event_id"],
            "source": r["source"], "status": r["status"], "attempts": r["attempts"], "error": r["error"],
            "result": r["result"], "due_at": _iso(r["due_at"]) if r["status"] in ("failed", "pending") else None,
            "created_at": _iso(r["created_at"]), "finished_at": _iso(r["finished_at"])}


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


class BadCursor(ValueError):
    pass


def listing(conn: sa.Connection, *, workflow: str | None = None, record: str | None = None, status: str | None = None,
            limit: int = 50, cursor: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
    """The run log, newest first, a page at a time (keyset on created_at, id)."""
    query = sa.select(runs)
    for column, value in ((runs.c.workflow, workflow), (runs.c.record_id, record), (runs.c.status, status)):
        if value:
            query = query.where(column == value)
    if cursor:
        try:
            at, rid = json.loads(base64.urlsafe_b64decode(cursor.encode()))
            at = datetime.fromisoformat(at)
        except (ValueError, TypeError):
            raise BadCursor("malformed cursor: start again without it") from None
        query = query.where(sa.or_(runs.c.created_at < at, sa.and_(runs.c.created_at == at, runs.c.id < rid)))
    rows = conn.execute(query.order_by(runs.c.created_at.desc(), runs.c.id.desc()).limit(limit + 1)).fetchall()
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = None
    if more and rows:
        last = rows[-1]._mapping
        at = last["created_at"] if last["created_at"].tzinfo else last["created_at"].replace(tzinfo=timezone.utc)
        next_cursor = base64.urlsafe_b64encode(json.dumps([at.isoformat(), last["id"]]).encode()).decode()
    return [as_json(r) for r in rows], next_cursor


def for_record(conn: sa.Connection, record_id: str, limit: int = 30) -> list[dict[str, Any]]:
    rows = conn.execute(sa.select(runs).where(runs.c.record_id == record_id)
                        .order_by(runs.c.created_at.desc(), runs.c.id.desc()).limit(limit)).fetchall()
    return [as_json(r) for r in rows]


def counts(conn: sa.Connection, statuses: Iterable[str] = STATUSES) -> dict[str, int]:
    rows = conn.execute(sa.select(runs.c.status, sa.func.count()).group_by(runs.c.status)).all()
    found = dict(rows)
    return {s: found.get(s, 0) for s in statuses}
