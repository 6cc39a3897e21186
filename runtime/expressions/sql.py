"""The SQL back end: the database-friendly subset of the expression
language as SQLAlchemy Core expressions, so list filters, rollup filters,
reports and segments share one language with the rules.

The subset: literals, field names and dotted lookup paths, comparisons
(chained too), `and` / `or` / `not`, `in` / `not in`, `A if C else B`, and
the functions `is_blank`, `coalesce`, `len`, `contains`, `starts_with`,
`ends_with`, `today`, `now`, `date` (of literals), `add_days`,
`days_between`, `year`, `month`, `day`, `weekday` (on dates),
`current_user`, `has_role`, `stage_probability`, `stage_category`.
Anything else raises ExpressionError `not_sql`, naming the part.

The SQL must select exactly the rows Python evaluation accepts, so:
- every condition is two-valued (never SQL NULL): a comparison with NULL is
  false, and `not` of it true, as in SPEC 4;
- `==` / `!=` are IS [NOT] DISTINCT FROM (None == None is true), except
  `==` against a literal value: a plain `=`, which an index can serve;
- text order is code-point order (COLLATE "C" on PostgreSQL; SQLite's
  default BINARY already is);
- `contains` & co. are case-sensitive: LIKE with escaping on PostgreSQL,
  instr/substr on SQLite (whose LIKE ignores ASCII case).
"""

from __future__ import annotations

import ast
import operator

from decimal import Decimal
from typing import Any, Mapping, Protocol

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.elements import BindParameter, ColumnElement
from sqlalchemy.sql.visitors import replacement_traverse

from loomcrm.metadata.expressions import ExprError, ExpressionError
from loomcrm.metadata.expressions.errors import position
from loomcrm.metadata.model import LookupField, ObjectDef

from . import library
from .compiled import Compiled
from .context import EvalContext, default_context

# What Python's str.strip() removes, for is_blank() in SQL.
WHITESPACE = "".join(c for c in map(chr, range(0x3001)) if c.isspace())


class SqlResolver(Protocol):
    """How the storage layer gives the back end a column for a name or a
    dotted path: ("amount",) or ("account", "industry"). Resolving a dotted
    path is where a join is made (see JoinResolver)."""

    def column(self, path: tuple[str, ...]) -> ColumnElement: ...


class JoinResolver:
    """A SqlResolver over plain Core tables, one per object, whose rows are
    keyed by `id`: a dotted path becomes a LEFT OUTER JOIN per lookup hop
    (reused when several paths share a prefix). Select from `from_clause`."""

    def __init__(self, objects: Mapping[str, ObjectDef], base: str, tables: Mapping[str, sa.Table], id_column: str = "id",
                 join_filter=None):
        self.objects = objects
        self.base = base
        self.tables = tables
        self.id_column = id_column
        # join_filter(alias, object name): which looked-up rows may join (the others read as empty)
        self.join_filter = join_filter
        self.base_table = tables[base]
        self._aliases: dict[tuple[str, ...], sa.FromClause] = {}
        self._joins: list[tuple[sa.FromClause, ColumnElement]] = []

    def column(self, path: tuple[str, ...]) -> ColumnElement:
        table, obj = self.base_table, self.objects[self.base]
        for i, part in enumerate(path[:-1]):
            lookup = obj.field(part)
            if not isinstance(lookup, LookupField):
                raise KeyError(f"{part} is not a lookup")
            prefix = path[: i + 1]
            alias = self._aliases.get(prefix)
            if alias is None:
                # '__' never occurs in field names, so aliases cannot clash.
                alias = self.tables[lookup.to].alias("j_" + "__".join(prefix))
                on = alias.c[self.id_column] == table.c[part]
                extra = self.join_filter(alias, lookup.to) if self.join_filter is not None else None
                self._joins.append((alias, on if extra is None else sa.and_(on, extra)))
                self._aliases[prefix] = alias
            table, obj = alias, self.objects[lookup.to]
        return table.c[path[-1]]

    @property
    def from_clause(self) -> sa.FromClause:
        clause: sa.FromClause = self.base_table
        for alias, on in self._joins:
            clause = clause.outerjoin(alias, on)
        return clause


class _PerDialect(ColumnElement):
    """One expression written differently per database."""

    inherit_cache = False

    def __init__(self, type_, default: ColumnElement, **dialects: ColumnElement):
        self.type = type_
        self.default = default
        self.dialects = dialects


