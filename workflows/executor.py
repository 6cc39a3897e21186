"""Running one run: take it, perform its action, mark it.

An action that only changes the database (update, create, assign, notify)
is performed in the one transaction that takes the run (a row lock) and
marks it done: if the worker dies or the database refuses, everything of
the try rolls back, so the effect happens exactly once. An action that
reaches outside (e-mail, webhook) takes the run with a lease, reads what it
needs, is delivered with no connection held, then marked; a worker that
dies in between makes it happen again, with the same message or webhook id
(at least once).
"""

from __future__ import annotations

import logging

import sqlalchemy as sa

from loomcrm.metadata.expressions import ExpressionError
from loomcrm.platform.db import write_transaction

from . import runs
from .actions import Act, Dead, Retry, registry
from .records import Evaluator, current, stored

log = logging.getLogger("loomcrm.workflows")
IN_DATABASE = frozenset({"update", "create", "assign", "route", "notify"})
_ACTIONS = None


def actions() -> dict:
    global _ACTIONS
    if _ACTIONS is None:
        _ACTIONS = registry()
    return _ACTIONS


def execute(automation, run_id: str, action_type: str | None = None) -> list[str] | None:
    """Run `run_id` if it may run now. Answers the ids of the runs that may
    run now because this one finished, or None when it was not taken
    (another worker has it, it is finished or not due)."""
    if action_type is None:
        with automation.engine.connect() as conn:
            action_type = runs.action_type(conn, run_id)
    if action_type in IN_DATABASE:
        return _in_transaction(automation, run_id)
    with write_transaction(automation.engine) as conn:
        claim = runs.claim(conn, run_id, automation.now(), automation.lease)
    if claim is None:
        return None
    return _reach_out(automation, claim)


def execute_due(automation, limit: int = 20) -> tuple[list[str], list[str]]:
    """Take up to `limit` runs that are due and run them: (their ids, runs
    now ready). The in-database ones share one transaction, each in a
    savepoint of its own (a failing one rolls back alone), which saves a
    commit per run; the others are leased in it and performed after."""
    if automation.engine.dialect.name == "sqlite":
        with automation.engine.connect() as conn:   # a read first: no write lock while there is nothing to do
            if not runs.any_due(conn, automation.now()):
                return [], []
    taken: list[str] = []
    ready: list[str] = []
    leased: list[runs.Claim] = []
    retries: list[tuple[str, object]] = []
    with write_transaction(automation.engine) as conn:
        for claim in runs.lock_due(conn, automation.now(), limit):
            taken.append(claim.id)
            try:
                with conn.begin_nested():
                    flow, action = _definition(automation, conn, claim)
                    if action.type not in IN_DATABASE:
                        # one outside action per batch: it is done after the commit, within its lease
                        if not leased:
                            leased.append(runs.lease(conn, claim, automation.now(), automation.lease))
                        else:
                            taken.pop()
                        continue
                    ready += _perform(automation, conn, claim, flow, action)
            except Exception as exc:
                due = _record_failure(automation, conn, claim, exc)
                if due is not None:
                    retries.append((claim.id, due))
    for run_id, due in retries:
        automation.retry_at(run_id, due)
    for claim in leased:
        ready += _reach_out(automation, claim)
    return taken, ready


def execute_next(automation) -> tuple[str | None, list[str]]:
    """Take and run the run that is due first, if any: (its id, runs now ready)."""
    taken, ready = execute_due(automation, 1)
    return (taken[0] if taken else None), ready


def _perform(automation, conn, claim: runs.Claim, flow, action) -> list[str]:
    """An in-database action and its run's "done", in the caller's transaction."""
    result = actions()[action.type](_act(automation, conn, claim, flow, action, in_transaction=True))
    return runs.finish(conn, claim, automation.now(), result, has_next=claim.row["action"] + 1 < len(flow.wf.actions))


