"""Lists at scale: opportunities on PostgreSQL (BENCH_LIST_ROWS, default
1,000,000; 20,000 in quick mode), seeded in bulk into Loom's generated
table. A filter + sort first page and a deep page reached through cursors,
each Loom figure against a hand-written side that returns the same page
with the same index-backed SQL (`raw_list_app.RAW_FIRST` / `RAW_AFTER`).

- `lists_*_api`: Loom's API over HTTP (a real `loom serve`, API token)
  against that SQL run over a plain psycopg connection. This is the issue's
  own reading ("Loom's API vs the raw SQL query"), kept as it is; but with
  the page read from the index in well under a millisecond, it compares a
  whole HTTP request (parsing, token, 50 rows as JSON, uvicorn) with a bare
  driver call, and says little about what Loom itself adds.
- `lists_*_query`: Loom's list layer in-process (`runtime.query.list_records`,
  what the API runs, without HTTP) against the same bare call: the
  metadata-driven query, its cursor and its JSON-ready records, still
  against no Python work at all on the raw side.
- `lists_*_http`: the fair comparison of the API. Loom's API against
  `raw_list_app.py`, a hand-written FastAPI endpoint serving the same page
  with the same SQL, also under uvicorn in its own process, doing what a
  careful developer would: a bearer token checked on every request (one
  indexed SELECT; Loom caches its lookups), a base64 JSON cursor, the rows
  in Loom's JSON shape. Both answer the same ids and the same records.
- Statements: for one page from the list layer, and for one whole API
  request (in-process, every statement on the engine counted).

The HTTP and query figures alternate blocks of requests between the two
sides over the same rounds. Goal: p95 at most 1.5x the hand-written side
(ratio >= 1/1.5); SQL statements per request the same for the deep page as
for the first.

Loading a million rows takes minutes: with BENCH_LIST_DATABASE=NAME the
seeded database is kept under that name and reused by the next run with
the same row count (it is only read).
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import tempfile
import time
from decimal import Decimal
from pathlib import Path

import httpx
import psycopg
import sqlalchemy as sa

import raw_list_app
from common import (POSTGRES_ADMIN_URL, baseline_server, install_loom, loom_cli, loom_env, loom_server,
                    postgres_available, postgres_database, seed_opportunities)
from harness import Figure, alternate, p95_figure
from raw_list_app import PROPOSALS, RAW_AFTER, RAW_FIRST

GOAL = 1 / 1.5
FILTER = "stage == 'proposal'"
# The same pages as one plain SELECT, which sorts every proposal (see
# raw_list_app.py), for reference in the notes.
NAIVE_FIRST = f"{PROPOSALS} ORDER BY amount DESC NULLS LAST, id DESC LIMIT 51"
NAIVE_AFTER = (f"{PROPOSALS} AND (amount < %s OR (amount = %s AND id < %s) OR amount IS NULL) "
               "ORDER BY amount DESC NULLS LAST, id DESC LIMIT 51")


def _figure(name, loom, raw, note: str = "") -> Figure:
    return p95_figure(name, GOAL, loom, raw, note)


def _median_ms(fn, times: int = 5) -> float:
    samples = []
    for _ in range(times):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def run(quick: bool = False) -> list[Figure]:
    if not postgres_available():
        print("PostgreSQL is not reachable: no list figures")
        return []
    rows = int(os.environ.get("BENCH_LIST_ROWS", 20_000 if quick else 1_000_000))
    depth = 10 if quick else 200           # pages followed before the deep page
    rounds, block = (2, 10) if quick else (6, 25)
    figures = []
    with tempfile.TemporaryDirectory(prefix="loom-bench-lists-") as tmp, \
            _seeded(Path(tmp), rows, os.environ.get("BENCH_LIST_DATABASE")) as (url, env, token):
        folder = Path(tmp)
        label = f"{rows // 1000}k" if rows < 1_000_000 else f"{rows // 1_000_000}m"
        with loom_server(env, folder) as server:
            client = httpx.Client(base_url=server, headers={"Authorization": f"Bearer {token}"}, timeout=120)
            params = {"limit": "50", "sort": "-amount", "filter": FILTER}
            first = client.get("/api/v1/opportunity", params=params)
            first.raise_for_status()
            cursor, last = first.json()["next_cursor"], first.json()["data"][-1]
            for _ in range(depth - 1):
                page = client.get("/api/v1/opportunity", params={**params, "cursor": cursor}).json()
                cursor, last = page["next_cursor"], page["data"][-1]
            deep_params = {**params, "cursor": cursor}
            amount, last_id = Decimal(str(last["amount"])), last["id"]   # the raw deep page starts after the same record

            raw = psycopg.connect(sa.engine.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False))
            api_first = lambda: client.get("/api/v1/opportunity", params=params).raise_for_status()  # noqa: E731
            api_deep = lambda: client.get("/api/v1/opportunity", params=deep_params).raise_for_status()  # noqa: E731
            raw_first = lambda: raw.execute(RAW_FIRST).fetchall()  # noqa: E731
            raw_deep = lambda: raw.execute(RAW_AFTER, (amount, last_id)).fetchall()  # noqa: E731
            naive_first = lambda: raw.execute(NAIVE_FIRST).fetchall()  # noqa: E731
            naive_deep = lambda: raw.execute(NAIVE_AFTER, (amount, amount, last_id)).fetchall()  # noqa: E731
            # The same pages on every side.
            for loom_page, sql_pages in ((api_first, (raw_first, naive_first)), (api_deep, (raw_deep, naive_deep))):
                ids = [r["id"] for r in loom_page().json()["data"]]
                assert len(ids) == 50 and all([r[0] for r in sql()[:50]] == ids for sql in sql_pages)
            notes = {page: f"; one plain SELECT with NULLS LAST: {_median_ms(fn):.1f} ms"
                     for page, fn in (("first", naive_first), ("deep", naive_deep))}
            figures.append(_figure(f"lists_{label}_first_page_api", *alternate(api_first, raw_first, rounds, block), notes["first"]))
            figures.append(_figure(f"lists_{label}_deep_page_api", *alternate(api_deep, raw_deep, rounds, block), notes["deep"]))
            figures.extend(_http(url, folder, label, (api_first, api_deep), (amount, last_id), rounds, block))
            client.close()

            figures.extend(_in_process(url, folder, token, label, params, deep_params, raw_first, raw_deep, rounds, block))
            raw.close()
    return figures


def _http(url, folder, label, loom_pages, deep_after, rounds, block) -> list[Figure]:
    """Loom's API against the hand-written endpoint of `raw_list_app.py`,
    both over HTTP; the raw deep page starts after the same record."""
    token = raw_list_app.create_token(url)
    with baseline_server(url, folder, "raw_list_app.py") as server, \
            httpx.Client(base_url=server, headers={"Authorization": f"Bearer {token}"}, timeout=120) as client:
        deep_params = {"cursor": raw_list_app.encode_cursor(*deep_after)}
        raw_pages = (lambda: client.get("/opportunity").raise_for_status(),
                     lambda: client.get("/opportunity", params=deep_params).raise_for_status())
        for loom_page, raw_page in zip(loom_pages, raw_pages):
            # The same records in the same JSON shape (amounts compared as numbers).
            loom_body, raw_body = (json.loads(page().content, parse_float=Decimal) for page in (loom_page, raw_page))
            assert [r["id"] for r in raw_body["data"]] == [r["id"] for r in loom_body["data"]] and len(raw_body["data"]) == 50
            assert raw_body["data"] == loom_body["data"], "the hand-written endpoint answers other records"
            assert (raw_body["next_cursor"] is None) == (loom_body["next_cursor"] is None)
        return [_figure(f"lists_{label}_{page}_page_http", *alternate(loom_page, raw_page, rounds, block))
                for page, loom_page, raw_page in zip(("first", "deep"), loom_pages, raw_pages)]


def _same_count(name: str, deep: int, first: int, note: str) -> Figure:
    """Met only when the deep page takes exactly as many statements as the first."""
    return Figure(name, deep, first, "statements", round(min(deep, first) / max(deep, first, 1), 4), 1.0, deep == first, note)


@contextlib.contextmanager
def _seeded(folder: Path, rows: int, keep: str | None):
    """(url, env, token) of a database holding `rows` opportunities: a new
    one dropped afterwards, or the kept database `keep`, loaded only when
    it does not hold them yet."""
    if not keep:
        with postgres_database() as url:
            env, token = install_loom(folder, url)
            seed_opportunities(url, rows)
            yield url, env, token
        return
    admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    url = sa.engine.make_url(POSTGRES_ADMIN_URL).set(database=keep).render_as_string(hide_password=False)
    with admin.connect() as conn:
        exists = conn.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": keep}).first()
    held = None
    if exists:
        engine = sa.create_engine(url)
        with engine.connect() as conn:
            if conn.execute(sa.text("SELECT to_regclass('o_opportunity')")).scalar() is not None:
                held = conn.execute(sa.text("SELECT count(*) FROM o_opportunity")).scalar_one()
        engine.dispose()
    if held == rows:
        env = loom_env(folder, url)
        token = loom_cli(env, "token", "create", "bench").stdout.strip()
    else:
        print(f"loading {rows} rows into the kept database {keep}", flush=True)
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{keep}" WITH (FORCE)'))
            conn.execute(sa.text(f'CREATE DATABASE "{keep}"'))
        env, token = install_loom(folder, url)
        seed_opportunities(url, rows)
    admin.dispose()
    yield url, env, token


def _in_process(url, folder, token, label, params, deep_params, raw_first, raw_deep, rounds, block) -> list[Figure]:
    from fastapi.testclient import TestClient

    from loomcrm.platform.app import create_app
    from loomcrm.platform.db import create_engine
    from loomcrm.platform.settings import Settings
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

    figures = [_figure(f"lists_{label}_first_page_query", *alternate(query(params), raw_first, rounds, block)),
               _figure(f"lists_{label}_deep_page_query", *alternate(query(deep_params), raw_deep, rounds, block))]
    counts = {}
    for name, p in (("first", params), ("deep", deep_params)):
        statements.clear()
        query(p)()
        counts[name] = len(statements)
    figures.append(_same_count(f"lists_{label}_statements_deep_vs_first", counts["deep"], counts["first"],
                               f"SQL statements for one page from the list layer: {counts['first']} first, {counts['deep']} deep"))
    # The whole API request, in-process so that every statement on its
    # engine is counted: the page, plus the metadata version check that
    # runs at most once a second (the token is checked once, then cached).
    # Each side is counted on a fresh second, and right after.
    with TestClient(create_app(Settings(data_dir=folder, database_url=url), engine),
                    headers={"Authorization": f"Bearer {token}"}) as client:
        client.get("/api/v1/opportunity", params=params).raise_for_status()  # loads the schema, caches the token
        counts = {}
        for name, p in (("first", params), ("deep", deep_params), ("first", params)):
            time.sleep(1.1)
            for _ in range(3):
                statements.clear()
                client.get("/api/v1/opportunity", params=p).raise_for_status()
                counts.setdefault(name, set()).add(len(statements))
    spans = {name: f"{min(c)}-{max(c)}" if len(c) > 1 else str(min(c)) for name, c in counts.items()}
    figures.append(_same_count(f"lists_{label}_api_statements_deep_vs_first", max(counts["deep"]), max(counts["first"]),
                               f"SQL statements for one API page request: {spans['first']} first, {spans['deep']} deep"))
    engine.dispose()
    return figures