@compiles(_PerDialect)
def _compile_per_dialect(element, compiler, **kw):
    return compiler.process(element.dialects.get(compiler.dialect.name, element.default), **kw)


def _two_valued(clause: ColumnElement) -> ColumnElement:
    return sa.func.coalesce(clause, sa.false(), type_=sa.Boolean)


def _known(clause: ColumnElement, *operands: ColumnElement) -> ColumnElement:
    """A comparison made two-valued in a form an index can still serve: it
    is NULL only when an operand is, so requiring the operands that may be
    NULL (a literal value never is) to be NOT NULL turns that NULL into
    false, without hiding the comparison inside COALESCE."""
    return sa.and_(clause, *[o.is_not(None) for o in operands if not _is_value(o)])


def _is_value(clause: ColumnElement) -> bool:
    return isinstance(clause, BindParameter) and clause.value is not None


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def to_sql(compiled: Compiled, resolver: SqlResolver, *, context: EvalContext | None = None) -> ColumnElement:
    """The expression as a SQLAlchemy expression: a two-valued condition for
    a boolean expression (for WHERE), else a value. `today()`, `now()`,
    `current_user()` and `has_role()` are bound from `context`."""
    return _Translator(compiled.source, resolver, context or default_context()).top(compiled.checked.tree.body)


def sql_text(clause: ColumnElement, dialect: sa.engine.Dialect) -> str:
    """`clause` as plain SQL text with every value written in, for DDL such
    as a trigger's body, which takes no parameters. (SQLAlchemy's
    literal_binds misses some: SQLite's IS NOT.) CompileError if a value
    cannot be written."""
    compiler = dialect.statement_compiler(dialect, None)
    # drivers with %s placeholders get every % doubled in compiled text
    escaped = dialect.paramstyle in ("format", "pyformat")

    def inline(element):
        if isinstance(element, _PerDialect):
            return replacement_traverse(element.dialects.get(dialect.name, element.default), {}, inline)
        if isinstance(element, BindParameter):
            text = compiler.render_literal_value(element.effective_value, element.type)
            return sa.literal_column(text.replace("%%", "%") if escaped else text)
        return None
    compiled = replacement_traverse(clause, {}, inline).compile(dialect=dialect, compile_kwargs={"literal_binds": True})
    if compiled.positiontup or compiled.binds:
        raise sa.exc.CompileError("a value could not be written into the SQL")
    text = str(compiled)
    return text.replace("%%", "%") if escaped else text


