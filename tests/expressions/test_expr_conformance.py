"""The conformance table of SPEC 4: expressions with their expected value or
error code, evaluated as `loom expr eval` would (names are variables)."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal as D

import pytest

from loomcrm.metadata.expressions import ExpressionError
from loomcrm.metadata.model import EXPRESSION_FUNCTIONS
from loomcrm.runtime.expressions.adhoc import evaluate_with_vars

from .helpers import ctx


class Err:
    def __init__(self, code: str):
        self.code = code

    def __repr__(self) -> str:
        return f"Err({self.code})"


V = {"amount": D("12000.50"), "n": 7, "zero": 0, "none": None, "name": "Acme Ltd", "blank": "   ",
     "empty": "", "d": date(2024, 1, 31), "leap": date(2024, 2, 29), "dt": datetime(2024, 6, 15, 22, 30, tzinfo=timezone.utc),
     "tags": ["vip", "gold"], "notags": [], "flag": True, "off": False, "stage": "negotiation", "cn": "商机 Ａ"}

TABLE = [
    # literals and arithmetic
    ("1", 1), ("3.5", D("3.5")), ("'text'", "text"), ("True", True), ("False", False), ("None", None),
    ("1 + 2", 3), ("0.1 + 0.2", D("0.3")), ("0.1 + 0.2 == 0.3", True), ("7 / 2", D("3.5")), ("6 / 3", D("2")),
    ("1 / 3", D("0.3333333333333333333333333333333333")), ("7 // 2", 3), ("-7 // 2", -4), ("7.5 // 2", D("3")),
    ("-7.5 // 2", D("-4")), ("7 % 3", 1), ("-7 % 3", 2), ("7.5 % 2", D("1.5")), ("2 * 3.25", D("6.50")),
    ("10 - 0.01", D("9.99")), ("-n", -7), ("+n", 7), ("-(n)", -7), ("amount * 2", D("24001.00")),
    ("amount + none", None), ("none * 2", None), ("-none", None), ("n / zero", Err("division_by_zero")),
    ("n // zero", Err("division_by_zero")), ("n % zero", Err("division_by_zero")), ("1.5 / 0.0", Err("division_by_zero")),
    ("name + 'x'", Err("type_mismatch")), ("name * 3", Err("type_mismatch")), ("d + 1", Err("type_mismatch")),
    ("2 ** 3", Err("forbidden_syntax")), ("1e3 + 0", D("1E+3")), ("1_000 + 1", 1001),
    # comparisons, None, chained
    ("amount > 10000", True), ("amount > 'abc'", Err("type_mismatch")), ("none > 1", False), ("none < 1", False),
    ("not (none < 1)", True), ("none == None", True), ("none != None", False), ("n == None", False), ("n != None", True),
    ("none == 0", False), ("1 < n < 10", True), ("1 < n < 5", False), ("10 > n > 1 > 0", True), ("1 < none < 10", False),
    ("n == 7.0", True), ("'a' < 'b'", True), ("'B' < 'a'", True), ("d < leap", True), ("d == date(2024, 1, 31)", True),
    ("d < dt", Err("type_mismatch")), ("flag == True", True), ("flag > off", Err("type_mismatch")),
    ("tags == tags", Err("type_mismatch")), ("stage in ('won', 'negotiation')", True), ("stage not in ('won', 'lost')", True),
    ("none in ('a', None)", True), ("none in ('a', 'b')", False), ("n in (1, 7)", True), ("n in [1, 2]", False),
    ("stage in tags", Err("forbidden_syntax")), ("stage is None", Err("forbidden_syntax")),
    # boolean logic, short-circuit
    ("flag and not off", True), ("flag or off", True), ("off or off", False), ("off and n / zero > 1", False),
    ("flag or n / zero > 1", True), ("flag and n / zero > 1", Err("division_by_zero")),
    ("none and flag", False), ("none or flag", True), ("not none", True), ("not flag", False),
    ("n and flag", Err("type_mismatch")), ("not name", Err("type_mismatch")), ("'a' if flag else 'b'", "a"),
    ("'a' if none else 'b'", "b"), ("1 if flag else n / zero", 1), ("n if off else 'x'", Err("type_mismatch")),
    ("None if flag else 3", None), ("n if 1 else 2", Err("type_mismatch")),
    # is_blank / coalesce
    ("is_blank(none)", True), ("is_blank(empty)", True), ("is_blank(blank)", True), ("is_blank('\u3000\\t')", True),
    ("is_blank(name)", False), ("is_blank(notags)", True), ("is_blank(tags)", False), ("is_blank(0)", False),
    ("is_blank(off)", False), ("is_blank(d)", False), ("coalesce(none, 5)", 5), ("coalesce(none, none)", None),
    ("coalesce(empty, 'x')", ""), ("coalesce(none, 'a', 'b')", "a"), ("coalesce(1, 'a')", Err("type_mismatch")),
    # text functions
    ("len(name)", 8), ("len(none)", 0), ("len(tags)", 2), ("len(cn)", 4), ("len(n)", Err("type_mismatch")),
    ("lower(name)", "acme ltd"), ("upper(name)", "ACME LTD"), ("upper('straße')", "STRASSE"), ("lower(none)", None),
    ("trim('  x  ')", "x"), ("trim(none)", None), ("contains(name, 'me')", True), ("contains(name, 'ME')", False),
    ("contains(none, 'a')", False), ("contains(name, none)", False), ("contains(name, '')", True),
    ("starts_with(name, 'Ac')", True), ("starts_with(name, 'ac')", False), ("ends_with(name, 'Ltd')", True),
    ("ends_with(none, 'x')", False), ("matches(name, 'me L')", True), ("matches(name, '^me')", False),
    ("matches(name, '^Acme.*d$')", True), ("matches(none, 'a')", False), ("matches(name, '(')", Err("invalid_regex")),
    ("matches(name, '(a)\\\\1')", Err("invalid_regex")), ("matches(cn, '^商机')", True),
    ("concat('a', 'b', 'c')", "abc"), ("concat('n=', n)", "n=7"), ("concat('x', none, 'y')", "xy"),
    ("concat(amount)", "12000.50"), ("concat(flag)", "true"), ("concat(d)", "2024-01-31"), ("concat(tags)", "vip, gold"),
    ("text(none)", ""), ("text(1.50)", "1.50"), ("text(n)", "7"), ("text(off)", "false"),
    ("text(dt)", "2024-06-15T22:30:00+00:00"), ("contains(n, 'a')", Err("type_mismatch")),
    # numbers
    ("number('42')", 42), ("number(' 3.5 ')", D("3.5")), ("number('-0.25')", D("-0.25")), ("number('abc')", Err("invalid_number")),
    ("number('1e5')", Err("invalid_number")), ("number('')", None), ("number(none)", None), ("number(n)", 7),
    ("number(flag)", Err("type_mismatch")), ("round(2.675, 2)", D("2.68")), ("round(-2.675, 2)", D("-2.68")),
    ("round(2.5, 0)", D("3")), ("round(-2.5, 0)", D("-3")), ("round(1234, -2)", 1200), ("round(1250, -2)", 1300),
    ("round(7, 2)", 7), ("round(none, 2)", None), ("round(1.25)", D("1")), ("round(1.5, 0.5)", Err("invalid_argument")),
    ("round(1.5, 99)", Err("invalid_argument")), ("abs(-3)", 3), ("abs(-2.5)", D("2.5")), ("abs(none)", None),
    ("min(3, 1, 2)", 1), ("max(3, 1.5, 2)", 3), ("min(none, 4)", 4), ("max(none, none)", None), ("min('b', 'a')", "a"),
    ("max(d, leap)", date(2024, 2, 29)), ("min(1, 'a')", Err("type_mismatch")),
    # dates, in UTC
    ("today()", date(2024, 6, 15)), ("now()", datetime(2024, 6, 15, 22, 30, tzinfo=timezone.utc)),
    ("date(2024, 2, 29)", date(2024, 2, 29)), ("date(2023, 2, 29)", Err("invalid_date")), ("date(2024, 13, 1)", Err("invalid_date")),
    ("date(none, 1, 1)", None), ("add_days(d, 1)", date(2024, 2, 1)), ("add_days(d, -31)", date(2023, 12, 31)),
    ("add_days(none, 1)", None), ("add_days(d, 1.5)", Err("invalid_argument")), ("add_days(d, 10000000)", Err("invalid_date")),
    ("add_days(dt, 1)", datetime(2024, 6, 16, 22, 30, tzinfo=timezone.utc)), ("add_months(d, 1)", date(2024, 2, 29)),
    ("add_months(date(2023, 1, 31), 1)", date(2023, 2, 28)), ("add_months(d, 12)", date(2025, 1, 31)),
    ("add_months(d, -2)", date(2023, 11, 30)), ("add_months(leap, 12)", date(2025, 2, 28)), ("add_months(none, 1)", None),
    ("days_between(d, leap)", 29), ("days_between(leap, d)", -29), ("days_between(d, none)", None),
    ("days_between(d, today())", 136), ("year(d)", 2024), ("month(d)", 1), ("day(d)", 31), ("weekday(d)", 3),
    ("weekday(date(2024, 6, 16))", 7), ("weekday(date(2024, 6, 17))", 1), ("year(none)", None), ("year(dt)", 2024),
    ("d >= today()", False), ("year(name)", Err("type_mismatch")),
    # multi-picklists and the context
    ("includes(tags, 'vip')", True), ("includes(tags, 'bronze')", False), ("includes(none, 'vip')", False),
    ("includes(notags, 'vip')", False), ("includes(name, 'x')", Err("type_mismatch")),
    ("is_new()", False), ("current_user()", None), ("has_role('admin')", False), ("approval_status()", None),
    # checking errors
    ("isblank(name)", Err("unknown_function")), ("is_blank(name, 1)", Err("arity")), ("today(1)", Err("arity")),
    ("concat()", Err("arity")), ("unknown_field > 1", Err("unknown_name")), ("amount >", Err("syntax")),
    ("name.upper()", Err("forbidden_syntax")), ("x" * 4001, Err("too_long")), ("abs(" * 60 + "1" + ")" * 60, Err("too_deep")),
    ("stage_probability(stage)", Err("not_a_field")), ("is_changed('amount')", Err("not_a_field")),
]


@pytest.mark.parametrize("source, expected", TABLE, ids=[s[:60] for s, _ in TABLE])
def test_conformance(source, expected):
    if isinstance(expected, Err):
        with pytest.raises(ExpressionError) as info:
            evaluate_with_vars(source, V, ctx())
        assert info.value.code == expected.code, info.value
        err = info.value.error
        assert err.line >= 1 and err.column >= 1 and err.message
        return
    result = evaluate_with_vars(source, V, ctx())
    assert result == expected
    assert type(result) is type(expected), (type(result), type(expected))


def test_table_is_large_and_covers_every_function():
    assert len(TABLE) >= 150
    text = " ".join(s for s, _ in TABLE)
    for name in EXPRESSION_FUNCTIONS:
        if name not in ("is_changed", "prior_value", "stage_probability", "stage_category"):  # see test_expr_record.py
            assert f"{name}(" in text, name


@pytest.mark.parametrize("source, expected", [
    ("today()", date(2024, 6, 16)),          # 22:30 UTC is already Sunday in Shanghai
    ("weekday(now())", 7),
    ("day(dt)", 16),
    ("add_months(dt, 1)", datetime(2024, 7, 16, 6, 30, tzinfo=timezone(timedelta(hours=8)))),
    ("days_between(dt, today())", 0),
])
def test_dates_follow_the_company_time_zone(source, expected):
    assert evaluate_with_vars(source, V, ctx(timezone="Asia/Shanghai")) == expected


def test_time_zone_comes_from_the_environment(monkeypatch):
    from loomcrm.runtime.expressions import EvalContext
    monkeypatch.setenv("LOOM_TIMEZONE", "Asia/Shanghai")
    from .helpers import CLOCK
    assert evaluate_with_vars("today()", {}, EvalContext(clock=CLOCK)) == date(2024, 6, 16)
    monkeypatch.delenv("LOOM_TIMEZONE")
    assert evaluate_with_vars("today()", {}, EvalContext(clock=CLOCK)) == date(2024, 6, 15)


def test_errors_carry_line_and_column():
    with pytest.raises(ExpressionError) as info:
        evaluate_with_vars("n > 1 and\n  (contains(name, 'a') and nme == 1)", V, ctx())
    assert info.value.code == "syntax" or info.value.error.line == 2
    with pytest.raises(ExpressionError) as info:
        evaluate_with_vars("(n > 1 and\n  nme == 1)", V, ctx())
    assert (info.value.code, info.value.error.line, info.value.error.column) == ("unknown_name", 2, 3)
    with pytest.raises(ExpressionError) as info:
        evaluate_with_vars("'商机' != name and n / zero > 1", V, ctx())
    assert (info.value.code, info.value.error.column) == ("division_by_zero", 18)
