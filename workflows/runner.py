"""What keeps automation moving in a process.

The pump (one thread) dispatches outbox events as soon as they come (on
PostgreSQL it LISTENs for the outbox's NOTIFY; on SQLite it looks every
`POLL` seconds), fires due timers and schedule ticks, hands back expired
leases, and wakes whoever runs runs:

- embedded (`loom serve` without `LOOM_BROKER_URL`): worker threads of
  this process, which claim due runs themselves;
- production (`loom worker`): a Celery message per run (`submit`). A
  message is only a wake-up: a lost one (a broker that was down, a worker
  killed) is made good by the pump, which wakes again any run left due
  for `LOST_AFTER`.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta
from typing import Callable, Iterable

from sqlalchemy.engine import make_url

from .engine import Automation
from .outbox import BATCH

log = logging.getLogger("loomcrm.workflows")

POLL = 0.2           # seconds between looks at the outbox without LISTEN/NOTIFY
TIMERS_EVERY = 1.0   # due timers: fire within a few seconds of their moment
SLOW_EVERY = 5.0     # schedule ticks, the reaper, lost wake-ups, timers of new workflows
LOST_AFTER = timedelta(seconds=30)   # at most; a lease's length when shorter


class Runner:
    def __init__(self, automation: Automation, *, workers: int = 2, submit: Callable[[Iterable[str]], None] | None = None):
        self.automation = automation
        self.workers = workers if submit is None else 0
        self.submit = submit
        self.stopping = threading.Event()
        self._work = threading.Condition()
        self._pending_wake = False
        self._threads: list[threading.Thread] = []
        self._unsent: set[str] = set()
        self._outbox = threading.Event()
        automation.on_ready = self._wake

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> "Runner":
        self._threads = [threading.Thread(target=self._pump, name="loom-automation-pump", daemon=True)]
        self._threads += [threading.Thread(target=self._work_loop, name=f"loom-automation-{i}", daemon=True)
                          for i in range(self.workers)]
        if self.automation.engine.dialect.name == "postgresql":
            self._threads.append(threading.Thread(target=self._listen, name="loom-automation-listen", daemon=True))
        for t in self._threads:
            t.start()
        return self

    def stop(self, timeout: float = 10) -> None:
        self.stopping.set()
        self._outbox.set()
        with self._work:
            self._work.notify_all()
        for t in self._threads:
            t.join(timeout)

    # -- the pump ---------------------------------------------------------------------------
    def _pump(self) -> None:
        last_timers = last_slow = 0.0
        while not self.stopping.is_set():
            more = self._step("dispatch", self._dispatch_some)
            now = time.monotonic()
            if now - last_timers >= TIMERS_EVERY:
                last_timers = now
                more = self._step("timers", self._sweep_some) or more
            if now - last_slow >= SLOW_EVERY:
                last_slow = now
                for name, step in (("timers of new workflows", self.automation.sync_timers),
                                   ("schedules", lambda: self._wake(self.automation.tick())),
                                   ("the reaper", self.automation.reap), ("lost wake-ups", self._wake_lost),
                                   ("lead pools", self.automation.pools),
                                   ("approval timeouts", self.automation.approval_timeouts),
                                   ("SLA clocks", self.automation.sla_clocks),
                                   ("survey invitations", self.automation.surveys),
                                   ("the mail outbox", self.automation.mail)):
                    self._step(name, step)
            if not more:
                self._outbox.wait(POLL)
                self._outbox.clear()

    def _step(self, name: str, step) -> bool:
        """One step of the pump; a failing one (a database that went away)
        is logged and never stops the others."""
        try:
            return bool(step())
        except Exception:
            log.exception("automation pump: %s", name)
            self.stopping.wait(1.0)
            return False

    def _dispatch_some(self, batches: int = 5) -> bool:
        """A few batches of events (then timers and schedules get their
        turn, however big an import); answers whether more are waiting."""
        for _ in range(batches):
            count, ready = self.automation.dispatch()
            self._wake(ready)
            if count < BATCH:
                return False
        return True

    def _sweep_some(self, batches: int = 5) -> bool:
        for _ in range(batches):
            count, ready = self.automation.sweep()
            self._wake(ready)
            if count < 500:
                return False
        return True

    def _wake_lost(self) -> None:
        from loomcrm.platform.db import write_transaction

        from . import runs

        if self.submit is None:
            self._wake([])   # embedded workers look for due runs themselves
            return
        automation = self.automation
        with write_transaction(automation.engine) as conn:
            # due for longer than a lease and still not taken: its wake-up is lost
            lost = runs.due_ids(conn, automation.now() - min(LOST_AFTER, automation.lease))
            runs.touch(conn, lost, automation.now())
        if lost:
            log.info("waking %d runs whose wake-up was lost", len(lost))
        self._wake(lost)

    def _wake(self, ids: Iterable[str]) -> None:
        ids = list(ids)
        if self.submit is not None:
            todo = self._unsent | set(ids)
            if not todo:
                return
            try:
                self.submit(todo)
                self._unsent.clear()
            except Exception as exc:   # the broker is away: the runs wait in the database
                log.warning("cannot reach the broker (%s): %d runs wait", exc, len(todo))
                self._unsent = todo
            return
        with self._work:
            self._pending_wake = True
            self._work.notify_all()

    # -- PostgreSQL: LISTEN for new outbox events ----------------------------------------------
    def _listen(self) -> None:
        import psycopg

        url = make_url(str(self.automation.engine.url.render_as_string(hide_password=False)))
        dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        while not self.stopping.is_set():
            try:
                with psycopg.connect(dsn, autocommit=True) as conn:
                    conn.execute("LISTEN loom_outbox")
                    while not self.stopping.is_set():
                        for _ in conn.notifies(timeout=1.0, stop_after=1):
                            self._outbox.set()
            except Exception as exc:
                log.warning("LISTEN loom_outbox: %s; polling meanwhile", exc)
                self.stopping.wait(2.0)

    # -- embedded workers --------------------------------------------------------------------------
    def _work_loop(self) -> None:
        while not self.stopping.is_set():
            try:
                taken, _ready = self.automation.execute_due()
            except Exception:
                log.exception("automation worker")
                taken = []
                self.stopping.wait(1.0)
            if not taken:
                with self._work:
                    if not self._pending_wake:
                        self._work.wait(1.0)
                    self._pending_wake = False
