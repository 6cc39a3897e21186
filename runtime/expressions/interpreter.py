"""The evaluator: a hardened, lean subclass of asteval's Interpreter.

Stock asteval looks a handler up by the node's class name on every visit,
keeps error bookkeeping per node and accepts a wide language. Here the tree
has already been whitelisted and typed (metadata.expressions), so:

- `prepare()` resolves every node's handler once, when the expression is
  compiled, and stores it on the node (`loom_run`); running a node is then
  one attribute load and one call. Operators and library functions are
  resolved the same way (`loom_op`, `loom_fn`).
- Handlers are written for exactly the whitelisted node kinds, with the
  SPEC 4 semantics (None in arithmetic, two-valued comparisons, exact
  decimals) instead of Python's.
- Guards sit only where values can grow or time can pass: arithmetic
  results, text-building functions, function calls (deadline), and a step
  counter on composite nodes.
- The symbol table holds the function library and nothing else; names read
  the record passed in, never the symbol table.
- One interpreter per thread (`for_thread()`); compiled trees are shared
  read-only between threads.
"""

from __future__ import annotations

import ast
import io
import threading
from datetime import datetime
from decimal import ROUND_FLOOR, Decimal, DecimalException
from time import perf_counter
from typing import Any, Mapping

import asteval

from loomcrm.metadata.expressions.errors import ExprError, ExpressionError, position

from .context import EvalContext
from .library import FIELD_FUNCTIONS, FUNCTIONS
from .values import DECIMALS, MAX_DECIMAL, MAX_NUMBER, EvalFailure, admit, check_text

_FAST = frozenset({int, bool, Decimal, type(None)}) | {__import__("datetime").date}
_NUMBERS = (int, Decimal)
_NOTHING: Mapping[str, Any] = {}


# --- operators with SPEC 4 semantics ----------------------------------------------

def _num(a: Any, symbol: str) -> None:
    raise EvalFailure("type_mismatch", f"'{symbol}' takes numbers only, not {type(a).__name__}")


def _bounded(value):
    limit = MAX_DECIMAL if type(value) is Decimal else MAX_NUMBER
    if -limit < value < limit:
        return value
    raise EvalFailure("value_too_large", "a number exceeds 10**100")


def _add(a, b):
    if type(a) is int and type(b) is int:
        return _bounded(a + b)
    return _bounded(DECIMALS.add(a, b))


def _sub(a, b):
    if type(a) is int and type(b) is int:
        return _bounded(a - b)
    return _bounded(DECIMALS.subtract(a, b))


def _mul(a, b):
    if type(a) is int and type(b) is int:
        return _bounded(a * b)
    return _bounded(DECIMALS.multiply(a, b))


def _nonzero(b):
    if not b:
        raise EvalFailure("division_by_zero", "division by zero")


def _div(a, b):
    # Always exact decimal division: 7 / 2 is 3.5, never a float.
    _nonzero(b)
    return _bounded(DECIMALS.divide(Decimal(a), Decimal(b)))


def _floordiv(a, b):
    _nonzero(b)
    if type(a) is int and type(b) is int:
        return a // b
    # Floor, like Python's ints (Decimal's own // truncates toward zero).
    return _bounded(DECIMALS.divide(Decimal(a), Decimal(b)).to_integral_value(ROUND_FLOOR))


def _mod(a, b):
    _nonzero(b)
    if type(a) is int and type(b) is int:
        return a % b
    a, b = Decimal(a), Decimal(b)
    return _bounded(DECIMALS.subtract(a, DECIMALS.multiply(b, DECIMALS.divide(a, b).to_integral_value(ROUND_FLOOR))))


_ARITHMETIC = {ast.Add: (_add, "+"), ast.Sub: (_sub, "-"), ast.Mult: (_mul, "*"), ast.Div: (_div, "/"),
               ast.FloorDiv: (_floordiv, "//"), ast.Mod: (_mod, "%")}

