"""Automation: what it costs a save, how fast an event becomes a done action,
and whether memory stays flat. Not a timed test.

- **Save cost**: the median time of a save through the record service,
  100 saves a second, while automation runs alongside (a workflow notifies
  the owner of every new deal) against the same saves with automation off,
  in alternating rounds: embedded (`loom serve`'s runner threads in the
  saving process, SQLite) and with two `loom worker` processes (Celery,
  PostgreSQL + a Redis of its own). Goal: on costs at most 1.1x off
  (ratio >= 0.91): the engine works after the commit, never inside the save.
- **Latency** at 200 saves a second: from each save's commit (its outbox
  event) to its run marked done, p50 and p95. Goals: p95 <= 1 s embedded,
  <= 2 s on Celery.
- **Throughput**: events a second from save to action done, over a burst,
  against the rate of the same saves with automation off (no goal: the
  engine's own ceiling on this machine).
- **Memory** of an embedded process over 100,000 events (2,000 with
  --quick): resident size at the end against after the first tenth.
  Goal: at most 10 % growth.

    .venv/bin/python tests/benchmarks/run.py automation [--quick]
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import LOOM, database, free_port, postgres_available  # noqa: E402
from harness import Figure, print_table  # noqa: E402

BUNDLE = {
    "manifest": {"format": "loom/1", "name": "bench_flows", "version": "1.0.0"},
    "objects": [{"name": "deal", "fields": [{"name": "name", "type": "text", "required": True},
                                             {"name": "amount", "type": "currency"}]}],
    "workflows": [{"name": "tell_owner", "object": "deal", "trigger": {"on": "create"},
                   "actions": [{"type": "notify", "to": "owner", "message": "New deal {{ record.name }}"}]}],
}
RATE = 200   # saves a second for the latency figures


def _world(url: str, **settings):
    from loomcrm.platform import auth, systemdb
    from loomcrm.platform.db import create_engine
    from loomcrm.platform.settings import Settings
    from loomcrm.runtime.install import bundle_from_json, install_bundle
    from loomcrm.workflows.engine import Automation

    engine = create_engine(url)
    systemdb.upgrade(engine)
    install_bundle(engine, bundle_from_json(json.loads(json.dumps(BUNDLE))))
    user = auth.create_user(engine, "bench", "admin", "bench-password-1")
    automation = Automation(engine, Settings(database_url=url, **settings))
    automation.runtime.refresh_interval = 3600
    return engine, automation, user


def _saver(automation, user):
    counter = iter(range(10**9))

    def save():
        automation.runtime.records.create("deal", {"name": f"Deal {next(counter)}", "amount": 100}, user)
    return save


def _settled(engine, timeout: float = 600) -> None:
    """Wait until every event is dispatched and every run finished."""
    import sqlalchemy as sa

    from loomcrm.platform import systemdb

    runs, outbox = systemdb.automation_runs, systemdb.outbox
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            left = conn.execute(sa.select(sa.func.count()).select_from(outbox).where(outbox.c.processed_at.is_(None))).scalar()
            left += conn.execute(sa.select(sa.func.count()).select_from(runs)
                                 .where(runs.c.status.in_(["pending", "running", "failed", "waiting"]))).scalar()
        if left == 0:
            return
        time.sleep(0.2)
    raise RuntimeError("automation did not keep up within the time limit")


def _latencies(engine, since_id: int) -> list[float]:
    """Seconds from each event's commit to its run's end, for events after `since_id`."""
    import sqlalchemy as sa

    from loomcrm.platform import systemdb

    runs, outbox = systemdb.automation_runs, systemdb.outbox
    with engine.connect() as conn:
        rows = conn.execute(sa.select(outbox.c.created_at, runs.c.finished_at)
                            .join(runs, runs.c.event_id == outbox.c.id)
                            .where(outbox.c.id > since_id, runs.c.status == "done")).all()

    def aware(moment):
        return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
    return [(aware(done) - aware(made)).total_seconds() for made, done in rows]


def _last_event(engine) -> int:
    import sqlalchemy as sa

    from loomcrm.platform import systemdb

    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.coalesce(sa.func.max(systemdb.outbox.c.id), 0))).scalar()


def _at_rate(save, count: int, rate: float = RATE) -> float:
    """`count` saves at `rate` a second (as far as the saves keep up); the seconds it took."""
    start = time.perf_counter()
    for i in range(count):
        wait = start + i / rate - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        save()
    return time.perf_counter() - start


def _save_costs(save, count: int, rate: float) -> list[float]:
    """Seconds each of `count` saves took, saved at `rate` a second."""
    costs, start = [], time.perf_counter()
    for i in range(count):
        wait = start + i / rate - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        began = time.perf_counter()
        save()
        costs.append(time.perf_counter() - began)
    return costs


def _save_cost_figure(label: str, save_on, save_off, rounds: int, per_round: int, rate: float) -> Figure:
    """The median time of a save, automation on against off, in alternating
    rounds of saves at a steady rate (the engine busy with each save's event
    meanwhile), so both sides see the same machine."""
    on, off = [], []
    for round_ in range(rounds):
        sides = [(on, save_on), (off, save_off)]
        if round_ % 2:
            sides.reverse()
        for costs, save in sides:
            costs += _save_costs(save, per_round, rate)
    spread = f"p95 {_percentile(on, 95) * 1000:.1f} / {_percentile(off, 95) * 1000:.1f} ms"
    return Figure.from_costs(f"{label}, {rate:.0f} saves/s", statistics.median(on) * 1000, statistics.median(off) * 1000,
                             "ms/save", 1 / 1.1, spread)


def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


# --- embedded ------------------------------------------------------------------------------

def embedded(quick: bool) -> list[Figure]:
    from loomcrm.workflows.runner import Runner

    per_round, repeat = (100, 5) if quick else (400, 12)
    latency_saves = 400 if quick else 3000
    figures = []
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        on_url, off_url = (stack.enter_context(database("sqlite", Path(tmp), name)) for name in ("on", "off"))
        on_engine, automation, on_user = _world(on_url)
        off_engine, off_automation, off_user = _world(off_url)
        runner = Runner(automation).start()
        try:
            save_on, save_off = _saver(automation, on_user), _saver(off_automation, off_user)
            figures.append(_save_cost_figure("save with automation on vs off (embedded, SQLite)", save_on, save_off,
                                             repeat, per_round, RATE / 2))
            _settled(on_engine)
            since = _last_event(on_engine)
            _at_rate(save_on, latency_saves)
            _settled(on_engine)
            lat = _latencies(on_engine, since)
            figures.append(Figure.from_costs(
                f"save -> action done p95 at {RATE}/s, embedded SQLite (p50 {statistics.median(lat):.2f} s, {len(lat)} events)",
                _percentile(lat, 95), 1.0, "s", 1.0))
            burst = 300 if quick else 2000
            start = time.perf_counter()
            for _ in range(burst):
                save_on()
            _settled(on_engine)
            loom_rate = burst / (time.perf_counter() - start)
            start = time.perf_counter()
            for _ in range(burst):
                save_off()
            off_rate = burst / (time.perf_counter() - start)
            figures.append(Figure.from_rates(f"events/s from save to action done vs saves/s off (burst of {burst}, embedded SQLite)",
                                             loom_rate, off_rate, "events/s", 0.0))
        finally:
            runner.stop()
            on_engine.dispose()
            off_engine.dispose()
    return figures


# --- Celery ---------------------------------------------------------------------------------

@contextlib.contextmanager
def _redis(folder: Path):
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(folder)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def _workers(url: str, broker: str, folder: Path, count: int = 2):
    env = {**os.environ, "LOOM_DATABASE_URL": url, "LOOM_BROKER_URL": broker}
    env.pop("CI", None)
    procs, logs = [], []
    try:
        for i in range(count):
            log = folder / f"worker-{i}.log"
            logs.append(log)
            procs.append(subprocess.Popen([LOOM, "worker", "--concurrency", "2"], env=env, stdout=log.open("w"),
                                          stderr=subprocess.STDOUT, start_new_session=True))
        deadline = time.monotonic() + 60
        while not all(" ready." in log.read_text() for log in logs):
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise RuntimeError("loom worker did not start:\n" + "\n".join(log.read_text()[-2000:] for log in logs))
            time.sleep(0.2)
        yield
    finally:
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, 9)
            p.wait()


def celery(quick: bool) -> list[Figure]:
    per_round, repeat = (100, 5) if quick else (400, 10)
    latency_saves = 400 if quick else 3000
    figures = []
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        on_url, off_url = (stack.enter_context(database("postgresql", Path(tmp), name)) for name in ("on", "off"))
        on_engine, automation, on_user = _world(on_url)
        off_engine, off_automation, off_user = _world(off_url)
        broker = stack.enter_context(_redis(Path(tmp)))
        stack.enter_context(_workers(on_url, broker, Path(tmp)))
        try:
            save_on, save_off = _saver(automation, on_user), _saver(off_automation, off_user)
            figures.append(_save_cost_figure("save with automation on vs off (2 Celery workers, PostgreSQL + Redis)",
                                             save_on, save_off, repeat, per_round, RATE / 2))
            _settled(on_engine)
            since = _last_event(on_engine)
            _at_rate(save_on, latency_saves)
            _settled(on_engine)
            lat = _latencies(on_engine, since)
            figures.append(Figure.from_costs(
                f"save -> action done p95 at {RATE}/s, 2 Celery workers (p50 {statistics.median(lat):.2f} s, {len(lat)} events)",
                _percentile(lat, 95), 2.0, "s", 1.0))
        finally:
            on_engine.dispose()
            off_engine.dispose()
    return figures


# --- memory -----------------------------------------------------------------------------------

def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def memory(quick: bool) -> list[Figure]:
    """In a child process, so that the other figures' memory does not count."""
    events = 2_000 if quick else 100_000
    result = subprocess.run([sys.executable, __file__, "--memory-probe", str(events)], capture_output=True, text=True,
                            timeout=7200)
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-3000:])
    early, late = json.loads(result.stdout.strip().splitlines()[-1])
    return [Figure.from_costs(f"resident memory after {events:,} events vs after {events // 10:,} (embedded)",
                              late, early, "MB", 1 / 1.1)]


def _memory_probe(events: int) -> None:
    from loomcrm.workflows.runner import Runner

    with tempfile.TemporaryDirectory() as tmp:
        engine, automation, user = _world(f"sqlite:///{tmp}/memory.db")
        runner = Runner(automation).start()
        save = _saver(automation, user)
        early = None
        for i in range(events):
            save()
            if i % 1000 == 999:
                _settled(engine)
            if i + 1 == events // 10:
                _settled(engine)
                gc.collect()
                early = _rss_mb()
        _settled(engine)
        gc.collect()
        late = _rss_mb()
        runner.stop()
        engine.dispose()
    print(json.dumps([early, late]))


def run(quick: bool) -> list[Figure]:
    figures = embedded(quick)
    if postgres_available() and shutil.which("redis-server"):
        figures += celery(quick)
    figures += memory(quick)
    return figures


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--memory-probe":
        _memory_probe(int(sys.argv[2]))
    else:
        quick = "--quick" in sys.argv
        print_table(run(quick))
