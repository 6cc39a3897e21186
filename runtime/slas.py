"""SLA clocks (`slas` of an object): a first-response or resolution clock
per record, counted in a business calendar's working time.

Every save of a record whose object has SLAs moves its clocks (the rules
hooks call `track` before the write and `save` after it; an imported
record's clocks start with its first save after the import): a clock starts
when its `start` holds, pauses while `pause` holds (the pauses are kept, so
the due time is always "started + target of working time, less pauses"),
stops when `stop` holds and runs on when it no longer does (a reopened
ticket). The target is the first of `targets` that holds, re-read on every
save while the clock runs (a priority raised). The record's `due_field` and
`breached_field` are set in the same save.

`sweep` (the automation pump's, every few seconds) acts on the clocks whose
`next_at` has come: a warning to the record's owner before the due time;
on a breach the flag, and the owner and the escalation user (the queue's
manager) told, the latter also by e-mail, once per sweep batch however
many of their records breached at once. A clock's `next_at` is its next
such moment (none while paused or stopped), so the sweep reads only the
clocks that are due, through one index, however many records are open.
Breach flags are refreshed as rollups are: without a new version (and in
the history when the object tracks the flag).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Iterable

import sqlalchemy as sa

from loomcrm.metadata.model import BusinessCalendar, ObjectDef, Sla, localized
from loomcrm.platform import i18n, systemdb
from loomcrm.platform.db import chunks, stored_utc, write_transaction

from .business_hours import DAYS, NoWorkingTime, WorkingTime
from loomcrm.metadata.expressions import ExpressionError
from .records import now_utc, title_column

CLOCKS = systemdb.sla_clocks
USERS = systemdb.users
# no calendar: around the clock
ALWAYS = BusinessCalendar(name="always", hours={day: ["00:00-24:00"] for day in DAYS})
TEXTS = {
    "warning": "%(record)s: %(sla)s is due at %(due)s.",
    "breached": "%(record)s: %(sla)s was due at %(due)s and is overdue.",
    "breached_many": "%(n)s records are overdue.",
    "more": "... and %(n)s more.",
    "link": "Open it in Loom:",
}
BATCH = 1000
MAIL_LINES = 50        # an escalation e-mail lists this many records, then counts the rest


@dataclass
class Clock:
    sla: str
    started_at: datetime
    target_minutes: int
    pauses: list[tuple[datetime, datetime]] = field(default_factory=list)
    paused_since: datetime | None = None
    stopped_at: datetime | None = None
    warned_at: datetime | None = None
    breached_at: datetime | None = None
    id: str | None = None          # none: not stored yet
    due_at: datetime | None = None
    warn_at: datetime | None = None
    told: bool = False             # the breach was announced (a save may find a breach: the sweep tells it)
    stored: dict[str, Any] | None = None   # the row as read, to store only what changed

    @classmethod
    def of_row(cls, row) -> "Clock":
        clock = cls(sla=row.sla, started_at=stored_utc(row.started_at), target_minutes=row.target_minutes,
                    pauses=[(stored_utc(datetime.fromisoformat(a)), stored_utc(datetime.fromisoformat(b)))
                            for a, b in row.pauses],
                    paused_since=stored_utc(row.paused_since), stopped_at=stored_utc(row.stopped_at),
                    warned_at=stored_utc(row.warned_at), breached_at=stored_utc(row.breached_at), id=row.id,
                    due_at=stored_utc(row.due_at), warn_at=stored_utc(row.warn_at),
                    told=row.breached_at is not None and row.next_at is None)
        clock.stored = {**clock.row(), "next_at": stored_utc(row.next_at)}
        return clock

    def times(self, sla: Sla, calendar: BusinessCalendar) -> None:
        """The due and warning moments, from the start, the target and the pauses."""
        if self.paused_since is not None:
            self.due_at = self.warn_at = None
            return
        working = WorkingTime(calendar)
        try:
            self.due_at = working.add(self.started_at, timedelta(minutes=self.target_minutes), self.pauses)
            self.warn_at = working.add(self.started_at, timedelta(minutes=max(self.target_minutes - sla.warn_before, 0)),
                                       self.pauses) if sla.warn_before else None
        except NoWorkingTime:
            self.due_at = self.warn_at = None

    @property
    def next_at(self) -> datetime | None:
        """When the sweep acts on the clock next: a breach to announce, a
        warning, the breach; none while paused or stopped, or once told."""
        if self.stopped_at is not None or self.paused_since is not None:
            return None
        if self.breached_at is not None:
            return None if self.told else self.breached_at
        if self.warn_at is not None and self.warned_at is None and self.warn_at < (self.due_at or self.warn_at):
            return self.warn_at
        return self.due_at

    def row(self) -> dict[str, Any]:
        return {"started_at": self.started_at, "target_minutes": self.target_minutes,
                "pauses": [[a.isoformat(), b.isoformat()] for a, b in self.pauses], "paused_since": self.paused_since,
                "stopped_at": self.stopped_at, "due_at": self.due_at, "warn_at": self.warn_at,
                "warned_at": self.warned_at, "breached_at": self.breached_at, "next_at": self.next_at}


def calendar_of(schema, sla: Sla) -> BusinessCalendar:
    return schema.calendars.get(sla.calendar, ALWAYS) if sla.calendar else ALWAYS


def load(conn, object_name: str, rid: str) -> dict[str, Clock]:
    rows = conn.execute(sa.select(CLOCKS).where(CLOCKS.c.object == object_name, CLOCKS.c.record_id == rid)).fetchall()
    return {r.sla: Clock.of_row(r) for r in rows}


# --- a save ----------------------------------------------------------------------------

def track(ctx, run, plans, now: datetime) -> None:
    """Move the record's clocks for this save (before the write): the record's
    due and breach fields are set, the clocks to store kept on `ctx`."""
    if ctx.is_new and ctx.origin.source == "import":
        return          # imports load history: their clocks start with the first save after
    existing = {} if ctx.is_new else load(ctx.conn, ctx.obj.name, ctx.old["id"])
    pending = []

    def holds(compiled, what: str) -> bool:
        if compiled is None:
            return False
        try:
            return run.evaluate(compiled) is True
        except ExpressionError as exc:
            run.failed(what, exc, None)
            return False

    for plan in plans:
        sla = plan.sla
        what = f"SLA {sla.name}"
        clock = existing.get(sla.name)
        stop = holds(plan.stop, what)
        if clock is None:
            if plan.start is not None and not holds(plan.start, what):
                continue
            clock = Clock(sla=sla.name, started_at=now, target_minutes=0)
        before = clock.stored
        if clock.stopped_at is not None and not stop:          # reopened: the time it was stopped is a pause
            clock.pauses.append((clock.stopped_at, now))
            clock.stopped_at = None
        if clock.stopped_at is None:
            paused = holds(plan.pause, what)
            if paused and clock.paused_since is None:
                clock.paused_since = now
            elif clock.paused_since is not None and (not paused or stop):
                clock.pauses.append((clock.paused_since, now))
                clock.paused_since = None
            clock.target_minutes = next((minutes for when, minutes in plan.targets
                                         if when is None or holds(when, what)), sla.targets[-1].minutes)
            if stop:
                clock.stopped_at = now
            clock.times(sla, calendar_of(ctx.schema, sla))
            if clock.breached_at is None and clock.due_at is not None and clock.due_at <= (clock.stopped_at or now):
                clock.breached_at = clock.due_at
        if sla.due_field:
            _set(ctx, sla.due_field, clock.due_at)
        if sla.breached_field:
            _set(ctx, sla.breached_field, clock.breached_at is not None)
        if before is None or clock.row() != before:
            pending.append(clock)
    ctx.__dict__["_sla_clocks"] = pending


def _set(ctx, name: str, value) -> None:
    if ctx.values.get(name) != value:
        ctx.values[name] = value
        ctx.changed.add(name)


def save(ctx) -> None:
    """Store the clocks `track` moved (after the write: a new record has its id)."""
    pending: list[Clock] = ctx.__dict__.pop("_sla_clocks", [])
    new = [{"id": uuid.uuid4().hex, "object": ctx.obj.name, "record_id": ctx.values["id"], "sla": c.sla, **c.row()}
           for c in pending if c.id is None]
    if new:
        ctx.conn.execute(sa.insert(CLOCKS), new)
    changed = [{"_id": c.id, **c.row()} for c in pending if c.id is not None]
    if changed:
        ctx.conn.execute(sa.update(CLOCKS).where(CLOCKS.c.id == sa.bindparam("_id")), changed)


def rescheduled(conn, obj: ObjectDef, rid: str) -> None:
    """A record back from the recycle bin: its clocks' next moments again
    (the sweep dropped them while it was in the bin)."""
    for clock in load(conn, obj.name, rid).values():
        if clock.next_at != clock.stored["next_at"]:
            conn.execute(sa.update(CLOCKS).where(CLOCKS.c.id == clock.id).values(next_at=clock.next_at))


def clocks_json(conn, schema, obj: ObjectDef, rid: str, now: datetime | None = None) -> list[dict[str, Any]]:
    """The record's clocks, as the API and the record page show them."""
    now = now or now_utc()
    clocks = load(conn, obj.name, rid)
    out = []
    for sla in obj.slas:
        clock = clocks.get(sla.name)
        if clock is None:
            continue
        state = "stopped" if clock.stopped_at else "paused" if clock.paused_since else \
            "breached" if clock.breached_at else "warning" if clock.warned_at else "running"
        iso = (lambda m: m.isoformat() if m is not None else None)
        out.append({"sla": sla.name, "label": sla.label, "state": state, "met": clock.stopped_at is not None and
                    clock.breached_at is None, "started_at": iso(clock.started_at), "due_at": iso(clock.due_at),
                    "stopped_at": iso(clock.stopped_at), "breached_at": iso(clock.breached_at),
                    "target_minutes": clock.target_minutes,
                    "remaining_minutes": int((clock.due_at - now).total_seconds() // 60)
                    if clock.due_at is not None and state in ("running", "warning") else None})
    return out


# --- the sweep -------------------------------------------------------------------------

def sweep(runtime, now: datetime | None = None, limit: int = BATCH) -> dict[str, int]:
    """Warnings and breaches that are due, a batch at a time until none is."""
    done = {"warned": 0, "breached": 0}
    now = now or now_utc()
    while True:
        with write_transaction(runtime.engine) as conn:
            batch = _sweep_batch(runtime, conn, now, limit, done)
        if batch < limit:
            return done


def _sweep_batch(runtime, conn, now: datetime, limit: int, done: dict[str, int]) -> int:
    query = sa.select(CLOCKS).where(CLOCKS.c.next_at <= now).order_by(CLOCKS.c.next_at).limit(limit)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    rows = conn.execute(query).fetchall()
    if not rows:
        return 0
    schema = runtime.schema()
    by_object: dict[str, list] = {}
    for r in rows:
        by_object.setdefault(r.object, []).append(r)
    breached, warned, gone, notes = [], [], [], []
    escalated: dict[str, list] = {}
    for name, clocks in by_object.items():
        obj = schema.object(name)
        slas = {s.name: s for s in obj.slas} if obj is not None else {}
        records = _records(conn, schema, obj, [c.record_id for c in clocks], slas.values()) if obj else {}
        flags: dict[str, list[str]] = {}
        for row in clocks:
            sla, record = slas.get(row.sla), records.get(row.record_id)
            if sla is None or record is None:     # the SLA was removed, or the record is in the bin
                gone.append(row.id)
                continue
            due = stored_utc(row.due_at)
            if row.breached_at is not None or (due is not None and due <= now):
                breached.append(row.id)
                notes.append(("breached", obj, sla, record, due, [record["owner"]] if record["owner"] else []))
                if record.get("_escalate"):
                    escalated.setdefault(record["_escalate"], []).append((obj, sla, record, due))
                if sla.breached_field and row.breached_at is None:     # a save that found it set the flag
                    flags.setdefault(sla.breached_field, []).append(record["id"])
            else:
                warned.append(row.id)
                notes.append(("warning", obj, sla, record, due, [record["owner"]] if record["owner"] else []))
        table = schema.table(name) if obj is not None else None
        for column, ids in flags.items():
            conn.execute(sa.update(table).where(table.c.id.in_(ids)).values({column: True}))
            if column in obj.track_history:
                conn.execute(sa.insert(systemdb.history), [
                    {"object": name, "record_id": rid, "field": column, "old_value": False, "new_value": True,
                     "note": "SLA breached", "changed_at": now} for rid in ids])
    # set-based: a breach is at the due time and ends the clock's moments; a warning leaves the breach next
    for ids, values in ((breached, {"breached_at": sa.func.coalesce(CLOCKS.c.breached_at, CLOCKS.c.due_at),
                                    "next_at": None}),
                        (warned, {"warned_at": now, "next_at": CLOCKS.c.due_at}), (gone, {"next_at": None})):
        if ids:
            conn.execute(sa.update(CLOCKS).where(CLOCKS.c.id.in_(ids)).values(values))
    done["breached"] += len(breached)
    done["warned"] += len(warned)
    _tell(conn, notes, escalated, now)
    return len(rows)


def _records(conn, schema, obj: ObjectDef, ids: list[str], slas: Iterable[Sla]) -> dict[str, dict[str, Any]]:
    """The records of `ids` still alive: id, owner, title and, per SLA, the
    user its escalation goes to (`_escalate`; one per record: the first SLA's)."""
    table = schema.table(obj.name)
    title = title_column(obj)
    columns = [table.c.id, table.c.owner] + ([table.c[title].label("_title")] if title else [])
    source = table
    path = next((s.escalate_to for s in slas if s.escalate_to), None)
    if path:
        head, _, tail = path.partition(".")
        if tail:
            target = schema.table(obj.field(head).to)
            source = source.outerjoin(target, target.c.id == table.c[head])
            columns.append(target.c[tail].label("_escalate"))
        else:
            columns.append(table.c[head].label("_escalate"))
    found = {}
    for part in chunks(ids):
        query = sa.select(*columns).select_from(source).where(table.c.id.in_(part), table.c._deleted_at.is_(None))
        for r in conn.execute(query):
            found[r.id] = dict(r._mapping)
    return found


def _tell(conn, notes, escalated: dict[str, list], now: datetime) -> None:
    """Notifications in each user's language: one per record to its owner,
    and to each escalation user one (with an e-mail) for everything of this
    batch, however many records breached at once."""
    people = {p for *_, who in notes for p in who} | set(escalated)
    if not people:
        return
    users = {u.id: u for u in conn.execute(sa.select(USERS.c.id, USERS.c.locale, USERS.c.email)
                                           .where(USERS.c.id.in_(list(people))))}
    templates: dict[tuple, str] = {}

    def said(what, obj, sla, record, due, locale) -> str:
        key = (what, obj.name, sla.name, locale)
        template = templates.get(key)
        if template is None:
            template = templates[key] = (i18n.gettext(locale, TEXTS[what])
                                         .replace("%(sla)s", localized(sla.label, locale, sla.name)))
        return (template.replace("%(record)s", str(record.get("_title") or record["id"]))
                .replace("%(due)s", due.strftime("%Y-%m-%d %H:%M UTC") if due else "-"))

    rows, letters = [], []
    for what, obj, sla, record, due, who in notes:
        for person in who:
            user = users.get(person)
            if user is not None:
                rows.append({"id": uuid.uuid4().hex, "user_id": person, "object": obj.name, "record_id": record["id"],
                             "message": said(what, obj, sla, record, due, user.locale or "en"), "created_at": now})
    for person, items in escalated.items():
        user = users.get(person)
        if user is None:
            continue
        locale = user.locale or "en"
        lines = [(said("breached", obj, sla, record, due, locale), f"/app/{obj.name}/{record['id']}")
                 for obj, sla, record, due in items[:MAIL_LINES]]
        one = len(items) == 1
        text = lines[0][0] if one else i18n.gettext(locale, TEXTS["breached_many"]).replace("%(n)s", str(len(items)))
        obj, _, record, _ = items[0]
        rows.append({"id": uuid.uuid4().hex, "user_id": person, "object": obj.name if one else None,
                     "record_id": record["id"] if one else None, "message": text, "created_at": now})
        if user.email:
            body = "\n".join(f"- {line} {link}" for line, link in lines)
            if len(items) > len(lines):
                body += "\n" + i18n.gettext(locale, TEXTS["more"]).replace("%(n)s", str(len(items) - len(lines)))
            letters.append({"id": uuid.uuid4().hex, "address": user.email, "subject": text, "created_at": now,
                            "next_at": now, "body": f"{i18n.gettext(locale, TEXTS['link'])}\n{body}\n"})
    if rows:
        conn.execute(sa.insert(systemdb.notifications), rows)
    if letters:
        conn.execute(sa.insert(systemdb.mail_outbox), letters)
