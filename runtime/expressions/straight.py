"""The fast path of the evaluator: a checked tree as one Python function of
straight-line code, so that running an expression is one call instead of
one closure call per node (`interpreter.prepare`).

The closures stay the reference. The generated function runs only where
it must give what they give: when the expression has no more composite
nodes than the step budget (so it cannot run out of steps), and it gives
up (`Fallback`, or any exception) wherever the closures would report an
error; `LoomInterpreter.run_bound` then runs the closures, which report
the error at its node. Its time budget is checked once, at the end.

Nothing the expression's author wrote becomes source text: field names,
literals, functions and operators are taken from a table (`K0`, `K1`,
...), and the source is made only of generated names and Python
operators. Node kinds the closures do not run are refused by `_build`
first; a tree too deep for Python's compiler gets no fast path.
"""

from __future__ import annotations

import ast
from decimal import Decimal
from typing import Any, Callable

from .library import FIELD_FUNCTIONS, FUNCTIONS, ROUNDING
from .operators import ARITHMETIC
from .values import MAX_TEXT, NUMBER_TYPES, PLAIN, admit

Fast = Callable[[Any, Callable[[str], Any]], Any]


class Fallback(Exception):
    """The closures must run: they report the error at its node."""


def _fail():
    raise Fallback


def _name(ev, value):
    # The record's value if it is not of a plain type (see interpreter._name)
    if type(value) is str and len(value) <= MAX_TEXT:
        return value
    return admit(value, ev.tz)


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
            self.put(indent, f"if type({v}) not in PLAIN: {v} = name(ev, {v})")
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
            op = self.ref(ARITHMETIC[type(node.op)][0])
            self.put(indent, f"if {a} is None or {b} is None: {v} = None")
            self.put(indent, f"elif type({a}) in NUMBERS and type({b}) in NUMBERS: {v} = {op}({a}, {b})")
            self.fail(indent)
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
            if not self.inline(name, node, args, v, indent):
                self.put(indent, f"{v} = {fn}(ev{''.join(', ' + a for a in args)})")
        else:
            raise Fallback
        return v

    def inline(self, name: str, node, args: list[str], v: str, indent: int) -> bool:
        """The commonest calls written out for their common cases (the
        arguments are already evaluated, as for any call); the library
        function answers every other case."""
        fn = self.ref(FUNCTIONS[name])
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
        # SPEC semantics: True or False; None counts as false; else an error
        a = self.node(values[0], indent)
        rest = values[1:]
        if is_and:
            self.put(indent, f"if {a} is True:")
            if rest:
                self.boolop(rest, is_and, v, indent + 1)
            else:
                self.put(indent + 1, f"{v} = True")
            self.put(indent, f"elif {a} is False or {a} is None: {v} = False")
        else:
            self.put(indent, f"if {a} is True: {v} = True")
            self.put(indent, f"elif {a} is False or {a} is None:")
            if rest:
                self.boolop(rest, is_and, v, indent + 1)
            else:
                self.put(indent + 1, f"{v} = False")
        self.fail(indent)

    def compare(self, node, v: str, indent: int) -> None:
        # Operands are evaluated lazily and once, as in Python; a TypeError
        # (values that cannot be compared) gives up to the closures.
        a = self.node(node.left, indent)
        self.put(indent, f"{v} = False")
        for op, right in zip(node.ops, node.comparators):
            b = self.node(right, indent)
            self.put(indent, f"if {_CMP[type(op)].format(a=a, b=b)}:")
            indent += 1
            a = b
        self.put(indent, f"{v} = True")


def straight(tree: ast.Expression) -> tuple[Fast | None, int]:
    """(the function, its most steps) for a checked `tree`; the function
    is None where there is no fast path."""
    writer = _Writer()
    try:
        result = writer.node(tree.body, 1)
    except (Fallback, KeyError, AttributeError, IndexError):
        return None, writer.size
    return _function(writer, f"    return {result}"), writer.size


GAVE_UP = object()   # a rule the program could not decide: it runs alone


def straight_rules(rules: list[tuple[ast.Expression | None, ast.Expression]]) -> Fast | None:
    """One function deciding validation rules, each a (`when` or None,
    `check`) pair of checked trees: it answers a list with, per rule, True
    (holds), False (broken), None (`when` did not hold) or GAVE_UP (the
    closures must run it, alone: an error, a budget, no fast path). Each
    rule gets its own "now", as each evaluation does."""
    writer = _Writer()
    for when, check in rules:
        try:
            mark = len(writer.lines)
            writer.put(1, "try:")
            writer.put(2, "ev._now = clock")
            steps, indent = 0, 2
            if when is not None:
                writer.size = 0
                w = writer.node(when.body, 2)
                steps = writer.size
                writer.put(2, f"if {w} is not True: out(None)")
                writer.put(2, "else:")
                writer.put(3, "ev._now = clock")
                indent = 3
            writer.size = 0
            c = writer.node(check.body, indent)
            writer.put(indent, f"out({c} is True)")
            writer.put(1, "except Exception: out(GAVE_UP)")
            # more composite nodes than steps allowed: the closures count them
            writer.lines.insert(mark + 1, f"        if ev.max_steps < {max(steps, writer.size)}: fail()")
        except (Fallback, KeyError, AttributeError, IndexError):
            del writer.lines[mark:]
            writer.put(1, "out(GAVE_UP)")
    head = ["    clock = ev.clock", "    outcomes = []", "    out = outcomes.append"]
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
            writer.put(2, "ev._now = clock")
            v = writer.node(tree.body, 2)
        except (Fallback, KeyError, AttributeError, IndexError):
            del writer.lines[mark:]
            break
        writer.lines.insert(mark, f"        if ev.max_steps < {writer.size}: fail()")
        writer.put(2, f"record[{writer.ref(name)}] = {writer.ref(store)}({v})")
        writer.put(2, "done += 1")
    writer.put(1, "except Exception: pass")
    writer.lines[:0] = ["    clock = ev.clock", "    done = 0"]
    return _function(writer, "    return done", "def run(ev, get, record):")


def _function(writer: _Writer, last: str, head: str = "def run(ev, get):") -> Fast | None:
    source = "\n".join([head, *writer.lines, last])
    scope = {"__builtins__": {}, "type": type, "Exception": Exception, "PLAIN": PLAIN, "NUMBERS": NUMBER_TYPES,
             "Decimal": Decimal, "quantize": ROUNDING.quantize, "name": _name, "fail": _fail, "GAVE_UP": GAVE_UP,
             **writer.names}
    try:
        exec(compile(source, "<expression>", "exec"), scope)
    except (SyntaxError, RecursionError, MemoryError, ValueError):   # nested too deep for Python's compiler
        return None
    run = scope["run"]
    run.source = source   # what it runs, for reading (and for the tests that check it)
    return run

