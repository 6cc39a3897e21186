"""Reading bundle folders: the file pass and what it tolerates."""

from __future__ import annotations

import builtins
import json
import os
import time

import pytest

from loomcrm.metadata import bundle as bundle_module
from loomcrm.metadata.bundle import Problem, json_path, parse_json, read_bundle, read_raw
from loomcrm.metadata.validate import InvalidBundle, load_valid_bundle, satisfies, validate_bundle


def codes(problems):
    return sorted((p.file, p.path, p.code) for p in problems)


def test_base_bundle_is_valid(bundle_dir):
    assert validate_bundle(bundle_dir.root) == []
    bundle = load_valid_bundle(bundle_dir.root)
    assert [o.name for o in bundle.objects] == ["account", "contact", "opportunity", "task"]
    assert [w.name for w in bundle.workflows] == ["big_deal_follow_up", "close_reminder", "deal_won", "weekly_digest"]
    assert bundle.data_files == ["data/account.csv"]


def test_path_to_bundle_json_is_accepted(bundle_dir):
    assert validate_bundle(bundle_dir.root / "bundle.json") == []


def test_missing_and_non_folder_paths(tmp_path):
    assert codes(validate_bundle(tmp_path / "nope")) == [(".", "", "not_found")]
    (tmp_path / "file.txt").write_text("x")
    assert codes(validate_bundle(tmp_path / "file.txt")) == [(".", "", "not_a_folder")]


def test_tolerated_entries(bundle_dir):
    bundle_dir.write(".git/config", "[core]")
    bundle_dir.write(".DS_Store", b"\x00\x01")
    bundle_dir.write("objects/.hidden.swp", b"\xff")
    bundle_dir.write("LICENSE", "Apache-2.0")
    bundle_dir.write("CHANGELOG.md", "# 1.0.0")
    assert validate_bundle(bundle_dir.root) == []


def test_bom_and_schema_key_are_accepted(bundle_dir):
    data = bundle_dir.load("objects/task.json")
    data = {"$schema": "../../metadata/bundle.schema.json#/$defs/object", **data}
    bundle_dir.write("objects/task.json", b"\xef\xbb\xbf" + json.dumps(data).encode())
    assert validate_bundle(bundle_dir.root) == []


def test_big_file_is_refused_without_reading(bundle_dir, monkeypatch):
    with open(bundle_dir.root / "objects" / "big.json", "wb") as handle:
        handle.truncate(50 * 1024 * 1024)
    real_open = builtins.open

    def guarded_open(file, *args, **kwargs):
        assert not str(file).endswith("big.json"), "the big file was opened"
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", guarded_open)
    started = time.monotonic()
    problems = validate_bundle(bundle_dir.root)
    assert codes(problems) == [("objects/big.json", "", "too_large")]
    assert "52,428,800 bytes" in problems[0].message
    assert time.monotonic() - started < 5


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_special_files_are_not_read(bundle_dir):
    os.mkfifo(bundle_dir.root / "objects" / "pipe.json")
    assert codes(validate_bundle(bundle_dir.root)) == [("objects/pipe.json", "", "not_a_file")]


def test_objects_must_be_a_folder(bundle_dir):
    bundle_dir.write("workflows.json", "{}")
    assert codes(validate_bundle(bundle_dir.root)) == [("workflows.json", "", "unexpected_file")]


def test_invalid_json_has_line_and_column():
    data, problems = parse_json(b'{\n  "name": "a",\n  "fields": [}\n', "objects/a.json")
    assert data is None
    assert problems == [Problem("objects/a.json", "", "invalid JSON: Expecting value (line 3, column 14)", "invalid_json")]


def test_deep_nesting_is_a_problem_not_a_crash():
    data, problems = parse_json(b"[" * 100_000 + b"]" * 100_000, "objects/a.json")
    assert data is None and problems[0].code == "invalid_json"


def test_duplicate_keys_deep_inside():
    raw = b'{"name": "a", "layouts": {"list": {"columns": ["a"], "columns": ["b"]}}}'
    data, problems = parse_json(raw, "objects/a.json")
    assert data["layouts"]["list"]["columns"] == ["b"]
    assert codes(problems) == [("objects/a.json", "layouts.list.columns", "duplicate_key")]


def test_non_utf8_reports_line_column_and_offset():
    data, problems = parse_json(b'{\n "name": "caf\xe9"\n}', "objects/a.json")
    assert problems[0].message.startswith("not UTF-8: byte 0xe9 at line 2, column 14 (byte offset 15)")


def test_json_path_format():
    assert json_path(["fields", 9, "stages", 1, "exit_criteria", 0, "check"]) == "fields[9].stages[1].exit_criteria[0].check"
    assert json_path(["label", "zh-CN"]) == 'label["zh-CN"]'
    assert json_path(["indexes", 0, 1]) == "indexes[0][1]"
    assert json_path([]) == ""


def test_problem_line_format():
    assert str(Problem("objects/lead.json", "fields[3].type", "bad", "schema")) == "objects/lead.json:fields[3].type: bad"
    assert str(Problem("bundle.json", "", "missing", "missing_manifest")) == "bundle.json: missing"


def test_load_valid_bundle_raises_with_problems(bundle_dir):
    bundle_dir.edit("objects/task.json", lambda d: d.update(title_field="nope"))
    with pytest.raises(InvalidBundle) as caught:
        load_valid_bundle(bundle_dir.root)
    assert codes(caught.value.problems) == [("objects/task.json", "title_field", "unknown_field")]
    assert "objects/task.json:title_field: unknown field 'nope'" in str(caught.value)


