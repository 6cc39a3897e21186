"""Reports and dashboards against hand-written SQL of the same result.

On PostgreSQL, BENCH_REPORT_ROWS opportunities (default 1,000,000; 20,000
in quick mode) owned by 100 users; on SQLite, BENCH_REPORT_SQLITE_ROWS
(default 100,000; 5,000 quick).

- `report_*_pipeline_by_stage_owner`: open deals grouped by stage and
  owner, count and sum, with a subtotal per stage and the totals row,
  through `run_report` (one statement) against the hand-written GROUP BY
  (GROUPING SETS on PostgreSQL, a UNION ALL of the grouped, subtotal and
  total selects on SQLite).
  Goal: p95 at most 1.3x.
- `report_*_forecast_by_month`: deals not lost by close month, weighted by
  stage probability, the same way. Goal: at most 1.3x.
- `report_*_dashboard_of_six`: a dashboard of six reports as its page
  computes it (each report, the owners' names, the chart data) against the
  sum of the six hand-written statements. Goal: at most 1.5x.

    .venv/bin/python tests/benchmarks/run.py reports [--quick]
"""

from __future__ import annotations

import os
import random
import tempfile
from datetime import date, timedelta
from pathlib import Path

import sqlalchemy as sa

from common import add_users, postgres_available, postgres_database
from harness import Figure, alternate, p95_figure

QUERY_GOAL, DASHBOARD_GOAL = 1 / 1.3, 1 / 1.5
USERS = 100
STAGES = [("prospect", 10, "open"), ("qualify", 30, "open"), ("propose", 60, "open"), ("negotiate", 80, "open"),
          ("won", 100, "won"), ("lost", 0, "lost")]
BUNDLE = {
    "manifest": {"format": "loom/1", "name": "bench_reports", "version": "1.0.0"},
    "objects": [{"name": "opportunity", "title_field": "name", "fields": [
        {"name": "name", "type": "text", "required": True},
        {"name": "amount", "type": "currency"},
        {"name": "stage", "type": "stage", "stages": [{"value": v, "probability": p, "category": c}
                                                      for v, p, c in STAGES]},
        {"name": "close_date", "type": "date"}]}],
    "reports": [
        {"name": "pipeline", "object": "opportunity", "filter": "stage_category(stage) == 'open'",
         "group_by": ["stage", "owner"], "measures": [{"name": "deals", "function": "count"},
                                                      {"name": "amount", "function": "sum", "field": "amount"}],
         "chart": {"type": "bar", "x": "stage", "y": "amount"}},
        {"name": "forecast", "object": "opportunity", "filter": "stage_category(stage) != 'lost'",
         "group_by": [{"field": "close_date", "by": "month"}],
         "measures": [{"name": "weighted", "function": "sum", "field": "amount",
                       "weight": "stage_probability(stage) / 100"}], "chart": {"type": "bar"}},
        {"name": "by_stage", "object": "opportunity", "group_by": ["stage"],
         "measures": [{"name": "deals", "function": "count"}], "chart": {"type": "funnel"}},
        {"name": "won_by_owner", "object": "opportunity", "filter": "stage_category(stage) == 'won'",
         "group_by": ["owner"], "measures": [{"name": "won", "function": "sum", "field": "amount"}],
         "chart": {"type": "bar"}},
        {"name": "open_total", "object": "opportunity", "filter": "stage_category(stage) == 'open'",
         "measures": [{"name": "amount", "function": "sum", "field": "amount"}], "chart": {"type": "number"}},
        {"name": "average_deal", "object": "opportunity", "group_by": [{"field": "close_date", "by": "quarter"}],
         "measures": [{"name": "average", "function": "avg", "field": "amount"}], "chart": {"type": "line"}},
    ],
    "dashboards": [{"name": "six", "widgets": [{"report": n} for n in
                                               ("pipeline", "forecast", "by_stage", "won_by_owner", "open_total",
                                                "average_deal")]}],
}
OPEN = "('prospect', 'qualify', 'propose', 'negotiate')"
WEIGHT = "CASE stage " + " ".join(f"WHEN '{v}' THEN {p}" for v, p, _ in STAGES) + " END"


def hand_sql(dialect: str) -> dict[str, str]:
    """The six reports as one would write them by hand, totals included."""
    live = "_deleted_at IS NULL"
    month = "date_trunc('month', close_date)::date" if dialect == "postgresql" else "strftime('%Y-%m-01', close_date)"
    quarter = ("date_trunc('quarter', close_date)::date" if dialect == "postgresql" else
               "printf('%s-%02d-01', strftime('%Y', close_date), (CAST(strftime('%m', close_date) AS INTEGER) - 1) / 3 * 3 + 1)")

    def grouped(keys: list[str], measures: str, where: str) -> str:
        """Groups, a subtotal per first key (two keys or more) and the totals."""
        columns = ", ".join(keys)
        subtotal = len(keys) > 1
        if dialect == "postgresql":
            sets = f"({columns}), " + (f"({keys[0]}), " if subtotal else "") + "()"
            return f"SELECT {columns}, {measures} FROM o_opportunity WHERE {live}{where} GROUP BY GROUPING SETS ({sets})"
        sql = f"SELECT {columns}, {measures} FROM o_opportunity WHERE {live}{where} GROUP BY {columns}"
        if subtotal:
            sql += (f" UNION ALL SELECT {keys[0]}, {', '.join('NULL' for _ in keys[1:])}, {measures} "
                    f"FROM o_opportunity WHERE {live}{where} GROUP BY {keys[0]}")
        return sql + (f" UNION ALL SELECT {', '.join('NULL' for _ in keys)}, {measures} "
                      f"FROM o_opportunity WHERE {live}{where}")

    return {
        "pipeline": grouped(["stage", "owner"], "count(*), sum(amount)", f" AND stage IN {OPEN}"),
        "forecast": grouped([month], f"sum(amount * {WEIGHT} / 100.0)", " AND stage <> 'lost'"),
        "by_stage": grouped(["stage"], "count(*)", ""),
        "won_by_owner": grouped(["owner"], "sum(amount)", " AND stage = 'won'"),
        "open_total": f"SELECT sum(amount) FROM o_opportunity WHERE {live} AND stage IN {OPEN}",
        "average_deal": grouped([quarter], "avg(amount)", ""),
    }


