"""The workflows of one metadata version, ready to run: conditions and
action values compiled once per version, triggers indexed by object.

A run always uses the version its event was written under (kept in the
outbox row), so a publish never changes what an event already in flight
means."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from typing import Any

import sqlalchemy as sa
from cachetools import LRUCache

from loomcrm.metadata.expressions import ExpressionError, Scope
from loomcrm.metadata.model import ObjectDef, StageField, Workflow
from loomcrm.metadata.versions import Snapshot, VersionStore
from loomcrm.runtime.expressions import Compiled, compile_expression

_OFFSET = re.compile(r"^([+-]?)(\d+)([mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def offset_of(text: str) -> timedelta:
    """`-3d`, `2h`, `+30m`, `1w` as a timedelta."""
    sign, number, unit = _OFFSET.match(text.strip()).groups()
    delta = timedelta(**{_UNITS[unit]: int(number)})
    return -delta if sign == "-" else delta


@dataclass
class Flow:
    """One active workflow of one metadata version."""

    wf: Workflow
    obj: ObjectDef
    version: int
    condition: Compiled | None
    # per action: its expressions compiled, by key ("values.subject", "to", "load_filter", ...)
    expressions: list[dict[str, Compiled]]
    broken: str | None = None          # why it cannot run (an expression that no longer compiles)
    offset: timedelta | None = None    # time triggers
    stage_fields: frozenset[str] = frozenset()

    @property
    def name(self) -> str:
        return self.wf.name

    @property
    def on(self) -> str:
        return self.wf.trigger.on

    def due_at(self, value: Any, tz: tzinfo) -> datetime | None:
        """When a time trigger fires for a record whose field holds `value`:
        a date counts from its midnight in the company's time zone."""
        if value is None:
            return None
        if isinstance(value, datetime):
            moment = value if value.tzinfo else value.replace(tzinfo=tz)
        elif isinstance(value, date):
            moment = datetime.combine(value, time(0), tzinfo=tz)
        else:
            return None
        try:
            # in UTC: SQLite keeps a datetime's wall-clock time and drops its zone
            return (moment + self.offset).astimezone(timezone.utc)
        except OverflowError:   # a moment past the year 9999: it never comes
            return None

    def matches(self, event: str, changed: set[str], record: dict[str, Any], source: str | None,
                cause_workflow: str | None) -> bool:
        """Whether an outbox event fires this workflow (before its condition)."""
        if source is not None and source not in self.wf.sources:
            return False
        if cause_workflow == self.name:
            return False   # never on an event its own action caused
        on, trigger = self.on, self.wf.trigger
        if on in ("create", "delete", "restore"):
            return event == on
        if on == "update":
            return event == "update" and (not trigger.fields or bool(changed & set(trigger.fields)))
        if on == "stage_change":
            if event != "update" or not changed & self.stage_fields:
                return False
            targets = [trigger.to] if isinstance(trigger.to, str) else (trigger.to or [])
            return not targets or any(record.get(name) in targets for name in changed & self.stage_fields)
        return False


@dataclass
class Flows:
    """The active workflows of one metadata version."""

    version: int
    objects: dict[str, ObjectDef]
    by_name: dict[str, Flow] = field(default_factory=dict)
    on_events: dict[str, list[Flow]] = field(default_factory=dict)   # object -> create/update/... flows
    on_time: dict[str, list[Flow]] = field(default_factory=dict)     # object -> time flows
    on_schedule: list[Flow] = field(default_factory=list)


def build_flows(snapshot: Snapshot, version: int) -> Flows:
    objects = {o.name: o for o in snapshot.objects}
    flows = Flows(version, objects)
    for wf in snapshot.workflows:
        obj = objects.get(wf.object)
        if not wf.active or obj is None:
            continue
        flow = _compile(wf, obj, objects, version)
        flows.by_name[wf.name] = flow
        if flow.on == "time":
            flows.on_time.setdefault(obj.name, []).append(flow)
        elif flow.on == "schedule":
            flows.on_schedule.append(flow)
        else:
            flows.on_events.setdefault(obj.name, []).append(flow)
    return flows


def _compile(wf: Workflow, obj: ObjectDef, objects: dict[str, ObjectDef], version: int) -> Flow:
    scope = Scope(objects, obj.name, version=version)
    flow = Flow(wf, obj, version, None, [], stage_fields=frozenset(f.name for f in obj.fields if isinstance(f, StageField)))
    try:
        if wf.condition:
            flow.condition = compile_expression(wf.condition, scope, expect="boolean")
        for action in wf.actions:
            compiled: dict[str, Compiled] = {}
            for key, source in _expressions_of(action):
                compiled[key] = compile_expression(source, scope, expect="boolean" if key == "load_filter" else None)
            flow.expressions.append(compiled)
    except ExpressionError as exc:
        flow.broken = f"an expression of the workflow does not compile: {exc}"
        flow.expressions += [{} for _ in range(len(wf.actions) - len(flow.expressions))]
    if wf.trigger.on == "time" and wf.trigger.offset:
        flow.offset = offset_of(wf.trigger.offset)
    return flow


def _expressions_of(action) -> list[tuple[str, str]]:
    out = [(f"values.{key}", source) for key, source in (getattr(action, "values", None) or {}).items()]
    for key in ("to", "load_filter", "team"):
        source = getattr(action, key, None)
        if isinstance(source, str) and source:
            out.append((key, source))
    return out


class Catalog:
    """Flows by metadata version, built once and kept (a few versions)."""

    def __init__(self):
        self._cache: LRUCache = LRUCache(maxsize=16)
        self._lock = threading.Lock()
        self.store = VersionStore()

    def flows(self, conn: sa.Connection, version: int | None) -> Flows:
        if version is None:
            version = self.store.published_version(conn)
        with self._lock:
            hit = self._cache.get(version)
        if hit is not None:
            return hit
        flows = build_flows(self.store.snapshot(conn, version), version)
        with self._lock:
            self._cache[version] = flows
        return flows

    def current(self, conn: sa.Connection) -> Flows:
        return self.flows(conn, None)
