"""Lists at scale: opportunities on PostgreSQL (BENCH_LIST_ROWS, default
1,000,000; 20,000 in quick mode), seeded in bulk into Loom's generated
table. A filter + sort first page and a deep page reached through cursors,
Loom against the raw SQL query that returns the same page.

- `lists_*_api`: Loom's API over HTTP (a real `loom serve`, API token).
- `lists_*_query`: Loom's list layer in-process (`runtime.query.list_records`,
  what the API runs, without HTTP).
- The raw side runs the hand-written keyset query over a plain psycopg
  connection and fetches the rows.
Goal: p95 at most 1.5x raw (ratio >= 1/1.5); SQL statements per request the
same for the deep page as for the first.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

import httpx
import psycopg
import sqlalchemy as sa

from common import install_loom, loom_server, postgres_available, postgres_database, seed_opportunities
from harness import Figure

GOAL = 1 / 1.5
FILTER = "stage == 'proposal'"
RAW_FIRST = ("SELECT * FROM o_opportunity WHERE stage = 'proposal' AND _deleted_at IS NULL "
             "ORDER BY amount DESC NULLS LAST, id DESC LIMIT 51")
RAW_AFTER = ("SELECT * FROM o_opportunity WHERE stage = 'proposal' AND _deleted_at IS NULL "
             "AND amount IS NOT NULL AND (amount, id) < (%s, %s) ORDER BY amount DESC NULLS LAST, id DESC LIMIT 51")


def p95(values: list[float]) -> float:
    values = sorted(values)
    return values[max(0, int(len(values) * 0.95) - 1)]


def _alternate(loom, raw, rounds: int, block: int) -> tuple[list[float], list[float]]:
    times = {"loom": [], "raw": []}
    for r in range(rounds):
        order = [("loom", loom), ("raw", raw)] if r % 2 == 0 else [("raw", raw), ("loom", loom)]
        for side, fn in order:
            for _ in range(block):
                start = time.perf_counter()
                fn()
                times[side].append((time.perf_counter() - start) * 1000)
    return times["loom"], times["raw"]


def _figure(name, loom, raw) -> Figure:
    return Figure.from_costs(name, round(p95(loom), 3), round(p95(raw), 3), "ms p95", GOAL,
                             f"median {statistics.median(loom):.2f} / {statistics.median(raw):.2f} ms")


def run(quick: bool = False) -> list[Figure]:
    if not postgres_available():
        print("PostgreSQL is not reachable: no list figures")
        return []
    rows = int(os.environ.get("BENCH_LIST_ROWS", 20_000 if quick else 1_000_000))
    depth = 10 if quick else 200           # pages followed before the deep page
    rounds, block = (2, 10) if quick else (6, 25)
    figures = []
    with tempfile.TemporaryDirectory(prefix="loom-bench-lists-") as tmp, postgres_database() as url:
        folder = Path(tmp)
        env, token = install_loom(folder, url)
        seed_opportunities(url, rows)
        label = f"{rows // 1000}k" if rows < 1_000_000 else f"{rows // 1_000_000}m"
        with loom_server(env, folder) as server:
            client = httpx.Client(base_url=server, headers={"Authorization": f"Bearer {token}"}, timeout=120)
            params = {"limit": "50", "sort": "-amount", "filter": FILTER}
            first = client.get("/api/v1/opportunity", params=params)
            first.raise_for_status()
            cursor, last = first.json()["next_cursor"], first.json()["data"][-1]
            for _ in range(depth - 1):
                page = client.get("/api/v1/opportunity", params={**params, "cursor": cursor}).json()
                before, cursor, last = last, page["next_cursor"], page["data"][-1]
            deep_params = {**params, "cursor": cursor}
            deep_after = (last["amount"], last["id"])   # the raw deep page starts after the same record

            raw = psycopg.connect(sa.engine.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False))
            api_first = lambda: client.get("/api/v1/opportunity", params=params).raise_for_status()  # noqa: E731
            api_deep = lambda: client.get("/api/v1/opportunity", params=deep_params).raise_for_status()  # noqa: E731
            raw_first = lambda: raw.execute(RAW_FIRST).fetchall()  # noqa: E731
            raw_deep = lambda: raw.execute(RAW_AFTER, deep_after).fetchall()  # noqa: E731
            # The same page on both sides.
            assert [r[0] for r in raw_deep()[:50]] == [r["id"] for r in client.get("/api/v1/opportunity", params=deep_params).json()["data"]]
            figures.append(_figure(f"lists_{label}_first_page_api", *_alternate(api_first, raw_first, rounds, block)))
            figures.append(_figure(f"lists_{label}_deep_page_api", *_alternate(api_deep, raw_deep, rounds, block)))
            client.close()

            figures.extend(_in_process(url, label, params, deep_params, raw_first, raw_deep, rounds, block))
            raw.close()
    return figures


def _in_process(url, label, params, deep_params, raw_first, raw_deep, rounds, block) -> list[Figure]:
    from loomcrm.platform.db import create_engine
    from loomcrm.runtime.query import list_records, parse_list_params
    from loomcrm.runtime.state import Runtime

    engine = create_engine(url)
    runtime = Runtime(engine)
    schema = runtime.schema()
    obj = schema.object("opportunity")
    statements = []
    sa.event.listen(engine, "before_cursor_execute", lambda *a, **k: statements.append(1))

    def query(p):
        def go():
            parsed = parse_list_params(list(p.items()), obj, runtime.context)
            with engine.connect() as conn:
                return list_records(conn, runtime.schema(), obj, parsed)
        return go

    figures = [_figure(f"lists_{label}_first_page_query", *_alternate(query(params), raw_first, rounds, block)),
               _figure(f"lists_{label}_deep_page_query", *_alternate(query(deep_params), raw_deep, rounds, block))]
    counts = {}
    for name, p in (("first", params), ("deep", deep_params)):
        statements.clear()
        query(p)()
        counts[name] = len(statements)
    figures.append(Figure.from_costs(f"lists_{label}_statements_deep_vs_first", counts["deep"], counts["first"], "statements",
                                     1.0, "SQL statements for one page request"))
    engine.dispose()
    return figures
