"""Dispatch: outbox events become runs.

A dispatcher claims a batch of unprocessed events (`FOR UPDATE SKIP
LOCKED` on PostgreSQL, so dispatchers in several processes never take the
same event; on SQLite the write transaction admits one at a time), matches
each against the active workflows of the event's metadata version, writes
one run per (workflow, event, action) under a unique key, moves the due
timers of time triggers, and marks the events processed — all in one
transaction. A crash anywhere before the commit leaves the events to be
dispatched again; the unique keys make a second dispatch write nothing.

Events are found by `processed_at IS NULL`, never by an id watermark: an
event whose transaction commits late still has its turn.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from loomcrm.metadata.expressions import ExpressionError
from loomcrm.platform.systemdb import outbox
from loomcrm.runtime.fields import FieldContext

from . import runs, timers
from .actions import Dead
from .definitions import Catalog, Flow
from .records import Evaluator, stored

log = logging.getLogger("loomcrm.workflows")
BATCH = 200
MAX_ATTEMPTS = 5   # an event that fails to dispatch this often is set aside (its error kept)


def claim_events(conn: sa.Connection, limit: int):
    query = sa.select(outbox).where(outbox.c.processed_at.is_(None)).order_by(outbox.c.id).limit(limit)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return conn.execute(query).fetchall()


def pending(conn: sa.Connection) -> bool:
    return conn.execute(sa.select(outbox.c.id).where(outbox.c.processed_at.is_(None)).limit(1)).first() is not None


def dispatch(conn: sa.Connection, catalog: Catalog, schema_of, now: datetime, *, field_context: FieldContext,
             timezone: str, limit: int = BATCH, user_of=None) -> tuple[int, list[str]]:
    """Dispatch up to `limit` events in the caller's transaction. Answers
    (events dispatched, ids of runs that may run now). `schema_of(conn)` is
    the current compiled schema (lookup paths in conditions read it).

    Each event is dispatched in a savepoint: one that fails (a bug, a
    database error) rolls back alone and is tried again with the next
    batches, `MAX_ATTEMPTS` times, then set aside with its error kept in
    the outbox; it never holds the events behind it back."""
    events = claim_events(conn, limit)
    if not events:
        return 0, []
    schema = schema_of(conn)
    rows: list[dict[str, Any]] = []
    done: list[int] = []
    try:
        with conn.begin_nested():   # the whole batch at once, the common case
            for event in events:
                rows += _dispatch_one(conn, catalog, schema, event, now, field_context, timezone, user_of)
        done = [e.id for e in events]
    except Exception:
        # something failed: again event by event, to find it and let the others through
        rows, done = [], []
        for event in events:
            try:
                with conn.begin_nested():
                    found = _dispatch_one(conn, catalog, schema, event, now, field_context, timezone, user_of)
                rows += found
                done.append(event.id)
            except Exception as exc:
                log.exception("dispatching outbox event %s", event.id)
                attempts = (event.attempts or 0) + 1
                conn.execute(sa.update(outbox).where(outbox.c.id == event.id).values(
                    attempts=attempts, last_error=f"{type(exc).__name__}: {exc}"[:2000],
                    processed_at=now if attempts >= MAX_ATTEMPTS else None))
    ready = runs.insert(conn, rows)
    if done:
        conn.execute(sa.update(outbox).where(outbox.c.id.in_(done)).values(processed_at=now))
    return len(events), ready


def _dispatch_one(conn, catalog: Catalog, schema, event, now, field_context, timezone, user_of) -> list[dict[str, Any]]:
    flows = catalog.flows(conn, event.metadata_version)
    obj = flows.objects.get(event.object)
    if obj is None or (event.object not in flows.on_events and event.object not in flows.on_time):
        return []   # nothing listens to this object
    payload = event.payload or {}
    record = stored(obj, payload.get("record"), field_context)
    changed = set(payload.get("changed") or ())
    timers.follow(conn, flows, event.event, event.id, obj, event.record_id, record, field_context.timezone)
    rows: list[dict[str, Any]] = []
    for flow in flows.on_events.get(obj.name, ()):
        if flow.matches(event.event, changed, record, event.source, event.cause_workflow):
            rows += _runs_for(conn, schema, flow, event, record, changed, payload, now, field_context, timezone, user_of)
    return rows


def _runs_for(conn, schema, flow: Flow, event, record, changed, payload, now, field_context, timezone, user_of) -> list[dict]:
    kind = "stage_change" if flow.on == "stage_change" else event.event
    template = {"workflow": flow.name, "object": flow.obj.name, "record_id": event.record_id, "event_id": event.id,
                "event": kind, "source": event.source, "depth": event.depth or 0, "metadata_version": flow.version,
                "payload": {"record": payload.get("record"), "old": payload.get("old"), "changed": sorted(changed),
                            "actor": event.actor, "at": runs._iso(event.created_at)},
                "result": None, "created_at": now, "types": [a.type for a in flow.wf.actions]}
    key = f"{flow.name}:e{event.id}"
    count = len(flow.wf.actions)
    if (event.depth or 0) >= runs.MAX_DEPTH:
        return runs.chain(template, count, key, "loop", f"a chain of workflows went {runs.MAX_DEPTH} deep: stopped here",
                          replayable=False)
    if flow.broken:
        return runs.chain(template, count, key, "dead", flow.broken, replayable=False)
    status, error = "pending", None
    if flow.condition is not None:
        old = stored(flow.obj, payload.get("old"), field_context) if payload.get("old") else {}
        prior = {**record, **{k: old.get(k) for k in changed}} if event.event == "update" else None
        try:
            holds = Evaluator(conn, schema, flow.obj, record, user=user_of(conn, flow) if user_of else None,
                              prior=prior, is_new=event.event == "create", timezone=timezone)(flow.condition)
        except (ExpressionError, Dead) as exc:
            return runs.chain(template, count, key, "dead", f"the condition could not be evaluated: {exc}", replayable=False)
        if not holds:
            status, error = "skipped", "the condition is false"
    return runs.chain(template, count, key, status, error)
