"""The evaluator: a hardened, lean subclass of asteval's Interpreter.

Stock asteval looks a handler up by the node's class name on every visit,
keeps error bookkeeping per node and accepts a wide language. Here the tree
has already been whitelisted and typed (metadata.expressions), so:

- `prepare()` resolves every node's handler once, when the expression is
  compiled, as a closure over its children's closures, its operator or
  library function: running a node is then one call, with no lookups on
  the tree or by name.
- Handlers are written for exactly the whitelisted node kinds, with the
  SPEC 4 semantics (None in arithmetic, two-valued comparisons, exact
  decimals) instead of Python's.
- Guards sit only where values can grow or time can pass: arithmetic
  results, text-building functions, function calls (deadline), and a step
  counter on composite nodes.
- The symbol table holds the function library and nothing else; names read
  the record passed in, never the symbol table.
- One interpreter per thread (`for_thread()`) holds the running
  evaluation's state; prepared closures hold none and are shared between
  threads.
- Each tree is also written out as one Python function (`straight`), which
  `run_bound` tries first; the closures stay the reference and report every
  error at its node.
"""

from __future__ import annotations

import ast
import io
import threading
from datetime import datetime
from decimal import DecimalException
from time import perf_counter
from typing import Any, Callable, Mapping

import asteval

from loomcrm.metadata.expressions.errors import ExprError, ExpressionError, position

from .context import EvalContext
from .library import FIELD_FUNCTIONS, FUNCTIONS
from .operators import ARITHMETIC, COMPARE
from .straight import straight
from .values import NUMBER_TYPES, PLAIN, EvalFailure, admit, admit_read

_NOTHING: Mapping[str, Any] = {}


class LoomInterpreter(asteval.Interpreter):
    """The state of one thread's running evaluation (record, context,
    budgets, clock) that prepared closures read; see the module docstring."""

    def __init__(self):
        library = {name: fn for name, fn in FUNCTIONS.items()}
        sink = io.StringIO()
        super().__init__(symtable=library, use_numpy=False, minimal=True, builtins_readonly=True,
                         max_statement_length=4000, writer=sink, err_writer=sink)
        # asteval adds `print`; an expression has no business printing.
        self.symtable.pop("print", None)
        self.readonly_symbols = set(self.symtable)
        # Expressions run only as prepared closures (`prepare`): asteval's own
        # tree walk has no handlers (and `run` refuses every node).
        self.node_handlers = {}
        self.record: Mapping[str, Any] = {}
        self.ctx: EvalContext | None = None
        self.owner: object = None       # what `ctx` was bound for (see `bind`)
        self.tz = None
        self.clock: datetime | None = None
        self.budget = 0.0
        self.steps = 0
        self.max_steps = 0
        self.deadline = 0.0
        self.busy = False
        self._now: datetime | None = None

    # --- entry points -----------------------------------------------------------

    def evaluate(self, run: Callable, source: str, record: Mapping[str, Any], ctx: EvalContext) -> Any:
        self.bind(ctx)
        return self.run_bound(run, source, record)

    def bind(self, ctx: EvalContext, owner: object = None) -> None:
        """Take what every evaluation under `ctx` shares (time zone, clock,
        budgets); `owner` marks who bound it, so that a session binds once
        for all its evaluations (`compiled.Session`)."""
        self.ctx = ctx
        self.owner = owner
        self.tz = ctx.tz
        self.max_steps = ctx.max_steps
        self.budget = ctx.budget_ms / 1000.0
        self.clock = ctx.clock.astimezone(ctx.tz) if ctx.clock is not None else None

    def run_bound(self, run: Callable, source: str, record: Mapping[str, Any]) -> Any:
        """One evaluation of a prepared expression (`prepare`) under the
        bound context, with its own step count, time budget and "now"
        (SPEC 4: the budget is per expression)."""
        self.record = record
        self.steps = 0
        self._now = self.clock
        self.deadline = perf_counter() + self.budget
        self.busy = True
        try:
            fast = run.fast
            if fast is not None and run.size <= self.max_steps:
                try:
                    return fast(self, record.get)
                except Exception:   # the closures report it, at its node
                    self.deadline = perf_counter() + self.budget   # and run afresh
            return run(self)
        except EvalFailure as failure:
            raise _error(source, failure.node or run.node, failure.code, failure.message) from None
        except (TypeError, ValueError, ArithmeticError, DecimalException, AttributeError, KeyError) as exc:
            # Values of a type the checker could not see (a name of unknown
            # type); reported, never a crash and never a silent None.
            raise _error(source, run.node, "type_mismatch", f"the values do not fit the operation: {exc}"[:300]) from None
        except (RecursionError, MemoryError):
            raise _error(source, run.node, "budget_exceeded", "the expression needed too much memory or depth") from None
        finally:
            self.busy = False
            self.record = _NOTHING

    def run_program(self, program: Callable, record: Mapping[str, Any], *more: Any) -> Any:
        """What a program of several expressions (`straight.straight_rules`,
        `straight_formulas`) answers under the bound context; None if it
        failed as a whole (each expression then runs alone)."""
        self.record = record
        self.steps = 0
        self.busy = True
        try:
            return program(self, record.get, *more)
        except Exception:   # a program catches its expressions' own
            return None
        finally:
            self.busy = False
            self.record = _NOTHING

    def run(self, node, expr=None, lineno=None, with_raise=True):
        """asteval's entry point: refused, expressions run only as closures
        prepared from a checked tree."""
        raise EvalFailure("forbidden_syntax", f"'{type(node).__name__}' cannot be evaluated", node)

    # --- helpers for the library ------------------------------------------------

    def now(self) -> datetime:
        if self._now is None:
            self._now = datetime.now(self.tz)
        return self._now

    def field(self, name: str) -> Any:
        value = self.record.get(name)
        return value if type(value) in PLAIN else admit(value, self.tz)

    def admit(self, value: Any) -> Any:
        return value if type(value) in PLAIN else admit(value, self.tz)