def test_read_bundle_reports_model_errors(bundle_dir):
    bundle_dir.edit("objects/task.json", lambda d: d["fields"][0].update(colour="red"))
    with pytest.raises(bundle_module.BundleError) as caught:
        read_bundle(bundle_dir.root)
    assert codes(caught.value.problems) == [("objects/task.json", "fields[0].colour", "unknown_key")]


def test_unknown_format_stops_early(bundle_dir):
    bundle_dir.edit("bundle.json", lambda d: d.update(format="loom/2"))
    bundle_dir.edit("objects/task.json", lambda d: d.update(title_field="nope"))
    problems = validate_bundle(bundle_dir.root)
    assert codes(problems) == [("bundle.json", "format", "unknown_format")]
    assert problems[0].message == "unknown bundle format 'loom/2': this version of Loom reads 'loom/1' bundles"


def test_schema_failures_do_not_cascade(bundle_dir):
    """An object whose file fails the schema is not reported again by every
    file that refers to it."""
    bundle_dir.edit("objects/opportunity.json", lambda d: d["fields"][2].update(type="curency"))
    assert codes(validate_bundle(bundle_dir.root)) == [("objects/opportunity.json", "fields[2].type", "schema")]
    bundle_dir.write("objects/account.json", "{ not json")
    assert codes(validate_bundle(bundle_dir.root)) == [
        ("objects/account.json", "", "invalid_json"), ("objects/opportunity.json", "fields[2].type", "schema")]


def test_many_problems_in_file_order(bundle_dir):
    bundle_dir.edit("workflows/deal_won.json", lambda d: d.update(object="deal"))
    bundle_dir.edit("objects/task.json", lambda d: d.update(title_field="nope"))
    bundle_dir.write("data/lead.csv", "name\n")
    bundle_dir.edit("bundle.json", lambda d: d.update(version="one"))
    files = [p.file for p in validate_bundle(bundle_dir.root)]
    assert files == ["bundle.json", "objects/task.json", "workflows/deal_won.json", "data/lead.csv"]


def test_requirements_from_a_sibling_bundle(bundle_dir, tmp_path):
    other = tmp_path / "extras"
    (other / "objects").mkdir(parents=True)
    (other / "bundle.json").write_text(json.dumps({"format": "loom/1", "name": "extras", "version": "1.4.0"}))
    (other / "objects" / "region.json").write_text(json.dumps(
        {"name": "region", "fields": [{"name": "name", "type": "text"}, {"name": "code", "type": "text"}]}))
    bundle_dir.edit("bundle.json", lambda d: d.update(requires={"extras": ">=1.2,<2"}))
    bundle_dir.edit("objects/account.json", lambda d: d["fields"].append(
        {"name": "region", "type": "lookup", "to": "region"}))
    bundle_dir.edit("objects/account.json", lambda d: d["validation_rules"].append(
        {"name": "region_code", "check": "is_blank(region) or not is_blank(region.code)", "message": "x"}))
    assert validate_bundle(bundle_dir.root) == []

    bundle_dir.edit("bundle.json", lambda d: d.update(requires={"extras": ">=2"}))
    assert codes(validate_bundle(bundle_dir.root)) == [("bundle.json", "requires.extras", "unsatisfied_requirement")]

    bundle_dir.edit("bundle.json", lambda d: d.update(requires={}))
    assert codes(validate_bundle(bundle_dir.root)) == [
        ("objects/account.json", "fields[9].to", "unknown_object"),
        ("objects/account.json", "validation_rules[1].check", "unknown_name")]


def test_object_may_not_shadow_a_required_one(bundle_dir, tmp_path):
    other = tmp_path / "base"
    (other / "objects").mkdir(parents=True)
    (other / "bundle.json").write_text(json.dumps({"format": "loom/1", "name": "base", "version": "1.0.0"}))
    (other / "objects" / "task.json").write_text(json.dumps({"name": "task", "fields": [{"name": "x", "type": "text"}]}))
    bundle_dir.edit("bundle.json", lambda d: d.update(requires={"base": "1"}))
    assert codes(validate_bundle(bundle_dir.root)) == [("objects/task.json", "name", "duplicate_name")]


@pytest.mark.parametrize("version,spec,ok", [
    ("1.2.0", ">=1.0,<2", True), ("2.0.0", ">=1.0,<2", False), ("1.2.3", "1.2", True), ("1.3.0", "1.2", False),
    ("1.4.0", "~=1.2", True), ("2.0.0", "~=1.2", False), ("1.2.5", "~=1.2.3", True), ("1.3.0", "~=1.2.3", False),
    ("1.0.0-beta", ">=1.0", True), ("0.9.0", "!=1.0", True), ("1.0.0", "!=1.0", False),
])
def test_version_ranges(version, spec, ok):
    assert satisfies(version, spec) is ok


def test_read_raw_keeps_csv_headers(bundle_dir):
    raw = read_raw(bundle_dir.root)
    assert [(d.rel, d.object_name, d.header) for d in raw.data] == [("data/account.csv", "account", ["name", "industry", "employees"])]


def test_csv_row_length_mismatch(bundle_dir):
    bundle_dir.write("data/account.csv", "name,industry\nAcme,tech\nGlobex\n")
    problems = validate_bundle(bundle_dir.root)
    assert codes(problems) == [("data/account.csv", "", "bad_csv")]
    assert "line 3" in problems[0].message
