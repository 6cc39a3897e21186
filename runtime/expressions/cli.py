"""`loom expr eval` (SPEC 2): evaluate one expression, or a batch of them.

Mounted by the platform's CLI with `app.add_typer(expr_app, name="expr")`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from loomcrm.metadata.expressions import ExprError, ExpressionError

from .adhoc import evaluate_with_vars
from .context import default_context
from .jsonio import dumps, from_json, loads

expr_app = typer.Typer(help="Evaluate expressions of the Loom expression language.", no_args_is_help=True,
                       add_completion=False)


@expr_app.callback()
def _group() -> None:
    """Expressions: `loom expr eval EXPR --vars JSON`, `loom expr eval --batch FILE`."""
    # A callback keeps `eval` a named sub-command even while it is the only one.


def _error_json(error: ExprError) -> str:
    return json.dumps(error.as_dict(), ensure_ascii=False)


def _run(source: object, variables: object) -> str:
    """One batch line's answer: {"ok": true, "value": ...} or the error."""
    try:
        if not isinstance(source, str):
            raise ExpressionError(ExprError("invalid_input", "'expr' must be a string"))
        ctx = default_context()
        value = evaluate_with_vars(source, from_json(variables if variables is not None else {}, ctx.tz)
                                   if isinstance(variables, (dict, type(None))) else variables, ctx)
        return '{"ok": true, "value": ' + dumps(value) + "}"
    except ExpressionError as exc:
        return '{"ok": false, "error": ' + _error_json(exc.error) + "}"
    except Exception as exc:  # one bad line never stops the batch
        return '{"ok": false, "error": ' + _error_json(ExprError("internal", f"{type(exc).__name__}: {exc}"[:300])) + "}"


def _batch_line(line: str, number: int) -> str:
    try:
        item = loads(line)
    except ValueError as exc:
        return '{"ok": false, "error": ' + _error_json(ExprError("invalid_input", f"line {number} is not valid JSON: {exc}"[:300])) + "}"
    if not isinstance(item, dict) or "expr" not in item:
        return '{"ok": false, "error": ' + _error_json(ExprError("invalid_input", f"line {number} must be an object with 'expr'")) + "}"
    return _run(item.get("expr"), item.get("vars"))


@expr_app.command("eval")
def eval_command(
    expression: Optional[str] = typer.Argument(None, metavar="EXPR", help="The expression, e.g. \"amount * 2\"."),
    vars_: Optional[str] = typer.Option(None, "--vars", help="A JSON object: the names the expression may use."),
    batch: Optional[Path] = typer.Option(None, "--batch", help="A file of JSON lines {\"expr\": ..., \"vars\": {...}}; '-' reads stdin.",
                                         dir_okay=False),
) -> None:
    """Evaluate EXPR and print its JSON value (exit 1 on an error), or
    evaluate every line of a --batch file and print one JSON line each."""
    if batch is not None:
        if expression is not None or vars_ is not None:
            raise typer.BadParameter("--batch takes no EXPR and no --vars")
        stream = sys.stdin if str(batch) == "-" else open(batch, encoding="utf-8-sig", errors="replace")
        with stream:
            for number, line in enumerate(stream, 1):
                typer.echo(_batch_line(line, number))
        return
    if expression is None:
        raise typer.BadParameter("give an expression, or --batch FILE")
    try:
        variables = loads(vars_) if vars_ is not None else {}
    except ValueError as exc:
        typer.echo(json.dumps({"error": ExprError("invalid_input", f"--vars is not valid JSON: {exc}").as_dict()}))
        raise typer.Exit(1)
    try:
        if not isinstance(variables, dict):
            raise ExpressionError(ExprError("invalid_input", "--vars must be a JSON object"))
        ctx = default_context()
        value = evaluate_with_vars(expression, from_json(variables, ctx.tz), ctx)
    except ExpressionError as exc:
        typer.echo(json.dumps({"error": exc.error.as_dict()}, ensure_ascii=False))
        raise typer.Exit(1)
    typer.echo(dumps(value))
