"""Fuzzing: random expression trees and random text never crash the host
and never run past the budget. "Past the budget" is measured in steps (a
deterministic count the evaluator keeps), not in wall time, so the test
cannot flake on a busy machine."""

from __future__ import annotations

from datetime import date
from decimal import Decimal as D

import pytest
from hypothesis import given, settings, strategies as st

from loomcrm.metadata.expressions import ExpressionError, Scope, analyze
from loomcrm.metadata.expressions.functions import SIGNATURES
from loomcrm.runtime.expressions.adhoc import _type_of, evaluate_with_vars
from loomcrm.runtime.expressions.compiled import Compiled
from loomcrm.runtime.expressions.interpreter import for_thread

from .helpers import ctx

VARS = {"a": 3, "b": D("2.5"), "s": "Acme", "t": "", "d": date(2024, 1, 31), "n": None, "f": True, "m": ["x"]}
MAX_STEPS = 50
PLAIN = (type(None), bool, int, D, str, date, list)

leaves = st.one_of(st.sampled_from(list(VARS) + ["None", "True", "0", "1", "-1", "0.5", "''", "'a'", "10**9", "'x'*9"]),
                   st.integers(-10 ** 6, 10 ** 6).map(str), st.text(max_size=5).map(repr))
OPS = ["+", "-", "*", "/", "//", "%", "==", "!=", "<", ">=", "and", "or", "in", "**", "<<", "if"]


def _combine(children):
    def build(draw_op, args):
        op, (x, y, z) = draw_op, args
        if op == "in":
            return f"({x} in ({y}, {z}))"
        if op == "if":
            return f"({x} if {y} else {z})"
        return f"({x} {op} {y})"
    calls = st.builds(lambda name, args: f"{name}({', '.join(args)})", st.sampled_from(sorted(SIGNATURES) + ["open", "getattr"]),
                      st.lists(children, max_size=3))
    return st.one_of(st.builds(build, st.sampled_from(OPS), st.tuples(children, children, children)),
                     st.builds(lambda x: f"not {x}", children), st.builds(lambda x: f"-{x}", children), calls)


trees = st.recursive(leaves, _combine, max_leaves=25)


def _run(source: str):
    try:
        result = evaluate_with_vars(source, VARS, ctx(max_steps=MAX_STEPS))
    except ExpressionError as exc:
        assert exc.errors and all(e.code and e.line >= 1 and e.column >= 1 for e in exc.errors)
        return
    assert isinstance(result, PLAIN)
    assert for_thread().steps <= 2 * MAX_STEPS


@settings(max_examples=400, deadline=None)
@given(trees)
def test_random_trees(source):
    _run(source)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=80))
def test_random_text(source):
    _run(source)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="abdfmnst_()[]{}.,:'\"+-*/%<>=!~&|^@ 019ifnotandorlambda", max_size=60))
def test_random_python_like_text(source):
    _run(source)


def _outcome(compiled, context):
    try:
        value = compiled.evaluate(VARS, context=context)
    except ExpressionError as exc:
        return "error", [(e.code, e.line, e.column) for e in exc.errors]
    return "value", type(value), repr(value)


# Well-typed trees (most random ones fail the checker): numbers, text and
# conditions over the same variables, with None, zero and huge values.
numbers = st.deferred(lambda: st.one_of(
    st.sampled_from(["a", "b", "n", "0", "1", "-3", "0.5", "10**60", "len(s)", "year(d)"]),
    st.builds("({} {} {})".format, numbers, st.sampled_from(["+", "-", "*", "/", "//", "%"]), numbers),
    st.builds("-{}".format, numbers),
    st.builds("round({}, {})".format, numbers, st.sampled_from(["0", "2", "-1", "a", "b"])),
    st.builds("coalesce({}, {})".format, numbers, numbers),
    st.builds("({} if {} else {})".format, numbers, conditions, numbers)))
texts = st.deferred(lambda: st.one_of(
    st.sampled_from(["s", "t", "n", "'Acme'", "' x '", "''"]),
    st.builds("concat({}, {})".format, texts, texts), st.builds("upper({})".format, texts),
    st.builds("trim({})".format, texts), st.builds("coalesce({}, {})".format, texts, texts)))
conditions = st.deferred(lambda: st.one_of(
    st.sampled_from(["f", "True", "False", "n"]),
    st.builds("({} {} {})".format, numbers, st.sampled_from(["==", "!=", "<", "<=", ">", ">="]), numbers),
    st.builds("({} < {} <= {})".format, numbers, numbers, numbers),
    st.builds("({} == {})".format, texts, texts), st.builds("({} in [{}, 'Acme'])".format, texts, texts),
    st.builds("({} {} {})".format, conditions, st.sampled_from(["and", "or"]), conditions),
    st.builds("(not {})".format, conditions), st.builds("is_blank({})".format, st.one_of(texts, numbers)),
    st.builds("contains({}, {})".format, texts, texts)))
typed_trees = st.one_of(numbers, texts, conditions)


@settings(max_examples=500, deadline=None)
@given(st.one_of(trees, typed_trees))
def test_the_fast_path_gives_what_the_closures_give(source):
    """The generated function (`straight`) agrees with the closures it
    stands in for: the same value, or the same error at the same place."""
    scope = Scope(objects={}, object_name="", extra_names={k: _type_of(v) for k, v in VARS.items()})
    try:
        fast, reference = Compiled(analyze(source, scope)), Compiled(analyze(source, scope))
    except ExpressionError:
        return
    reference._run.fast = None
    context = ctx(max_steps=MAX_STEPS)
    assert _outcome(fast, context) == _outcome(reference, context)


def test_typical_rules_take_the_fast_path():
    """...and it runs them to the end, without giving up to the closures."""
    scope = Scope(objects={}, object_name="", extra_names={"amount": "number", "stage": "text", "notes": "text"})
    record = {"amount": D("1234.50"), "stage": "won", "notes": " call back "}
    interp = for_thread()
    interp.bind(ctx())
    interp.record = record
    for source, expected in [("round(coalesce(amount, 0) * 95 / 100 - 1 + 2, 2)", D("1173.78")),
                             ("is_blank(amount) or amount > 0", True), ("stage == 'won' and len(trim(notes)) >= 2", True),
                             ("1 < amount <= 10", False), ("amount if amount > 0 else -amount", D("1234.50")),
                             ("(3 * 4 - 2) / 4", D("2.5"))]:
        fast = Compiled(analyze(source, scope))._run.fast
        interp.deadline = 1e18
        assert fast(interp, record.get) == expected, source


def test_a_long_flat_chain_takes_the_fast_path():
    scope = Scope(objects={}, object_name="", extra_names={"a": "number"})
    for op in ("or", "and"):
        source = f" {op} ".join(f"a > {i}" for i in range(300))
        compiled = Compiled(analyze(source, scope))
        assert compiled._run.fast is not None
        assert compiled.evaluate({"a": 150}, context=ctx()) is (op == "or")
        assert compiled.evaluate({"a": None}, context=ctx()) is False


@pytest.mark.parametrize("source", ["coalesce(a, 1)", "is_blank(s)", "round(b, 2)", "len(s) > 1", "a + 1 > 2"])
def test_a_spent_time_budget_stops_the_fast_path_as_it_stops_the_closures(source):
    scope = Scope(objects={}, object_name="", extra_names={k: _type_of(v) for k, v in VARS.items()})
    fast, reference = Compiled(analyze(source, scope)), Compiled(analyze(source, scope))
    reference._run.fast = None
    context = ctx(budget_ms=0)
    assert _outcome(fast, context) == _outcome(reference, context)
