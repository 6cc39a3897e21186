"""`Automation`: the engine for one database — dispatch, timers, schedules,
the reaper, running runs — used alike by `loom serve` (embedded) and by
Celery workers. Every step is one short transaction that any number of
processes may run at the same time."""

from __future__ import annotations

import base64
import secrets
import threading
import uuid
from datetime import datetime, timedelta
from typing import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from loomcrm.platform import auth, systemdb
from loomcrm.platform.db import write_transaction
from loomcrm.platform.settings import Settings
from loomcrm.runtime.fields import FieldContext
from loomcrm.runtime.rules.hooks import Rules
from loomcrm.runtime.state import Runtime

from . import executor, outbox, runs, schedule, timers
from .actions import Dead
from .definitions import Catalog, Flow

AUTOMATION_USER = "loom.automation"
_SECRET_KEY = "webhook_secret"
_TIMERS_KEY = "automation_timers"


class Automation:
    def __init__(self, engine: Engine, settings: Settings, *, runtime: Runtime | None = None,
                 clock: Callable[[], datetime] | None = None):
        self.engine = engine
        self.settings = settings
        self.runtime = runtime or Runtime(engine, context=FieldContext(timezone=settings.zone, phone_region=settings.phone_region),
                                          hooks=Rules(timezone=settings.timezone))
        self.catalog = Catalog()
        self.clock = clock or runs.utcnow
        self.lease = timedelta(seconds=settings.automation_lease_seconds)
        self.on_retry: Callable[[str, datetime], None] | None = None   # told when a run will be tried again
        self.on_ready: Callable[[list[str]], None] | None = None       # told of runs that may run now (a replay)
        self._users: dict[str, auth.User] = {}
        self._lock = threading.Lock()
        self.system_user = ensure_automation_user(engine)

    def now(self) -> datetime:
        return self.clock()

    # -- steps (each safe to run in any number of processes at once) -------------------
    def dispatch(self, limit: int = outbox.BATCH) -> tuple[int, list[str]]:
        """One batch of outbox events into runs: (events, runs ready)."""
        with self.engine.connect() as conn:   # a read first: no write lock while there is nothing to do
            if not outbox.pending(conn):
                return 0, []
        with write_transaction(self.engine) as conn:
            return outbox.dispatch(conn, self.catalog, lambda c: self.runtime.schema(), self.now(),
                                   field_context=self.runtime.context, timezone=self.settings.timezone, limit=limit,
                                   user_of=self.user_of)

    def sweep(self, limit: int = 500) -> tuple[int, list[str]]:
        """One batch of due timers into runs: (timers fired, runs ready)."""
        with self.engine.connect() as conn:
            if not timers.any_due(conn, self.now()):
                return 0, []
        with write_transaction(self.engine) as conn:
            return timers.sweep(conn, self.catalog, self.runtime.schema(), self.now(), timezone=self.settings.timezone,
                                limit=limit, user_of=self.user_of)

    def tick(self) -> list[str]:
        """Fire the schedule workflows whose latest tick is due and not yet fired."""
        ready: list[str] = []
        now = self.now()
        with self.engine.connect() as conn:
            flows = self.catalog.current(conn)
        for flow in flows.on_schedule:
            moment = schedule.last_tick(flow, now, self.settings.zone)
            if now - moment > schedule.GRACE:
                continue
            with write_transaction(self.engine) as conn:
                state = schedule.claim_tick(conn, flow, moment, now, self.lease)
            if state is None:
                continue
            finished = False
            while not finished:
                with write_transaction(self.engine) as conn:
                    finished, more = schedule.run_batch(conn, flow, self.runtime.schema(), moment, state, self.now())
                ready += more
        return ready

    def reap(self) -> int:
        with write_transaction(self.engine) as conn:
            return runs.reap(conn, self.now())

    def sync_timers(self) -> int:
        """Timers for records that existed before a time workflow was
        published or changed (only moments still ahead); a removed
        workflow's timers go. Cheap when nothing changed."""
        with self.engine.connect() as conn:
            flows = self.catalog.current(conn)
            known = conn.execute(sa.select(systemdb.config_table.c.value)
                                 .where(systemdb.config_table.c.key == _TIMERS_KEY)).scalar()
        signature = {f.name: f"{f.obj.name}:{f.wf.trigger.field}:{f.wf.trigger.offset}"
                     for fs in flows.on_time.values() for f in fs}
        text = ";".join(f"{k}={v}" for k, v in sorted(signature.items()))
        if known == text:
            return 0
        before = dict(item.split("=", 1) for item in known.split(";") if "=" in item) if known else {}
        changed = {name for name, sig in signature.items() if before.get(name) != sig}
        with write_transaction(self.engine) as conn:
            gone = [name for name in before if name not in signature]
            if gone:
                conn.execute(sa.delete(systemdb.automation_timers).where(systemdb.automation_timers.c.workflow.in_(gone)))
            count = timers.backfill(conn, flows, self.runtime.schema(), self.now(), self.settings.zone, only=changed)
            table = systemdb.config_table
            if conn.execute(sa.update(table).where(table.c.key == _TIMERS_KEY).values(value=text)).rowcount == 0:
                conn.execute(sa.insert(table).values(key=_TIMERS_KEY, value=text))
        return count

    def execute(self, run_id: str) -> list[str]:
        """Run `run_id` if it may run now; the runs ready after it."""
        return executor.execute(self, run_id) or []

    def execute_next(self) -> tuple[str | None, list[str]]:
        return executor.execute_next(self)

    def execute_due(self, limit: int = 20) -> tuple[list[str], list[str]]:
        return executor.execute_due(self, limit)

    def retry_at(self, run_id: str, due: datetime) -> None:
        if self.on_retry is not None:
            self.on_retry(run_id, due)

    def ready(self, ids: list[str]) -> None:
        if self.on_ready is not None and ids:
            self.on_ready(ids)

    def replay(self, run_id: str) -> bool:
        """Run a dead run again, under the published definition of its
        workflow when it still has that action (it was probably fixed)."""
        with write_transaction(self.engine) as conn:
            run = runs.get(conn, run_id)
            if run is None:
                return False
            flow = self.catalog.current(conn).by_name.get(run["workflow"])
            version = flow.version if flow is not None and run["action_index"] < len(flow.wf.actions) else None
            return runs.replay(conn, run_id, self.now(), version)

    # -- who and with what --------------------------------------------------------------
    def user_of(self, conn: sa.Connection, flow: Flow) -> auth.User:
        """The user a workflow's actions write as: `run_as`, else Loom's automation user."""
        name = flow.wf.run_as
        if not name:
            return self.system_user
        with self._lock:
            user = self._users.get(name)
        if user is None:
            row = conn.execute(sa.select(systemdb.users).where(systemdb.users.c.username == name,
                                                               systemdb.users.c.is_active.is_(True))).first()
            if row is None:
                raise Dead(f"the workflow runs as {name!r}, who is no active user", "no_user")
            user = auth.User(id=row.id, username=row.username, role=row.role, locale=row.locale,
                             display_name=row.display_name)
            with self._lock:
                self._users[name] = user
        return user

    def webhook_secret(self) -> str:
        return webhook_secret(self.engine, self.settings)


