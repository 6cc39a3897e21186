"""API overhead: create, get, list (a page of 50 with a filter and a sort)
and update of opportunities over real HTTP, `loom serve` (with an API
token) against the hand-written FastAPI + SQLAlchemy app of
`baseline_app.py`, on SQLite and on PostgreSQL. Both check an API token
on every request. The load comes from `loadgen.py` in its own process;
rounds alternate Loom and baseline. Goal: Loom at least 0.8x the
baseline's throughput."""

from __future__ import annotations

import os
import statistics
import subprocess
import tempfile
from pathlib import Path

from common import HERE, PYTHON, baseline_server, database, install_loom, load, loom_server, postgres_available
from harness import Figure

GOAL = 0.8
OPS = ("create", "get", "list", "update")


def _spread(values: list[float]) -> float:
    median = statistics.median(values)
    return (max(values) - min(values)) / median * 50 if median else 0.0


def baseline_token(database_url: str) -> str:
    result = subprocess.run([PYTHON, str(HERE / "baseline_app.py"), database_url, "token"],
                            capture_output=True, text=True, timeout=120, check=True)
    return result.stdout.strip()


def run(quick: bool = False) -> list[Figure]:
    kinds = ["sqlite"] if quick else ["sqlite", "postgresql"]
    if not quick and not postgres_available():
        print("PostgreSQL is not reachable: the API benchmark runs on SQLite only")
        kinds = ["sqlite"]
    rounds = int(os.environ.get("BENCH_API_ROUNDS", 2 if quick else 5))
    count = int(os.environ.get("BENCH_API_REQUESTS", 40 if quick else 600))
    figures = []
    for kind in kinds:
        with tempfile.TemporaryDirectory(prefix="loom-bench-api-") as tmp:
            folder = Path(tmp)
            (folder / "loom").mkdir()
            with database(kind, folder, "loom") as loom_url, database(kind, folder, "baseline") as base_url:
                env, token = install_loom(folder / "loom", loom_url)
                base_token = baseline_token(base_url)
                with loom_server(env, folder) as loom, baseline_server(base_url, folder) as base:
                    sides = {"loom": (loom, token), "baseline": (base, base_token)}
                    # Seed both with the same number of records; the ids feed get and update.
                    ids = {side: load(url, "create", token=tok, count=count, folder=folder, style=side)["ids"]
                           for side, (url, tok) in sides.items()}
                    for op in OPS:
                        rps = {"loom": [], "baseline": []}
                        p95 = {"loom": [], "baseline": []}
                        for r in range(rounds):
                            order = ["loom", "baseline"] if r % 2 == 0 else ["baseline", "loom"]
                            for side in order:
                                url, tok = sides[side]
                                result = load(url, op, token=tok, count=count, ids=ids[side], folder=folder, style=side)
                                if result["error_count"]:
                                    raise RuntimeError(f"{side} {op}: {result['error_count']} errors, e.g. {result['errors']}")
                                if op == "create":
                                    ids[side].extend(result["ids"])
                                rps[side].append(result["rps"])
                                p95[side].append(result["p95"] * 1000)
                        figures.append(Figure.from_rates(
                            f"api_{op}_{kind}", statistics.median(rps["loom"]), statistics.median(rps["baseline"]), "req/s", GOAL,
                            f"±{_spread(rps['loom']):.0f}% / ±{_spread(rps['baseline']):.0f}%; "
                            f"p95 {statistics.median(p95['loom']):.1f} / {statistics.median(p95['baseline']):.1f} ms"))
    return figures
