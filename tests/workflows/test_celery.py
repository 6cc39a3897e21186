"""Production mode: real `loom worker` processes (Celery) on PostgreSQL,
with a Redis broker of the test's own (so it can be stopped) and once
with RabbitMQ. Killing workers and stopping the broker loses no run and
doubles no effect in the database."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from loomcrm.platform import systemdb
from loomcrm.runtime.records import Origin

from flows import world_for
from support import IN_CI, LOOM

pytestmark = pytest.mark.postgres

CREATE_TASK = {"name": "task_per_deal", "object": "deal", "trigger": {"on": "create"},
               "actions": [{"type": "create", "object": "task", "values": {"subject": "concat('Follow up ', name)", "deal": "id"}},
                           {"type": "notify", "to": "owner", "message": "{{ record.name }}"}]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """A redis-server of this test's own, on a port of its own."""

    def __init__(self, folder: Path):
        self.folder, self.port = folder, free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = None

    def start(self):
        self.process = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                         "--appendonly", "no", "--dir", str(self.folder)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("redis-server did not start")

    def stop(self):
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


@pytest.fixture
def redis(tmp_path):
    import shutil

    if not shutil.which("redis-server"):
        if IN_CI:
            pytest.fail("CI=true but redis-server is not installed")
        pytest.skip("redis-server is not installed")
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


class Workers:
    def __init__(self, env: dict, log_dir: Path):
        self.env, self.log_dir, self.processes = env, log_dir, []

    def start(self, concurrency: int = 2, timeout: float = 60) -> subprocess.Popen:
        """A `loom worker`, once it says it is ready."""
        path = self.log_dir / f"worker-{len(self.processes)}.log"
        process = subprocess.Popen([LOOM, "worker", "--concurrency", str(concurrency)], env=self.env, stdout=path.open("w"),
                                   stderr=subprocess.STDOUT, start_new_session=True)
        self.processes.append(process)
        deadline = time.monotonic() + timeout
        while " ready." not in path.read_text():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"loom worker did not start:\n{path.read_text()[-3000:]}")
            time.sleep(0.2)
        return process

    def children(self, process) -> list[int]:
        found = subprocess.run(["pgrep", "-P", str(process.pid)], capture_output=True, text=True).stdout.split()
        return [int(p) for p in found]

    def stop(self):
        for process in self.processes:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait()

    def logs(self) -> str:
        return "\n".join(p.read_text()[-3000:] for p in sorted(self.log_dir.glob("worker-*.log")))


@pytest.fixture
def production(postgres_url, tmp_path):
    world = world_for(postgres_url, automation_lease_seconds=3.0, automation_retry_seconds=0.5)
    world.workflows(CREATE_TASK)
    yield world
    world.engine.dispose()


def workers_for(world, broker_url: str, tmp_path: Path) -> Workers:
    env = {**os.environ, "LOOM_DATABASE_URL": str(world.engine.url.render_as_string(hide_password=False)),
           "LOOM_BROKER_URL": broker_url, "LOOM_AUTOMATION_LEASE_SECONDS": "3", "LOOM_AUTOMATION_RETRY_SECONDS": "0.5",
           "LOOM_TIMEZONE": "Asia/Shanghai"}
    return Workers(env, tmp_path)


def settled(world, deals: int, workers: Workers, timeout: float = 120) -> None:
    """Wait until every deal has its task and notification and nothing is left to run."""
    deadline = time.monotonic() + timeout
    runs = systemdb.automation_runs
    while time.monotonic() < deadline:
        with world.engine.connect() as conn:
            open_events = conn.execute(sa.select(sa.func.count()).select_from(systemdb.outbox)
                                       .where(systemdb.outbox.c.processed_at.is_(None))).scalar()
            done = conn.execute(sa.select(sa.func.count()).select_from(runs).where(runs.c.status == "done")).scalar()
            busy = conn.execute(sa.select(sa.func.count()).select_from(runs)
                                .where(runs.c.status.in_(["pending", "running", "failed", "waiting"]))).scalar()
        if open_events == 0 and busy == 0 and done >= 2 * deals:
            return
        time.sleep(0.5)
    raise AssertionError(f"automation did not settle: {open_events} events, {busy} runs open, {done} done\n{workers.logs()}")


def progressing(world, timeout: float = 60) -> None:
    """Wait until the workers have done some runs (and have more to do)."""
    deadline = time.monotonic() + timeout
    runs = systemdb.automation_runs
    while time.monotonic() < deadline:
        with world.engine.connect() as conn:
            if conn.execute(sa.select(sa.func.count()).select_from(runs).where(runs.c.status == "done")).scalar() >= 20:
                return
        time.sleep(0.1)
    raise AssertionError("the workers did not start working")


def exactly_once(world, deals: int) -> None:
    task = world.automation.runtime.schema().table("task")
    with world.engine.connect() as conn:
        per_deal = conn.execute(sa.select(task.c.deal, sa.func.count()).group_by(task.c.deal)).all()
        notes = conn.execute(sa.select(systemdb.notifications.c.record_id, sa.func.count())
                             .group_by(systemdb.notifications.c.record_id)).all()
        dead = conn.execute(sa.select(systemdb.automation_runs.c.error)
                            .where(systemdb.automation_runs.c.status == "dead")).scalars().all()
    assert dead == []
    assert len(per_deal) == deals and {n for _, n in per_deal} == {1}
    assert len(notes) == deals and {n for _, n in notes} == {1}


def create_deals(world, count: int, prefix: str) -> None:
    alice = world.users["alice"]
    for start in range(0, count, 250):
        world.records.create_many("deal", [{"name": f"{prefix} {i}"} for i in range(start, min(count, start + 250))], alice,
                                  origin=Origin("import"))


def test_workers_killed_mid_run_lose_nothing_and_double_nothing(production, redis, tmp_path):
    workers = workers_for(production, redis.url, tmp_path)
    try:
        first = workers.start()
        second = workers.start()
        create_deals(production, 600, "Killed")
        progressing(production)
        # kill -9 the processes running tasks, then a worker's main process (its pump and its children's parent)
        running = workers.children(first)
        assert running, workers.logs()
        for pid in running:
            os.kill(pid, signal.SIGKILL)
        time.sleep(1)
        os.killpg(second.pid, signal.SIGKILL)
        workers.start()
        settled(production, 600, workers)
        exactly_once(production, 600)
    finally:
        workers.stop()


def test_a_broker_down_during_1000_writes_then_back_runs_everything(production, redis, tmp_path):
    workers = workers_for(production, redis.url, tmp_path)
    try:
        workers.start()
        workers.start()
        create_deals(production, 10, "Before")
        settled(production, 10, workers)
        redis.stop()
        create_deals(production, 1000, "While down")    # saves never need the broker
        time.sleep(3)
        redis.start()
        settled(production, 1010, workers, timeout=180)
        exactly_once(production, 1010)
    finally:
        workers.stop()


def test_rabbitmq_works_as_the_broker_too(production, tmp_path):
    url = os.environ.get("LOOM_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")
    try:
        socket.create_connection(("127.0.0.1", 5672), timeout=2).close()
    except OSError:
        if IN_CI:
            pytest.fail("CI=true but RabbitMQ is not reachable on 127.0.0.1:5672")
        pytest.skip("RabbitMQ is not reachable")
    workers = workers_for(production, url, tmp_path)
    try:
        workers.start()
        create_deals(production, 100, "Rabbit")
        settled(production, 100, workers)
        exactly_once(production, 100)
    finally:
        workers.stop()