class _Translator:
    def __init__(self, source: str, resolver: SqlResolver, ctx: EvalContext):
        self.source = source
        self.resolver = resolver
        self.ctx = ctx
        self._now = None

    def fail(self, node: ast.AST, what: str) -> ExpressionError:
        line, col = position(self.source, getattr(node, "lineno", 1), getattr(node, "col_offset", 0))
        return ExpressionError(ExprError("not_sql", f"{what} cannot run in the database", line, col))

    def top(self, node: ast.expr) -> ColumnElement:
        return self.cond(node) if node.loom_type == "boolean" else self.value(node)

    # --- conditions (two-valued) --------------------------------------------------

    def cond(self, node: ast.expr) -> ColumnElement:
        kind = type(node)
        if kind is ast.BoolOp:
            parts = [self.cond(v) for v in node.values]
            return sa.and_(*parts) if type(node.op) is ast.And else sa.or_(*parts)
        if kind is ast.UnaryOp and type(node.op) is ast.Not:
            return sa.not_(self.cond(node.operand))
        if kind is ast.Compare:
            return self.compare(node)
        if kind is ast.Constant:
            return sa.true() if node.value is True else sa.false()
        if kind is ast.Call and node.func.id in _CONDITIONS:
            return _two_valued(_CONDITIONS[node.func.id](self, node))
        # A boolean value (a field, an if/else, a function): true only when TRUE.
        return sa.func.coalesce(self.value(node), sa.false(), type_=sa.Boolean).is_(sa.true())

    def compare(self, node: ast.Compare) -> ColumnElement:
        if len(node.ops) == 1:
            stage_test = self.stage_compare(node)
            if stage_test is not None:
                return stage_test
        parts = []
        left_node = node.left
        left = self.value(left_node)
        for op, right_node in zip(node.ops, node.comparators):
            kind = type(op)
            if kind in (ast.In, ast.NotIn):
                clause = self.membership(left_node, left, right_node)
                parts.append(sa.not_(clause) if kind is ast.NotIn else clause)
                continue
            right = self.value(right_node)
            if kind is ast.Eq and (_is_value(left) or _is_value(right)):  # never None == None: a plain, indexable =
                parts.append(_known(left == right, left, right))
            elif kind is ast.Eq:
                parts.append(left.is_not_distinct_from(right))
            elif kind is ast.NotEq:
                parts.append(left.is_distinct_from(right))
            else:
                a, b = left, right
                if "text" in (left_node.loom_type, right_node.loom_type):
                    a, b = _codepoint(a), _codepoint(b)
                operator = {ast.Lt: a.__lt__, ast.LtE: a.__le__, ast.Gt: a.__gt__, ast.GtE: a.__ge__}[kind]
                parts.append(_known(operator(b), left, right))
            left_node, left = right_node, right
        return parts[0] if len(parts) == 1 else sa.and_(*parts)

    def stage_compare(self, node: ast.Compare) -> ColumnElement | None:
        """`stage_category(stage) == 'open'`, `stage_probability(stage) >= 60`:
        decided here for each stage (and for no stage), so the database sees
        `stage IN (...)`, which an index serves, instead of a CASE per row."""
        left, right, op = node.left, node.comparators[0], type(node.ops[0])
        flipped = False
        if type(right) is ast.Call and type(left) is ast.Constant:
            left, right, flipped = right, left, True
        if not (type(left) is ast.Call and left.func.id in ("stage_probability", "stage_category")
                and type(right) is ast.Constant and op in _PYTHON_OPS):
            return None
        index = 0 if left.func.id == "stage_probability" else 1
        literal = right.value

        def holds(value) -> bool:
            a, b = (literal, value) if flipped else (value, literal)
            if a is None or b is None:
                return (a == b) if op is ast.Eq else (a != b) if op is ast.NotEq else False
            try:
                return bool(_PYTHON_OPS[op](a, b))
            except TypeError:
                return False

        column = self.resolver.column((left.args[0].id,))
        true = [v for v, entry in left.loom_stages.items() if holds(entry[index])]
        false = [v for v, entry in left.loom_stages.items() if not holds(entry[index])]
        # literals, not one expanding parameter: a trigger's SQL has them written in
        if holds(None):   # no stage, or a value no stage has, passes too
            return sa.or_(column.is_(None), column.not_in([self.literal(v) for v in false])) if false else sa.true()
        return column.in_([self.literal(v) for v in true]) if true else sa.false()

    def membership(self, left_node, left: ColumnElement, items_node) -> ColumnElement:
        literals = [e.value for e in items_node.elts if type(e) is ast.Constant]
        others = [e for e in items_node.elts if type(e) is not ast.Constant]
        tests = []
        present = [v for v in literals if v is not None]
        if present:
            tests.append(_known(left.in_([self.literal(v) for v in present]), left))
        if len(present) < len(literals):
            tests.append(left.is_(None))   # None in (..., None) is true
        tests += [left.is_not_distinct_from(self.value(e)) for e in others]
        return sa.or_(*tests) if tests else sa.false()

    # --- values ---------------------------------------------------------------------

    def literal(self, value: Any) -> ColumnElement:
        if value is None:
            return sa.null()
        kind = type(value)
        if kind is bool:
            return sa.literal(value, sa.Boolean)
        if kind is int:
            return sa.literal(value, sa.Integer)
        if kind is Decimal:
            return sa.literal(value, sa.Numeric(asdecimal=True))
        if kind is str:
            return sa.literal(value, sa.String)
        if kind.__name__ == "datetime":
            return sa.literal(value, sa.DateTime(timezone=True))
        if kind.__name__ == "date":
            return sa.literal(value, sa.Date)
        raise TypeError(kind)

    def value(self, node: ast.expr) -> ColumnElement:
        kind = type(node)
        if kind is ast.Constant:
            return self.literal(node.value)
        if kind is ast.Name:
            try:
                return self.resolver.column(node.loom_path)
            except KeyError:
                raise self.fail(node, f"the field '{node.id}'") from None
        if kind is ast.IfExp:
            return sa.case((self.cond(node.test), self.value(node.body)), else_=self.value(node.orelse))
        if kind is ast.Call:
            name = node.func.id
            if name in _CONDITIONS:
                return self.cond(node)
            build = _VALUES.get(name)
            if build is None:
                raise self.fail(node, f"the function {name}()")
            return build(self, node)
        if node.loom_type == "boolean":
            return self.cond(node)
        if kind is ast.BinOp:
            return self.arithmetic(node)
        if kind is ast.UnaryOp and type(node.op) is ast.USub:
            return sa.type_coerce(-self.value(node.operand), sa.Numeric(asdecimal=True))
        if kind is ast.UnaryOp:
            raise self.fail(node, "unary minus on a field")
        raise self.fail(node, f"'{kind.__name__}'")

    def arithmetic(self, node: ast.BinOp) -> ColumnElement:
        """`+ - *` as SQL has them (None gives None, as in the language);
        `/` by a number written in the expression only, since the database
        would answer a division by zero differently from the evaluator;
        `//` and `%` round negatives differently per database: refused."""
        op = type(node.op)
        if op not in (ast.Add, ast.Sub, ast.Mult, ast.Div) or node.left.loom_type != "number":
            raise self.fail(node, "arithmetic (// and %, or on text)")
        left = sa.cast(self.value(node.left), sa.Numeric(asdecimal=True))
        if op is ast.Div:
            divisor = node.right
            if type(divisor) is not ast.Constant or not divisor.value or type(divisor.value) not in (int, Decimal):
                raise self.fail(node, "division by anything but a number other than 0")
            # a decimal divisor: integer division nowhere
            return sa.type_coerce(left / sa.literal(Decimal(divisor.value), sa.Numeric(asdecimal=True)),
                                  sa.Numeric(asdecimal=True))
        right = self.value(node.right)
        result = {ast.Add: left + right, ast.Sub: left - right, ast.Mult: left * right}[op]
        return sa.type_coerce(result, sa.Numeric(asdecimal=True))

    def now(self):
        if self._now is None:
            from datetime import datetime
            self._now = self.ctx.clock.astimezone(self.ctx.tz) if self.ctx.clock else datetime.now(self.ctx.tz)
        return self._now

    def date_arg(self, node: ast.expr, name: str) -> ColumnElement:
        if node.loom_type not in ("date", "null"):
            raise self.fail(node, f"{name}() of a datetime (time zones differ per database)")
        return self.value(node)