# A comparison with None is false, except == / != (SPEC 4).
_COMPARE = {
    ast.Eq: lambda a, b: a == b,
    ast.NotEq: lambda a, b: a != b,
    ast.Lt: lambda a, b: a is not None and b is not None and a < b,
    ast.LtE: lambda a, b: a is not None and b is not None and a <= b,
    ast.Gt: lambda a, b: a is not None and b is not None and a > b,
    ast.GtE: lambda a, b: a is not None and b is not None and a >= b,
    ast.In: lambda a, items: a in items,
    ast.NotIn: lambda a, items: a not in items,
}


class LoomInterpreter(asteval.Interpreter):
    """Runs prepared trees; see the module docstring."""

    def __init__(self):
        library = {name: fn for name, fn in FUNCTIONS.items()}
        sink = io.StringIO()
        super().__init__(symtable=library, use_numpy=False, minimal=True, builtins_readonly=True,
                         max_statement_length=4000, writer=sink, err_writer=sink)
        # asteval adds `print`; an expression has no business printing.
        self.symtable.pop("print", None)
        self.readonly_symbols = set(self.symtable)
        # Only the whitelisted node kinds have handlers; anything else that
        # somehow reached run() is refused by `unimplemented`.
        self.node_handlers = {name: self.unimplemented for name in self.node_handlers}
        for name in ("expression", "constant", "name", "boolop", "unaryop", "binop", "compare",
                     "ifexp", "call", "list", "tuple"):
            self.node_handlers[name] = getattr(self, f"on_{name}")
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

    def evaluate(self, body: ast.expr, source: str, record: Mapping[str, Any], ctx: EvalContext) -> Any:
        self.bind(ctx)
        return self.run_bound(body, source, record)

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

    def run_bound(self, body: ast.expr, source: str, record: Mapping[str, Any]) -> Any:
        """One evaluation under the bound context, with its own step count,
        time budget and "now" (SPEC 4: the budget is per expression)."""
        self.record = record
        self.steps = 0
        self._now = self.clock
        self.deadline = perf_counter() + self.budget
        self.busy = True
        try:
            return body.loom_run(self, body)
        except EvalFailure as failure:
            raise _error(source, failure.node or body, failure.code, failure.message) from None
        except (TypeError, ValueError, ArithmeticError, DecimalException, AttributeError, KeyError) as exc:
            # Values of a type the checker could not see (a name of unknown
            # type); reported, never a crash and never a silent None.
            raise _error(source, body, "type_mismatch", f"the values do not fit the operation: {exc}"[:300]) from None
        except (RecursionError, MemoryError):
            raise _error(source, body, "budget_exceeded", "the expression needed too much memory or depth") from None
        finally:
            self.busy = False
            self.record = _NOTHING

    def run(self, node, expr=None, lineno=None, with_raise=True):
        """asteval's entry point, kept for the base class's own callers:
        dispatches through the handler resolved at prepare time."""
        handler = getattr(node, "loom_run", None)
        if handler is None:
            raise EvalFailure("forbidden_syntax", f"'{type(node).__name__}' cannot be evaluated", node)
        return handler(self, node)

    def unimplemented(self, node):
        raise EvalFailure("forbidden_syntax", f"'{type(node).__name__}' cannot be evaluated", node)

    # --- helpers for the library ------------------------------------------------

    def now(self) -> datetime:
        if self._now is None:
            self._now = datetime.now(self.tz)
        return self._now

    def field(self, name: str) -> Any:
        value = self.record.get(name)
        return value if type(value) in _FAST else admit(value, self.tz)

    def admit(self, value: Any) -> Any:
        return value if type(value) in _FAST else admit(value, self.tz)

    def tick(self, node) -> None:
        self.steps += 1
        if self.steps > self.max_steps:
            raise EvalFailure("budget_exceeded", f"the expression ran more than {self.max_steps} steps", node)

    # --- handlers (called as node.loom_run(self, node)) --------------------------

    def on_expression(self, node):
        return node.body.loom_run(self, node.body)

    def on_constant(self, node):
        return node.value

    def on_name(self, node):
        value = self.record.get(node.id)
        kind = type(value)
        if kind in _FAST:
            return value
        if kind is str and len(value) <= 100_000:
            return value
        try:
            return admit(value, self.tz)
        except EvalFailure as failure:
            failure.node = node
            raise

    def on_list(self, node):
        return [e.loom_run(self, e) for e in node.elts]

    on_tuple = on_list

    def on_boolop(self, node):
        self.steps += 1
        # SPEC semantics: the result is True or False; None counts as false.
        is_and = node.loom_and
        for value_node in node.values:
            value = value_node.loom_run(self, value_node)
            if value is True:
                if not is_and:
                    return True
            elif value is False or value is None:
                if is_and:
                    return False
            else:
                raise EvalFailure("type_mismatch", "'and' / 'or' need true/false values", value_node)
        return is_and

    def on_not(self, node):
        self.steps += 1
        value = node.operand.loom_run(self, node.operand)
        if value is None or value is False:
            return True
        if value is True:
            return False
        raise EvalFailure("type_mismatch", "'not' needs a true/false value", node)

    def on_neg(self, node):
        self.steps += 1
        value = node.operand.loom_run(self, node.operand)
        if value is None:
            return None
        if type(value) not in _NUMBERS:
            raise EvalFailure("type_mismatch", "unary minus takes a number", node)
        return -value if node.loom_negate else value

    on_unaryop = on_not

    def on_binop(self, node):
        self.steps += 1
        left = node.left.loom_run(self, node.left)
        right = node.right.loom_run(self, node.right)
        if left is None or right is None:
            return None   # arithmetic with None gives None
        if type(left) not in _NUMBERS or type(right) not in _NUMBERS:
            raise EvalFailure("type_mismatch", f"'{node.loom_symbol}' takes numbers only (join text with concat())", node)
        try:
            return node.loom_op(left, right)
        except EvalFailure as failure:
            failure.node = node
            raise

    def on_compare1(self, node):
        self.steps += 1
        left = node.left.loom_run(self, node.left)
        right = node.loom_right.loom_run(self, node.loom_right)
        try:
            return node.loom_op(left, right)
        except TypeError:
            raise EvalFailure("type_mismatch", "these values cannot be compared", node) from None

    def on_compare_const(self, node):
        """`x == 'won'`, `amount > 0`: the right side is a literal."""
        self.steps += 1
        left = node.left.loom_run(self, node.left)
        try:
            return node.loom_op(left, node.loom_value)
        except TypeError:
            raise EvalFailure("type_mismatch", "these values cannot be compared", node) from None

    def on_compare(self, node):
        # Chained: a < b < c is a < b and b < c, each operand evaluated once
        # and lazily, as in Python.
        self.steps += 1
        left = node.left.loom_run(self, node.left)
        for op, right_node in zip(node.loom_ops, node.comparators):
            right = right_node.loom_run(self, right_node)
            try:
                if not op(left, right):
                    return False
            except TypeError:
                raise EvalFailure("type_mismatch", "these values cannot be compared", node) from None
            left = right
        return True

    def on_ifexp(self, node):
        self.steps += 1
        test = node.test.loom_run(self, node.test)
        if test is True:
            return node.body.loom_run(self, node.body)
        if test is False or test is None:
            return node.orelse.loom_run(self, node.orelse)
        raise EvalFailure("type_mismatch", "'if' needs a true/false condition", node.test)

    def on_call(self, node):
        self.steps += 1
        if self.steps > self.max_steps:
            raise EvalFailure("budget_exceeded", f"the expression ran more than {self.max_steps} steps", node)
        args = [a.loom_run(self, a) for a in node.args]
        try:
            result = node.loom_fn(self, *args)
        except EvalFailure as failure:
            failure.node = failure.node or node
            raise
        if perf_counter() > self.deadline:
            raise EvalFailure("budget_exceeded", f"the expression ran longer than its budget ({self.ctx.budget_ms:g} ms)", node)
        return result

    # Calls of one or two arguments (most calls) without building a list.

    def on_call1(self, node):
        self.steps += 1
        if self.steps > self.max_steps:
            raise EvalFailure("budget_exceeded", f"the expression ran more than {self.max_steps} steps", node)
        a = node.loom_arg
        try:
            result = node.loom_fn(self, a.loom_run(self, a))
        except EvalFailure as failure:
            failure.node = failure.node or node
            raise
        if perf_counter() > self.deadline:
            raise EvalFailure("budget_exceeded", f"the expression ran longer than its budget ({self.ctx.budget_ms:g} ms)", node)
        return result

    def on_call2(self, node):
        self.steps += 1
        if self.steps > self.max_steps:
            raise EvalFailure("budget_exceeded", f"the expression ran more than {self.max_steps} steps", node)
        a, b = node.loom_args
        try:
            result = node.loom_fn(self, a.loom_run(self, a), b.loom_run(self, b))
        except EvalFailure as failure:
            failure.node = failure.node or node
            raise
        if perf_counter() > self.deadline:
            raise EvalFailure("budget_exceeded", f"the expression ran longer than its budget ({self.ctx.budget_ms:g} ms)", node)
        return result

    def on_field_call(self, node):
        """is_changed / prior_value / stage_*: the argument names a field."""
        self.steps += 1
        try:
            if node.loom_stages is not None:
                return node.loom_fn(self, node.loom_field, node.loom_stages)
            return node.loom_fn(self, node.loom_field)
        except EvalFailure as failure:
            failure.node = failure.node or node
            raise


