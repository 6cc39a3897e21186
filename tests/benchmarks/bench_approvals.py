"""Approvals on PostgreSQL (SQLite when it is not reachable).

- `approvals_decision_vs_update_api`: the approver's decision that settles
  a one-step request over HTTP (`POST /api/v1/_approvals/{id}/approve`: the
  task taken, the request approved, the record's status set through the
  record service, history and the submitter's notification) against the
  same status change as a plain `PATCH /api/v1/deal/{id}`. Goal: at most
  1.3x (p95).
- `approvals_decision_vs_update`: the same in-process (the record service
  alone as the baseline), for reference.

    .venv/bin/python tests/benchmarks/run.py approvals [--quick]
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import httpx

from common import add_users, loom_cli, loom_env, loom_server, postgres_available, postgres_database
from harness import Figure, alternate, p95_figure

GOAL = 1 / 1.3
WARM = 5
SETTLE_S = 3.0
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
            return [_measure(url, quick), _over_http(url, quick)]
    with tempfile.TemporaryDirectory(prefix="loom-bench-approvals-") as tmp:
        return [_measure(f"sqlite:///{Path(tmp) / 'loom.db'}", quick)]


def _over_http(url: str, quick: bool) -> Figure:
    n = 40 if quick else 200
    rounds = 2 if quick else 5
    with tempfile.TemporaryDirectory(prefix="loom-bench-approvals-") as tmp:
        folder = Path(tmp)
        env = loom_env(folder, url)
        tokens = {who: loom_cli(env, "token", "create", who).stdout.strip() for who in ("person0", "person1")}
        with loom_server(env, folder) as server:
            rep = httpx.Client(base_url=server, headers={"Authorization": f"Bearer {tokens['person0']}"}, timeout=60)
            boss = httpx.Client(base_url=server, headers={"Authorization": f"Bearer {tokens['person1']}"}, timeout=60)
            deals = [rep.post("/api/v1/deal", json={"name": f"Web deal {i}", "amount": 5000, "status": "draft"})
                     .raise_for_status().json()["id"] for i in range(2 * (n + WARM))]
            requests = iter([rep.post(f"/api/v1/deal/{rid}/_approvals").raise_for_status().json()["id"]
                             for rid in deals[:n + WARM]])
            plain = iter(deals[n + WARM:])
            for _ in range(WARM):   # both sides warm, and the server's automation done with the set-up's events
                boss.post(f"/api/v1/_approvals/{next(requests)}/approve").raise_for_status()
                boss.patch(f"/api/v1/deal/{next(plain)}", json={"status": "approved"}).raise_for_status()
            time.sleep(SETTLE_S)
            figure = p95_figure("approvals_decision_vs_update_api", GOAL, *alternate(
                lambda: boss.post(f"/api/v1/_approvals/{next(requests)}/approve").raise_for_status(),
                lambda: boss.patch(f"/api/v1/deal/{next(plain)}", json={"status": "approved"}).raise_for_status(),
                rounds, n // rounds))
            rep.close()
            boss.close()
    return figure


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
             for i in range(2 * (n + WARM))]
    requests = iter([approvals.submit(runtime, rep, "deal", rid)["id"] for rid in deals[:n + WARM]])
    plain = iter(deals[n + WARM:])
    decide = lambda: approvals.act(runtime, boss, next(requests), "approve")  # noqa: E731
    update = lambda: runtime.records.update("deal", next(plain), {"status": "approved"}, Actor(boss_id, "boss"))  # noqa: E731
    for _ in range(WARM):
        decide()
        update()
    rounds = 2 if quick else 5
    figure = p95_figure(f"approvals_decision_vs_update{'' if url.startswith('postgresql') else '_sqlite'}", GOAL,
                        *alternate(decide, update, rounds, n // rounds))
    engine.dispose()
    return figure
