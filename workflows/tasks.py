"""The task Celery workers run, and the process wiring of `loom worker`:
each worker process opens its own database engine (after the fork), and
the main process runs the pump (see `runner`), which publishes a message
per run that may run.

`run_due` and `run` are the whole of a worker's work: the same `executor`
code that `loom serve` runs in threads when embedded."""

from __future__ import annotations

import logging
import threading

from celery import Celery, signals

from loomcrm.platform.settings import Settings

from .celery_app import make_celery

log = logging.getLogger("loomcrm.workflows")

settings = Settings()
app: Celery = make_celery(settings)
_local = threading.local()
_process: dict = {}


def automation():
    """This process's engine (made after the fork: connections never cross processes)."""
    made = _process.get("automation")
    if made is None:
        from loomcrm.platform.app import open_database

        from .engine import Automation

        made = _process["automation"] = Automation(open_database(settings), settings)
        made.on_retry = lambda run_id, due: run.apply_async((run_id,), eta=due)
    return made


RUNS_PER_TASK = 20       # what one `run_due` takes in a transaction
TASK_SECONDS = 2.0       # then it returns, so that a worker's messages keep moving


@signals.worker_process_init.connect
def _fresh_process(**_kwargs) -> None:
    _process.clear()


@app.task(name="loom.run", ignore_result=True)
def run(run_id: str) -> None:
    """Run one run (a retry or a replay comes due)."""
    if automation().execute(run_id):
        run_due.apply_async()


@app.task(name="loom.run_due", ignore_result=True)
def run_due() -> None:
    """Run what is due, in batches (one transaction each), for a while."""
    import time

    started = time.monotonic()
    while time.monotonic() - started < TASK_SECONDS:
        taken, _ready = automation().execute_due(RUNS_PER_TASK)
        if not taken:
            return


def submit(ids) -> None:
    """Wake enough workers for these runs: a message per batch of them
    (any worker takes whatever is due). Raises when the broker cannot be
    reached; the runs wait in the database meanwhile."""
    ids = list(ids)
    for _ in range(max(1, -(-len(ids) // RUNS_PER_TASK))):
        run_due.apply_async(retry=False)


@signals.worker_ready.connect
def _start_pump(sender=None, **_kwargs) -> None:
    from .runner import Runner

    _process["pump"] = Runner(automation(), submit=submit).start()
    log.info("automation pump started")


@signals.worker_shutting_down.connect
def _stop_pump(**_kwargs) -> None:
    pump = _process.pop("pump", None)
    if pump is not None:
        pump.stop(timeout=5)


def worker_main(concurrency: int) -> None:
    app.worker_main(["worker", f"--concurrency={concurrency}", "--loglevel=INFO", f"--queues={app.conf.task_default_queue}",
                     "--without-gossip", "--without-mingle", "--without-heartbeat"])