def ensure_automation_user(engine: Engine) -> auth.User:
    """Loom's automation user: an administrator who cannot sign in."""
    users = systemdb.users
    with engine.connect() as conn:
        row = conn.execute(sa.select(users).where(users.c.username == AUTOMATION_USER)).first()
    if row is None:
        try:
            with write_transaction(engine) as conn:
                conn.execute(sa.insert(users).values(
                    id=uuid.uuid4().hex, username=AUTOMATION_USER, display_name="Automation", email=None,
                    password_hash=auth.NO_PASSWORD, role="admin", locale="en", is_active=False))
        except sa.exc.IntegrityError:
            pass   # another process made it first
        with engine.connect() as conn:
            row = conn.execute(sa.select(users).where(users.c.username == AUTOMATION_USER)).first()
    return auth.User(id=row.id, username=row.username, role=row.role, locale=row.locale, display_name=row.display_name)


def webhook_secret(engine: Engine, settings: Settings) -> str:
    """LOOM_WEBHOOK_SECRET, else one generated once and kept in the database
    (`whsec_` and 24 random bytes in base64, as Standard Webhooks write it)."""
    if settings.webhook_secret:
        return settings.webhook_secret
    table = systemdb.config_table
    with engine.connect() as conn:
        stored = conn.execute(sa.select(table.c.value).where(table.c.key == _SECRET_KEY)).scalar()
    if stored:
        return stored
    try:
        with write_transaction(engine) as conn:
            conn.execute(sa.insert(table).values(key=_SECRET_KEY,
                                                 value="whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()))
    except sa.exc.IntegrityError:
        pass
    with engine.connect() as conn:
        return conn.execute(sa.select(table.c.value).where(table.c.key == _SECRET_KEY)).scalar_one()
