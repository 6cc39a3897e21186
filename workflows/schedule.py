"""Schedule triggers (`"on": "schedule"`, a five-field cron in
`LOOM_TIMEZONE`): once per tick across every process, the actions run for
each record that matches the condition, which the database evaluates as
a filter.

The tick is a row (workflow, tick time) that one process claims with a
lease; it walks the matching records in id order, in batches of one
transaction each, keeping its place in the row, so a process that stops
half-way leaves the rest to the next one. Runs have a key of (workflow,
tick, record, action): nothing is written twice.

A tick is begun only shortly after its time (`GRACE`): a workflow
published at 9:05 does not fire for 9:00, and a server that was down for
hours does not fire every tick it missed. A tick once begun is finished,
however late.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import sqlalchemy as sa
from croniter import croniter
from sqlalchemy.dialects import postgresql, sqlite

from loomcrm.platform.systemdb import automation_ticks as ticks
from loomcrm.runtime.query import BadQuery, compile_filter

from . import runs
from .definitions import Flow

GRACE = timedelta(minutes=2)
BATCH = 500


def last_tick(flow: Flow, now: datetime, tz) -> datetime:
    """The latest tick of the workflow's cron at or before `now` (UTC)."""
    local = now.astimezone(tz)
    itr = croniter(flow.wf.trigger.cron, local + timedelta(seconds=1))
    return itr.get_prev(datetime).astimezone(timezone.utc)


def claim_tick(conn: sa.Connection, flow: Flow, tick: datetime, now: datetime, lease: timedelta) -> dict | None:
    """The tick's row if this process may work on it now (new, or left by
    a process whose lease ran out), else None."""
    dialect = {"postgresql": postgresql, "sqlite": sqlite}[conn.dialect.name]
    conn.execute(dialect.insert(ticks).values(workflow=flow.name, tick=tick).on_conflict_do_nothing())
    taken = conn.execute(sa.update(ticks).where(
        ticks.c.workflow == flow.name, ticks.c.tick == tick, ticks.c.done_at.is_(None),
        sa.or_(ticks.c.lease_until.is_(None), ticks.c.lease_until < now)).values(lease_until=now + lease))
    if taken.rowcount != 1:
        return None
    return dict(conn.execute(sa.select(ticks).where(ticks.c.workflow == flow.name, ticks.c.tick == tick)).first()._mapping)


def unfinished(conn: sa.Connection, now: datetime) -> list[tuple[str, datetime]]:
    """(workflow, tick) of ticks begun but not finished whose lease ran out
    (their process stopped): finished whatever their age."""
    rows = conn.execute(sa.select(ticks.c.workflow, ticks.c.tick).where(
        ticks.c.done_at.is_(None), sa.or_(ticks.c.lease_until.is_(None), ticks.c.lease_until < now))).all()
    return [(w, t if t.tzinfo else t.replace(tzinfo=timezone.utc)) for w, t in rows]


def run_batch(conn: sa.Connection, flow: Flow, schema, tick: datetime, state: dict, now: datetime,
              lease: timedelta) -> tuple[bool, list[str]]:
    """Runs for the next batch of matching records; (finished, ids of runs that may run now)."""
    obj = schema.object(flow.obj.name)
    table = schema.tables.get(flow.obj.name)
    template = {"workflow": flow.name, "object": flow.obj.name, "event_id": None, "event": "schedule", "source": None,
                "depth": 0, "metadata_version": flow.version, "result": None, "created_at": now,
                "payload": {"record": None, "old": None, "changed": [], "at": runs._iso(tick)},
                "types": [a.type for a in flow.wf.actions]}
    key = f"{flow.name}:s:{tick.isoformat()}"
    count = len(flow.wf.actions)
    if obj is None or table is None:
        _done(conn, flow, tick, now, state.get("last_id"))
        return True, []
    if flow.broken:
        rows = runs.chain({**template, "record_id": None}, count, key, "dead", flow.broken)
        _done(conn, flow, tick, now, None)
        return True, runs.insert(conn, rows)
    query = sa.select(table.c.id).where(table.c._deleted_at.is_(None))
    if flow.condition is not None:
        try:
            clause, joined = compile_filter(schema, obj, flow.wf.condition)
        except BadQuery as exc:   # not_sql and friends: the tick cannot run
            rows = runs.chain({**template, "record_id": None}, count, key, "dead",
                              f"the condition cannot run in the database: {exc.detail}")
            _done(conn, flow, tick, now, None)
            return True, runs.insert(conn, rows)
        query = query.select_from(joined).where(clause)
    if state.get("last_id"):
        query = query.where(table.c.id > state["last_id"])
    ids = list(conn.execute(query.order_by(table.c.id).limit(BATCH)).scalars())
    rows: list[dict[str, Any]] = []
    for rid in ids:
        rows += runs.chain({**template, "record_id": rid}, count, f"{key}:{rid}", "pending")
    ready = runs.insert(conn, rows)
    finished = len(ids) < BATCH
    if finished:
        _done(conn, flow, tick, now, ids[-1] if ids else state.get("last_id"))
    else:
        conn.execute(sa.update(ticks).where(ticks.c.workflow == flow.name, ticks.c.tick == tick)
                     .values(last_id=ids[-1], lease_until=now + lease))
        state["last_id"] = ids[-1]
    return finished, ready


def _done(conn, flow: Flow, tick: datetime, now: datetime, last_id) -> None:
    conn.execute(sa.update(ticks).where(ticks.c.workflow == flow.name, ticks.c.tick == tick)
                 .values(done_at=now, last_id=last_id, lease_until=None))

