"""Running one run: claim it with a lease, perform its action, mark it.

An action that only changes the database runs in one transaction with the
fenced "done" mark: if the worker dies, or its lease was taken over, the
whole transaction rolls back and the run is tried again, so the effect
happens once. An action that reaches outside (e-mail, webhook) is performed
first and marked after; a worker that dies in between makes it happen
again, with the same message or webhook id.
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
_ACTIONS = None


def actions() -> dict:
    global _ACTIONS
    if _ACTIONS is None:
        _ACTIONS = registry()
    return _ACTIONS


def execute(automation, run_id: str) -> list[str]:
    """Run `run_id` if it may run now. Answers the ids of runs that may run
    now because this one finished (the workflow's next action)."""
    now = automation.now()
    with write_transaction(automation.engine) as conn:
        claim = runs.claim(conn, run_id, now, automation.lease)
    if claim is None:
        return []
    return perform(automation, claim)


def execute_next(automation) -> tuple[str | None, list[str]]:
    """Claim and run the run that is due first, if any: (its id, runs now ready)."""
    now = automation.now()
    with automation.engine.connect() as conn:   # a read first: no write lock while there is nothing to do
        if runs.next_due(conn, now, lock=False) is None:
            return None, []
    with write_transaction(automation.engine) as conn:
        run_id = runs.next_due(conn, now)
        claim = runs.claim(conn, run_id, now, automation.lease) if run_id else None
    if claim is None:
        return None, []
    return claim.id, perform(automation, claim)


def perform(automation, claim: runs.Claim) -> list[str]:
    row = claim.row
    try:
        with automation.engine.connect() as conn:
            flow = automation.catalog.flows(conn, row["metadata_version"]).by_name.get(row["workflow"])
        if flow is None:
            raise Dead(f"workflow {row['workflow']!r} is no longer active in metadata version {row['metadata_version']}")
        action = flow.wf.actions[row["action"]]
        act_fn, in_database = actions()[action.type]
        if in_database:
            with write_transaction(automation.engine) as conn:
                result = act_fn(_act(automation, conn, claim, flow, action, in_transaction=True))
                return runs.finish(conn, claim, automation.now(), result)
        with automation.engine.connect() as conn:
            result = act_fn(_act(automation, conn, claim, flow, action, in_transaction=False))
        with write_transaction(automation.engine) as conn:
            return runs.finish(conn, claim, automation.now(), result)
    except runs.LeaseLost as exc:
        log.warning("%s", exc)
        return []
    except Retry as exc:
        return _give_up(automation, claim, str(exc), retry=True)
    except Dead as exc:
        return _give_up(automation, claim, f"{exc.code}: {exc}" if exc.code else str(exc), retry=False)
    except ExpressionError as exc:
        return _give_up(automation, claim, f"expression: {exc}", retry=False)
    except Exception as exc:   # a bug or the database: logged, and the run is tried again
        log.exception("run %s of workflow %s failed", claim.id, row["workflow"])
        return _give_up(automation, claim, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:500],
                        retry=True)


def _give_up(automation, claim: runs.Claim, error: str, *, retry: bool) -> list[str]:
    try:
        with write_transaction(automation.engine) as conn:
            due = runs.give_up(conn, claim, automation.now(), error, retry=retry,
                               first_retry=automation.settings.automation_retry_seconds)
    except runs.LeaseLost as exc:
        log.warning("%s", exc)
        return []
    if due is not None:
        automation.retry_at(claim.id, due)
    return []


def _act(automation, conn: sa.Connection, claim: runs.Claim, flow, action, *, in_transaction: bool) -> Act:
    row = claim.row
    schema = automation.runtime.schema()
    record = current(conn, schema, flow.obj.name, row["record_id"])
    deleted = record is None
    if deleted:
        snapshot = (row["payload"] or {}).get("record")
        record = stored(flow.obj, snapshot, automation.runtime.context) if snapshot else {"id": row["record_id"]}
    user = automation.user_of(conn, flow)
    evaluate = Evaluator(conn, schema, flow.obj, record, user=user, timezone=automation.settings.timezone)
    return Act(automation=automation, conn=conn if in_transaction else None, claim=claim, flow=flow, index=row["action"],
               action=action, schema=schema, record=record, deleted=deleted, user=user, evaluate=evaluate)

