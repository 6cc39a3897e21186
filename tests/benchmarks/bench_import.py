"""Import: the engine of `loom import` (every row through the record
service's `create_many` with the rules hooks, batches of 500 per
transaction, history and outbox written) against raw SQLAlchemy
`executemany` of the same rows into a copy of the same table (reading and
converting the CSV is timed on both sides). The Maven figures also say how
many SQL statements Loom ran per saved row.

1. The Maven pipeline (8,800 rows, 1,480 refused for an unknown product)
   into the `deal` object of tests/importer/pipeline, on SQLite and
   PostgreSQL. Goal: at least 0.5x raw.
2. Synthetic opportunities at growing sizes (BENCH_IMPORT_SIZES, default
   10,000 and 100,000; add 1000000 for the million-row run, about 25 min
   on SQLite): the cost per row at the largest size against the smallest.
   Goal: linear, i.e. the cost per row grows by at most 25% (ratio >= 0.8).
   This one compares Loom with itself at different moments, so it is
   measured in the process's CPU time (SQLite runs in the process): wall
   time moves with whatever else the shared machine runs meanwhile. The
   raw import's own ratio is printed beside it: the table's indexes grow
   with it, on both sides.
"""

from __future__ import annotations

import csv
import os
import random
import shutil
import statistics
import tempfile
import time
from datetime import date
from decimal import Decimal
from pathlib import Path

import sqlalchemy as sa

from common import BUNDLE, MAVEN, REPO, database, loom_cli, loom_env, postgres_available
from harness import Figure

PIPELINE = REPO / "tests" / "importer" / "pipeline"
GOAL_RAW = 0.5
GOAL_LINEAR = 0.8


def _runtime(url: str):
    from loomcrm.platform import systemdb
    from loomcrm.platform.db import create_engine
    from loomcrm.runtime.rules.hooks import Rules
    from loomcrm.runtime.state import Runtime

    engine = create_engine(url)
    systemdb.upgrade(engine)
    return Runtime(engine, hooks=Rules())


def _loom_import(runtime, object_name: str, path: Path, statements: list[float] | None = None) -> float:
    """Seconds; appends the SQL statements per saved row to `statements`."""
    from loomcrm.runtime.importer import import_file

    count = 0

    def counted(*_args) -> None:
        nonlocal count
        count += 1

    sa.event.listen(runtime.engine, "before_cursor_execute", counted)
    try:
        started = time.perf_counter()
        result = import_file(runtime, object_name, path)
        elapsed = time.perf_counter() - started
    finally:
        sa.event.remove(runtime.engine, "before_cursor_execute", counted)
    if statements is not None:
        statements.append(count / max(result.saved, 1))
    return elapsed


def _clear(runtime, object_name: str) -> None:
    from loomcrm.platform import systemdb

    table = runtime.schema().table(object_name)
    with runtime.engine.begin() as conn:
        conn.execute(table.delete())
        conn.execute(systemdb.outbox.delete())
        conn.execute(systemdb.history.delete())


def _raw_table(runtime, object_name: str) -> sa.Table:
    """A copy of the Loom table, with its unique constraints, foreign keys
    and indexes (under names of its own): the table a hand-written import
    would fill, so both sides pay for the same index upkeep and checks."""
    source = runtime.schema().table(object_name)
    meta = sa.MetaData()
    name = f"raw_{object_name}"
    items: list = [sa.Column(c.name, c.type, primary_key=c.primary_key, nullable=c.nullable) for c in source.columns]
    for n, constraint in enumerate(source.constraints):
        columns = [c.name for c in constraint.columns]
        if isinstance(constraint, sa.UniqueConstraint):
            items.append(sa.UniqueConstraint(*columns, name=f"{name}_uq{n}"))
        elif isinstance(constraint, sa.ForeignKeyConstraint):
            items.append(sa.ForeignKeyConstraint(columns, [e.column for e in constraint.elements], name=f"{name}_fk{n}"))
    table = sa.Table(name, meta, *items)
    for n, index in enumerate(source.indexes):
        sa.Index(f"{name}_ix{n}", *[table.c[c.name] for c in index.columns], unique=index.unique)
    meta.create_all(runtime.engine)
    return table


def _raw_import(engine, table: sa.Table, path: Path, convert, cpu: list[float] | None = None) -> float:
    """What a developer writes by hand: read, convert, executemany.
    Seconds; appends the CPU seconds to `cpu`."""
    started, cpu_started = time.perf_counter(), time.process_time()
    with engine.begin() as conn:
        rows = convert(conn, csv.DictReader(path.open(encoding="utf-8-sig", newline="")))
        conn.execute(table.insert(), rows)
    elapsed = time.perf_counter() - started
    if cpu is not None:
        cpu.append(time.process_time() - cpu_started)
    with engine.begin() as conn:
        conn.execute(table.delete())
    return elapsed


def _system(row: dict) -> dict:
    import uuid
    from datetime import datetime, timezone

    now = datetime.now(timezone.utc)
    return {"id": uuid.uuid4().hex, "version": 1, "created_at": now, "updated_at": now, "created_by": None,
            "updated_by": None, "owner": None, **row}


