"""Lead pools (公海) on PostgreSQL.

- `pools_*_recycle_pass`: one recycling pass over BENCH_POOL_ROWS leads
  (default 1,000,000; 20,000 in quick mode) owned by 100 reps, 1 in 100
  without a follow-up for a month, against a budget of 30 s; the note says
  how many statements each batch of 1,000 took.
- `pools_claim_vs_owner_change_api`: claiming a lead from the pool over
  HTTP (`POST /api/v1/_pools/sea/claim`: the pool row taken and the claim
  kept in one statement, then the owner change) against the same owner
  change as a plain `PATCH /api/v1/lead/{id}`. Goal: at most 1.2x.
- `pools_claim_vs_owner_change_query`: the same in-process (the record
  service alone as the baseline), for reference.

    .venv/bin/python tests/benchmarks/run.py pools [--quick]
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import httpx

import sqlalchemy as sa

from common import add_users, loom_cli, loom_env, loom_server, postgres_available, postgres_database
from harness import Figure, alternate, p95_figure

BUDGET_S = 30.0
CLAIM_GOAL = 1 / 1.2
USERS = 100
BUNDLE = {
    "manifest": {"format": "loom/1", "name": "bench_pools", "version": "1.0.0"},
    "objects": [{"name": "lead", "title_field": "name", "fields": [
        {"name": "name", "type": "text", "required": True},
        {"name": "status", "type": "picklist", "options": [{"value": "new"}, {"value": "converted"}]},
        {"name": "last_follow_up", "type": "date"}]}],
    "roles": [{"name": "rep", "objects": {"lead": {"create": True, "read": "own", "update": "own"}}}],
    "pools": [{"name": "sea", "object": "lead", "member_roles": ["rep"], "protect_days": 3,
               "recycle": [{"field": "last_follow_up", "after_days": 15, "filter": "status != 'converted'"}]}],
}


def _seed(url: str, rows: int) -> list[str]:
    from loomcrm.platform import systemdb
    from loomcrm.platform.db import create_engine
    from loomcrm.runtime.install import bundle_from_json, install_bundle

    engine = create_engine(url)
    systemdb.upgrade(engine)
    install_bundle(engine, bundle_from_json(BUNDLE))
    with engine.begin() as conn:
        people = add_users(conn, USERS, "rep", "rep")
        # 1 in 100 last followed up 30 days ago: due; the rest yesterday
        conn.execute(sa.text("""
            INSERT INTO o_lead (id, version, created_at, updated_at, owner, name, status, last_follow_up)
            SELECT md5(i::text), 1, now() - interval '60 days', now(), p.id, 'Lead ' || i, 'new',
                   current_date - CASE WHEN i % 100 = 0 THEN 30 ELSE 1 END
            FROM generate_series(1, :rows) AS i JOIN bench_people p ON p.n = i % :users"""),
                     {"rows": rows, "users": USERS})
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("VACUUM ANALYZE o_lead"))
    engine.dispose()
    return people


def run(quick: bool = False) -> list[Figure]:
    if not postgres_available():
        print("PostgreSQL is not reachable: no pool figures")
        return []
    from loomcrm.platform import auth
    from loomcrm.platform.db import create_engine
    from loomcrm.runtime.pools import claim, put_in_pool, recycle
    from loomcrm.runtime.records import Actor
    from loomcrm.runtime.rules.hooks import Rules
    from loomcrm.runtime.state import Runtime

    rows = int(os.environ.get("BENCH_POOL_ROWS", 20_000 if quick else 1_000_000))
    label = f"{rows // 1000}k" if rows < 1_000_000 else f"{rows // 1_000_000}m"
    figures = []
    with postgres_database() as url:
        people = _seed(url, rows)
        engine = create_engine(url)
        runtime = Runtime(engine, hooks=Rules())
        statements: list[str] = []

        def count(_conn, _cursor, sql, *_args):
            statements.append(sql)
        sa.event.listen(engine, "before_cursor_execute", count)
        start = time.perf_counter()
        moved = recycle(runtime, "sea")
        seconds = time.perf_counter() - start
        sa.event.remove(engine, "before_cursor_execute", count)
        batches = max(1, -(-moved // 1000))
        writes = sum(1 for s in statements if s.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE")))
        figures.append(Figure.from_costs(f"pools_{label}_recycle_pass", round(seconds, 2), BUDGET_S, "s",
                                         1.0, f"{moved} leads back; {len(statements) / batches:.0f} statements "
                                              f"({writes / batches:.0f} writes) per batch of 1,000"))

        # a claim against the same owner change through the record service alone
        n = 40 if quick else 200
        with engine.connect() as conn:
            ids = conn.execute(sa.text("SELECT id FROM o_lead WHERE owner IS NULL ORDER BY id LIMIT :n"),
                               {"n": 2 * n}).scalars().all()
        admin = Actor(None, "admin")
        put_in_pool(runtime, admin, "sea", list(ids[:n]))
        claimer = auth.User(id=people[0], username="rep0", role="rep", locale="en")
        pooled, plain = iter(ids[:n]), iter(ids[n:])
        rounds = 2 if quick else 5
        figures.append(p95_figure("pools_claim_vs_owner_change_query", CLAIM_GOAL, *alternate(
            lambda: claim(runtime, claimer, "sea", next(pooled)),
            lambda: runtime.records.update("lead", next(plain), {"owner": people[1]}, Actor(people[1], "admin")),
            rounds, n // rounds)))
        with engine.connect() as conn:
            ids = conn.execute(sa.text("SELECT id FROM o_lead WHERE owner IS NOT NULL ORDER BY id LIMIT :n"),
                               {"n": 2 * n}).scalars().all()
        put_in_pool(runtime, admin, "sea", list(ids[:n]))
        engine.dispose()
        figures.append(_over_http(url, people, ids, n, rounds))
    return figures


def _over_http(url: str, people: list[str], ids: list[str], n: int, rounds: int) -> Figure:
    with tempfile.TemporaryDirectory(prefix="loom-bench-pools-") as tmp:
        folder = Path(tmp)
        env = loom_env(folder, url)
        loom_cli(env, "user", "create", "bench", "--role", "admin", "--password", "bench-password-1")
        tokens = {who: loom_cli(env, "token", "create", who).stdout.strip() for who in ("rep2", "bench")}
        with loom_server(env, folder) as server:
            rep = httpx.Client(base_url=server, headers={"Authorization": f"Bearer {tokens['rep2']}"}, timeout=60)
            admin = httpx.Client(base_url=server, headers={"Authorization": f"Bearer {tokens['bench']}"}, timeout=60)
            pooled, plain = iter(ids[:n]), iter(ids[n:])
            figure = p95_figure("pools_claim_vs_owner_change_api", CLAIM_GOAL, *alternate(
                lambda: rep.post("/api/v1/_pools/sea/claim", json={"id": next(pooled)}).raise_for_status(),
                lambda: admin.patch(f"/api/v1/lead/{next(plain)}", json={"owner": people[3]}).raise_for_status(),
                rounds, n // rounds))
            rep.close()
            admin.close()
    return figure
