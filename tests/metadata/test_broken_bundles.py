"""The broken-bundle corpus: the valid base bundle with exactly one fault
each. Every case states the exact problems reported (file, JSON path, code)
and that `loom pack validate` exits 1 printing them."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conftest import BundleDir

import pytest
from typer.testing import CliRunner

from loomcrm.metadata.validate import validate_bundle
from loomcrm.platform.cli import app


BUNDLE, ACC, CON, OPP, TASK = "bundle.json", "objects/account.json", "objects/contact.json", "objects/opportunity.json", "objects/task.json"
BIG, WON, REMIND, DIGEST = ("workflows/big_deal_follow_up.json", "workflows/deal_won.json",
                            "workflows/close_reminder.json", "workflows/weekly_digest.json")
STAGE = 8  # index of the stage field in opportunity.json
PIPE, SALES = "reports/pipeline.json", "dashboards/sales.json"


def _walk(data: Any, path: list) -> tuple[Any, Any]:
    for step in path[:-1]:
        data = data[step]
    return data, path[-1]


def setp(rel: str, path: list, value: Any) -> Callable[[BundleDir], None]:
    def change(data: Any) -> None:
        parent, key = _walk(data, path)
        parent[key] = value
    return lambda b: b.edit(rel, change)


def delp(rel: str, path: list) -> Callable[[BundleDir], None]:
    def change(data: Any) -> None:
        parent, key = _walk(data, path)
        del parent[key]
    return lambda b: b.edit(rel, change)


def append(rel: str, path: list, value: Any) -> Callable[[BundleDir], None]:
    def change(data: Any) -> None:
        parent, key = _walk(data, path)
        parent[key].append(value)
    return lambda b: b.edit(rel, change)


def both(*changes: Callable[[BundleDir], None]) -> Callable[[BundleDir], None]:
    def run(b: BundleDir) -> None:
        for change in changes:
            change(b)
    return run


def write(rel: str, content: str | bytes) -> Callable[[BundleDir], None]:
    return lambda b: b.write(rel, content)


def replace_text(rel: str, old: str, new: str) -> Callable[[BundleDir], None]:
    def run(b: BundleDir) -> None:
        text = b.text(rel)
        assert old in text, old
        b.write(rel, text.replace(old, new, 1))
    return run


def copy_as(rel: str, new_rel: str, **changes: Any) -> Callable[[BundleDir], None]:
    def run(b: BundleDir) -> None:
        data = b.load(rel)
        data.update(changes)
        b.save(new_rel, data)
    return run


def sparse(rel: str, size: int) -> Callable[[BundleDir], None]:
    def run(b: BundleDir) -> None:
        with open(b.root / rel, "wb") as handle:
            handle.truncate(size)
    return run


@dataclass
class Case:
    id: str
    change: Callable[[BundleDir], None]
    expected: list[tuple[str, str, str]]
    message: str | None = None  # a part of the first problem's message
    kwargs: dict = field(default_factory=dict)


CASES = [
    # --- files ------------------------------------------------------------------------
    Case("missing_manifest", lambda b: b.remove(BUNDLE), [(BUNDLE, "", "missing_manifest")]),
    Case("unknown_format", setp(BUNDLE, ["format"], "loom/2"), [(BUNDLE, "format", "unknown_format")],
         "unknown bundle format 'loom/2'"),
    Case("invalid_json", replace_text(CON, '"first_name", "type": "text"}', '"first_name", "type": "text"},,'),
         [(CON, "", "invalid_json")], "(line 6, column"),
    Case("nan_is_not_json", replace_text(TASK, '"min": 0, "default": "1.5"', '"min": NaN, "default": "1.5"'),
         [(TASK, "", "invalid_json")], "NaN is not a JSON value (line 14, column 84)"),
    Case("duplicate_key", replace_text(TASK, '"subject", "type": "text", "required": true',
                                       '"subject", "type": "text", "required": true, "required": false'),
         [(TASK, "fields[0].required", "duplicate_key")]),
    Case("not_utf8", lambda b: b.write(WON, b.text(WON).replace("Deal won", "Deal w\u00f6n").encode("latin-1")),
         [(WON, "", "not_utf8")], "not UTF-8: byte 0xf6 at line 7, column 70 (byte offset 240)"),
    Case("too_large", sparse("objects/huge.json", 50 * 1024 * 1024), [("objects/huge.json", "", "too_large")]),
    Case("unexpected_top_level_file", write("notes.txt", "todo"), [("notes.txt", "", "unexpected_file")]),
    Case("not_json_in_objects", write("objects/lead.yaml", "name: lead"), [("objects/lead.yaml", "", "unexpected_file")]),
    Case("object_name_differs_from_file", setp(WON, ["name"], "deal_closed"), [(WON, "name", "name_mismatch")]),
    Case("data_for_unknown_object", write("data/lead.csv", "name\nAda\n"), [("data/lead.csv", "", "unknown_object")]),
    Case("data_unknown_column", write("data/account.csv", "name,industy\nAcme,tech\n"),
         [("data/account.csv", "header[1]", "unknown_field")], "did you mean 'industry'?"),
    Case("data_not_utf8", write("data/account.csv", "name\nM\u00fcller\n".encode("latin-1")),
         [("data/account.csv", "", "not_utf8")]),
    # --- JSON Schema --------------------------------------------------------------------
    Case("field_type_misspelt", setp(OPP, ["fields", 2, "type"], "curency"), [(OPP, "fields[2].type", "schema")],
         "'curency' is not one of ['text', 'long_text'"),
    Case("unknown_key", setp(OPP, ["fields", 3, "colour"], "red"), [(OPP, "fields[3].colour", "unknown_key")]),
    Case("unknown_top_level_key", setp(WON, ["priority"], 1), [(WON, "priority", "unknown_key")]),
    Case("missing_key", delp(CON, ["fields", 4, "to"]), [(CON, "fields[4]", "missing_key")], "'to'"),
    Case("bad_name", setp(CON, ["fields", 2, "name"], "Email"), [(CON, "fields[2].name", "schema")],
         "is not a valid name"),
    Case("wrong_json_type", setp(TASK, ["fields", 0, "required"], "yes"), [(TASK, "fields[0].required", "schema")]),
    Case("unknown_stage_category", setp(OPP, ["fields", STAGE, "stages", 2, "category"], "closed"),
         [(OPP, "fields[8].stages[2].category", "schema")], "is not one of ['open', 'won', 'lost']"),
    Case("formula_returns_invalid", setp(OPP, ["fields", 11, "returns"], "money"), [(OPP, "fields[11].returns", "schema")]),
    Case("manifest_version", setp(BUNDLE, ["version"], "1.0"), [(BUNDLE, "version", "schema")]),
    Case("bad_locale", setp(ACC, ["label"], {"EN": "Account"}), [(ACC, "label.EN", "schema")], "locale"),
    Case("unknown_action_type", setp(WON, ["actions", 1, "type"], "sms"), [(WON, "actions[1].type", "schema")]),
    Case("empty_expression", setp(OPP, ["validation_rules", 0, "check"], ""),
         [(OPP, "validation_rules[0].check", "schema")]),
    Case("number_where_text_expected", setp(ACC, ["fields", 2, "options", 1, "label"], 7),
         [(ACC, "fields[2].options[1].label", "schema")], "7 is not a string or an object"),
    # --- names ----------------------------------------------------------------------------
    Case("duplicate_field", append(TASK, ["fields"], {"name": "subject", "type": "text"}),
         [(TASK, "fields[8].name", "duplicate_name")]),
    Case("duplicate_object", copy_as(TASK, "objects/todo.json"),
         [("objects/todo.json", "name", "name_mismatch"), ("objects/todo.json", "name", "duplicate_name")]),
    Case("duplicate_workflow", copy_as(WON, "workflows/deal_won_again.json"),
         [("workflows/deal_won_again.json", "name", "name_mismatch"),
          ("workflows/deal_won_again.json", "name", "duplicate_name")]),
    Case("duplicate_rule", append(OPP, ["validation_rules"], {"name": "close_date_not_past", "check": "True",
                                                             "message": "x"}),
         [(OPP, "validation_rules[1].name", "duplicate_name")]),
    Case("duplicate_duplicate_rule", append(ACC, ["duplicate_rules"], {"name": "same_name", "fields": ["code"]}),
         [(ACC, "duplicate_rules[1].name", "duplicate_name")]),
    Case("duplicate_uid", both(setp(TASK, ["fields", 0, "uid"], "f1"), setp(TASK, ["fields", 1, "uid"], "f1")),
         [(TASK, "fields[1].uid", "duplicate_uid")]),
    Case("reserved_system_field", append(TASK, ["fields"], {"name": "owner", "type": "user"}),
         [(TASK, "fields[8].name", "reserved_name")], "system field"),
    Case("reserved_function_name", append(TASK, ["fields"], {"name": "today", "type": "date"}),
         [(TASK, "fields[8].name", "reserved_name")], "function"),
    Case("reserved_keyword", append(TASK, ["fields"], {"name": "class", "type": "text"}),
         [(TASK, "fields[8].name", "reserved_name")], "reserved word"),
    Case("duplicate_stage_value", setp(OPP, ["fields", STAGE, "stages", 1, "value"], "qualification"),
         [(OPP, "fields[8].stages[1].value", "duplicate_value")]),
    Case("duplicate_option_value", setp(TASK, ["fields", 5, "options", 2, "value"], "low"),
         [(TASK, "fields[5].options[2].value", "duplicate_value")]),
    # --- references -------------------------------------------------------------------------
    Case("lookup_unknown_object", setp(CON, ["fields", 4, "to"], "acount"), [(CON, "fields[4].to", "unknown_object")],
         "did you mean 'account'?"),
    Case("related_to_unknown_object", setp(TASK, ["fields", 3, "to", 1], "person"),
         [(TASK, "fields[3].to[1]", "unknown_object")]),
    Case("title_field_unknown", setp(TASK, ["title_field"], "title"), [(TASK, "title_field", "unknown_field")]),
    Case("form_field_unknown", setp(OPP, ["layouts", "form", 1, "fields", 0], "budgt"),
         [(OPP, "layouts.form[1].fields[0]", "unknown_field")], "did you mean 'budget'?"),
    Case("list_column_unknown", setp(CON, ["layouts", "list", "columns", 1], "mail"),
         [(CON, "layouts.list.columns[1]", "unknown_field")]),
    Case("list_sort_unknown", setp(OPP, ["layouts", "list", "sort"], "-amount,closing"),
         [(OPP, "layouts.list.sort", "unknown_field")]),
    Case("kanban_group_by_not_stage", setp(OPP, ["layouts", "kanban", "group_by"], "amount"),
         [(OPP, "layouts.kanban.group_by", "wrong_field_type")]),
    Case("kanban_card_unknown", setp(OPP, ["layouts", "kanban", "card", 1], "value"),
         [(OPP, "layouts.kanban.card[1]", "unknown_field")]),
    Case("kanban_sum_not_number", setp(ACC, ["layouts", "kanban", "sum"], "website"),
         [(ACC, "layouts.kanban.sum", "wrong_field_type")]),
    Case("track_history_unknown", setp(OPP, ["track_history", 1], "amout"), [(OPP, "track_history[1]", "unknown_field")]),
    Case("index_field_unknown", setp(OPP, ["indexes", 0, 1], "closed"), [(OPP, "indexes[0][1]", "unknown_field")]),
    Case("duplicate_rule_field_unknown", setp(CON, ["duplicate_rules", 0, "fields", 0], "e_mail"),
         [(CON, "duplicate_rules[0].fields[0]", "unknown_field")]),
    Case("validation_rule_field_unknown", setp(OPP, ["validation_rules", 0, "field"], "closing"),
         [(OPP, "validation_rules[0].field", "unknown_field")]),
    Case("criterion_field_unknown", setp(OPP, ["fields", STAGE, "stages", 0, "exit_criteria", 0, "field"], "role"),
         [(OPP, "fields[8].stages[0].exit_criteria[0].field", "unknown_field")]),
    Case("required_fields_unknown", setp(OPP, ["fields", STAGE, "stages", 0, "required_fields", 0], "budgett"),
         [(OPP, "fields[8].stages[0].required_fields[0]", "unknown_field")]),
    Case("system_field_not_allowed", setp(OPP, ["title_field"], "created_by"), [(OPP, "title_field", "unknown_field")],
         "system field"),
    # --- rollups -------------------------------------------------------------------------------
    Case("rollup_unknown_object", setp(ACC, ["fields", 5, "from"], "deal"), [(ACC, "fields[5].from", "unknown_object")]),
    Case("rollup_via_unknown", setp(ACC, ["fields", 6, "via"], "acount"), [(ACC, "fields[6].via", "unknown_field")]),
    Case("rollup_via_not_lookup", setp(ACC, ["fields", 6, "via"], "name"), [(ACC, "fields[6].via", "bad_rollup")]),
    Case("rollup_via_other_object", append(CON, ["fields"], {"name": "deals", "type": "rollup", "from": "opportunity",
                                                            "via": "account", "function": "count"}),
         [(CON, "fields[10].via", "bad_rollup")], "looks up 'account', not 'contact'"),
    Case("rollup_field_unknown", setp(ACC, ["fields", 5, "field"], "amout"), [(ACC, "fields[5].field", "unknown_field")]),
    Case("rollup_sum_of_text", setp(ACC, ["fields", 5, "field"], "name"), [(ACC, "fields[5].field", "bad_rollup")]),
    Case("rollup_max_of_boolean", setp(ACC, ["fields", 7, "field"], "is_big"), [(ACC, "fields[7].field", "bad_rollup")]),
    Case("rollup_sum_without_field", delp(ACC, ["fields", 5, "field"]), [(ACC, "fields[5]", "bad_rollup")]),
    # --- fields ----------------------------------------------------------------------------------
    Case("first_stage_not_open", setp(OPP, ["fields", STAGE, "stages"], [{"value": "won", "category": "won"},
                                                                          {"value": "lost", "category": "lost"}]),
         [(OPP, "fields[8].stages[0].category", "bad_stages")]),
    Case("open_stage_after_won", lambda b: b.edit(OPP, lambda d: d["fields"][STAGE]["stages"].insert(
        1, d["fields"][STAGE]["stages"].pop(2))),
         [(OPP, "fields[8].stages[2].category", "bad_stages")], "open stage 'proposal' comes after the closed stage 'won'"),
    Case("picklist_default_not_an_option", setp(ACC, ["fields", 2, "default"], "media"),
         [(ACC, "fields[2].default", "bad_default")]),
    Case("multi_picklist_default_not_an_option", setp(CON, ["fields", 7, "default"], ["news", "sports"]),
         [(CON, "fields[7].default", "bad_default")]),
    Case("integer_default_wrong_type", setp(ACC, ["fields", 3, "default"], "ten"), [(ACC, "fields[3].default", "bad_default")]),
    Case("default_below_min", setp(ACC, ["fields", 3, "default"], -1), [(ACC, "fields[3].default", "bad_default")]),
    Case("decimal_default_too_precise", setp(TASK, ["fields", 7, "default"], "1.25"),
         [(TASK, "fields[7].default", "bad_default")], "scale"),
    Case("text_default_against_pattern", setp(ACC, ["fields", 1, "default"], "abc"),
         [(ACC, "fields[1].default", "bad_default")]),
    Case("min_above_max", setp(OPP, ["fields", 3, "min"], 200), [(OPP, "fields[3].max", "bad_range")]),
    Case("date_min_above_max", setp(CON, ["fields", 5, "max"], "1800-01-01"), [(CON, "fields[5].max", "bad_range")]),
    Case("bad_regex", setp(ACC, ["fields", 1, "pattern"], "([A-Z"), [(ACC, "fields[1].pattern", "bad_pattern")]),
    Case("default_and_default_expr", setp(OPP, ["fields", 4, "default"], "2030-01-01"),
         [(OPP, "fields[4].default_expr", "conflicting_keys")]),
    Case("required_lookup_set_null", setp(CON, ["fields", 4, "required"], True),
         [(CON, "fields[4].on_delete", "conflicting_keys")]),
    Case("computed_field_required", setp(OPP, ["fields", 11, "required"], True),
         [(OPP, "fields[11].required", "computed_field")]),
    Case("computed_field_default", setp(ACC, ["fields", 8, "default"], "ACC-1"),
         [(ACC, "fields[8].default", "computed_field")]),
    Case("scale_on_boolean_formula", setp(OPP, ["fields", 11, "scale"], 2), [(OPP, "fields[11].scale", "bad_formula")]),
    Case("formula_cycle", setp(OPP, ["fields", 9, "expression"], "expected_revenue * 2"),
         [(OPP, "fields[9].expression", "formula_cycle")], "formula cycle: net_amount -> expected_revenue -> net_amount"),
    Case("formula_cycle_across_objects", both(
        append(OPP, ["fields"], {"name": "pipeline_share", "type": "formula", "returns": "currency",
                                  "expression": "account.open_pipeline / 10"}),
        setp(ACC, ["fields", 5, "field"], "pipeline_share")),
         [(ACC, "fields[5].field", "formula_cycle")],
         "formula cycle: account.open_pipeline -> opportunity.pipeline_share -> account.open_pipeline"),
    # --- expressions --------------------------------------------------------------------------------
    Case("criterion_unknown_function", setp(OPP, ["fields", STAGE, "stages", 3, "entry_criteria", 0, "check"],
                                            "not isblank(lost_reason)"),
         [(OPP, "fields[8].stages[3].entry_criteria[0].check", "unknown_function")], "isblank"),
    Case("rule_syntax_error", setp(OPP, ["validation_rules", 0, "when"], "is_new() or"),
         [(OPP, "validation_rules[0].when", "syntax")]),
    Case("formula_returns_wrong_type", setp(OPP, ["fields", 11, "expression"], "concat(name, '!')"),
         [(OPP, "fields[11].expression", "type_mismatch")]),
    Case("rollup_filter_unknown_field", setp(ACC, ["fields", 5, "filter"], "amout > 0"),
         [(ACC, "fields[5].filter", "unknown_name")]),
    Case("multiline_expression_position", setp(CON, ["fields", 9, "visible_if"], "(not is_blank(email)\n and bogus)"),
         [(CON, "fields[9].visible_if", "unknown_name")], "(line 2, column 6)"),
    Case("workflow_condition_unknown_field", setp(BIG, ["condition"], "amont > 100000"),
         [(BIG, "condition", "unknown_name")]),
    Case("workflow_value_unknown_function", setp(BIG, ["actions", 1, "values", "due_date"], "tomorrow()"),
         [(BIG, "actions[1].values.due_date", "unknown_function")]),
    # --- workflows ------------------------------------------------------------------------------------
    Case("workflow_unknown_object", setp(WON, ["object"], "deal"), [(WON, "object", "unknown_object")]),
    Case("trigger_fields_unknown", setp(BIG, ["trigger", "fields", 0], "amout"), [(BIG, "trigger.fields[0]", "unknown_field")]),
    Case("stage_change_unknown_stage", setp(WON, ["trigger", "to", 0], "closed_won"),
         [(WON, "trigger.to[0]", "unknown_stage")]),
    Case("time_trigger_not_a_date", setp(REMIND, ["trigger", "field"], "amount"),
         [(REMIND, "trigger.field", "wrong_field_type")]),
    Case("time_trigger_without_offset", delp(REMIND, ["trigger", "offset"]), [(REMIND, "trigger", "bad_trigger")]),
    Case("schedule_without_cron", delp(DIGEST, ["trigger", "cron"]), [(DIGEST, "trigger", "bad_trigger")]),
    Case("cron_out_of_range", setp(DIGEST, ["trigger", "cron"], "61 8 * * 1"), [(DIGEST, "trigger.cron", "bad_cron")]),
    Case("trigger_key_of_other_kind", setp(WON, ["trigger", "cron"], "0 8 * * 1"), [(WON, "trigger.cron", "bad_trigger")]),
    Case("update_unknown_field", setp(WON, ["actions", 0, "values"], {"discont": "0"}),
         [(WON, "actions[0].values.discont", "unknown_field")]),
    Case("update_computed_field", setp(WON, ["actions", 0, "values"], {"is_big": "True"}),
         [(WON, "actions[0].values.is_big", "computed_field")]),
    Case("create_unknown_object", setp(BIG, ["actions", 1, "object"], "todo"), [(BIG, "actions[1].object", "unknown_object")]),
    Case("create_unknown_field", setp(BIG, ["actions", 1, "values", "notes"], "'x'"),
         [(BIG, "actions[1].values.notes", "unknown_field")]),
    Case("create_misses_required_field", delp(BIG, ["actions", 1, "values", "subject"]),
         [(BIG, "actions[1].values", "missing_value")]),
    Case("assign_by_field_without_field", delp(DIGEST, ["actions", 0, "field"]), [(DIGEST, "actions[0]", "bad_action")]),
    Case("assign_by_field_unknown_field", setp(DIGEST, ["actions", 0, "field"], "sector"),
         [(DIGEST, "actions[0].field", "unknown_field")]),
    # --- reports and dashboards ------------------------------------------------------------------------
    Case("report_unknown_object", setp(PIPE, ["object"], "opportunty"), [(PIPE, "object", "unknown_object")]),
    Case("report_group_unknown_field", setp(PIPE, ["group_by", 1], "account.sector"),
         [(PIPE, "group_by[1]", "unknown_field")]),
    Case("report_bucket_on_a_number", setp(PIPE, ["group_by", 2], {"field": "amount", "by": "month"}),
         [(PIPE, "group_by[2]", "type")]),
    Case("report_sum_of_text", setp(PIPE, ["measures", 1, "field"], "name"), [(PIPE, "measures[1].field", "type")]),
    Case("report_filter_unknown_name", setp(PIPE, ["filter"], "(stage_category(stage) == 'open'\n and amont > 0)"),
         [(PIPE, "filter", "unknown_name")], "(line 2, column 6)"),
    Case("report_weight_not_a_number", setp(PIPE, ["measures", 2, "weight"], "name"),
         [(PIPE, "measures[2].weight", "type_mismatch")]),
    Case("report_sort_unknown_column", setp(PIPE, ["sort", 0], "-amont"), [(PIPE, "sort[0]", "unknown_field")]),
    Case("dashboard_unknown_report", setp(SALES, ["widgets", 0, "report"], "pipelin"),
         [(SALES, "widgets[0].report", "unknown_report")], "did you mean 'pipeline'"),
    Case("dashboard_unknown_role", setp(SALES, ["home_of", 0], "manager"), [(SALES, "home_of[0]", "unknown_role")]),
    # --- requirements -------------------------------------------------------------------------------------
    Case("requires_unknown_bundle", setp(BUNDLE, ["requires"], {"nowhere": ">=1.0"}),
         [(BUNDLE, "requires.nowhere", "unknown_requirement")]),
    Case("requires_itself", setp(BUNDLE, ["requires"], {"sample": ">=1.0"}),
         [(BUNDLE, "requires.sample", "bad_requirement")]),
]


def _ids(problems):
    return sorted((p.file, p.path, p.code) for p in problems)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_broken_bundle(case: Case, bundle_dir: BundleDir):
    case.change(bundle_dir)
    problems = validate_bundle(bundle_dir.root, search_path=[bundle_dir.root.parent])
    assert _ids(problems) == sorted(case.expected), "\n".join(map(str, problems))
    if case.message:
        assert case.message in problems[0].message, problems[0].message
    result = CliRunner().invoke(app, ["pack", "validate", str(bundle_dir.root)])
    assert result.exit_code == 1, result.output
    for file, path, _ in case.expected:
        assert (f"{file}:{path}: " if path else f"{file}: ") in result.output


def test_corpus_covers_every_semantic_code():
    codes = {code for case in CASES for _, _, code in case.expected}
    assert {
        "duplicate_name", "duplicate_value", "duplicate_uid", "reserved_name", "unknown_object", "unknown_field",
        "bad_rollup", "bad_stages", "bad_default", "bad_range", "bad_pattern", "computed_field", "bad_formula",
        "formula_cycle", "conflicting_keys", "wrong_field_type", "bad_trigger", "bad_cron", "unknown_stage",
        "bad_action", "missing_value", "name_mismatch", "unknown_requirement", "bad_requirement",
        "missing_manifest", "unknown_format", "invalid_json", "not_utf8", "too_large", "duplicate_key",
        "unexpected_file", "schema", "unknown_key", "missing_key", "unknown_report", "unknown_role",
    } <= codes
    assert len(CASES) >= 30


def test_symlink_leading_out_is_refused(bundle_dir: BundleDir, tmp_path):
    outside = tmp_path / "secret.json"
    outside.write_text('{"name": "secret", "fields": [{"name": "x", "type": "text"}]}')
    os.symlink(outside, bundle_dir.root / "objects" / "secret.json")
    problems = validate_bundle(bundle_dir.root)
    assert _ids(problems) == [("objects/secret.json", "", "outside_bundle")]


def test_json_output_of_the_cli(bundle_dir: BundleDir):
    setp(OPP, ["fields", 2, "type"], "curency")(bundle_dir)
    result = CliRunner().invoke(app, ["pack", "validate", "--json", str(bundle_dir.root)])
    assert result.exit_code == 1
    report = json.loads(result.output)
    assert report["valid"] is False
    assert report["errors"] == [{"file": OPP, "path": "fields[2].type", "code": "schema",
                                 "message": report["errors"][0]["message"]}]
    assert report["errors"][0]["message"].startswith("'curency' is not one of [")
