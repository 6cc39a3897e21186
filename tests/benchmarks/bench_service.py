"""The service desk on PostgreSQL: SLA sweeps and knowledge-base search.

- `service_sla_sweep_*_open`: one sweep of the automation pump over
  BENCH_SLA_ROWS open tickets (default 100,000; 10,000 in quick mode),
  each with a first-response and a resolution clock, of which 1 in 100
  came due since the last sweep (a breach, or a warning before one),
  against the issue's budget of 10 s. The note says how many were acted on.
- `service_sla_sweep_*_all_due`: the worst case, every resolution clock
  overdue at once (a long outage of the pump), for reference.
- `service_kb_search_*`: p95 of a full-text search (two Chinese words or an
  English one, best 10 of BENCH_KB_ROWS articles, default 50,000) against
  the issue's budget of 50 ms; the note gives the p95 of the same search
  as `LIKE '%...%'` over title and body, which finds fewer (no ranking,
  no words apart) and is what the index replaces.

    .venv/bin/python tests/benchmarks/run.py service [--quick]
"""

from __future__ import annotations

import os
import random
import statistics
import time
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa

from common import add_users, postgres_available, postgres_database
from harness import Figure, p95

SWEEP_BUDGET_S = 10.0
SEARCH_BUDGET_MS = 50.0
SLA = [{"name": "first_response", "stop": "status != 'new'", "targets": [{"minutes": 60}], "warn_before": 15,
        "due_field": "first_response_due", "breached_field": "first_response_breached", "escalate_to": "queue.manager",
        "calendar": "office"},
       {"name": "resolution", "stop": "status == 'closed'", "pause": "status == 'waiting'",
        "targets": [{"minutes": 480}], "warn_before": 60, "due_field": "resolution_due",
        "breached_field": "resolution_breached", "escalate_to": "queue.manager", "calendar": "office"}]
BUNDLE = {
    "manifest": {"format": "loom/1", "name": "bench_service", "version": "1.0.0"},
    "calendars": [{"name": "office", "timezone": "Asia/Shanghai"}],
    "objects": [
        {"name": "queue", "title_field": "name", "fields": [{"name": "name", "type": "text"},
                                                           {"name": "manager", "type": "user"}]},
        {"name": "ticket", "title_field": "subject", "slas": SLA, "fields": [
            {"name": "subject", "type": "text", "required": True},
            {"name": "status", "type": "picklist", "options": [{"value": "new"}, {"value": "open"},
                                                               {"value": "waiting"}, {"value": "closed"}]},
            {"name": "queue", "type": "lookup", "to": "queue"},
            {"name": "first_response_due", "type": "datetime", "read_only": True},
            {"name": "first_response_breached", "type": "boolean", "read_only": True},
            {"name": "resolution_due", "type": "datetime", "read_only": True},
            {"name": "resolution_breached", "type": "boolean", "read_only": True}]},
        {"name": "article", "title_field": "title", "search": ["title", "body"], "fields": [
            {"name": "title", "type": "text", "required": True},
            {"name": "body", "type": "long_text", "max_length": 100000}]},
    ],
}
CHINESE = ("打印机 卡纸 无线网络 连接 失败 发票 抬头 退款 重复 扣款 订单 同步 授权 过期 扫码枪 条码 标签 收银机 数据库 "
           "投影仪 蓝牙 耳机 电池 充电 屏幕 闪烁 系统 升级 密码 重置 账号 锁定 物流 发货 延迟 安装 驱动 报错 重启").split()
ENGLISH = ("printer paper jam wireless network connection failed invoice refund duplicate charge order sync token "
           "expired scanner barcode label register database projector bluetooth headset battery charging screen "
           "flicker upgrade password reset account locked shipping delay install driver error restart").split()


def _seed_tickets(engine, rows: int, now: datetime) -> None:
    """Open tickets with both clocks, written straight to the tables (as the
    record service leaves them): 1 in 100 due now, the rest later."""
    with engine.begin() as conn:
        people = add_users(conn, 50, "user", "agent")
        conn.execute(sa.text("INSERT INTO o_queue (id, version, created_at, updated_at, name, manager) "
                             "VALUES ('q1', 1, now(), now(), 'Hardware', :m)"), {"m": people[0]})
        conn.execute(sa.text("""
            INSERT INTO o_ticket (id, version, created_at, updated_at, owner, subject, status, queue)
            SELECT md5(i::text), 1, :now, :now, p.id, 'Ticket ' || i, 'open', 'q1'
            FROM generate_series(1, :rows) AS i JOIN bench_people p ON p.n = i % 50"""), {"rows": rows, "now": now})
        # resolution clocks: 1 in 200 overdue, 1 in 200 within its warning, the rest hours away
        for sla, offset in (("resolution", 0), ("first_response", 1)):
            conn.execute(sa.text("""
                INSERT INTO loom_sla_clocks (id, object, record_id, sla, started_at, target_minutes, pauses, due_at,
                                             warn_at, next_at)
                SELECT md5(:sla || i::text), 'ticket', md5(i::text), :sla, :now - interval '1 day', 480, '[]',
                       d.due, d.due - interval '1 hour',
                       CASE WHEN d.due - interval '1 hour' < d.due THEN d.due - interval '1 hour' END
                FROM generate_series(1, :rows) AS i,
                     LATERAL (SELECT CASE WHEN (i + :offset) % 200 = 0 THEN :now - interval '1 minute'
                                          WHEN (i + :offset) % 200 = 100 THEN :now + interval '30 minutes'
                                          ELSE :now + interval '5 hours' END AS due) AS d"""),
                         {"rows": rows, "now": now, "sla": sla, "offset": offset})
        # the overdue ones were warned already: their next moment is the breach
        conn.execute(sa.text("UPDATE loom_sla_clocks SET warned_at = warn_at, next_at = due_at WHERE due_at < :now"),
                     {"now": now})
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("VACUUM ANALYZE o_ticket"))
        conn.execute(sa.text("VACUUM ANALYZE loom_sla_clocks"))


