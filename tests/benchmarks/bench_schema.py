"""Schema change at scale: add a field to the opportunity table holding
BENCH_SCHEMA_ROWS rows (default 1,000,000; 20,000 quick) on PostgreSQL,
through the metadata API (PUT the object with one more field, POST
publish) of a real `loom serve`. Reports the publish time against the
1-second budget, the raw `ALTER TABLE ... ADD COLUMN` for reference, and
whether PostgreSQL rewrote the table (its relfilenode changes on a rewrite).
Goal: under 1 s, no rewrite."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import httpx
import sqlalchemy as sa

from common import install_loom, loom_server, postgres_available, postgres_database, seed_opportunities
from harness import Figure

BUDGET = 1.0


def _relfilenode(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT relfilenode FROM pg_class WHERE relname = 'o_opportunity'")).scalar_one()


def run(quick: bool = False) -> list[Figure]:
    if not postgres_available():
        print("PostgreSQL is not reachable: no schema-change figures")
        return []
    rows = int(os.environ.get("BENCH_SCHEMA_ROWS", 20_000 if quick else 1_000_000))
    label = f"{rows // 1000}k" if rows < 1_000_000 else f"{rows // 1_000_000}m"
    figures = []
    with tempfile.TemporaryDirectory(prefix="loom-bench-schema-") as tmp, postgres_database() as url:
        folder = Path(tmp)
        env, token = install_loom(folder, url)
        seed_opportunities(url, rows)
        engine = sa.create_engine(url)
        with loom_server(env, folder) as server:
            client = httpx.Client(base_url=server, headers={"Authorization": f"Bearer {token}"}, timeout=600)
            definition = client.get("/api/v1/_meta/objects/opportunity").json()
            before = _relfilenode(engine)
            times = []
            for n, field in enumerate(({"name": "next_step", "type": "text", "max_length": 200},
                                       {"name": "budget", "type": "currency", "required": True, "min": 0})):
                definition["fields"].append(field)
                client.put("/api/v1/_meta/objects/opportunity", json=definition).raise_for_status()
                start = time.perf_counter()
                response = client.post("/api/v1/_meta/publish")
                times.append(time.perf_counter() - start)
                response.raise_for_status()
            after = _relfilenode(engine)
            client.close()
        with engine.begin() as conn:
            start = time.perf_counter()
            conn.execute(sa.text("ALTER TABLE o_opportunity ADD COLUMN raw_probe varchar(200)"))
            raw = time.perf_counter() - start
            count = conn.execute(sa.text("SELECT count(*) FROM o_opportunity")).scalar_one()
            columns = set(conn.execute(sa.text("SELECT column_name FROM information_schema.columns "
                                               "WHERE table_name = 'o_opportunity'")).scalars())
        engine.dispose()
    assert count == rows and {"next_step", "budget"} <= columns, (count, columns)
    slowest = max(times)
    figures.append(Figure.from_costs(f"schema_add_field_{label}_rows", round(slowest, 3), BUDGET, "s", 1.0,
                                     f"publish vs the 1 s budget; raw ALTER TABLE {raw * 1000:.0f} ms; "
                                     f"text field {times[0] * 1000:.0f} ms, required currency {times[1] * 1000:.0f} ms"))
    rewritten = before != after
    figures.append(Figure(f"schema_add_field_{label}_rows_no_rewrite", float(rewritten), 0.0, "rewrites",
                          0.0 if rewritten else 1.0, 1.0, not rewritten, f"relfilenode {before} -> {after}"))
    return figures
