"""The fast path of the evaluator: a checked tree as one Python function of
straight-line code, so that running an expression is one call instead of
one closure call per node (`interpreter.prepare`).

The closures stay the reference. The generated function runs only where
it must give what they give: when the expression has no more composite
nodes than the step budget (so it cannot run out of steps), and it gives
up (`Fallback`, or any exception) wherever the closures would report an
error, and when the time budget has run out after a library call (the
closures check it there too); `LoomInterpreter.run_bound` then runs the
closures, which report the error at its node.

Nothing the expression's author wrote becomes source text: field names,
literals, functions and operators are taken from a table (`K0`, `K1`,
...), and the source is made only of generated names and Python
operators. Node kinds the closures do not run are refused by `_build`
first; a tree too deep for Python's compiler gets no fast path.
"""

from __future__ import annotations

import ast
from decimal import Decimal
from time import perf_counter
from typing import Any, Callable

from .library import FIELD_FUNCTIONS, FUNCTIONS, ROUNDING
from .operators import ARITHMETIC
from .values import DECIMALS, MAX_DECIMAL, MAX_NUMBER, NUMBER_TYPES, PLAIN, admit_read

Fast = Callable[[Any, Callable[[str], Any]], Any]


class Fallback(Exception):
    """The closures must run: they report the error at its node."""


def _fail():
    raise Fallback


_DEEPEST = 90   # indentation levels (Python's limit is 100)
# + - * and / written out: (the operator on two whole numbers, the exact
# decimal operation); see operators.py
_ARITHMETIC = {ast.Add: ("+", "DECIMALS.add"), ast.Sub: ("-", "DECIMALS.subtract"),
               ast.Mult: ("*", "DECIMALS.multiply"), ast.Div: (None, "DECIMALS.divide")}

_CMP = {ast.Eq: "{a} == {b}", ast.NotEq: "{a} != {b}", ast.In: "{a} in {b}", ast.NotIn: "{a} not in {b}",
        ast.Lt: "{a} is not None and {b} is not None and {a} < {b}",
        ast.LtE: "{a} is not None and {b} is not None and {a} <= {b}",
        ast.Gt: "{a} is not None and {b} is not None and {a} > {b}",
        ast.GtE: "{a} is not None and {b} is not None and {a} >= {b}"}


