"""`Automation`: the engine for one database — dispatch, timers, schedules,
the reaper, running runs — used alike by `loom serve` (embedded) and by
Celery workers. Every step is one short transaction that any number of
processes may run at the same time."""

from __future__ import annotations

import base64
import secrets
import uuid
from datetime import datetime, timedelta
from typing import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from loomcrm.platform import auth, systemdb
from loomcrm.platform.db import write_transaction
from loomcrm.platform.settings import Settings
from loomcrm.runtime.approvals import run_timeouts
from loomcrm.runtime.fields import FieldContext
from loomcrm.runtime.pools import run_pools
from loomcrm.runtime.slas import sweep as sla_sweep
from loomcrm.runtime.surveys import mail_invitations
from loomcrm.runtime.rules.hooks import Rules
from loomcrm.runtime.state import Runtime

from . import executor, mailer, outbox, runs, schedule, timers
from .actions import Dead
from .definitions import Catalog, Flow

AUTOMATION_USER = "loom.automation"
_ACTIVE_USER = sa.select(systemdb.users).where(systemdb.users.c.username == sa.bindparam("name"),
                                               systemdb.users.c.is_active.is_(True))
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
        """Fire the schedule workflows whose latest tick is due and not yet
        fired, and finish ticks a stopped process left half done."""
        ready: list[str] = []
        now = self.now()
        with self.engine.connect() as conn:
            flows = self.catalog.current(conn)
            unfinished = schedule.unfinished(conn, now)
        moments = {(flow.name, schedule.last_tick(flow, now, self.settings.zone)) for flow in flows.on_schedule}
        todo = [(name, moment) for name, moment in moments if now - moment <= schedule.GRACE] + unfinished
        for name, moment in todo:
            flow = flows.by_name.get(name)
            if flow is None or flow.on != "schedule":
                continue
            with write_transaction(self.engine) as conn:
                state = schedule.claim_tick(conn, flow, moment, self.now(), self.lease)
            finished = state is None
            while not finished:
                with write_transaction(self.engine) as conn:
                    finished, more = schedule.run_batch(conn, flow, self.runtime.schema(), moment, state, self.now(),
                                                        self.lease)
                ready += more
        return ready

    def pools(self) -> dict[str, int]:
        """Lead pools: reminders, then the due records back in their pools
        (batched and idempotent: any process may run it at any time)."""
        return run_pools(self.runtime, now=self.now())

    def mail(self) -> int:
        """The mail outbox: what is due, sent (approvals waiting, reminders)."""
        return mailer.deliver(self.engine, self.settings, self.now())

    def approval_timeouts(self) -> int:
        """Approvals waiting past their step's timeout: reminders, escalations (each task once)."""
        return run_timeouts(self.runtime, now=self.now())

    def sla_clocks(self) -> dict[str, int]:
        """SLA warnings and breaches that are due (each once)."""
        return sla_sweep(self.runtime, now=self.now())

    def surveys(self) -> int:
        """Survey invitations left by saves, into the mail outbox."""
        from loomcrm.platform.app import ensure_secret_key

        return mail_invitations(self.runtime, ensure_secret_key(self.engine, self.settings.secret_key),
                                self.settings.base_url, now=self.now())

    def reap(self) -> int:
        with write_transaction(self.engine) as conn:
            return runs.reap(conn, self.now(), self.settings.automation_retry_seconds)

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

    def replay(self, run_id: str) -> str | None:
        """Run a dead run again, under the published definition of its
        action when that is still the same kind of action (it was probably
        fixed). Answers why it cannot be replayed, or None when it will run."""
        with write_transaction(self.engine) as conn:
            run = runs.row_of(conn, run_id)
            if run is None:
                return "there is no such run"
            if run["status"] != "dead":
                return f"the run is {run['status']}: only dead runs are replayed"
            if (run["result"] or {}).get("not_replayable"):
                return ("nothing of this workflow ran for its event (its condition could not be evaluated): "
                        "fix the workflow; the next event will run it")
            before = runs.previous(conn, run_id)
            if before is not None and before["status"] != "done":
                return f"the workflow's action before it is {before['status']}: replay that one first"
            flows = self.catalog.current(conn)
            flow = flows.by_name.get(run["workflow"])
            if flow is None:
                return "the workflow is no longer active: activate it to replay its runs"
            old = self.catalog.flows(conn, run["metadata_version"]).by_name.get(run["workflow"])
            same = (old is not None and run["action"] < len(flow.wf.actions)
                    and flow.wf.actions[run["action"]].type == run["action_type"])
            runs.replay(conn, run_id, self.now(), flow.version if same else None)
        return None

    # -- who and with what --------------------------------------------------------------
    def user_of(self, conn: sa.Connection, flow: Flow) -> auth.User:
        """The user a workflow's actions write as: `run_as`, else Loom's
        automation user. Read on every use: a user deactivated or given
        another role acts so from the next run on."""
        name = flow.wf.run_as
        if not name:
            return self.system_user
        row = conn.execute(_ACTIVE_USER, {"name": name}).first()
        if row is None:
            raise Dead(f"the workflow runs as {name!r}, who is no active user", "no_user")
        return auth.User(id=row.id, username=row.username, role=row.role, locale=row.locale, display_name=row.display_name)

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