def _error(source: str, node, code: str, message: str) -> ExpressionError:
    line, col = position(source, getattr(node, "lineno", 1), getattr(node, "col_offset", 0))
    return ExpressionError(ExprError(code, message, line, col))


# --- preparing a checked tree: one closure per node ------------------------------------
#
# Each node becomes a closure over its children's closures, its operator or
# library function and, for error positions, the node itself: running a node
# is one call, with no attribute lookups on the tree. `ev` is the running
# interpreter (record, time zone, clock, budgets).

def prepare(tree: ast.Expression) -> Callable[[LoomInterpreter], Any]:
    """The closure that runs the checked `tree`; its `node` attribute is
    the body (the position of errors that have no better one), `fast` and
    `size` its fast path (`straight`). Raises ExpressionError on a node
    kind the evaluator does not run (the whitelist should have refused it)."""
    run = _build(tree.body)
    run.node = tree.body
    run.fast, run.size = straight(tree)
    return run


def _build(node) -> Callable[[LoomInterpreter], Any]:
    # The checker's whitelist already refused all of this; refused again here
    # so that nothing it might miss runs (or is silently left out).
    builder = _BUILDERS.get(type(node))
    if builder is None or type(node) is ast.Call and (node.keywords or type(node.func) is not ast.Name):
        raise ExpressionError(ExprError("forbidden_syntax", f"'{type(node).__name__}' cannot be evaluated"))
    try:
        return builder(node)
    except KeyError as missing:   # an operator or function the evaluator does not have
        what = getattr(missing.args[0], "__name__", missing.args[0])
        raise ExpressionError(ExprError("forbidden_syntax", f"'{what}' cannot be evaluated")) from None


def _constant(node):
    value = node.value
    return lambda ev: value


def _name(node):
    key = node.id

    def name(ev):
        value = ev.record.get(key)
        if type(value) in PLAIN:
            return value
        try:
            return admit_read(value, ev.tz)
        except EvalFailure as failure:
            failure.node = node
            raise
    return name


def _list(node):
    items = tuple(_build(e) for e in node.elts)
    return lambda ev: [item(ev) for item in items]


def _boolop(node):
    # SPEC semantics: the result is True or False; None counts as false.
    operands = tuple((_build(v), v) for v in node.values)
    is_and = type(node.op) is ast.And

    def boolop(ev):
        ev.steps += 1
        for run, operand in operands:
            value = run(ev)
            if value is True:
                if not is_and:
                    return True
            elif value is False or value is None:
                if is_and:
                    return False
            else:
                raise EvalFailure("type_mismatch", "'and' / 'or' need true/false values", operand)
        return is_and
    return boolop


