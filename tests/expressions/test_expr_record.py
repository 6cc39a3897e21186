"""Expressions over records: fields, lookups, the change set, stages, the
checker's interface and the compile cache."""

from __future__ import annotations

from datetime import date
from decimal import Decimal as D

import pytest

from loomcrm.metadata.expressions import ExpressionError, Scope, check
from loomcrm.runtime.expressions import compile_expression
from loomcrm.runtime.expressions.compiled import clear_cache

from .crm import OBJECTS
from .helpers import ctx

SCOPE = Scope(OBJECTS, "opportunity", version="v1")
RECORD = {"id": "o1", "name": "Big deal", "amount": D("5000.00"), "stage": "negotiation", "account": "a1",
          "account.industry": "retail", "account.parent.name": "Holding", "close_date": date(2024, 7, 1),
          "tags": ["vip"], "regarding": None, "priority": 2}
PRIOR = dict(RECORD, amount=D("4000.00"), stage="qualification")


def run(source, record=RECORD, **kw):
    return compile_expression(source, SCOPE).evaluate(record, context=ctx(**kw))


@pytest.mark.parametrize("source, expected, kw", [
    ("is_new()", True, {"is_new": True}),
    ("is_changed(amount)", False, {"is_new": True}),
    ("prior_value(amount)", None, {"is_new": True}),
    ("is_changed(amount)", True, {"prior": PRIOR}),
    ("is_changed(name)", False, {"prior": PRIOR}),
    ("prior_value(amount)", D("4000.00"), {"prior": PRIOR}),
    ("prior_value(stage) == 'qualification' and stage == 'negotiation'", True, {"prior": PRIOR}),
    ("amount - prior_value(amount)", D("1000.00"), {"prior": PRIOR}),
    ("is_changed(amount)", False, {}),
    ("prior_value(amount)", D("5000.00"), {}),
    ("is_new() or is_changed(close_date)", False, {"prior": RECORD}),
    ("stage_probability(stage)", 60, {}),
    ("stage_category(stage)", "open", {}),
    ("account.industry == 'retail'", True, {}),
    ("account.parent.name", "Holding", {}),
    ("is_blank(regarding)", True, {}),
    ("current_user() == 'u1' and has_role('sales')", True, {"user_id": "u1", "roles": {"sales"}}),
    ("has_role('admin')", False, {"user_id": "u1", "roles": {"sales"}}),
    ("owner == current_user()", False, {"user_id": "u1"}),
    ("includes(tags, 'vip')", True, {}),
    ("weighted", None, {}),
])
def test_record_expressions(source, expected, kw):
    assert run(source, **kw) == expected


def test_stage_of_a_record_without_stage_is_none():
    assert run("stage_probability(stage)", {"stage": None}) is None


@pytest.mark.parametrize("source, expect, code", [
    ("amount > 'abc'", "boolean", "type_mismatch"),
    ("amount", "boolean", "type_mismatch"),
    ("concat(name, '!')", "currency", "type_mismatch"),
    ("amount * 2", "currency", None),
    ("priority / 2", "integer", None),
    ("add_days(close_date, 1)", "date", None),
    ("close_date", "datetime", "type_mismatch"),
    ("name", "email", None),
    ("tags", "multi_picklist", None),
    ("account.industri == 'x'", "boolean", "unknown_name"),
    ("name.industry == 'x'", "boolean", "unknown_name"),
    ("account.parent.parent.name", None, None),
    ("account.parent.parent.parent.name", None, "too_deep"),
    ("regarding == 'x'", "boolean", "type_mismatch"),
    ("stage_probability(name)", None, "not_a_field"),
    ("stage_probability(stage) > 50", "boolean", None),
    ("created_at < now() and version > 1 and owner != None", "boolean", None),
    ("isblank(name)", "boolean", "unknown_function"),
    ("weighted > 10", "boolean", None),
])
def test_checker_interface(source, expect, code):
    errors = check(source, SCOPE, expect=expect)
    assert [e.code for e in errors][:1] == ([code] if code else [])
    for e in errors:
        assert e.message and e.line >= 1 and e.column >= 1


def test_unknown_function_message_suggests():
    (error,) = check("isblank(name)", SCOPE, expect="boolean")
    assert error.message == "unknown function 'isblank' (did you mean 'is_blank'?)"
    assert (error.line, error.column) == (1, 1)


def test_compiled_expressions_are_cached_per_version():
    clear_cache()
    a = compile_expression("amount > 1", SCOPE, "boolean")
    assert compile_expression("amount > 1", SCOPE, "boolean") is a
    assert compile_expression("amount > 1", Scope(OBJECTS, "opportunity", version="v2"), "boolean") is not a
    assert compile_expression("amount > 1", Scope(OBJECTS, "opportunity"), "boolean") is not a  # no version: no cache


def test_compile_errors_list_every_problem():
    with pytest.raises(ExpressionError) as info:
        compile_expression("nam == 1 or foo(1) or amount > 'x'", SCOPE, "boolean")
    assert [e.code for e in info.value.errors] == ["unknown_name", "unknown_function", "type_mismatch"]


def test_values_of_other_types_are_refused_or_made_plain():
    class Evil(str):
        def strip(self):
            raise AssertionError("reached")

    assert run("is_blank(name)", dict(RECORD, name=Evil("x"))) is False
    assert run("amount > 1", dict(RECORD, amount=1.5)) is True
    with pytest.raises(ExpressionError) as info:
        run("is_blank(name)", dict(RECORD, name=object()))
    assert info.value.code == "invalid_value"
    with pytest.raises(ExpressionError) as info:
        run("len(name)", dict(RECORD, name="x" * 100_001))
    assert info.value.code == "value_too_large"
    with pytest.raises(ExpressionError) as info:
        run("len(tags)", dict(RECORD, tags=["vip"] * 10_001))
    assert info.value.code == "value_too_large"