def _error(source: str, node, code: str, message: str) -> ExpressionError:
    line, col = position(source, getattr(node, "lineno", 1), getattr(node, "col_offset", 0))
    return ExpressionError(ExprError(code, message, line, col))


# --- preparing a checked tree ---------------------------------------------------------

_L = LoomInterpreter


def prepare(tree: ast.Expression) -> ast.expr:
    """Resolve every node's handler (and operator, and library function)
    once; return the body to run. Raises ExpressionError on a node kind the
    evaluator does not run (the whitelist should have refused it)."""
    for node in ast.walk(tree):
        kind = type(node)
        if kind is ast.Expression:
            node.loom_run = _L.on_expression
        elif kind is ast.Constant:
            node.loom_run = _L.on_constant
        elif kind is ast.Name:
            node.loom_run = _L.on_name
        elif kind in (ast.List, ast.Tuple):
            node.loom_run = _L.on_list
        elif kind is ast.BoolOp:
            node.loom_run = _L.on_boolop
            node.loom_and = type(node.op) is ast.And
        elif kind is ast.UnaryOp:
            if type(node.op) is ast.Not:
                node.loom_run = _L.on_not
            else:
                node.loom_run = _L.on_neg
                node.loom_negate = type(node.op) is ast.USub
        elif kind is ast.BinOp:
            node.loom_run = _L.on_binop
            node.loom_op, node.loom_symbol = _ARITHMETIC[type(node.op)]
        elif kind is ast.Compare:
            ops = [_COMPARE[type(op)] for op in node.ops]
            if len(ops) == 1:
                node.loom_op = ops[0]
                node.loom_right = right = node.comparators[0]
                if type(right) is ast.Constant:
                    node.loom_run = _L.on_compare_const
                    node.loom_value = right.value
                else:
                    node.loom_run = _L.on_compare1
            else:
                node.loom_run = _L.on_compare
                node.loom_ops = ops
        elif kind is ast.IfExp:
            node.loom_run = _L.on_ifexp
        elif kind is ast.Call:
            name = node.func.id
            node.loom_fn = FUNCTIONS[name]
            if name in FIELD_FUNCTIONS:
                node.loom_run = _L.on_field_call
                node.loom_field = node.args[0].id
                node.loom_stages = getattr(node, "loom_stages", None)
            elif len(node.args) == 1:
                node.loom_run = _L.on_call1
                node.loom_arg = node.args[0]
            elif len(node.args) == 2:
                node.loom_run = _L.on_call2
                node.loom_args = tuple(node.args)
            else:
                node.loom_run = _L.on_call
        elif isinstance(node, (ast.expr_context, ast.boolop, ast.operator, ast.unaryop, ast.cmpop)):
            continue
        else:
            raise ExpressionError(ExprError("forbidden_syntax", f"'{kind.__name__}' cannot be evaluated"))
    return tree.body


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