def _seed(url: str, rows: int) -> list[str]:
    from loomcrm.platform import systemdb
    from loomcrm.platform.db import create_engine
    from loomcrm.runtime.install import bundle_from_json, install_bundle

    engine = create_engine(url)
    systemdb.upgrade(engine)
    install_bundle(engine, bundle_from_json(BUNDLE))
    stages = [v for v, _, _ in STAGES]
    with engine.begin() as conn:
        people = add_users(conn, USERS, "user")
        if engine.dialect.name == "postgresql":
            conn.execute(sa.text(f"""
                INSERT INTO o_opportunity (id, version, created_at, updated_at, owner, name, amount, stage, close_date)
                SELECT md5(i::text), 1, now(), now(), p.id, 'Deal ' || i,
                       CASE WHEN i % 100 = 0 THEN NULL ELSE round((random() * 100000)::numeric, 2) END,
                       (ARRAY{stages!r})[1 + i % 6], date '2026-01-01' + (i % 730)
                FROM generate_series(1, :rows) AS i JOIN bench_people p ON p.n = i % :users"""),
                         {"rows": rows, "users": USERS})
        else:
            rng = random.Random(7)
            table = sa.table("o_opportunity", *[sa.column(c) for c in (
                "id", "version", "created_at", "updated_at", "owner", "name", "amount", "stage", "close_date")])
            batch = []
            for i in range(rows):
                batch.append({"id": f"{i:032x}", "version": 1, "created_at": "2026-01-01 00:00:00",
                              "updated_at": "2026-01-01 00:00:00", "owner": people[i % USERS], "name": f"Deal {i}",
                              "amount": None if i % 100 == 0 else round(rng.random() * 100000, 2),
                              "stage": stages[i % 6], "close_date": (date(2026, 1, 1) + timedelta(days=i % 730)).isoformat()})
                if len(batch) == 5000:
                    conn.execute(sa.insert(table), batch)
                    batch = []
            if batch:
                conn.execute(sa.insert(table), batch)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("VACUUM ANALYZE o_opportunity" if engine.dialect.name == "postgresql" else "ANALYZE"))
    engine.dispose()
    return people


def _measure(url: str, label: str, rounds: int, block: int) -> list[Figure]:
    from loomcrm.platform import auth
    from loomcrm.platform.db import create_engine
    from loomcrm.runtime.forms.report_pages import ReportPages
    from loomcrm.runtime.forms.views import Pages
    from loomcrm.runtime.reports import Narrowing, run_report
    from loomcrm.runtime.state import Runtime

    engine = create_engine(url)
    runtime = Runtime(engine)
    schema = runtime.schema()
    admin = auth.User(id="", username="bench", role="admin", locale="en")
    access = runtime.access.of(admin)
    sql = hand_sql(engine.dialect.name)

    def loom(name: str):
        def go():
            with engine.connect() as conn:
                return run_report(conn, schema, schema.reports[name], access)
        return go

    def hand(name: str):
        def go():
            with engine.connect() as conn:
                return conn.execute(sa.text(sql[name])).all()
        return go

    for name in sql:   # the same numbers both ways, before any timing
        ours, theirs = loom(name)(), hand(name)()
        extra = (1 if schema.reports[name].group_by else 0) + len(ours.get("subtotals", []))
        assert len(ours["rows"]) + extra == len(theirs), name
    figures = []
    for name in ("pipeline", "forecast"):
        figure = "pipeline_by_stage_owner" if name == "pipeline" else "forecast_by_month"
        figures.append(p95_figure(f"report_{label}_{figure}", QUERY_GOAL, *alternate(loom(name), hand(name), rounds, block)))
    pages = ReportPages(runtime, Pages(runtime, None, lambda request, **extra: extra))
    dashboard = schema.dashboards["six"]
    assert len(pages.dashboard(dashboard, admin, "en", Narrowing())) == 6

    def all_hand():
        for name in sql:
            hand(name)()
    figures.append(p95_figure(f"report_{label}_dashboard_of_six", DASHBOARD_GOAL, *alternate(
        lambda: pages.dashboard(dashboard, admin, "en", Narrowing()), all_hand, rounds, max(2, block // 3))))
    engine.dispose()
    return figures


def run(quick: bool = False) -> list[Figure]:
    rounds, block = (2, 5) if quick else (6, 10)
    figures = []
    if postgres_available():
        rows = int(os.environ.get("BENCH_REPORT_ROWS", 20_000 if quick else 1_000_000))
        with postgres_database() as url:
            _seed(url, rows)
            figures += _measure(url, f"pg_{rows // 1000}k" if rows < 1_000_000 else f"pg_{rows // 1_000_000}m",
                                rounds, block)
    else:
        print("PostgreSQL is not reachable: no PostgreSQL report figures")
    rows = int(os.environ.get("BENCH_REPORT_SQLITE_ROWS", 5_000 if quick else 100_000))
    with tempfile.TemporaryDirectory(prefix="loom-bench-reports-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'loom.db'}"
        _seed(url, rows)
        figures += _measure(url, f"sqlite_{rows // 1000}k", rounds, block)
    return figures
