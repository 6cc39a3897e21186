"""Compile once, run many: `compile_expression()` checks an expression
(`loomcrm.metadata.expressions`), prepares it for the evaluator, and caches
the result per source, expected type and metadata version."""

from __future__ import annotations

import threading
from typing import Any, Callable, Hashable, Mapping

from cachetools import LRUCache

from loomcrm.metadata.expressions import Checked, Scope, analyze

from .context import EvalContext, default_context
from .interpreter import _local, for_thread, prepare
from .straight import straight_formulas, straight_rules


class Compiled:
    """A checked, prepared expression. Immutable and safe to share between
    threads.

    `evaluate(record, context=...)`: `record` maps the record's field names
    to their values, and each dotted path the expression reads (see
    `names`) to its already-resolved value, keyed by the dotted path
    itself: {"amount": Decimal("12000"), "account.industry": "Retail"}.
    A missing key reads as None (a field not set yet, an empty lookup).
    """

    __slots__ = ("source", "type", "names", "paths", "functions", "checked", "_run")

    def __init__(self, checked: Checked):
        self.checked = checked
        self.source = checked.source
        self.type = checked.type
        self.names = checked.names
        self.paths = frozenset(n for n in checked.names if "." in n)
        self.functions = checked.functions
        self._run = prepare(checked.tree)

    def evaluate(self, record: Mapping[str, Any] | None = None, *, context: EvalContext | None = None) -> Any:
        """The value of the expression; ExpressionError on any failure."""
        return for_thread().evaluate(self._run, self.source, record if record is not None else {},
                                     context if context is not None else default_context())

    def __repr__(self) -> str:
        return f"Compiled({self.source!r}, type={self.type!r})"


class Session:
    """Many evaluations under one context (the rules of one save): the
    thread's interpreter takes the context once, not per expression. Each
    evaluation still has its own step count and time budget.

    A session may be used from any thread, and around other evaluations
    (a nested one, another session's): it binds again when it finds the
    interpreter bound to something else."""

    __slots__ = ("context",)

    def __init__(self, context: EvalContext):
        self.context = context

    def evaluate(self, compiled: Compiled, record: Mapping[str, Any]) -> Any:
        interp = getattr(_local, "interp", None)
        if interp is None or interp.busy:
            return compiled.evaluate(record, context=self.context)
        if interp.owner is not self:
            interp.bind(self.context, self)
        return interp.run_bound(compiled._run, compiled.source, record)

    def run_program(self, program, record: Mapping[str, Any], *more: Any) -> Any:
        """What a `rules_program` or `formulas_program` answers over `record`,
        or None when each expression must run alone."""
        interp = for_thread()
        if interp.owner is not self:
            interp.bind(self.context, self)
        return interp.run_program(program, record, *more)


def rules_program(rules: list[tuple[Compiled | None, Compiled]]):
    """One generated function deciding validation rules given as (`when`
    or None, `check`) pairs (see `straight.straight_rules`): per rule True,
    False, None (its `when` did not hold) or GAVE_UP (it must run alone).
    None when it cannot be made. Run it with `Session.run_program`."""
    return straight_rules([(when.checked.tree if when is not None else None, check.checked.tree) for when, check in rules])


def formulas_program(formulas: list[tuple[Compiled, str, Callable[[Any], Any]]]):
    """One generated function computing formulas given as (expression,
    field name, store) triples in order (see `straight.straight_formulas`);
    run it with `Session.run_program(program, view, record)`."""
    return straight_formulas([(compiled.checked.tree, name, store) for compiled, name, store in formulas])


# Compiled expressions by (source, expected type, object, metadata version,
# extra names); cachetools' LRU is not thread-safe by itself.
cache: LRUCache = LRUCache(maxsize=4096)
_lock = threading.Lock()


def clear_cache() -> None:
    with _lock:
        cache.clear()


def _key(source: str, scope: Scope, expect: str | None) -> Hashable | None:
    # Without a version, metadata objects could change under the same
    # names, so only scopes that are fully described by their key are cached.
    if scope.version is None and scope.objects:
        return None
    try:
        extra = frozenset(scope.extra_names.items())
    except TypeError:
        return None
    return (source, expect, scope.object_name, scope.version, extra)


def compile_expression(source: str, scope: Scope, expect: str | None = None) -> Compiled:
    """Check and prepare `source`; ExpressionError lists every problem."""
    key = _key(source, scope, expect)
    if key is not None:
        with _lock:
            hit = cache.get(key)
        if hit is not None:
            return hit
    compiled = Compiled(analyze(source, scope, expect=expect))
    if key is not None:
        with _lock:
            cache[key] = compiled
    return compiled
