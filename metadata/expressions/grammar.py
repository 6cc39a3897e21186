"""Parsing and the syntax whitelist (SPEC 4).

An expression is parsed with Python's own parser (in `eval` mode, so no
statement can even be written), then every node is checked against a short
whitelist. Anything else is refused here, before any type checking or
evaluation, so the evaluator only ever sees trees of the node kinds below.
"""

from __future__ import annotations

import ast
import unicodedata
from decimal import Decimal, InvalidOperation

from .errors import ExprError, ExpressionError, position

MAX_SOURCE = 4000
MAX_DEPTH = 50
MAX_PATH_HOPS = 3
# Literals beyond this are surely mistakes, and bounding them keeps every
# later arithmetic step on small numbers.
MAX_LITERAL = 10 ** 100

BOOL_OPS = (ast.And, ast.Or)
BIN_OPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//", ast.Mod: "%"}
UNARY_OPS = {ast.Not: "not", ast.USub: "-", ast.UAdd: "+"}
CMP_OPS = {ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=",
           ast.In: "in", ast.NotIn: "not in"}

# Human names for refused constructs, so the message says what to change.
_REFUSED = {
    ast.Subscript: "subscripts ([...])", ast.Slice: "slices", ast.JoinedStr: "f-strings",
    ast.FormattedValue: "f-strings", ast.Lambda: "lambda", ast.NamedExpr: "the walrus operator (:=)",
    ast.ListComp: "comprehensions", ast.SetComp: "comprehensions", ast.DictComp: "comprehensions",
    ast.GeneratorExp: "generator expressions", ast.Starred: "starred arguments", ast.Dict: "dict literals",
    ast.Set: "set literals", ast.Await: "await", ast.Yield: "yield", ast.YieldFrom: "yield",
}
_REFUSED_OPS = {ast.Pow: "**", ast.LShift: "<<", ast.RShift: ">>", ast.BitOr: "|", ast.BitAnd: "&",
                ast.BitXor: "^", ast.MatMult: "@", ast.Invert: "~", ast.Is: "is", ast.IsNot: "is not"}


def normalize_name(name: str) -> str:
    """NFKC, as Python's parser does for identifiers: checked explicitly so
    that full-width look-alikes (`＿＿class＿＿`) can never differ from what
    the whitelist saw, whatever parser produced the tree."""
    return unicodedata.normalize("NFKC", name)


def parse(source: str) -> ast.Expression:
    """Parse and whitelist `source`; raise ExpressionError with every problem.
    Dotted paths come back as one `Name` whose `id` is the dotted path and
    whose `loom_path` is its parts; decimal literals come back as Decimal."""
    if not isinstance(source, str):
        raise ExpressionError(ExprError("syntax", "an expression must be text"))
    if len(source) > MAX_SOURCE:
        raise ExpressionError(ExprError("too_long", f"an expression may have at most {MAX_SOURCE} characters, this one has {len(source)}"))
    if not source.strip():
        raise ExpressionError(ExprError("syntax", "the expression is empty"))
    # Python refuses leading blanks in eval mode ("unexpected indent");
    # drop them and shift the columns back so positions stay the user's.
    body = source.lstrip(" \t")
    indent = len(source) - len(body)
    try:
        tree = ast.parse(body, mode="eval")
        if indent:
            _shift_columns(tree, indent)
    except SyntaxError as exc:
        msg = exc.msg or "invalid syntax"
        code = "too_deep" if ("too many nested" in msg or "too complex" in msg) else "syntax"
        line, offset = exc.lineno or 1, exc.offset
        if not offset:
            # Python reports an expression cut short (`stage == 'won' or`)
            # at offset 0: the problem is where the text ends.
            lines = body.rstrip().splitlines() or [""]
            line, offset = len(lines), len(lines[-1]) + 1
            if msg == "invalid syntax":
                msg = "the expression ends too early: something is missing at its end"
        column = offset + (indent if line == 1 else 0)
        raise ExpressionError(ExprError(code, msg, line, column)) from None
    except (ValueError, MemoryError, RecursionError) as exc:  # null bytes; pathological nesting
        code = "syntax" if isinstance(exc, ValueError) else "too_deep"
        raise ExpressionError(ExprError(code, str(exc) or "the expression is too complex")) from None
    _check_depth(tree, source)
    errors: list[ExprError] = []
    tree.body = _Whitelist(source, errors).visit_root(tree.body)
    if errors:
        raise ExpressionError(errors)
    return tree


def _shift_columns(tree: ast.AST, by: int) -> None:
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) == 1 and hasattr(node, "col_offset"):
            node.col_offset += by
            if getattr(node, "end_col_offset", None) is not None and node.end_lineno == 1:
                node.end_col_offset += by


def _check_depth(tree: ast.AST, source: str) -> None:
    # Iterative on purpose: every recursive pass (the whitelist, the type
    # checker, the evaluator) runs only after this proved the tree shallow.
    stack = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            line, col = position(source, getattr(node, "lineno", 1), getattr(node, "col_offset", 0))
            raise ExpressionError(ExprError("too_deep", f"the expression is nested more than {MAX_DEPTH} levels deep", line, col))
        for child in ast.iter_child_nodes(node):
            stack.append((child, depth + 1))


