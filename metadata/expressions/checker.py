"""Checking an expression against the object it runs on: names through
lookups, calls against the function library, and types.

`check()` lists the problems (for `loom pack validate` and the designer);
`analyze()` returns the checked, typed tree that the evaluator and the SQL
back end run, or raises ExpressionError.
"""

from __future__ import annotations

import ast
import difflib
from dataclasses import dataclass, field
from typing import Hashable, Mapping

from ..model import FormulaField, LookupField, ObjectDef, RollupField, StageField
from . import types as t
from .errors import ExprError, ExpressionError, position
from .functions import SIGNATURES, Signature
from .grammar import CMP_OPS, parse


@dataclass(frozen=True)
class Scope:
    """The names an expression may use: the fields of `object_name` (and the
    system fields), through its lookups the fields of the objects in
    `objects`, and `extra_names` (name or dotted path -> type name: an
    expression type such as "number", or a field type such as "currency").

    `version` identifies the metadata these come from (the published
    metadata version); compiled expressions are cached per source and
    version, so give it whenever the same metadata is used more than once."""

    objects: Mapping[str, ObjectDef]
    object_name: str
    extra_names: Mapping[str, str] = field(default_factory=dict)
    version: Hashable | None = None


@dataclass(frozen=True)
class Checked:
    """A parsed, whitelisted and typed expression. Every node of `tree`
    carries `loom_type`; names carry `loom_path` (the dotted parts); calls
    of stage functions carry `loom_stages` ({value: (probability, category)})."""

    source: str
    tree: ast.Expression
    type: str
    names: frozenset[str]          # record keys read: field names and dotted paths
    functions: frozenset[str]


def check(source: str, scope: Scope, *, expect: str | None = None) -> list[ExprError]:
    """Problems of `source` in `scope`; `expect` is the type the result must
    have ("boolean", a formula's `returns`, a field type), None for any."""
    try:
        analyze(source, scope, expect=expect)
    except ExpressionError as exc:
        return exc.errors
    return []


def analyze(source: str, scope: Scope, *, expect: str | None = None) -> Checked:
    """The checked tree of `source`, or ExpressionError with every problem."""
    tree = parse(source)
    typer = _Typer(source, scope)
    result = typer.infer(tree.body)
    try:
        wanted = t.from_name(expect)
    except ValueError:
        raise ExpressionError(ExprError("type_mismatch", f"unknown expected type {expect!r}")) from None
    if not typer.errors and not t.fits(result, wanted):
        typer.fail(tree.body, "type_mismatch", f"the expression must give {t.describe(wanted)}, it gives {t.describe(result)}")
    if typer.errors:
        raise ExpressionError(typer.errors)
    return Checked(source, tree, result, frozenset(typer.names), frozenset(typer.functions))


# --- names --------------------------------------------------------------------

def _field_type(obj: ObjectDef, name: str, objects: Mapping[str, ObjectDef]) -> str | None:
    f = obj.field(name)
    if f is None:
        return t.SYSTEM_FIELD_TYPES.get(name)
    if isinstance(f, FormulaField):
        return t.from_name(f.returns)
    if isinstance(f, RollupField):
        if f.function in ("count", "sum", "avg") or f.field is None:
            return t.NUMBER
        child = objects.get(f.from_)
        return (_field_type(child, f.field, objects) if child else None) or t.NUMBER
    return t.FIELD_TYPES.get(f.type, t.ANY)