class _Writer:
    def __init__(self):
        self.lines: list[str] = []
        self.names: dict[str, Any] = {}
        self.temps = 0
        self.size = 0    # composite nodes: the most steps the closures could count

    def ref(self, value: Any) -> str:
        name = f"K{len(self.names)}"
        self.names[name] = value
        return name

    def temp(self) -> str:
        self.temps += 1
        return f"v{self.temps}"

    def put(self, indent: int, line: str) -> None:
        if indent > _DEEPEST:
            raise Fallback   # deeper than Python's compiler takes
        self.lines.append("    " * indent + line)

    def fail(self, indent: int) -> None:
        self.put(indent, "else:")
        self.put(indent + 1, "fail()")

    # Each node writes the statements that compute it at `indent` and
    # answers the name holding its value.
    def node(self, node, indent: int) -> str:
        kind = type(node)
        if kind is ast.Constant:
            return self.ref(node.value)
        if kind is ast.Name:
            v = self.temp()
            self.put(indent, f"{v} = get({self.ref(node.id)})")
            self.put(indent, f"if type({v}) not in PLAIN: {v} = admit_read({v}, ev.tz)")
            return v
        if kind in (ast.List, ast.Tuple):
            items = [self.node(e, indent) for e in node.elts]
            v = self.temp()
            self.put(indent, f"{v} = [{', '.join(items)}]")
            return v
        self.size += 1
        v = self.temp()
        if kind is ast.BoolOp:
            self.boolop(node.values, type(node.op) is ast.And, v, indent)
        elif kind is ast.UnaryOp:
            a = self.node(node.operand, indent)
            if type(node.op) is ast.Not:
                self.put(indent, f"if {a} is None or {a} is False: {v} = True")
                self.put(indent, f"elif {a} is True: {v} = False")
            else:
                self.put(indent, f"if {a} is None: {v} = None")
                self.put(indent, f"elif type({a}) in NUMBERS: {v} = {'-' if type(node.op) is ast.USub else ''}{a}")
            self.fail(indent)
        elif kind is ast.BinOp:
            a, b = self.node(node.left, indent), self.node(node.right, indent)
            self.put(indent, f"if {a} is None or {b} is None: {v} = None")
            written = _ARITHMETIC.get(type(node.op))
            if written is None:   # // and %: the operators' own functions
                op = self.ref(ARITHMETIC[type(node.op)][0])
                self.put(indent, f"elif type({a}) in NUMBERS and type({b}) in NUMBERS: {v} = {op}({a}, {b})")
                self.fail(indent)
            else:   # as operators._add & co. do: whole numbers stay whole, the rest exact decimals, bounded
                symbol, decimal = written
                if symbol is not None:
                    self.put(indent, f"elif type({a}) is int and type({b}) is int: {v} = {a} {symbol} {b}")
                nonzero = f" and {b}" if symbol is None else ""   # x / 0: the closures report it
                self.put(indent, f"elif type({a}) in NUMBERS and type({b}) in NUMBERS{nonzero}: {v} = {decimal}({a}, {b})")
                self.fail(indent)
                self.put(indent, f"if {v} is not None and not (-HIGH < {v} < HIGH if type({v}) is int "
                                 f"else LOW < {v} < TOP): fail()")
        elif kind is ast.Compare:
            self.compare(node, v, indent)
        elif kind is ast.IfExp:
            t = self.node(node.test, indent)
            self.put(indent, f"if {t} is True:")
            self.put(indent + 1, f"{v} = {self.node(node.body, indent + 1)}")
            self.put(indent, f"elif {t} is False or {t} is None:")
            self.put(indent + 1, f"{v} = {self.node(node.orelse, indent + 1)}")
            self.fail(indent)
        elif kind is ast.Call:
            name = node.func.id
            fn = self.ref(FUNCTIONS[name])
            if name in FIELD_FUNCTIONS:
                stages = getattr(node, "loom_stages", None)
                args = [self.ref(node.args[0].id)] + ([] if stages is None else [self.ref(stages)])
            else:
                args = [self.node(a, indent) for a in node.args]
            if not self.inline(name, fn, node, args, v, indent):
                self.put(indent, f"{v} = {fn}(ev{''.join(', ' + a for a in args)})")
            if name not in FIELD_FUNCTIONS:   # as the closures do: the time budget after each call
                self.put(indent, "if ticks() > ev.deadline: fail()")
        else:
            raise Fallback
        return v

    def inline(self, name: str, fn: str, node, args: list[str], v: str, indent: int) -> bool:
        """The commonest calls written out for their common cases (the
        arguments are already evaluated, as for any call); the library
        function `fn` answers every other case."""
        if name == "coalesce" and len(args) == 2:
            a, b = args
            self.put(indent, f"{v} = {a} if {a} is not None else {b}")
        elif name == "is_blank" and len(args) == 1:
            (a,) = args
            self.put(indent, f"if {a} is None: {v} = True")
            self.put(indent, f"elif type({a}) in PLAIN: {v} = False")
            self.put(indent, f"else: {v} = {fn}(ev, {a})")
        elif (name == "round" and len(args) == 2 and type(node.args[1]) is ast.Constant
              and type(node.args[1].value) is int and 0 < node.args[1].value <= 30):
            # a Decimal to a fixed number of places: the quantize round() makes
            a, digits = args
            quantum = self.ref(Decimal(1).scaleb(-node.args[1].value))
            self.put(indent, f"if type({a}) is Decimal: {v} = quantize({a}, {quantum})")
            self.put(indent, f"else: {v} = {fn}(ev, {a}, {digits})")
        else:
            return False
        return True

    def boolop(self, values: list, is_and: bool, v: str, indent: int) -> None:
        # SPEC semantics: True or False; None counts as false; else an error.
        # Each operand runs while the answer is still open (`v` keeps its
        # first value), at one indentation however many there are.
        going = "True" if is_and else "False"
        self.put(indent, f"{v} = {going}")
        for i, operand in enumerate(values):
            inner = indent if i == 0 else indent + 1
            if i:
                self.put(indent, f"if {v} is {going}:")
            a = self.node(operand, inner)
            if is_and:
                self.put(inner, f"if {a} is False or {a} is None: {v} = False")
                self.put(inner, f"elif {a} is not True: fail()")
            else:
                self.put(inner, f"if {a} is True: {v} = True")
                self.put(inner, f"elif {a} is not False and {a} is not None: fail()")

    def compare(self, node, v: str, indent: int) -> None:
        # Operands are evaluated lazily and once, as in Python; a TypeError
        # (values that cannot be compared) gives up to the closures.
        a = self.node(node.left, indent)
        self.put(indent, f"{v} = True")
        for i, (op, right) in enumerate(zip(node.ops, node.comparators)):
            inner = indent if i == 0 else indent + 1
            if i:
                self.put(indent, f"if {v} is True:")
            b = self.node(right, inner)
            self.put(inner, f"if not ({_CMP[type(op)].format(a=a, b=b)}): {v} = False")
            a = b