def _vocabulary(rng: random.Random) -> tuple[list[str], list[str]]:
    """A knowledge base's words: the service words above and 3,000 more
    made up in each language (two common characters; six letters)."""
    characters = "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面而方后多定行学法所民得经"
    chinese = CHINESE + ["".join(rng.sample(characters, 2)) for _ in range(3000)]
    english = ENGLISH + ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(6)) for _ in range(3000)]
    return chinese, english


def _seed_articles(engine, schema, rows: int) -> list[str]:
    from loomcrm.runtime.search import reindex

    rng = random.Random(7)
    chinese, english = _vocabulary(rng)
    batch = []
    with engine.begin() as conn:
        table = schema.table("article")
        for i in range(rows):
            title = "".join(rng.sample(chinese, 3)) + " " + " ".join(rng.sample(english, 2))
            body = "，".join(rng.sample(chinese, 30)) + " " + " ".join(rng.sample(english, 30))
            batch.append({"id": f"{i:032x}", "version": 1, "created_at": datetime.now(timezone.utc),
                          "updated_at": datetime.now(timezone.utc), "title": title, "body": body})
            if len(batch) == 5000:
                conn.execute(sa.insert(table), batch)
                batch = []
        if batch:
            conn.execute(sa.insert(table), batch)
        reindex(conn, schema, schema.object("article"))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("VACUUM ANALYZE loom_search_docs"))
        conn.execute(sa.text("VACUUM ANALYZE o_article"))
    # the searches agents make: two service words, or one English word
    return [f"{a} {b}" for a, b in zip(rng.sample(CHINESE, 20), rng.sample(CHINESE, 20))] + rng.sample(ENGLISH, 20)


def run(quick: bool = False) -> list[Figure]:
    if not postgres_available():
        print("PostgreSQL is not reachable: no service figures")
        return []
    from loomcrm.platform import systemdb
    from loomcrm.platform.db import create_engine
    from loomcrm.runtime import slas
    from loomcrm.runtime.install import bundle_from_json, install_bundle
    from loomcrm.runtime.rules.hooks import Rules
    from loomcrm.runtime.search import ranked
    from loomcrm.runtime.state import Runtime

    rows = int(os.environ.get("BENCH_SLA_ROWS", 10_000 if quick else 100_000))
    articles = int(os.environ.get("BENCH_KB_ROWS", 5_000 if quick else 50_000))
    label = f"{rows // 1000}k"
    figures = []
    with postgres_database() as url:
        engine = create_engine(url)
        systemdb.upgrade(engine)
        install_bundle(engine, bundle_from_json(BUNDLE))
        runtime = Runtime(engine, hooks=Rules())
        now = datetime.now(timezone.utc)
        _seed_tickets(engine, rows, now)

        start = time.perf_counter()
        done = slas.sweep(runtime, now=now)
        seconds = time.perf_counter() - start
        figures.append(Figure.from_costs(f"service_sla_sweep_{label}_open", round(seconds, 2), SWEEP_BUDGET_S, "s", 1.0,
                                         f"{done['breached']} breached, {done['warned']} warned of {rows:,} open "
                                         f"tickets (2 clocks each)"))
        with engine.begin() as conn:      # a long outage: every resolution clock overdue
            conn.execute(sa.text("UPDATE loom_sla_clocks SET due_at = :t, next_at = :t, warned_at = :t, "
                                 "breached_at = NULL WHERE sla = 'resolution'"), {"t": now - timedelta(minutes=1)})
        start = time.perf_counter()
        done = slas.sweep(runtime, now=now)
        seconds = time.perf_counter() - start
        figures.append(Figure.from_costs(f"service_sla_sweep_{label}_all_due", round(seconds, 2), SWEEP_BUDGET_S, "s",
                                         1.0, f"{done['breached']} breaches at once, each told to its owner; "
                                              f"the queue's manager told once per batch of 1,000"))

        schema = runtime.schema()
        queries = _seed_articles(engine, schema, articles)
        article = schema.object("article")
        table = schema.table("article")
        ours, theirs = [], []
        with engine.connect() as conn:
            for _ in range(2 if quick else 5):
                for q in queries:
                    start = time.perf_counter()
                    ranked(conn, schema, article, q, limit=10)
                    ours.append((time.perf_counter() - start) * 1000)
                    needle = f"%{q}%"
                    start = time.perf_counter()
                    conn.execute(sa.select(table.c.id).where(sa.or_(table.c.title.ilike(needle),
                                                                    table.c.body.ilike(needle))).limit(10)).all()
                    theirs.append((time.perf_counter() - start) * 1000)
        figures.append(Figure.from_costs(f"service_kb_search_{articles // 1000}k", round(p95(ours), 2),
                                         SEARCH_BUDGET_MS, "ms p95", 1.0,
                                         f"median {statistics.median(ours):.2f} ms; LIKE over title and body: "
                                         f"p95 {p95(theirs):.2f} ms (unranked)"))
        engine.dispose()
    return figures