def _codepoint(clause: ColumnElement) -> ColumnElement:
    return _PerDialect(clause.type, clause, postgresql=clause.collate("C"))


# --- functions --------------------------------------------------------------------------

def _is_blank(tr: _Translator, node) -> ColumnElement:
    arg = node.args[0]
    if arg.loom_type in ("list", "link"):
        raise tr.fail(node, f"is_blank() of a {'multi-picklist' if arg.loom_type == 'list' else 'related_to'} field")
    column = tr.value(arg)
    if arg.loom_type != "text":
        return column.is_(None)
    chars = sa.literal(WHITESPACE, sa.String)
    stripped = _PerDialect(sa.String(), sa.func.trim(column, chars), postgresql=sa.func.btrim(column, chars))
    return sa.or_(column.is_(None), stripped == "")


def _text_test(name: str):
    def build(tr: _Translator, node) -> ColumnElement:
        s_node, p_node = node.args
        s, p = tr.value(s_node), tr.value(p_node)
        if name == "contains":
            sqlite = sa.func.instr(s, p) > 0
            pg = sa.func.strpos(s, p) > 0
        elif name == "starts_with":
            sqlite = sa.func.substr(s, 1, sa.func.length(p)) == p
            pg = sa.func.left(s, sa.func.length(p)) == p
        else:
            sqlite = sa.and_(sa.func.length(s) >= sa.func.length(p),
                             sa.func.substr(s, sa.func.length(s) - sa.func.length(p) + 1) == p)
            pg = sa.func.right(s, sa.func.length(p)) == p
        if type(p_node) is ast.Constant and type(p_node.value) is str:
            # A literal: LIKE with its wildcards escaped (index-friendly for
            # starts_with); PostgreSQL's LIKE is case-sensitive like Python.
            text = _like_escape(p_node.value)
            pattern = {"contains": f"%{text}%", "starts_with": f"{text}%", "ends_with": f"%{text}"}[name]
            pg = s.like(pattern, escape="\\")
        return _PerDialect(sa.Boolean(), sqlite, postgresql=pg)
    return build