# A tree the writer cannot write out (or that is too deep for it): no fast path
_NO_FAST_PATH = (Fallback, KeyError, AttributeError, IndexError, RecursionError)


def straight(tree: ast.Expression) -> tuple[Fast | None, int]:
    """(the function, its most steps) for a checked `tree`; the function
    is None where there is no fast path."""
    writer = _Writer()
    try:
        result = writer.node(tree.body, 1)
    except _NO_FAST_PATH:
        return None, writer.size
    return _function(writer, f"    return {result}"), writer.size


GAVE_UP = object()   # a rule the program could not decide: it runs alone


def straight_rules(rules: list[tuple[ast.Expression | None, ast.Expression]]) -> Fast | None:
    """One function deciding validation rules, each a (`when` or None,
    `check`) pair of checked trees: it answers a list with, per rule, True
    (holds), False (broken), None (`when` did not hold) or GAVE_UP (the
    closures must run it, alone: an error, a budget, no fast path). Each
    expression gets its own "now" and time budget, as each evaluation does."""
    writer = _Writer()
    for when, check in rules:
        mark = len(writer.lines)
        try:
            writer.put(1, "try:")
            steps, indent = 0, 2
            if when is not None:
                writer.put(2, "ev._now = clock; ev.deadline = ticks() + budget")
                writer.size = 0
                w = writer.node(when.body, 2)
                steps = writer.size
                writer.put(2, f"if {w} is not True: out(None)")
                writer.put(2, "else:")
                indent = 3
            writer.put(indent, "ev._now = clock; ev.deadline = ticks() + budget")
            writer.size = 0
            c = writer.node(check.body, indent)
            writer.put(indent, f"out({c} is True)")
            writer.put(1, "except Exception: out(GAVE_UP)")
            # more composite nodes than steps allowed: the closures count them
            writer.lines.insert(mark + 1, f"        if ev.max_steps < {max(steps, writer.size)}: fail()")
        except _NO_FAST_PATH:
            del writer.lines[mark:]
            writer.put(1, "out(GAVE_UP)")
    head = ["    clock, budget = ev.clock, ev.budget", "    outcomes = []", "    out = outcomes.append"]
    writer.lines[:0] = head
    return _function(writer, "    return outcomes")


def straight_formulas(formulas: list[tuple[ast.Expression, str, Callable[[Any], Any]]]) -> Fast | None:
    """One function computing formulas, each a (checked tree, field name,
    `store`) triple, in order: it sets `record[name] = store(value)` for
    each (formulas read the ones before them) and answers how many it
    did; it stops at the first it cannot do (an error, a budget, no fast
    path, `store` refusing the value), which the closures then run."""
    writer = _Writer()
    writer.put(1, "try:")
    for tree, name, store in formulas:
        writer.size = 0
        mark = len(writer.lines)
        try:
            writer.put(2, "ev._now = clock; ev.deadline = ticks() + budget")
            v = writer.node(tree.body, 2)
        except _NO_FAST_PATH:
            del writer.lines[mark:]
            break
        writer.lines.insert(mark, f"        if ev.max_steps < {writer.size}: fail()")
        writer.put(2, f"record[{writer.ref(name)}] = {writer.ref(store)}({v})")
        writer.put(2, "done += 1")
    if len(writer.lines) == 1:
        return None   # not even the first formula
    writer.put(1, "except Exception: pass")
    writer.lines[:0] = ["    clock, budget = ev.clock, ev.budget", "    done = 0"]
    return _function(writer, "    return done", "def run(ev, get, record):")


def _function(writer: _Writer, last: str, head: str = "def run(ev, get):") -> Fast | None:
    source = "\n".join([head, *writer.lines, last])
    scope = {"__builtins__": {}, "type": type, "int": int, "Exception": Exception, "PLAIN": PLAIN, "NUMBERS": NUMBER_TYPES,
             "DECIMALS": DECIMALS, "HIGH": MAX_NUMBER, "LOW": -MAX_DECIMAL, "TOP": MAX_DECIMAL,
             "Decimal": Decimal, "quantize": ROUNDING.quantize, "ticks": perf_counter, "admit_read": admit_read, "fail": _fail,
             "GAVE_UP": GAVE_UP, **writer.names}
    try:
        exec(compile(source, "<expression>", "exec"), scope)
    except (SyntaxError, RecursionError, MemoryError, ValueError):   # too deep for Python's compiler after all
        return None
    run = scope["run"]
    run.source = source   # what it runs, for reading (and for the tests that check it)
    return run