class _Whitelist:
    def __init__(self, source: str, errors: list[ExprError]):
        self.source = source
        self.errors = errors

    def fail(self, node: ast.AST, code: str, message: str) -> None:
        line, col = position(self.source, getattr(node, "lineno", 1), getattr(node, "col_offset", 0))
        self.errors.append(ExprError(code, message, line, col))

    def visit_root(self, node: ast.expr) -> ast.expr:
        return self.visit(node)

    def visit(self, node: ast.expr, *, in_list: bool = False) -> ast.expr:
        kind = type(node)
        if kind is ast.Constant:
            return self.constant(node)
        if kind is ast.Name:
            name = normalize_name(node.id)
            if not self.name_ok(node, name):
                return node
            node.id = name
            node.loom_path = (name,)
            return node
        if kind is ast.Attribute:
            return self.path(node)
        if kind is ast.BoolOp:
            node.values = [self.visit(v) for v in node.values]
            return node
        if kind is ast.BinOp:
            if type(node.op) not in BIN_OPS:
                self.refuse_op(node, node.op)
            node.left, node.right = self.visit(node.left), self.visit(node.right)
            return node
        if kind is ast.UnaryOp:
            if type(node.op) not in UNARY_OPS:
                self.refuse_op(node, node.op)
            node.operand = self.visit(node.operand)
            # Fold `-5` into a literal: it reads as one in every back end.
            if type(node.op) in (ast.USub, ast.UAdd) and type(node.operand) is ast.Constant \
                    and type(node.operand.value) in (int, Decimal):
                value = node.operand.value
                folded = ast.Constant(-value if type(node.op) is ast.USub else value)
                return ast.copy_location(folded, node)
            return node
        if kind is ast.Compare:
            node.left = self.visit(node.left)
            comparators = []
            for op, right in zip(node.ops, node.comparators):
                if type(op) not in CMP_OPS:
                    self.refuse_op(node, op)
                if type(op) in (ast.In, ast.NotIn):
                    if type(right) not in (ast.List, ast.Tuple):
                        self.fail(right, "forbidden_syntax", "'in' needs a list or tuple literal on its right, e.g. stage in ('won', 'lost'); use contains() or includes()")
                        comparators.append(right)
                        continue
                    right.elts = [self.visit(e) for e in right.elts]
                    comparators.append(right)
                else:
                    comparators.append(self.visit(right))
            node.comparators = comparators
            return node
        if kind is ast.IfExp:
            node.test, node.body, node.orelse = self.visit(node.test), self.visit(node.body), self.visit(node.orelse)
            return node
        if kind is ast.Call:
            return self.call(node)
        if kind in (ast.List, ast.Tuple):
            self.fail(node, "forbidden_syntax", "lists and tuples may only follow 'in' / 'not in'")
            return node
        what = _REFUSED.get(kind, f"'{kind.__name__}' expressions")
        self.fail(node, "forbidden_syntax", f"{what} are not allowed in expressions" if not what.startswith(("lambda", "the", "await", "yield")) else f"{what} is not allowed in expressions")
        return node

    def refuse_op(self, node: ast.AST, op: ast.AST) -> None:
        symbol = _REFUSED_OPS.get(type(op), type(op).__name__)
        hint = " (use == None / != None)" if symbol in ("is", "is not") else ""
        self.fail(node, "forbidden_syntax", f"the operator '{symbol}' is not allowed{hint}")

    def name_ok(self, node: ast.AST, name: str) -> bool:
        if name.startswith("_") or "__" in name:
            self.fail(node, "forbidden_syntax", f"the name '{name}' is not allowed (names cannot start with '_' or contain '__')")
            return False
        return True

    def constant(self, node: ast.Constant) -> ast.expr:
        value = node.value
        kind = type(value)
        if kind is float:
            # The float was already rounded by the parser: read the literal's
            # own text so 0.1 is exactly one tenth.
            text = ast.get_source_segment(self.source, node) or repr(value)
            try:
                node.value = Decimal(text.replace("_", ""))
            except InvalidOperation:
                node.value = Decimal(repr(value))
            if not node.value.is_finite() or abs(node.value) >= MAX_LITERAL:
                self.fail(node, "value_too_large", "the number is too large")
        elif kind is int:
            if abs(value) >= MAX_LITERAL:
                self.fail(node, "value_too_large", "the number is too large")
        elif kind not in (str, bool) and value is not None:
            self.fail(node, "forbidden_syntax", f"{kind.__name__} literals are not allowed")
        return node

    def path(self, node: ast.Attribute) -> ast.expr:
        parts: list[str] = []
        current: ast.expr = node
        while type(current) is ast.Attribute:
            parts.append(normalize_name(current.attr))
            current = current.value
        if type(current) is not ast.Name:
            self.fail(node, "forbidden_syntax", f"attribute access ('.{parts[0]}') is only allowed on dotted field paths like account.industry")
            return node
        parts.append(normalize_name(current.id))
        parts.reverse()
        for part in parts:
            if not self.name_ok(node, part):
                return node
        if len(parts) - 1 > MAX_PATH_HOPS:
            self.fail(node, "too_deep", f"a dotted path may follow at most {MAX_PATH_HOPS} lookups")
            return node
        name = ast.copy_location(ast.Name(id=".".join(parts), ctx=ast.Load()), node)
        name.end_lineno, name.end_col_offset = node.end_lineno, node.end_col_offset
        name.loom_path = tuple(parts)
        return name

    def call(self, node: ast.Call) -> ast.expr:
        if type(node.func) is not ast.Name:
            self.fail(node, "forbidden_syntax", "only the functions of the expression language can be called, by name")
            return node
        node.func.id = normalize_name(node.func.id)
        if not self.name_ok(node.func, node.func.id):
            return node
        if node.keywords:
            self.fail(node, "forbidden_syntax", "keyword arguments are not allowed")
        args = []
        for arg in node.args:
            if type(arg) is ast.Starred:
                self.fail(arg, "forbidden_syntax", "starred arguments are not allowed")
                args.append(arg)
            else:
                args.append(self.visit(arg))
        node.args = args
        return node
