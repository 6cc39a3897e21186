"""Record access at scale (PostgreSQL): what a user's record scope costs.
BENCH_ACCESS_ROWS deals (default 1,000,000; 20,000 in quick mode) owned
by 1,000 users in 50 departments (20 each).

- `access_*_list_department_vs_all`: the first page of the default list
  (newest first, 50 rows) for a user whose role reads the `department`
  scope (the deals of its 20 colleagues, 1 in 50) against the same page
  for a user whose role reads `all`. Over HTTP (a real `loom serve`, API
  tokens) and in-process (the list layer the API runs). Goal: p95 at most
  1.5x the `all` list (ratio >= 1/1.5).
- `access_*_get_checked_vs_unchecked`: a record by id through the record
  service for the department user (the scope is part of the query) against
  the same read for the `all` user (no access clause). Goal: at most 1.1x.
- `access_statements_page_200_vs_10`: SQL statements for one list request
  of the department user, 200 rows against 10, each on a fresh expansion:
  the same count, so the user is expanded once per request, never per row.

    .venv/bin/python tests/benchmarks/run.py access [--quick]
"""

from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path

import httpx
import sqlalchemy as sa

from common import add_users, loom_cli, loom_env, loom_server, postgres_available, postgres_database
from harness import Figure, alternate, p95_figure

LIST_GOAL = 1 / 1.5
GET_GOAL = 1 / 1.1
USERS, DEPARTMENTS = 1000, 50
BUNDLE = {
    "manifest": {"format": "loom/1", "name": "bench_access", "version": "1.0.0"},
    "objects": [{"name": "deal", "title_field": "name", "fields": [
        {"name": "name", "type": "text", "required": True},
        {"name": "amount", "type": "currency"},
        {"name": "stage", "type": "picklist", "options": [{"value": "open"}, {"value": "won"}, {"value": "lost"}]}]}],
    "roles": [{"name": "team_reader", "objects": {"deal": {"read": "department", "update": "department"}}},
              {"name": "all_reader", "objects": {"deal": {"read": "all", "update": "all"}}}],
}


def _seed(url: str, rows: int) -> dict[str, str]:
    """The bundle, the departments and users, `rows` deals; the ids of the
    two measured users (`team`: team_reader in department 7, `all`)."""
    from loomcrm.platform import systemdb
    from loomcrm.platform.db import create_engine
    from loomcrm.runtime.install import bundle_from_json, install_bundle

    systemdb.upgrade(create_engine(url))
    engine = create_engine(url)
    install_bundle(engine, bundle_from_json(BUNDLE))
    departments = [uuid.uuid4().hex for _ in range(DEPARTMENTS)]
    with engine.begin() as conn:
        conn.execute(sa.insert(systemdb.departments), [{"id": d, "name": f"dept_{i}", "label": f"Dept {i}"}
                                                       for i, d in enumerate(departments)])
        people = add_users(conn, USERS, lambda i: "team_reader" if i == 7 else "all_reader" if i == 8 else "user",
                           department_id=lambda i: departments[i % DEPARTMENTS])
        conn.execute(sa.text("""
            INSERT INTO o_deal (id, version, created_at, updated_at, owner, name, amount, stage)
            SELECT md5(i::text), 1, now() - (i || ' seconds')::interval, now(), p.id, 'Deal ' || i,
                   round((random() * 100000)::numeric, 2), (ARRAY['open','won','lost'])[1 + i % 3]
            FROM generate_series(1, :rows) AS i JOIN bench_people p ON p.n = i % :users"""), {"rows": rows, "users": USERS})
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("VACUUM ANALYZE o_deal"))
        conn.execute(sa.text("ANALYZE loom_users"))
    engine.dispose()
    return {"team": people[7], "all": people[8]}