def _has_role(tr: _Translator, node) -> ColumnElement:
    arg = node.args[0]
    if type(arg) is not ast.Constant:
        raise tr.fail(node, "has_role() of a field")
    return sa.true() if library.has_role(_Ev(tr), arg.value) else sa.false()


_CONDITIONS = {"is_blank": _is_blank, "contains": _text_test("contains"), "starts_with": _text_test("starts_with"),
               "ends_with": _text_test("ends_with"), "has_role": _has_role}


class _Ev:
    """Just enough of an evaluation for the library's context functions."""

    def __init__(self, tr: _Translator):
        self.ctx = tr.ctx
        self.tz = tr.ctx.tz
        self._tr = tr

    def now(self):
        return self._tr.now()


def _part(name: str):
    def build(tr: _Translator, node) -> ColumnElement:
        d = tr.date_arg(node.args[0], name)
        fmt = {"year": "%Y", "month": "%m", "day": "%d"}.get(name)
        if name == "weekday":
            sqlite = ((sa.cast(sa.func.strftime("%w", d), sa.Integer) + 6) % 7) + 1
            pg = sa.cast(sa.extract("isodow", d), sa.Integer)
        else:
            sqlite = sa.cast(sa.func.strftime(fmt, d), sa.Integer)
            pg = sa.cast(sa.extract(name, d), sa.Integer)
        return _PerDialect(sa.Integer(), sqlite, postgresql=pg)
    return build


def _add_days(tr: _Translator, node) -> ColumnElement:
    d = tr.date_arg(node.args[0], "add_days")
    n_node = node.args[1]
    if type(n_node) is not ast.Constant or type(n_node.value) is not int:
        raise tr.fail(node, "add_days() by a number that is not a whole literal")
    n = n_node.value
    return _PerDialect(sa.Date(), sa.func.date(d, f"{n:+d} days"), postgresql=d + sa.literal(n, sa.Integer))


def _days_between(tr: _Translator, node) -> ColumnElement:
    a, b = tr.date_arg(node.args[0], "days_between"), tr.date_arg(node.args[1], "days_between")
    sqlite = sa.cast(sa.func.julianday(b) - sa.func.julianday(a), sa.Integer)
    return _PerDialect(sa.Integer(), sqlite, postgresql=b - a)


def _date(tr: _Translator, node) -> ColumnElement:
    if not all(type(a) is ast.Constant for a in node.args):
        raise tr.fail(node, "date() of fields")
    try:
        return tr.literal(library.date_(_Ev(tr), *(a.value for a in node.args)))
    except Exception:
        raise tr.fail(node, "an invalid date()") from None


def _len(tr: _Translator, node) -> ColumnElement:
    if node.args[0].loom_type == "list":
        raise tr.fail(node, "len() of a multi-picklist")
    return sa.func.coalesce(sa.func.length(tr.value(node.args[0])), 0)   # len(None) is 0


_PYTHON_OPS = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
               ast.Gt: operator.gt, ast.GtE: operator.ge}


def _stage(index: int):
    def build(tr: _Translator, node) -> ColumnElement:
        column = tr.resolver.column((node.args[0].id,))
        stages = node.loom_stages
        whens = [(column == value, tr.literal(entry[index])) for value, entry in stages.items() if entry[index] is not None]
        if not whens:
            return sa.null()
        return sa.case(*whens, else_=sa.null())
    return build


_VALUES = {
    "coalesce": lambda tr, node: sa.func.coalesce(*(tr.value(a) for a in node.args)),
    "len": lambda tr, node: _len(tr, node),
    "today": lambda tr, node: tr.literal(tr.now().date()),
    "now": lambda tr, node: tr.literal(tr.now()),
    "current_user": lambda tr, node: tr.literal(tr.ctx.user_id),
    "date": _date,
    "add_days": _add_days,
    "days_between": _days_between,
    "year": _part("year"), "month": _part("month"), "day": _part("day"), "weekday": _part("weekday"),
    "stage_probability": _stage(0),
    "stage_category": _stage(1),
}

__all__ = ["JoinResolver", "SqlResolver", "to_sql", "WHITESPACE"]

