"""Approvals on PostgreSQL (SQLite when it is not reachable).

- `approvals_decision_vs_update`: the approver's decision that settles a
  one-step request (the task taken, the request approved, the record's
  status set through the record service, history and the submitter's
  notification) against the same status change as a plain record update.
  Goal: at most 1.3x (p95).

    .venv/bin/python tests/benchmarks/run.py approvals [--quick]
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from common import add_users, postgres_available, postgres_database
from harness import Figure, alternate, p95_figure

GOAL = 1 / 1.3
BUNDLE = {
    "manifest": {"format": "loom/1", "name": "bench_approvals", "version": "1.0.0"},
    "objects": [{"name": "deal", "title_field": "name", "track_history": ["status"], "fields": [
        {"name": "name", "type": "text", "required": True},
        {"name": "amount", "type": "currency"},
        {"name": "status", "type": "picklist", "options": [{"value": "draft"}, {"value": "pending"},
                                                             {"value": "approved"}]}]}],
    "roles": [{"name": "rep", "objects": {"deal": {"create": True, "read": "own", "update": "own"}}},
              {"name": "boss", "objects": {"deal": {"read": "all", "update": "all"}}}],
    "approvals": [{"name": "big_deal", "object": "deal", "entry": "amount > 1000",
                   "steps": [{"name": "boss", "approvers": {"roles": ["boss"]}}],
                   "on_submit": {"status": "pending"}, "on_approve": {"status": "approved"}}],
}


def run(quick: bool = False) -> list[Figure]:
    if postgres_available():
        with postgres_database() as url:
            return [_measure(url, quick)]
    with tempfile.TemporaryDirectory(prefix="loom-bench-approvals-") as tmp:
        return [_measure(f"sqlite:///{Path(tmp) / 'loom.db'}", quick)]


def _measure(url: str, quick: bool) -> Figure:
    from loomcrm.platform import auth, systemdb
    from loomcrm.platform.db import create_engine
    from loomcrm.runtime import approvals
    from loomcrm.runtime.install import bundle_from_json, install_bundle
    from loomcrm.runtime.records import Actor
    from loomcrm.runtime.rules.hooks import Rules
    from loomcrm.runtime.state import Runtime

    engine = create_engine(url)
    systemdb.upgrade(engine)
    install_bundle(engine, bundle_from_json(BUNDLE))
    with engine.begin() as conn:
        rep_id, boss_id = add_users(conn, 2, lambda i: "boss" if i else "rep", "person")
    runtime = Runtime(engine, hooks=Rules())
    rep = auth.User(id=rep_id, username="person0", role="rep", locale="en")
    boss = auth.User(id=boss_id, username="person1", role="boss", locale="en")
    n = 40 if quick else 200
    deals = [runtime.records.create("deal", {"name": f"Deal {i}", "amount": 5000, "status": "draft"}, rep)["id"]
             for i in range(2 * n)]
    requests = iter([approvals.submit(runtime, rep, "deal", rid)["id"] for rid in deals[:n]])
    plain = iter(deals[n:])
    rounds = 2 if quick else 5
    figure = p95_figure(f"approvals_decision_vs_update{'' if url.startswith('postgresql') else '_sqlite'}", GOAL,
                        *alternate(lambda: approvals.act(runtime, boss, next(requests), "approve"),
                                   lambda: runtime.records.update("deal", next(plain), {"status": "approved"},
                                                                  Actor(boss_id, "boss")),
                                   rounds, n // rounds))
    engine.dispose()
    return figure