def run(quick: bool = False) -> list[Figure]:
    if not postgres_available():
        print("PostgreSQL is not reachable: no access figures")
        return []
    rows = int(os.environ.get("BENCH_ACCESS_ROWS", 20_000 if quick else 1_000_000))
    rounds, block = (2, 10) if quick else (6, 25)
    label = f"{rows // 1000}k" if rows < 1_000_000 else f"{rows // 1_000_000}m"
    figures = []
    with tempfile.TemporaryDirectory(prefix="loom-bench-access-") as tmp, postgres_database() as url:
        folder = Path(tmp)
        ids = _seed(url, rows)
        env = loom_env(folder, url)
        tokens = {who: loom_cli(env, "token", "create", f"user{n}").stdout.strip() for who, n in (("team", 7), ("all", 8))}
        with loom_server(env, folder) as server:
            clients = {who: httpx.Client(base_url=server, headers={"Authorization": f"Bearer {token}"}, timeout=120)
                       for who, token in tokens.items()}
            pages = {who: client.get("/api/v1/deal", params={"limit": "50"}).raise_for_status().json()["data"]
                     for who, client in clients.items()}
            team_owners = _team(url, ids["team"])
            assert len(pages["team"]) == 50 and {r["owner"] for r in pages["team"]} <= team_owners
            assert len(pages["all"]) == 50
            figures.append(p95_figure(f"access_{label}_list_department_vs_all_api", LIST_GOAL, *alternate(
                lambda: clients["team"].get("/api/v1/deal", params={"limit": "50"}).raise_for_status(),
                lambda: clients["all"].get("/api/v1/deal", params={"limit": "50"}).raise_for_status(), rounds, block)))
            for client in clients.values():
                client.close()
        figures.extend(_in_process(url, ids, label, rounds, block))
    return figures


def _team(url: str, user_id: str) -> set[str]:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        owners = set(conn.execute(sa.text(
            "SELECT id FROM loom_users WHERE department_id = (SELECT department_id FROM loom_users WHERE id = :u)"),
            {"u": user_id}).scalars())
    engine.dispose()
    return owners


def _in_process(url: str, ids: dict[str, str], label: str, rounds: int, block: int) -> list[Figure]:
    from loomcrm.platform import auth
    from loomcrm.platform.db import create_engine
    from loomcrm.runtime.query import list_records, parse_list_params
    from loomcrm.runtime.state import Runtime

    engine = create_engine(url)
    runtime = Runtime(engine)
    schema = runtime.schema()
    obj = schema.object("deal")
    users = {"team": auth.User(id=ids["team"], username="user7", role="team_reader", locale="en"),
             "all": auth.User(id=ids["all"], username="user8", role="all_reader", locale="en")}

    def page(who: str, limit: str = "50"):
        def go():
            access = runtime.access.of(users[who])
            view = access.view(obj)
            params = parse_list_params([("limit", limit)], view, runtime.context)
            with engine.connect() as conn:
                return list_records(conn, schema, view, params, access)
        return go

    team_record = page("team")()[0][0]["id"]
    get = {who: (lambda who=who: runtime.records.get("deal", team_record, users[who], schema=schema)) for who in users}
    assert get["team"]()["id"] == get["all"]()["id"] == team_record
    figures = [
        p95_figure(f"access_{label}_list_department_vs_all_query", LIST_GOAL, *alternate(page("team"), page("all"), rounds, block)),
        p95_figure(f"access_{label}_get_checked_vs_unchecked", GET_GOAL, *alternate(get["team"], get["all"], rounds, block * 4)),
    ]
    statements: list[int] = []
    sa.event.listen(engine, "before_cursor_execute", lambda *a, **k: statements.append(1))
    counts = {}
    for limit in ("10", "200"):
        runtime.access.forget()
        statements.clear()
        rows, _cursor = page("team", limit)()
        counts[limit] = (len(statements), len(rows))
    (small, small_rows), (large, large_rows) = counts["10"], counts["200"]
    figures.append(Figure("access_statements_page_200_vs_10", large, small, "statements",
                          round(min(small, large) / max(small, large, 1), 4), 1.0, small == large,
                          f"{small} statements for {small_rows} rows, {large} for {large_rows}, the expansion included"))
    engine.dispose()
    return figures
