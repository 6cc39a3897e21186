"""Fuzzing: random expression trees and random text never crash the host
and never run past the budget. "Past the budget" is measured in steps (a
deterministic count the evaluator keeps), not in wall time, so the test
cannot flake on a busy machine."""

from __future__ import annotations

from datetime import date
from decimal import Decimal as D

from hypothesis import given, settings, strategies as st

from loomcrm.metadata.expressions import ExpressionError
from loomcrm.metadata.expressions.functions import SIGNATURES
from loomcrm.runtime.expressions.adhoc import evaluate_with_vars
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