class _Typer:
    def __init__(self, source: str, scope: Scope):
        self.source = source
        self.scope = scope
        self.obj = scope.objects.get(scope.object_name)
        self.errors: list[ExprError] = []
        self.names: set[str] = set()
        self.functions: set[str] = set()

    def fail(self, node: ast.AST, code: str, message: str) -> str:
        line, col = position(self.source, getattr(node, "lineno", 1), getattr(node, "col_offset", 0))
        self.errors.append(ExprError(code, message, line, col))
        return t.ANY

    def known_names(self) -> list[str]:
        names = list(self.scope.extra_names)
        if self.obj is not None:
            names += [f.name for f in self.obj.fields] + list(t.SYSTEM_FIELD_TYPES)
        return names

    def unknown(self, node: ast.AST, name: str, candidates: list[str], where: str) -> str:
        close = difflib.get_close_matches(name, candidates, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        return self.fail(node, "unknown_name", f"unknown field '{name}'{where}{hint}")

    def resolve(self, node: ast.Name) -> str:
        path: tuple[str, ...] = node.loom_path
        dotted = ".".join(path)
        if dotted in self.scope.extra_names:
            try:
                return t.from_name(self.scope.extra_names[dotted])
            except ValueError:
                return t.ANY
        if self.obj is None:
            return self.unknown(node, dotted, self.known_names(), "")
        obj = self.obj
        for i, part in enumerate(path):
            kind = _field_type(obj, part, self.scope.objects)
            if kind is None:
                where = f" on '{obj.name}'" if i else ""
                return self.unknown(node, part, [f.name for f in obj.fields] + list(t.SYSTEM_FIELD_TYPES), where)
            if i == len(path) - 1:
                return kind
            f = obj.field(part)
            if not isinstance(f, LookupField):
                return self.fail(node, "unknown_name", f"'{part}' is not a lookup field, so '{dotted}' cannot follow it")
            target = self.scope.objects.get(f.to)
            if target is None:
                return self.fail(node, "unknown_name", f"'{part}' points to object '{f.to}', which is not known here")
            obj = target
        return t.ANY  # unreachable: the loop returns on the last part

    # --- nodes ------------------------------------------------------------------

    def infer(self, node: ast.expr) -> str:
        kind = self._infer(node)
        node.loom_type = kind
        return kind

    def _infer(self, node: ast.expr) -> str:
        kind = type(node)
        if kind is ast.Constant:
            v = node.value
            if v is None:
                return t.NULL
            if type(v) is bool:
                return t.BOOLEAN
            return t.TEXT if type(v) is str else t.NUMBER
        if kind is ast.Name:
            result = self.resolve(node)
            if result != t.ANY or not self.errors:
                self.names.add(node.id)
            return result
        if kind is ast.BoolOp:
            for value in node.values:
                self.want_boolean(value, "and" if type(node.op) is ast.And else "or")
            return t.BOOLEAN
        if kind is ast.UnaryOp:
            operand = self.infer(node.operand)
            if type(node.op) is ast.Not:
                self.want_boolean(node.operand, "not", operand)
                return t.BOOLEAN
            if not t.fits(operand, t.NUMBER):
                return self.fail(node, "type_mismatch", f"unary minus takes a number, not {t.describe(operand)}")
            return t.NUMBER
        if kind is ast.BinOp:
            left, right = self.infer(node.left), self.infer(node.right)
            symbol = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//", ast.Mod: "%"}[type(node.op)]
            for side in (left, right):
                if not t.fits(side, t.NUMBER):
                    hint = " (join text with concat())" if side == t.TEXT else " (use add_days() or days_between())" if side in (t.DATE, t.DATETIME) else ""
                    return self.fail(node, "type_mismatch", f"'{symbol}' takes numbers only, not {t.describe(side)}{hint}")
            return t.NUMBER
        if kind is ast.Compare:
            return self.compare(node)
        if kind is ast.IfExp:
            self.want_boolean(node.test, "if")
            body, orelse = self.infer(node.body), self.infer(node.orelse)
            common = t.unify(body, orelse)
            if common is None:
                return self.fail(node, "type_mismatch", f"both branches of 'if ... else' must give the same type, not {t.describe(body)} and {t.describe(orelse)}")
            return common
        if kind is ast.Call:
            return self.call(node)
        return self.fail(node, "forbidden_syntax", f"'{kind.__name__}' is not allowed")

    def want_boolean(self, node: ast.expr, what: str, kind: str | None = None) -> None:
        kind = self.infer(node) if kind is None else kind
        if not t.fits(kind, t.BOOLEAN):
            self.fail(node, "type_mismatch", f"'{what}' needs a true/false value, not {t.describe(kind)}")

    def compare(self, node: ast.Compare) -> str:
        left = self.infer(node.left)
        for op, right_node in zip(node.ops, node.comparators):
            symbol = CMP_OPS[type(op)]
            if symbol in ("in", "not in"):
                right_node.loom_type = t.LIST
                for elt in right_node.elts:
                    self.pair(node, symbol, left, self.infer(elt))
                continue
            right = self.infer(right_node)
            self.pair(node, symbol, left, right)
            left = right
        return t.BOOLEAN

    def pair(self, node: ast.AST, symbol: str, left: str, right: str) -> None:
        for side in (left, right):
            if side in (t.LIST, t.LINK):
                hint = " (use includes() or is_blank())" if side == t.LIST else " (use is_blank())"
                self.fail(node, "type_mismatch", f"'{symbol}' cannot compare {t.describe(side)}{hint}")
                return
        if symbol in ("<", "<=", ">", ">="):
            for side in (left, right):
                if side not in t.ORDERED and side not in (t.NULL, t.ANY):
                    self.fail(node, "type_mismatch", f"'{symbol}' cannot order {t.describe(side)} values")
                    return
        if t.unify(left, right) is None:
            self.fail(node, "type_mismatch", f"'{symbol}' cannot compare {t.describe(left)} with {t.describe(right)}")

    def call(self, node: ast.Call) -> str:
        name = node.func.id
        node.func.loom_type = t.ANY
        sig = SIGNATURES.get(name)
        if sig is None:
            close = difflib.get_close_matches(name, list(SIGNATURES), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            for arg in node.args:
                self.infer(arg)
            return self.fail(node, "unknown_function", f"unknown function '{name}'{hint}")
        self.functions.add(name)
        count = len(node.args)
        if count < sig.min_args or (sig.max_args is not None and count > sig.max_args):
            for arg in node.args:
                self.infer(arg)
            return self.fail(node, "arity", f"{name}() takes {sig.arity_text()}, {count} given")
        if sig.field_ref:
            return self.field_ref_call(node, sig)
        kinds = []
        for i, arg in enumerate(node.args):
            kind = self.infer(arg)
            allowed = sig.param(i)
            if kind not in (t.NULL, t.ANY) and kind not in allowed:
                want = " or ".join(sorted(t.describe(a) for a in allowed))
                self.fail(arg, "type_mismatch", f"argument {i + 1} of {name}() must be {want}, not {t.describe(kind)}")
            kinds.append(kind)
        result = sig.returns(kinds) if callable(sig.returns) else sig.returns
        if result is None:
            return self.fail(node, "type_mismatch", f"the arguments of {name}() must all have the same type, not {', '.join(t.describe(k) for k in kinds)}")
        return result

    def field_ref_call(self, node: ast.Call, sig: Signature) -> str:
        arg = node.args[0]
        if type(arg) is not ast.Name or len(arg.loom_path) != 1:
            self.infer(arg)
            return self.fail(arg, "not_a_field", f"{sig.name}() takes a field name of this record, e.g. {sig.name}(amount)")
        kind = self.infer(arg)
        arg.loom_fieldref = True
        if sig.field_ref == "stage":
            f = self.obj.field(arg.id) if self.obj is not None else None
            if not isinstance(f, StageField):
                return self.fail(arg, "not_a_field", f"{sig.name}() takes a stage field, and '{arg.id}' is not one")
            node.loom_stages = {s.value: (s.probability, s.category) for s in f.stages}
        result = sig.returns([kind]) if callable(sig.returns) else sig.returns
        return result or t.ANY
