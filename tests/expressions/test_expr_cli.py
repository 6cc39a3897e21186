"""`loom expr eval` and `loom expr eval --batch` (SPEC 2)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from loomcrm.runtime.expressions.cli import expr_app

runner = CliRunner()


def invoke(*args, **kw):
    return runner.invoke(expr_app, list(args), **kw)


def test_eval_prints_the_json_value():
    result = invoke("eval", "0.1 + 0.2")
    assert (result.exit_code, result.stdout.strip()) == (0, "0.3")


def test_vars_are_the_names_with_decimals_and_dates():
    result = invoke("eval", "concat(name, ': ', amount * 2, ' due ', add_days(due, 1))",
                    "--vars", '{"name": "Acme", "amount": 1.25, "due": "2024-02-28"}')
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == "Acme: 2.50 due 2024-02-29"
    result = invoke("eval", "add_days(at, 1)", "--vars", '{"at": "2024-02-28T10:00:00Z"}')
    assert json.loads(result.stdout) == "2024-02-29T10:00:00+00:00"
    result = invoke("eval", "[1, x] if False else x", "--vars", '{"x": [1, 2]}')
    assert result.exit_code == 1


def test_errors_exit_1_with_code_line_and_column():
    result = invoke("eval", "amount > 'abc'", "--vars", '{"amount": 5}')
    assert result.exit_code == 1
    error = json.loads(result.stdout)["error"]
    assert error["code"] == "type_mismatch" and error["line"] == 1 and error["column"] == 1
    assert invoke("eval", "nope").exit_code == 1
    assert invoke("eval", "1", "--vars", "{bad").exit_code == 1


def test_batch_prints_one_json_line_per_input_line(tmp_path):
    batch = tmp_path / "batch.jsonl"
    batch.write_text("\n".join([
        json.dumps({"expr": "a + 1", "vars": {"a": 1.5}, "note": "ignored"}),
        "not json",
        json.dumps({"expr": "1 / 0"}),
        json.dumps({"expr": "round(2.675, 2)"}),
        json.dumps({"vars": {}}),
        json.dumps({"expr": "today() > d", "vars": {"d": "2000-01-01"}}),
        json.dumps({"expr": "__import__('os')"}),
        "",
    ]) + "\n", encoding="utf-8")
    result = invoke("eval", "--batch", str(batch))
    assert result.exit_code == 0
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == 8
    assert lines[0] == {"ok": True, "value": 2.5}
    assert lines[1]["ok"] is False and lines[1]["error"]["code"] == "invalid_input"
    assert lines[2]["error"]["code"] == "division_by_zero"
    assert lines[3] == {"ok": True, "value": 2.68}
    assert lines[4]["ok"] is False
    assert lines[5] == {"ok": True, "value": True}
    assert lines[6]["error"]["code"] == "forbidden_syntax"
    assert set(lines[6]["error"]) == {"code", "message", "line", "column"}
    assert lines[7]["ok"] is False


def test_batch_takes_no_expression(tmp_path):
    batch = tmp_path / "b.jsonl"
    batch.write_text("", encoding="utf-8")
    assert invoke("eval", "1", "--batch", str(batch)).exit_code != 0