def _reach_out(automation, claim: runs.Claim) -> list[str]:
    """An action on a leased run: what it needs is read first, then it is
    delivered with no connection held, however long the other side takes."""
    try:
        with automation.engine.connect() as conn:
            flow, action = _definition(automation, conn, claim)
            deliver = actions()[action.type](_act(automation, conn, claim, flow, action, in_transaction=False))
        result = deliver()
        with write_transaction(automation.engine) as conn:
            return runs.finish(conn, claim, automation.now(), result, has_next=claim.row["action"] + 1 < len(flow.wf.actions))
    except Exception as exc:
        return _failed(automation, claim, exc)


def _in_transaction(automation, run_id: str) -> list[str] | None:
    claim = None
    try:
        with write_transaction(automation.engine) as conn:
            claim = runs.lock(conn, run_id, automation.now())
            if claim is None:
                return None
            flow, action = _definition(automation, conn, claim)
            return _perform(automation, conn, claim, flow, action)
    except Exception as exc:
        if claim is None:
            raise
        return _failed(automation, claim, exc)


def _failed(automation, claim: runs.Claim, exc: Exception) -> list[str]:
    """Record why a try failed, in a transaction of its own (the try's, if
    any, is rolled back by now)."""
    try:
        with write_transaction(automation.engine) as conn:
            due = _record_failure(automation, conn, claim, exc)
    except runs.LeaseLost as lost:
        log.warning("%s", lost)
        return []
    if due is not None:
        automation.retry_at(claim.id, due)
    return []


def _record_failure(automation, conn, claim: runs.Claim, exc: Exception):
    """Mark the run failed (to be tried again; answers when) or dead."""
    if isinstance(exc, runs.LeaseLost):
        log.warning("%s", exc)
        return None
    if isinstance(exc, Retry):
        error, retry = str(exc), True
    elif isinstance(exc, Dead):
        error, retry = (f"{exc.code}: {exc}" if exc.code else str(exc)), False
    elif isinstance(exc, ExpressionError):
        error, retry = f"expression: {exc}", False
    else:   # a bug, or the database: logged, and tried again
        log.error("run %s of workflow %s failed", claim.id, claim.row["workflow"], exc_info=exc)
        error, retry = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:500], True
    return runs.give_up(conn, claim, automation.now(), error, retry=retry,
                        first_retry=automation.settings.automation_retry_seconds)


def _definition(automation, conn: sa.Connection, claim: runs.Claim):
    row = claim.row
    flow = automation.catalog.flows(conn, row["metadata_version"]).by_name.get(row["workflow"])
    if flow is None:
        raise Dead(f"workflow {row['workflow']!r} is no longer active in metadata version {row['metadata_version']}")
    return flow, flow.wf.actions[row["action"]]


def _act(automation, conn: sa.Connection, claim: runs.Claim, flow, action, *, in_transaction: bool) -> Act:
    row = claim.row
    schema = automation.runtime.schema()
    record = current(conn, schema, flow.obj.name, row["record_id"])
    deleted = record is None
    if deleted:
        snapshot = (row["payload"] or {}).get("record")
        record = stored(flow.obj, snapshot, automation.runtime.context) if snapshot else {"id": row["record_id"]}
    user = automation.user_of(conn, flow)
    # prior_value() and is_changed() in the action's values see the event's change, as its condition did
    payload = row["payload"] or {}
    prior = None
    if row["event"] in ("update", "stage_change") and payload.get("old") is not None:
        old = stored(flow.obj, payload["old"], automation.runtime.context)
        prior = {**record, **{name: old.get(name) for name in payload.get("changed") or ()}}
    evaluate = Evaluator(conn, schema, flow.obj, record, user=user, prior=prior, is_new=row["event"] == "create",
                         timezone=automation.settings.timezone)
    return Act(automation=automation, conn=conn if in_transaction else None, claim=claim, flow=flow, index=row["action"],
               action=action, schema=schema, record=record, deleted=deleted, user=user, evaluate=evaluate)
