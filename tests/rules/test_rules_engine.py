"""The rules of one save without a database, on the crm pack's objects."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timezone
from decimal import Decimal

import pytest

from loomcrm.metadata.model import ObjectDef
from loomcrm.runtime.expressions.context import EvalContext
from loomcrm.runtime.rules import SaveRun, plan_move, rules_for
from loomcrm.runtime.rules.compiled import build_rules

from crm import crm_objects

CLOCK = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
TODAY = date(2026, 3, 2)


@dataclass
class U:
    id: str = "u1"
    role: str = "user"
    locale: str = "en"


def blank(obj_name: str) -> dict:
    return {f.name: None for f in crm_objects()[obj_name].fields}


def ready_opportunity(**values) -> dict:
    """An opportunity that satisfies every criterion up to `contract`."""
    rec = blank("opportunity")
    rec.update(id="o1", name="ERP rollout", account="a1", contact="c1", decision_maker="c1",
               requirements="Replace the old ERP", budget=Decimal("50000"), amount=Decimal("48000"),
               payment_terms="installments", contract_signed_date=date(2026, 3, 1), close_date=date(2026, 6, 30))
    rec.update(values)
    return rec


ROWS = {("contact", "c1"): {"id": "c1", "account": "a1"}, ("contact", "c2"): {"id": "c2", "account": "a2"},
        ("account", "a1"): {"id": "a1", "industry": "manufacturing"}}


def fetch(obj, rid):
    return ROWS.get((obj, rid))


def run(record, old=None, *, user=None, locale="en", obj="opportunity", version="v-test", **kw):
    rs = rules_for(crm_objects(), obj, version)
    r = SaveRun(rs, record, old, user=user or U(locale=locale), locale=locale, clock=CLOCK, fetch=fetch, **kw)
    return r, r.run()


def keyed(errors):
    return {(e["field"], e["code"], e.get("rule"), e.get("stage")) for e in errors}


# --- formulas --------------------------------------------------------------------

def test_expected_revenue_is_amount_times_stage_probability():
    r, errors = run(ready_opportunity(stage="demo_quote"), ready_opportunity(stage="demo_quote"))
    assert errors == []
    assert r.record["expected_revenue"] == Decimal("19200.00") and r.record["probability"] == Decimal("40")


def test_formulas_run_in_dependency_order():
    obj = ObjectDef.model_validate({"name": "thing", "fields": [
        {"name": "c", "type": "formula", "expression": "b * 2", "returns": "integer"},
        {"name": "b", "type": "formula", "expression": "a + 1", "returns": "integer"},
        {"name": "a", "type": "integer"}]})
    rs = build_rules({"thing": obj}, "thing")
    assert [f.name for f, _ in rs.formulas] == ["b", "c"]
    rec = {"a": 4, "b": None, "c": None}
    assert SaveRun(rs, rec, None).run() == [] and rec == {"a": 4, "b": 5, "c": 10}


def test_formula_cycle_is_reported_not_looped():
    obj = ObjectDef.model_validate({"name": "thing", "fields": [
        {"name": "a", "type": "formula", "expression": "b + 1", "returns": "integer"},
        {"name": "b", "type": "formula", "expression": "a + 1", "returns": "integer"}]})
    errors = SaveRun(build_rules({"thing": obj}, "thing"), {"a": None, "b": None}, None).run()
    assert {e["code"] for e in errors} == {"expression"} and "formula cycle" in errors[0]["message"]


def test_formula_over_a_lookup_reads_the_parent():
    obj = ObjectDef.model_validate({"name": "deal", "fields": [
        {"name": "account", "type": "lookup", "to": "account"},
        {"name": "sector", "type": "formula", "expression": "upper(account.industry)", "returns": "text"}]})
    objects = {**crm_objects(), "deal": obj}
    rec = {"account": "a1", "sector": None}
    assert SaveRun(build_rules(objects, "deal"), rec, None, fetch=fetch).run() == []
    assert rec["sector"] == "MANUFACTURING"
    rec["account"] = "missing"
    SaveRun(build_rules(objects, "deal"), rec, None, fetch=fetch).run()
    assert rec["sector"] is None


def test_a_formula_that_fails_at_run_time_is_an_error():
    obj = ObjectDef.model_validate({"name": "thing", "fields": [
        {"name": "code", "type": "text"},
        {"name": "n", "type": "formula", "expression": "number(code)", "returns": "decimal"}]})
    errors = SaveRun(build_rules({"thing": obj}, "thing"), {"code": "abc", "n": None}, None).run()
    assert keyed(errors) == {("n", "expression", None, None)}


# --- defaults, required, conditional fields ---------------------------------------------

def test_default_expr_and_first_stage_on_create():
    rec = blank("order")
    rec.update(account="a1", status="draft", list_amount=Decimal("100"))
    r, errors = run(rec, obj="order")
    assert rec["order_date"] == TODAY and rec["total_amount"] == Decimal("100.00")
    opp = ready_opportunity(stage=None)
    run(opp)
    assert opp["stage"] == "initial_contact"


def test_required_if_and_visible_if():
    lead = blank("lead")
    lead.update(name="王芳", source="website", status="disqualified", phone="+8613800138000")
    _, errors = run(lead, obj="lead", locale="zh-CN")
    assert keyed(errors) == {("disqualify_reason", "required", "required_if", None)}
    assert errors[0]["message"] == "淘汰原因为必填项" or errors[0]["message"].endswith("为必填项")
    lead.update(status="new")
    assert run(lead, obj="lead")[1] == []


def test_a_field_hidden_by_visible_if_is_not_required():
    obj = ObjectDef.model_validate({"name": "thing", "fields": [
        {"name": "kind", "type": "text"},
        {"name": "detail", "type": "text", "required": True, "visible_if": "kind == 'other'"}]})
    rs = build_rules({"thing": obj}, "thing")
    assert SaveRun(rs, {"kind": "a", "detail": None}, None).run() == []
    assert keyed(SaveRun(rs, {"kind": "other", "detail": None}, None).run()) == {("detail", "required", None, None)}


def test_read_only_if_looks_at_the_stored_record():
    obj = ObjectDef.model_validate({"name": "thing", "fields": [
        {"name": "status", "type": "text"},
        {"name": "price", "type": "integer", "read_only_if": "status == 'locked'"}]})
    rs = build_rules({"thing": obj}, "thing")
    old = {"status": "locked", "price": 1}
    errors = SaveRun(rs, {"status": "locked", "price": 2}, old).run(changed=["price"])
    assert keyed(errors) == {("price", "read_only", "read_only_if", None)}
    # the stored record is locked, so unlocking and changing in one save is refused too
    assert keyed(SaveRun(rs, {"status": "open", "price": 2}, old).run(changed=["status", "price"])) == {
        ("price", "read_only", "read_only_if", None)}
    assert SaveRun(rs, {"status": "locked", "price": 1}, {"status": "open", "price": 1}).run(changed=["status"]) == []


# --- validation rules ------------------------------------------------------------------

def test_validation_rule_with_localized_message():
    opp = ready_opportunity(stage="initial_contact", amount=Decimal("-5"))
    _, errors = run(opp, locale="zh-CN")
    assert ("amount", "rule", "amount_not_negative", None) in keyed(errors)
    assert next(e for e in errors if e["rule"] == "amount_not_negative")["message"] == "金额不能为负数"


def test_is_changed_rule_is_not_tripped_by_an_unrelated_update():
    stored = ready_opportunity(stage="needs_analysis", close_date=date(2025, 1, 1))  # already in the past
    update = dict(stored, next_step="Call back")
    _, errors = run(update, stored)
    assert errors == []
    _, errors = run(dict(stored, close_date=date(2025, 2, 1)), stored)
    assert keyed(errors) == {("close_date", "rule", "close_date_not_past", None)}


def test_rule_reading_a_lookup_path():
    _, errors = run(ready_opportunity(stage="initial_contact", decision_maker="c2"))
    assert keyed(errors) == {("decision_maker", "rule", "decision_maker_at_account", None)}


def test_a_rule_reading_the_approval_status():
    order = blank("order")
    order.update(account="a1", status="draft", list_amount=Decimal("100"), discount=Decimal("30"), order_date=TODAY)
    stored = dict(order, id="o1")
    _, errors = run(dict(stored, status="approved"), stored, obj="order")
    assert ("status", "rule", "discount_limit", None) in keyed(errors)
    for status, refused in (("approved", False), ("pending", True), ("rejected", True)):
        context = EvalContext(prior=stored, roles=frozenset({"user"}), clock=CLOCK, approval=status)
        _, errors = run(dict(stored, status="approved"), stored, obj="order", context=context)
        assert (("status", "rule", "discount_limit", None) in keyed(errors)) is refused, status


def test_skipping_validation_rules():
    _, errors = run(ready_opportunity(stage="initial_contact", amount=Decimal("-5")), skip={"validation"})
    assert errors == []


# --- stages ---------------------------------------------------------------------------

def test_forward_jump_over_two_stages_fails_on_the_skipped_stages_criteria():
    stored = ready_opportunity(stage="initial_contact", budget=None, decision_maker=None, amount=None)
    _, errors = run(dict(stored, stage="negotiation"), stored)
    assert keyed(errors) == {
        ("budget", "required", "required_fields[0]", "needs_analysis"),
        ("budget", "stage_criteria", "budget_positive", "needs_analysis"),
        ("amount", "required", "required_fields[0]", "demo_quote"),
        ("decision_maker", "required", "required_fields[1]", "demo_quote"),
        ("amount", "stage_criteria", "amount_positive", "demo_quote"),
    }


def test_negotiation_needs_an_amount_and_a_decision_maker():
    stored = ready_opportunity(stage="demo_quote", amount=None, decision_maker=None)
    _, errors = run(dict(stored, stage="negotiation"), stored, locale="zh-CN")
    assert {(e["field"], e["stage"]) for e in errors} == {("amount", "demo_quote"), ("decision_maker", "demo_quote")}
    assert "进入商务谈判前请填写报价金额" in {e["message"] for e in errors}
    _, errors = run(dict(stored, stage="negotiation", amount=Decimal("1"), decision_maker="c1"), stored)
    assert errors == []


def test_lost_checks_only_its_entry_criteria():
    stored = ready_opportunity(stage="initial_contact", requirements=None, contact=None)
    _, errors = run(dict(stored, stage="lost"), stored)
    assert keyed(errors) == {("lost_reason", "stage_criteria", "lost_reason_given", "lost")}
    _, errors = run(dict(stored, stage="lost", lost_reason="other"), stored)
    assert keyed(errors) == {("lost_note", "stage_criteria", "other_reason_explained", "lost")}
    _, errors = run(dict(stored, stage="lost", lost_reason="price"), stored)
    assert errors == []


def test_backward_and_reopen():
    stored = ready_opportunity(stage="contract")
    assert run(dict(stored, stage="needs_analysis"), stored)[1] == []
    won = ready_opportunity(stage="won")
    assert run(dict(won, stage="demo_quote"), won)[1] == []
    objects = dict(crm_objects())
    opp = objects["opportunity"]
    fields = [f.model_copy(update={"allow_backward": False}) if f.name == "stage" else f for f in opp.fields]
    objects["opportunity"] = opp.model_copy(update={"fields": fields})
    rs = build_rules(objects, "opportunity")
    errors = SaveRun(rs, dict(stored, stage="needs_analysis"), stored, clock=CLOCK, fetch=fetch).run()
    assert keyed(errors) == {("stage", "stage_backward", None, "contract")}
    errors = SaveRun(rs, dict(won, stage="contract"), won, clock=CLOCK, fetch=fetch).run()
    assert keyed(errors) == {("stage", "stage_backward", None, "won")}


def test_create_in_a_later_stage_checks_the_first_stage_too():
    _, errors = run(ready_opportunity(stage="needs_analysis", requirements=None))
    assert keyed(errors) == {("requirements", "stage_criteria", "need_described", "initial_contact")}


def test_won_entry_criterion_and_unchanged_stage():
    stored = ready_opportunity(stage="contract", amount=Decimal("0"))
    _, errors = run(dict(stored, stage="won"), stored)
    assert ("amount", "stage_criteria", "won_has_amount", "won") in keyed(errors)
    # criteria apply to moves only: editing a record that stays in its stage checks none
    assert run(dict(stored, next_step="x"), stored)[1] == []


def test_plan_move_table():
    stage = crm_objects()["opportunity"].field("stage")
    plan = plan_move(stage, "initial_contact", "demo_quote", is_new=False)
    assert [s.value for s in plan.exit] == ["initial_contact", "needs_analysis"] and plan.entry.value == "demo_quote"
    plan = plan_move(stage, "won", "lost", is_new=False)
    assert plan.exit == [] and plan.entry.value == "lost"
    assert plan_move(stage, "demo_quote", "demo_quote", is_new=False) is None
    plan = plan_move(stage, None, "initial_contact", is_new=True)
    assert plan.exit == [] and plan.entry.value == "initial_contact"


def test_all_problems_of_a_save_come_together():
    stored = ready_opportunity(stage="initial_contact", budget=None)
    _, errors = run(dict(stored, stage="needs_analysis", name=None, amount=Decimal("-1"), requirements=None), stored)
    codes = {(e["field"], e["code"]) for e in errors}
    assert {("name", "required"), ("amount", "rule"), ("requirements", "stage_criteria")} <= codes


def test_rules_compile_once_per_version():
    assert rules_for(crm_objects(), "opportunity", "v-test") is rules_for(crm_objects(), "opportunity", "v-test")


# --- formulas and rules run as one generated function each -----------------------------

PROGRAMMED = ObjectDef.model_validate({"name": "thing", "fields": [
    {"name": "a", "type": "integer"},
    {"name": "code", "type": "text"},
    {"name": "big", "type": "boolean"},
    {"name": "ratio", "type": "formula", "expression": "round(100 / a, 2)", "returns": "decimal", "scale": 2},
    {"name": "parsed", "type": "formula", "expression": "number(code)", "returns": "decimal"},
    {"name": "flag", "type": "formula", "expression": "a if big else 'x'", "returns": "integer"},
    {"name": "total", "type": "formula", "expression": "coalesce(ratio, 0) + coalesce(parsed, 0)", "returns": "decimal",
     "scale": 2}],
    "validation_rules": [
        {"name": "positive", "check": "a > 0", "message": "positive"},
        {"name": "short", "check": "len(code) < 4", "when": "not is_blank(code)", "message": "short"},
        {"name": "divides", "check": "100 % a == 0", "when": "big", "message": "divides"},
        {"name": "parsed_small", "check": "number(code) < 50", "message": "parsed"},
        {"name": "deep", "check": "((((a + 1) + 1) + 1) + 1) > 0", "message": "deep"}]})


@pytest.mark.parametrize("record", [
    {"a": 4, "code": "12", "big": True}, {"a": 0, "code": "12", "big": True}, {"a": 3, "code": "abc", "big": False},
    {"a": None, "code": None, "big": None}, {"a": -7, "code": "99999", "big": True}, {"a": 5, "code": " 7 ", "big": True},
    {"a": 8, "code": "9" * 40, "big": False}])
@pytest.mark.parametrize("max_steps", [10_000, 3])
def test_the_generated_programs_give_what_one_by_one_evaluation_gives(record, max_steps):
    """Errors (division by zero, text that is no number, a number too large
    for its formula's column, a step budget) make a program hand the rest
    to one-by-one evaluation: the values and errors are the same as without it."""
    from loomcrm.runtime.expressions import EvalContext

    programmed = build_rules({"thing": PROGRAMMED}, "thing")
    plain = build_rules({"thing": PROGRAMMED}, "thing")
    plain.formulas_program = plain.rules_program = None
    assert programmed.formulas_program is not None and programmed.rules_program is not None
    outcomes = []
    for rs in (programmed, plain):
        rec = dict(record, ratio=None, parsed=None, flag=None, total=None)
        run = SaveRun(rs, rec, None, context=EvalContext(is_new=True, max_steps=max_steps, timezone="UTC"))
        outcomes.append((run.run(), repr(rec)))   # repr: the same decimals, to the same places
    assert outcomes[0] == outcomes[1]
