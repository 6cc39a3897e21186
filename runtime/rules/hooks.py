"""The rules in the record service: `Rules` implements its hooks
(`loomcrm.runtime.records.RuleHooks`), so every writer — API, form,
import, automation — goes through the same rules:

    Runtime(engine, hooks=Rules())

Admin imports may skip validation rules, stage criteria and duplicate
rules explicitly, with a reason; the rules still run, and what they would
have refused is recorded in `loom_history` (field `_rules`) with who and why:

    with skip_rules("migration from the old CRM", kinds={"validation", "stages"}):
        runtime.records.create("opportunity", values, admin)
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterable, Iterator

import sqlalchemy as sa

from loomcrm.metadata.model import FieldDef
from loomcrm.platform import systemdb

from ..fields import FieldError
from ..records import Conflict, RecordError, RuleHooks, SaveContext
from ..rollups import Change, as_stored, db_fetch, dependents, propagate, refresh_parents, schema_rules
from .duplicates import check_duplicates
from ..expressions import EvalContext
from ..expressions.settings import timezone_name
from .engine import SKIPPABLE, SaveRun, roles_of

SKIP_FIELD = "_rules"


def _readable(ctx: SaveContext, ids: list[str]) -> list[str]:
    """Of `ids` (records of the saved object), those the saving user may read."""
    if not ids:
        return ids
    table = ctx.schema.table(ctx.obj.name)
    clause = ctx.access.clause(table, ctx.obj.name, "read")
    if clause is None:
        return ids
    found = set(ctx.conn.execute(sa.select(table.c.id).where(table.c.id.in_(ids), clause)).scalars())
    return [rid for rid in ids if rid in found]


@dataclass(frozen=True)
class Skip:
    reason: str
    kinds: frozenset[str]


_skip: contextvars.ContextVar[Skip | None] = contextvars.ContextVar("loom_skip_rules", default=None)


@contextlib.contextmanager
def skip_rules(reason: str, kinds: Iterable[str] = SKIPPABLE) -> Iterator[Skip]:
    """Saves inside the block skip `kinds` (of "validation", "stages",
    "duplicates"). Only admins may; each save records the skip in history."""
    kinds = frozenset(kinds)
    if not kinds <= SKIPPABLE:
        raise ValueError(f"only {sorted(SKIPPABLE)} may be skipped, not {sorted(kinds - SKIPPABLE)}")
    if not isinstance(reason, str) or not reason.strip():
        raise ValueError("skipping rules needs a reason")
    skip = Skip(reason.strip()[:2000], kinds)
    token = _skip.set(skip)
    try:
        yield skip
    finally:
        _skip.reset(token)


def _kind_of(problem: dict[str, Any]) -> str | None:
    if problem["code"] == "duplicate":
        return "duplicates"
    if problem.get("stage") is not None or problem["code"] == "stage_backward":
        return "stages"
    if problem["code"] == "rule" or (problem["code"] == "expression" and problem.get("rule") and problem["rule"] not in ("required_if",)):
        return "validation"
    return None


class Rules(RuleHooks):
    """Defaults, formulas, SLA clocks, conditional fields, validation rules,
    stage criteria and duplicate rules before the write; rollups, lookup
    formulas and the clocks' rows after it, in the same transaction."""

    def __init__(self, *, timezone: str | None = None, clock: datetime | None = None, budget_ms: float | None = None):
        self.timezone = timezone
        self.clock = clock
        self.budget_ms = budget_ms  # per expression; None: the language's default (10 ms)
        # None: LOOM_TIMEZONE, read here once rather than on every save
        self._zone = timezone or timezone_name()
        self._budget = {"budget_ms": budget_ms} if budget_ms is not None else {}
        self._create_context: tuple[tuple, EvalContext] | None = None

    def _context(self, user, old) -> EvalContext:
        """The evaluation context of a save. A create's depends only on the
        user, so the last one is kept for the next create."""
        user_id, roles = getattr(user, "id", None), roles_of(user)
        if old is None:
            key = (user_id, roles)
            kept = self._create_context
            if kept is not None and kept[0] == key:
                return kept[1]
        context = EvalContext(is_new=old is None, prior=old, user_id=user_id, roles=roles, timezone=self._zone,
                              clock=self.clock, **self._budget)
        if old is None:
            self._create_context = (key, context)
        return context

    # -- the run of one save -----------------------------------------------------------
    def run_of(self, ctx: SaveContext) -> SaveRun:
        run = ctx.__dict__.get("_rules_run")
        if run is None:
            skip = _skip.get()
            if skip is not None and getattr(ctx.user, "role", None) != "admin":
                raise RecordError("only admins may skip rules", status=403)
            rules = schema_rules(ctx.schema, ctx.obj.name)
            context = self._context(ctx.user, ctx.old)
            if ctx.old is not None and ctx.schema.approvals:
                from ..approvals import processes_of, request_of_save   # approvals build on the rules

                if processes_of(ctx.schema, ctx.obj.name):
                    request = request_of_save(ctx)
                    context = dataclasses.replace(context, approval=request["status"] if request else None)
            run = SaveRun(rules, ctx.values, ctx.old, user=ctx.user, fetch=db_fetch(ctx.conn, ctx.schema),
                          context=context)
            ctx.__dict__["_rules_run"] = run
            ctx.__dict__["_rules_skip"] = skip
            ctx.__dict__["_rules_reported"] = 0
        return run

    def _flush(self, ctx: SaveContext) -> None:
        """Move the run's new problems to the save's errors (or, when
        skipped, aside for the history)."""
        run = self.run_of(ctx)
        start = ctx.__dict__["_rules_reported"]
        if start == len(run.errors):
            return
        skip: Skip | None = ctx.__dict__["_rules_skip"]
        for problem in run.errors[start:]:
            kind = _kind_of(problem)
            if skip is not None and kind in skip.kinds:
                ctx.__dict__.setdefault("_rules_skipped", []).append(problem)
                continue
            extra = {k: v for k, v in problem.items() if k not in ("field", "code", "message")}
            ctx.errors.append(FieldError(problem["code"], problem["message"], problem["field"], **extra))
        ctx.__dict__["_rules_reported"] = len(run.errors)

    # -- hooks --------------------------------------------------------------------------
    def defaults(self, ctx: SaveContext) -> None:
        run = self.run_of(ctx)
        run.report_broken()
        run.apply_defaults()
        self._flush(ctx)

    def compute(self, ctx: SaveContext) -> None:
        run = self.run_of(ctx)
        if not ctx.is_new:
            run.report_broken()
        ctx.changed.update(run.fill_places())
        ctx.changed.update(run.compute_formulas())
        if run.rules.slas:
            from ..slas import track   # SLA clocks build on the rules

            track(ctx, run, run.rules.slas, self.clock or datetime.now(timezone.utc))
        self._flush(ctx)

    def is_required(self, ctx: SaveContext, f: FieldDef) -> bool:
        if not f.required:
            return False
        run = self.run_of(ctx)
        return f.name not in run.rules.visible_if or run.is_visible(f)

    def validate(self, ctx: SaveContext) -> None:
        run = self.run_of(ctx)
        run.check_required_if()
        run.check_read_only(ctx.changed)
        run.check_rules()
        run.check_stages()
        self._flush(ctx)
        if ctx.obj.duplicate_rules:
            blocks, warnings = check_duplicates(ctx.conn, ctx.schema, ctx.obj, ctx.values,
                                                None if ctx.is_new else ctx.old["id"], None if ctx.is_new else ctx.changed,
                                                run.locale)
            if ctx.access is not None and not ctx.access.everything:
                # a match the user may not read still counts, but is never named
                for problem in blocks + warnings:
                    problem["matches"] = _readable(ctx, problem.get("matches") or [])
            skip: Skip | None = ctx.__dict__["_rules_skip"]
            if skip is not None and "duplicates" in skip.kinds:
                ctx.__dict__.setdefault("_rules_skipped", []).extend(blocks)
                blocks = []
            for problem in blocks:
                extra = {k: v for k, v in problem.items() if k not in ("field", "code", "message")}
                _conflicts(ctx).append(FieldError("duplicate", problem["message"], problem["field"], **extra))
            _warnings(ctx).extend({k: v for k, v in w.items() if v is not None} for w in warnings)

    def after_write(self, ctx: SaveContext) -> None:
        saved = ctx.values
        skip: Skip | None = ctx.__dict__.get("_rules_skip")
        if skip is not None:
            skipped = ctx.__dict__.get("_rules_skipped", [])
            ctx.conn.execute(sa.insert(systemdb.history).values(
                object=ctx.obj.name, record_id=saved["id"], field=SKIP_FIELD, old_value=None,
                new_value={"skipped": sorted(skip.kinds),
                           "problems": [{k: v for k, v in p.items() if v is not None} for p in skipped]},
                note=f"rules skipped: {skip.reason}", changed_by=getattr(ctx.user, "id", None),
                changed_at=datetime.now(timezone.utc)))
        if "_sla_clocks" in ctx.__dict__:
            from ..slas import save

            save(ctx)
        if ctx.schema.surveys:
            from ..surveys import on_save

            on_save(ctx, self.run_of(ctx), self.clock or datetime.now(timezone.utc))
        if ctx.obj.search and (ctx.is_new or not ctx.changed.isdisjoint(ctx.obj.search)):
            from ..search import index

            index(ctx.conn, ctx.obj, [saved])
        fields = None if ctx.is_new else set(ctx.changed)
        propagate(ctx.conn, ctx.schema, [Change(ctx.obj.name, ctx.old, saved, fields)])

    def after_delete(self, conn, schema, obj, row, user) -> None:
        propagate(conn, schema, [Change(obj.name, as_stored(conn, schema, obj.name, row), None, None)])

    def before_restore(self, conn, schema, obj, row, user) -> None:
        """A record back from the recycle bin must not duplicate one saved
        meanwhile: blocking duplicate rules refuse the restore (409)."""
        if not obj.duplicate_rules:
            return
        locale = getattr(user, "locale", None) or "en"
        blocks, _ = check_duplicates(conn, schema, obj, row, row["id"], None, locale)
        if blocks:
            raise Conflict(f"restoring this {obj.name} would duplicate a record saved since it was deleted",
                           [{k: v for k, v in p.items() if v is not None} for p in blocks])

    def after_restore(self, conn, schema, obj, row, user) -> None:
        if obj.slas:
            from ..slas import rescheduled

            rescheduled(conn, obj, row["id"])
        changes = [Change(obj.name, None, row, None)]
        # Its own rollups from its children: those that left it while it was
        # deleted (on_delete set_null) did so without a refresh.
        names = {spec.field.name for spec in dependents(schema).by_parent.get(obj.name, [])}
        if names:
            changes += refresh_parents(conn, schema, obj.name, {row["id"]: names})
        propagate(conn, schema, changes)


def _conflicts(ctx: SaveContext) -> list:
    conflicts = getattr(ctx, "conflicts", None)
    if conflicts is None:
        conflicts = ctx.errors  # a record service without a conflict list: report with the 422
    return conflicts


def _warnings(ctx: SaveContext) -> list:
    warnings = getattr(ctx, "warnings", None)
    if warnings is None:
        warnings = ctx.__dict__.setdefault("warnings", [])
    return warnings