def _maven_convert(conn, reader):
    accounts = dict(conn.execute(sa.text("SELECT name, id FROM o_account")).all())
    products = dict(conn.execute(sa.text("SELECT name, id FROM o_product")).all())
    out = []
    for r in reader:
        product = products.get(r["product"])
        if product is None:
            continue   # the rows Loom refuses
        out.append(_system({
            "opportunity_id": r["opportunity_id"], "sales_agent": r["sales_agent"] or None, "product": product,
            "account": accounts.get(r["account"]) if r["account"] else None, "deal_stage": r["deal_stage"],
            "engage_date": date.fromisoformat(r["engage_date"]) if r["engage_date"] else None,
            "close_date": date.fromisoformat(r["close_date"]) if r["close_date"] else None,
            "close_value": Decimal(r["close_value"]) if r["close_value"] else None, "note": None}))
    return out


def _opportunity_convert(conn, reader):
    return [_system({"name": r["name"], "amount": Decimal(r["amount"]) if r["amount"] else None, "stage": r["stage"],
                     "close_date": date.fromisoformat(r["close_date"]) if r["close_date"] else None})
            for r in reader]


def _synthetic(path: Path, rows: int) -> None:
    rng = random.Random(rows)
    stages = ("qualification", "needs_analysis", "proposal", "negotiation", "won", "lost")
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["name", "amount", "stage", "close_date"])
        for i in range(rows):
            writer.writerow([f"Deal {i}", f"{rng.uniform(0, 100000):.2f}", stages[i % 6],
                             f"2030-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"])


def _spread(values):
    median = statistics.median(values)
    return (max(values) - min(values)) / median * 50 if median else 0.0


def _maven(kind: str, folder: Path, reps: int, rows_limit: int | None) -> Figure:
    source = folder / "sales_pipeline.csv"
    if rows_limit:
        with (MAVEN / "sales_pipeline.csv").open(newline="") as f, source.open("w", newline="") as out:
            for i, line in enumerate(f):
                if i > rows_limit:
                    break
                out.write(line)
    else:
        shutil.copy(MAVEN / "sales_pipeline.csv", source)
    for name in ("accounts.csv", "products.csv"):
        shutil.copy(MAVEN / name, folder / name)
    with database(kind, folder, "maven") as url:
        env = loom_env(folder / "data", url)
        loom_cli(env, "pack", "install", str(PIPELINE))
        loom_cli(env, "import", "account", str(folder / "accounts.csv"), "--map", "account=name")
        loom_cli(env, "import", "product", str(folder / "products.csv"), "--map", "product=name")
        runtime = _runtime(url)
        raw = _raw_table(runtime, "deal")
        loom_times, raw_times, statements = [], [], []
        for r in range(reps):
            sides = [("loom", lambda: _loom_import(runtime, "deal", source, statements)),
                     ("raw", lambda: _raw_import(runtime.engine, raw, source, _maven_convert))]
            for side, fn in (sides if r % 2 == 0 else sides[::-1]):
                (loom_times if side == "loom" else raw_times).append(fn())
                if side == "loom":
                    _clear(runtime, "deal")
        runtime.engine.dispose()
    rows = sum(1 for _ in source.open()) - 1
    return Figure.from_costs(f"import_maven_{rows}_rows_{kind}", round(statistics.median(loom_times), 3),
                             round(statistics.median(raw_times), 3), "s", GOAL_RAW,
                             f"±{_spread(loom_times):.0f}% / ±{_spread(raw_times):.0f}%, "
                             f"{max(statements):.2f} statements per row")


def _linear(folder: Path, sizes: list[int]) -> list[Figure]:
    figures = []
    per_row, raw_per_row = {}, {}
    with database("sqlite", folder, "linear") as url:
        env = loom_env(folder / "data-linear", url)
        loom_cli(env, "pack", "install", str(BUNDLE))
        runtime = _runtime(url)
        raw = _raw_table(runtime, "opportunity")
        for size in sizes:
            path = folder / f"synthetic-{size}.csv"
            _synthetic(path, size)
            raw_cpu: list[float] = []
            raw_s = _raw_import(runtime.engine, raw, path, _opportunity_convert, raw_cpu)
            raw_per_row[size] = raw_cpu[0] / size
            cpu = time.process_time()
            loom_s = _loom_import(runtime, "opportunity", path)
            per_row[size] = (time.process_time() - cpu) / size
            _clear(runtime, "opportunity")
            figures.append(Figure.from_costs(f"import_synthetic_{size}_rows_sqlite", round(loom_s, 3), round(raw_s, 3), "s", GOAL_RAW,
                                             f"{loom_s / size * 1e6:.0f} vs {raw_s / size * 1e6:.1f} us/row"))
            path.unlink()
        runtime.engine.dispose()
    small, large = min(sizes), max(sizes)
    figures.append(Figure.from_costs(f"import_linear_{large}_vs_{small}_rows", round(per_row[large] * 1e6, 1),
                                     round(per_row[small] * 1e6, 1), "cpu us/row", GOAL_LINEAR,
                                     f"CPU time per row at {large:,} rows against {small:,} rows "
                                     f"(raw: {raw_per_row[small] / raw_per_row[large]:.2f})"))
    return figures


def run(quick: bool = False) -> list[Figure]:
    kinds = ["sqlite"] + (["postgresql"] if not quick and postgres_available() else [])
    sizes = [int(s) for s in os.environ.get("BENCH_IMPORT_SIZES", "300,1200" if quick else "10000,100000").split(",")]
    figures = []
    with tempfile.TemporaryDirectory(prefix="loom-bench-import-") as tmp:
        folder = Path(tmp)
        for kind in kinds:
            sub = folder / kind
            sub.mkdir()
            figures.append(_maven(kind, sub, reps=1 if quick else 3, rows_limit=300 if quick else None))
        figures.extend(_linear(folder, sizes))
    return figures
