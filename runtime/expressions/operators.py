"""The operators of the expression language with SPEC 4 semantics (None
in arithmetic, two-valued comparisons, exact bounded decimals), shared by
the evaluator's closures and its fast path."""

from __future__ import annotations

import ast
from decimal import ROUND_FLOOR, Decimal

from .values import DECIMALS, MAX_DECIMAL, MAX_NUMBER, EvalFailure


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


ARITHMETIC = {ast.Add: (_add, "+"), ast.Sub: (_sub, "-"), ast.Mult: (_mul, "*"), ast.Div: (_div, "/"),
               ast.FloorDiv: (_floordiv, "//"), ast.Mod: (_mod, "%")}

# A comparison with None is false, except == / != (SPEC 4).
COMPARE = {
    ast.Eq: lambda a, b: a == b,
    ast.NotEq: lambda a, b: a != b,
    ast.Lt: lambda a, b: a is not None and b is not None and a < b,
    ast.LtE: lambda a, b: a is not None and b is not None and a <= b,
    ast.Gt: lambda a, b: a is not None and b is not None and a > b,
    ast.GtE: lambda a, b: a is not None and b is not None and a >= b,
    ast.In: lambda a, items: a in items,
    ast.NotIn: lambda a, items: a not in items,
}
