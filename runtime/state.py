"""The runtime of one process: the engine, the field context and the
compiled schema of the published metadata version, rebuilt only when the
version changes. Every process checks the published version at most every
`refresh_interval` seconds, so a publish in one process reaches the others
without a restart."""

from __future__ import annotations

import threading
import time

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from loomcrm.metadata.versions import VersionStore

from .access import AccessResolver
from .expressions.compiled import clear_cache as clear_expression_cache
from .rules.compiled import clear_rules_cache
from .fields import DEFAULT_CONTEXT, FieldContext
from .tables import CompiledSchema, build_schema


class Runtime:
    def __init__(self, engine: Engine, *, context: FieldContext = DEFAULT_CONTEXT, refresh_interval: float = 1.0, hooks=None):
        from .records import RecordService, RuleHooks

        self.engine = engine
        self.context = context
        self.refresh_interval = refresh_interval
        self.store = VersionStore()
        self._schema: CompiledSchema | None = None
        self._checked = 0.0
        self._lock = threading.Lock()
        self.records = RecordService(self, hooks or RuleHooks())
        self.access = AccessResolver(engine, self.roles)

    def schema(self) -> CompiledSchema:
        """The compiled schema of the published version (cached per version)."""
        now = time.monotonic()
        if self._schema is not None and now - self._checked < self.refresh_interval:
            return self._schema
        with self.engine.connect() as conn:
            version = self.store.published_version(conn)
            if self._schema is None or self._schema.version != version:
                with self._lock:
                    if self._schema is None or self._schema.version != version:
                        version, snapshot = self.store.published(conn)
                        replaced = self._schema is not None
                        schema = _compiled(snapshot, version)
                        self._schema = schema
                        if replaced:
                            self._forget_old_versions()
        self._checked = now
        return self._schema

    def _forget_old_versions(self) -> None:
        """Let the previous version go once a new one is in use. The
        engine's cache of compiled statements (500 entries) keys them by
        their tables, so it would keep the tables, types and event hooks of
        a hundred old versions alive; compiled expressions and rules are
        keyed by version and could never be hit again. All refill on demand."""
        self.engine.clear_compiled_cache()
        clear_expression_cache()
        clear_rules_cache()

    def roles(self) -> tuple[int, dict]:
        """(the published metadata version, the roles it defines by name)."""
        schema = self.schema()
        return schema.version, schema.roles

    def invalidate(self) -> None:
        """Forget the version check (after a publish in this process)."""
        self._checked = 0.0

    def schema_for(self, conn: sa.Connection) -> CompiledSchema:
        """The schema as `conn` sees it (inside a publish transaction)."""
        version, snapshot = self.store.published(conn)
        if self._schema is not None and self._schema.version == version:
            return self._schema
        return _compiled(snapshot, version)


def _compiled(snapshot, version: int) -> CompiledSchema:
    schema = build_schema(snapshot.objects, version)
    schema.roles = {r.name: r for r in snapshot.roles}
    schema.reports = {r.name: r for r in snapshot.reports}
    schema.dashboards = {d.name: d for d in snapshot.dashboards}
    schema.pools = {p.name: p for p in snapshot.pools}
    schema.approvals = {a.name: a for a in snapshot.approvals}
    schema.calendars = {c.name: c for c in snapshot.calendars}
    schema.surveys = {s.name: s for s in snapshot.surveys}
    schema.web_forms = {f.name: f for f in snapshot.web_forms}
    return schema
