"""Time triggers (`"on": "time"`, a field and an offset): one due-timer row
per (workflow, record), kept by the dispatcher from each event of the
record — moved when the field changes, dropped when it is cleared or the
record deleted — and fired by sweepers.

A sweeper claims due timers (`FOR UPDATE SKIP LOCKED` on PostgreSQL), checks
the workflow's condition on the record as it is then, writes the runs
under a key of (workflow, record, moment) and clears the timers, in one
transaction: however many sweepers run, a timer fires once. A cleared or
fired timer keeps its row (without a moment) and the id of the last event
applied to it, so events handled out of order never bring an old moment
back.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone as dt_timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from loomcrm.metadata.expressions import ExpressionError
from loomcrm.metadata.model import ObjectDef
from loomcrm.platform.systemdb import automation_timers as timers_table, outbox

from . import runs
from .actions import Dead
from .definitions import Catalog, Flow, Flows
from .records import Evaluator, current

log = logging.getLogger("loomcrm.workflows")


def follow(conn: sa.Connection, flows: Flows, event: str, event_id: int, obj: ObjectDef, rid: str,
           record: dict[str, Any], tz) -> None:
    """Keep the record's timers in step with one of its events. A timer
    row remembers the last event applied to it, so an older event handled
    late (by another dispatcher) never moves it back."""
    time_flows = flows.on_time.get(obj.name)
    if not time_flows:
        return
    upsert(conn, [{"workflow": flow.name, "record_id": rid, "object": obj.name, "event_id": event_id,
                   "due_at": None if event == "delete" else flow.due_at(record.get(flow.wf.trigger.field), tz),
                   "metadata_version": flows.version} for flow in time_flows])


def upsert(conn: sa.Connection, rows: list[dict[str, Any]]) -> None:
    """Set timers, each unless its row already holds a later event's."""
    dialect = {"postgresql": postgresql, "sqlite": sqlite}[conn.dialect.name]
    statement = dialect.insert(timers_table)
    excluded = statement.excluded
    conn.execute(statement.on_conflict_do_update(
        index_elements=["workflow", "record_id"],
        set_={"due_at": excluded.due_at, "event_id": excluded.event_id, "metadata_version": excluded.metadata_version,
              "object": excluded.object},
        where=excluded.event_id >= timers_table.c.event_id), rows)


def any_due(conn: sa.Connection, now: datetime) -> bool:
    return conn.execute(sa.select(timers_table.c.workflow).where(timers_table.c.due_at <= now).limit(1)).first() is not None



def sweep(conn: sa.Connection, catalog: Catalog, schema, now: datetime, *, timezone: str, limit: int = 500,
          user_of=None) -> tuple[int, list[str]]:
    """Fire up to `limit` due timers in the caller's transaction. Answers
    (timers fired, ids of runs that may run now)."""
    query = (sa.select(timers_table).where(timers_table.c.due_at <= now)
             .order_by(timers_table.c.due_at).limit(limit))
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    due = conn.execute(query).fetchall()
    if not due:
        return 0, []
    def fire(timer) -> list[dict[str, Any]]:
        flows = catalog.flows(conn, timer.metadata_version)
        flow = flows.by_name.get(timer.workflow)
        record = current(conn, schema, timer.object, timer.record_id)
        if flow is None or flow.on != "time" or record is None:
            return []   # the workflow is gone or changed, or the record deleted: nothing fires
        return _runs_for(conn, schema, flow, timer, record, now, timezone, user_of)

    rows: list[dict[str, Any]] = []
    try:
        with conn.begin_nested():
            for timer in due:
                rows += fire(timer)
    except Exception:
        rows = []   # again timer by timer: one that fails never holds the others back
        for timer in due:
            try:
                with conn.begin_nested():
                    rows += fire(timer)
            except Exception as exc:
                log.exception("timer of %s for %s", timer.workflow, timer.record_id)
                flow = catalog.flows(conn, timer.metadata_version).by_name.get(timer.workflow)
                if flow is not None:
                    rows += _dead(flow, timer, now, f"the timer could not fire: {type(exc).__name__}: {exc}")
    ready = runs.insert(conn, rows)
    # fired: the rows stay, without a moment, remembering the last event applied
    conn.execute(sa.update(timers_table).where(sa.tuple_(timers_table.c.workflow, timers_table.c.record_id).in_(
        [(t.workflow, t.record_id) for t in due])).values(due_at=None))
    return len(due), ready


def _template(flow: Flow, timer, now) -> tuple[dict[str, Any], str]:
    moment = timer.due_at if timer.due_at.tzinfo else timer.due_at.replace(tzinfo=dt_timezone.utc)
    template = {"workflow": flow.name, "object": flow.obj.name, "record_id": timer.record_id, "event_id": None,
                "event": "time", "source": None, "depth": 0, "metadata_version": flow.version,
                "payload": {"record": None, "old": None, "changed": [], "at": runs._iso(moment)},
                "result": None, "created_at": now, "types": [a.type for a in flow.wf.actions]}
    return template, f"{flow.name}:t:{timer.record_id}:{moment.isoformat()}"


def _dead(flow: Flow, timer, now, error: str) -> list[dict[str, Any]]:
    template, key = _template(flow, timer, now)
    return runs.chain(template, len(flow.wf.actions), key, "dead", error[:2000], replayable=False)


def _runs_for(conn, schema, flow: Flow, timer, record, now, timezone, user_of) -> list[dict[str, Any]]:
    template, key = _template(flow, timer, now)
    count = len(flow.wf.actions)
    if flow.broken:
        return runs.chain(template, count, key, "dead", flow.broken, replayable=False)
    if flow.condition is not None:
        try:
            holds = Evaluator(conn, schema, flow.obj, record, user=user_of(conn, flow) if user_of else None,
                              timezone=timezone)(flow.condition)
        except (ExpressionError, Dead) as exc:
            return runs.chain(template, count, key, "dead", f"the condition could not be evaluated: {exc}",
                              replayable=False)
        if not holds:
            return runs.chain(template, count, key, "skipped", "the condition is false when due")
    return runs.chain(template, count, key, "pending")


def backfill(conn: sa.Connection, flows: Flows, schema, now: datetime, tz, *, only: set[str] | None = None) -> int:
    """Timers for the records that existed before a time workflow was
    published (or changed): those whose moment is still ahead."""
    count = 0
    for object_name, time_flows in flows.on_time.items():
        table = schema.tables.get(object_name)
        if table is None:
            continue
        for flow in time_flows:
            if only is not None and flow.name not in only:
                continue
            field = flow.wf.trigger.field
            if field not in table.c:
                continue
            conn.execute(sa.delete(timers_table).where(timers_table.c.workflow == flow.name))
            # the records as they are now: as of the newest event (a later one wins)
            as_of = conn.execute(sa.select(sa.func.coalesce(sa.func.max(outbox.c.id), 0))).scalar()
            last = ""
            while True:
                found = conn.execute(sa.select(table.c.id, table.c[field]).where(
                    table.c._deleted_at.is_(None), table.c[field].is_not(None), table.c.id > last)
                    .order_by(table.c.id).limit(1000)).fetchall()
                if not found:
                    break
                last = found[-1].id
                rows = []
                for rid, value in found:
                    due = flow.due_at(value, tz)
                    if due is not None and due > now:
                        rows.append({"workflow": flow.name, "record_id": rid, "object": object_name, "due_at": due,
                                     "event_id": as_of, "metadata_version": flows.version})
                if rows:
                    upsert(conn, rows)
                    count += len(rows)
    return count
