"""Errors of the expression language, shared by the checking and the
evaluating half so that a caller sees one shape whatever went wrong."""

from __future__ import annotations

from dataclasses import dataclass

# Every code an expression problem can carry. Callers (pack validate, the
# record service, the API) map these onto their own reports, so they are
# part of the contract and never renamed.
CODES = frozenset({
    # found when the expression is checked
    "syntax", "forbidden_syntax", "too_long", "too_deep", "unknown_name",
    "unknown_function", "arity", "type_mismatch", "invalid_regex", "not_a_field",
    # found when it runs
    "budget_exceeded", "value_too_large", "division_by_zero", "invalid_number",
    "invalid_date", "invalid_argument", "invalid_value",
    # found when it is translated to SQL
    "not_sql",
    # found reading the input of `loom expr eval`
    "invalid_input", "internal",
})


@dataclass(frozen=True)
class ExprError:
    """One problem: a stable `code`, an English `message`, and where in the
    source it is (1-based line and column, in characters)."""

    code: str
    message: str
    line: int = 1
    column: int = 1

    def as_dict(self) -> dict:
        return {"code": self.code, "message": self.message, "line": self.line, "column": self.column}


class ExpressionError(Exception):
    """Raised when an expression cannot be compiled, run or translated.
    `errors` holds every problem found (at least one); `error` is the first."""

    def __init__(self, errors: list[ExprError] | ExprError):
        self.errors = [errors] if isinstance(errors, ExprError) else list(errors)
        super().__init__("; ".join(f"{e.code}: {e.message} (line {e.line}, column {e.column})" for e in self.errors))

    @property
    def error(self) -> ExprError:
        return self.errors[0]

    @property
    def code(self) -> str:
        return self.errors[0].code


def position(source: str, lineno: int | None, col_offset: int | None) -> tuple[int, int]:
    """1-based (line, column in characters) of an ast position. `ast` gives
    columns as UTF-8 byte offsets, which would point at the wrong character
    after any non-ASCII text (common in Chinese messages and values)."""
    line = lineno or 1
    if col_offset is None:
        return line, 1
    lines = source.splitlines() or [""]
    text = lines[line - 1] if 0 < line <= len(lines) else ""
    return line, len(text.encode("utf-8")[:col_offset].decode("utf-8", "ignore")) + 1