def _unaryop(node):
    operand = _build(node.operand)
    if type(node.op) is ast.Not:
        def not_(ev):
            ev.steps += 1
            value = operand(ev)
            if value is None or value is False:
                return True
            if value is True:
                return False
            raise EvalFailure("type_mismatch", "'not' needs a true/false value", node)
        return not_
    negate = type(node.op) is ast.USub

    def sign(ev):
        ev.steps += 1
        value = operand(ev)
        if value is None:
            return None
        if type(value) not in NUMBER_TYPES:
            raise EvalFailure("type_mismatch", "unary minus takes a number", node)
        return -value if negate else value
    return sign


def _binop(node):
    left, right = _build(node.left), _build(node.right)
    op, symbol = ARITHMETIC[type(node.op)]

    def binop(ev):
        ev.steps += 1
        a = left(ev)
        b = right(ev)
        if a is None or b is None:
            return None   # arithmetic with None gives None
        if type(a) not in NUMBER_TYPES or type(b) not in NUMBER_TYPES:
            raise EvalFailure("type_mismatch", f"'{symbol}' takes numbers only (join text with concat())", node)
        try:
            return op(a, b)
        except EvalFailure as failure:
            failure.node = node
            raise
    return binop


def _compare(node):
    ops = [COMPARE[type(op)] for op in node.ops]
    left = _build(node.left)
    # a < b < c is a < b and b < c, each operand evaluated once and
    # lazily, as in Python (a single comparison is a chain of one)
    steps = tuple(zip(ops, (_build(c) for c in node.comparators)))

    def chained(ev):
        ev.steps += 1
        a = left(ev)
        for op, right in steps:
            b = right(ev)
            try:
                if not op(a, b):
                    return False
            except TypeError:
                raise EvalFailure("type_mismatch", "these values cannot be compared", node) from None
            a = b
        return True
    return chained


def _ifexp(node):
    test, body, orelse = _build(node.test), _build(node.body), _build(node.orelse)

    def ifexp(ev):
        ev.steps += 1
        condition = test(ev)
        if condition is True:
            return body(ev)
        if condition is False or condition is None:
            return orelse(ev)
        raise EvalFailure("type_mismatch", "'if' needs a true/false condition", node.test)
    return ifexp


def _over_steps(ev, node) -> EvalFailure:
    return EvalFailure("budget_exceeded", f"the expression ran more than {ev.max_steps} steps", node)


def _over_time(ev, node) -> EvalFailure:
    return EvalFailure("budget_exceeded", f"the expression ran longer than its budget ({ev.ctx.budget_ms:g} ms)", node)


def _call(node):
    name = node.func.id
    fn = FUNCTIONS[name]
    if name in FIELD_FUNCTIONS:
        # is_changed / prior_value / stage_*: the argument names a field
        field, stages = node.args[0].id, getattr(node, "loom_stages", None)
        extra = () if stages is None else (stages,)

        def field_call(ev):
            ev.steps += 1
            try:
                return fn(ev, field, *extra)
            except EvalFailure as failure:
                failure.node = failure.node or node
                raise
        return field_call
    args = tuple(_build(a) for a in node.args)

    def call(ev):
        ev.steps += 1
        if ev.steps > ev.max_steps:
            raise _over_steps(ev, node)
        try:
            result = fn(ev, *[a(ev) for a in args])
        except EvalFailure as failure:
            failure.node = failure.node or node
            raise
        if perf_counter() > ev.deadline:
            raise _over_time(ev, node)
        return result
    return call


_BUILDERS = {ast.Constant: _constant, ast.Name: _name, ast.List: _list, ast.Tuple: _list, ast.BoolOp: _boolop,
             ast.UnaryOp: _unaryop, ast.BinOp: _binop, ast.Compare: _compare, ast.IfExp: _ifexp, ast.Call: _call}


_local = threading.local()


def for_thread() -> LoomInterpreter:
    """This thread's interpreter (a fresh one if it is already running,
    e.g. a library call that evaluates another expression)."""
    interp = getattr(_local, "interp", None)
    if interp is None:
        interp = _local.interp = LoomInterpreter()
    elif interp.busy:
        return LoomInterpreter()
    return interp
