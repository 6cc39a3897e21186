"""Rollup fields (SPEC §3.2) and the refreshes a change causes elsewhere.

After a record is written, deleted or restored, `propagate` brings every
value that depends on it up to date, in the same transaction:

- rollups on its parents (count / sum / min / max / avg over the children
  through a lookup, or a related-to field whose "object:id" names the
  parent, with an optional filter), for the old and the new parent when
  the child was re-parented;
- formulas of the parents that read those rollups, and rollups of the
  grandparents over them (a chain such as payment -> order.paid_amount ->
  account.collected_amount);
- formulas of other records that read the changed record through a lookup
  path (`account.industry`), and rollups whose filter does.

How a rollup is kept:

- A count or sum whose filter (if any) reads only the child's own values —
  not the clock, the user or other records — over values of at most 6
  decimals moves by deltas: what a child gave its old parent is taken
  back, what it gives now is added to its new parent. A re-parented child,
  a delete, a restore, a child entering or leaving the filter each move
  the right parents by the exact amount (Decimals; blanks add nothing, so
  a sum of nothing stays 0, SPEC §3.2). When nothing else reads the
  parent's value, the database moves it itself, by triggers each publish
  creates (`rollup_triggers`); `propagate` then leaves it alone.
- Every other rollup (min / max / avg, filters through lookups or on
  values of the moment) is recomputed from the children; the filter runs
  in SQL where the SQL back end can translate it, else in Python.

Concurrent writers lose no update on PostgreSQL. When nothing reads the
moved fields, a parent is moved in place by one atomic `SET f = f +
:delta`: it waits for the row lock of a concurrent writer, then adds to the
value that writer committed (READ COMMITTED re-reads the row). Otherwise
the parent rows are locked first (`SELECT ... FOR NO KEY UPDATE`, in id
order) and read under the lock, so the value before and after is exact and
a recomputation sees every child committed by a writer that held the lock
before. SQLite serialises writers; it stores decimals as binary floating
point, so a moved sum is rounded to its 6 stored decimals. These refreshes
do not change `version` or `updated_at` (SPEC §3.1).

A delta keeps a value exact only if it was exact: a value never computed
(NULL: a field added since) is computed from the children instead, and a
restored record's own rollups are recomputed (`Rules.after_restore`), but
values written around the record service (SQL by hand, a rollup whose
filter changed) stay off until `recompute` rebuilds them (`loom rollups
recompute`); `check_drift` reports them (`loom rollups check`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field as dc_field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Iterable, Mapping

import sqlalchemy as sa

from loomcrm.metadata.expressions import ExpressionError, Scope
from loomcrm.metadata.model import FormulaField, LookupField, RelatedToField, RollupField
from loomcrm.platform.db import chunks

from .expressions import Compiled, Session, compile_expression
from .expressions.context import default_context
from .expressions.sql import JoinResolver, to_sql
from .rules.compiled import RuleSet, rules_for
from .rules.engine import RecordView, SaveRun
from .tables import CompiledSchema

MAX_WAVES = 50
SIX = Decimal("0.000001")
# values of the moment: a filter calling them can change without the child changing
_CONTEXT_FUNCTIONS = frozenset({"today", "now", "current_user", "has_role", "approval_status"})


@dataclass(frozen=True)
class RollupSpec:
    parent: str
    field: RollupField
    child: str
    via: str
    deps: frozenset[str]          # child fields whose change can move the value
    filter: Compiled | None
    # count / sum whose filter reads only the child's own values: kept up to
    # date by deltas (see `_share`) instead of re-aggregating
    incremental: bool = False
    # through a related-to field, which stores "object:id": the prefix of
    # the values naming a parent of this object
    prefix: str | None = None

    def key(self, parent_id: str) -> str:
        """What the child's `via` column holds for `parent_id`."""
        return parent_id if self.prefix is None else self.prefix + parent_id

    def parent_of(self, value: str | None) -> str | None:
        """The parent id a `via` value names (None: none of this object's)."""
        if value is None or self.prefix is None:
            return value
        return value[len(self.prefix):] if value.startswith(self.prefix) else None


@dataclass(frozen=True)
class PathDep:
    """A formula of `obj` — or, with `rollup`, that rollup's filter over
    `obj`, its child — reading `path`, one of whose hops ends on `target`
    reading its field `leaf`; `chain` are the lookups from `obj` to `target`."""

    obj: str
    path: str
    target: str
    leaf: str
    chain: tuple[tuple[str, str], ...]   # (object, lookup field) per hop, from obj
    rollup: RollupSpec | None = None


@dataclass
class Dependents:
    by_child: dict[str, list[RollupSpec]] = dc_field(default_factory=dict)
    by_parent: dict[str, list[RollupSpec]] = dc_field(default_factory=dict)
    paths: dict[str, list[PathDep]] = dc_field(default_factory=dict)
    # per object, the fields whose refresh something else reads: its own
    # formulas, rollups over it, lookup formulas of other objects
    read: dict[str, frozenset[str]] = dc_field(default_factory=dict)
    # per child object whose rollups all move by deltas that nothing reads,
    # and that nothing reads through a lookup: its specs (see `propagate`)
    in_place: dict[str, list[RollupSpec]] = dc_field(default_factory=dict)


@dataclass
class Change:
    """A record that changed: `fields` None means created, deleted or restored."""

    obj: str
    old: Mapping[str, Any] | None
    new: Mapping[str, Any] | None
    fields: set[str] | None


@dataclass
class Drift:
    object: str
    field: str
    id: str
    stored: Any
    expected: Any

    def as_json(self) -> dict[str, Any]:
        return {"object": self.object, "field": self.field, "id": self.id, "stored": _plain(self.stored),
                "expected": _plain(self.expected)}


def _plain(value):
    return str(value) if isinstance(value, Decimal) else value.isoformat() if hasattr(value, "isoformat") else value


def rules_version(schema: CompiledSchema):
    """A cache key for compiled expressions unique to this schema object:
    two databases at the same version number never share compiled rules."""
    return schema.cached("rules_token", lambda: (schema.version, uuid.uuid4().hex))


def schema_rules(schema: CompiledSchema, object_name: str) -> RuleSet:
    """`rules_for` the object, kept on the schema: a save looks them up
    without the shared cache's lock."""
    return schema.cached(("rules", object_name), lambda: rules_for(schema.objects, object_name, rules_version(schema)))


def dependents(schema: CompiledSchema) -> Dependents:
    return schema.cached("rollup_dependents", lambda: _find_dependents(schema))


def live_dependents(conn: sa.Connection, schema: CompiledSchema) -> Dependents:
    """`dependents` less the rollups the database keeps by triggers
    (`rollup_triggers`): what `propagate` has to do itself."""
    def build():
        from .rollup_triggers import maintained   # it builds on this module

        kept = maintained(conn, schema)
        full = dependents(schema)
        if not kept:
            return full
        live = Dependents(by_parent=full.by_parent, paths=full.paths, read=full.read)
        for child, specs in full.by_child.items():
            left = [spec for spec in specs if (spec.parent, spec.field.name) not in kept]
            if left:
                live.by_child[child] = left
                if child in full.in_place:
                    live.in_place[child] = left
        return live
    return schema.cached(("rollup_dependents_live", conn.dialect.name), build)


def _find_dependents(schema: CompiledSchema) -> Dependents:
    version = rules_version(schema)
    deps = Dependents()
    for parent in schema.objects.values():
        for f in parent.fields:
            if not isinstance(f, RollupField) or f.from_ not in schema.objects:
                continue
            compiled = None
            reads = {f.via}
            if f.field:
                reads.add(f.field)
            if f.filter:
                try:
                    compiled = compile_expression(f.filter, Scope(schema.objects, f.from_, version=version), expect="boolean")
                    reads |= {n.split(".", 1)[0] for n in compiled.names}
                except ExpressionError:
                    compiled = None
            via = schema.objects[f.from_].field(f.via)
            spec = RollupSpec(parent.name, f, f.from_, f.via, frozenset(reads), compiled,
                              _incremental(schema, f, compiled),
                              f"{parent.name}:" if isinstance(via, RelatedToField) else None)
            deps.by_child.setdefault(f.from_, []).append(spec)
            deps.by_parent.setdefault(parent.name, []).append(spec)

    def add_paths(obj, names, rollup: RollupSpec | None = None) -> None:
        for path in (n for n in names if "." in n):
            parts = path.split(".")
            current, chain = obj, []
            for part in parts[:-1]:
                lookup = current.field(part)
                if not isinstance(lookup, LookupField) or lookup.to not in schema.objects:
                    break
                chain.append((current.name, part))
                current = schema.objects[lookup.to]
                leaf = parts[len(chain)]
                deps.paths.setdefault(current.name, []).append(PathDep(obj.name, path, current.name, leaf, tuple(chain), rollup))

    read: dict[str, set[str]] = {}
    for obj in schema.objects.values():
        rs = rules_for(schema.objects, obj.name, version)
        for _, compiled in rs.formulas:
            read.setdefault(obj.name, set()).update(n for n in compiled.names if "." not in n)
            add_paths(obj, compiled.names)
    for child, specs in deps.by_child.items():
        for spec in specs:
            if spec.filter is not None:
                add_paths(schema.objects[child], spec.filter.paths, spec)
    for child, specs in deps.by_child.items():
        read.setdefault(child, set()).update(*(spec.deps for spec in specs))
    for target, items in deps.paths.items():
        read.setdefault(target, set()).update(dep.leaf for dep in items)
    deps.read = {name: frozenset(fields) for name, fields in read.items()}
    for child, specs in deps.by_child.items():
        if child not in deps.paths and all(spec.incremental and spec.field.name not in deps.read.get(spec.parent, ())
                                           for spec in specs):
            deps.in_place[child] = specs
    return deps


def _incremental(schema: CompiledSchema, f: RollupField, filter_: Compiled | None) -> bool:
    """Whether a delta keeps `f` exact: a count or sum whose filter (if
    any) compiles and depends on nothing but the child's own values — not
    on the clock, the user or other records, which change without the
    child changing — and, for a sum, over values of at most 6 decimals
    (the scale a sum is stored at, so adding them never rounds)."""
    if f.function not in ("count", "sum"):
        return False
    if f.filter and (filter_ is None or filter_.paths or filter_.functions & _CONTEXT_FUNCTIONS):
        return False
    if f.function == "count" or not f.field:
        return True
    column = schema.table(f.from_).c.get(f.field)
    if column is None:
        return False
    kind = column.type
    return isinstance(kind, sa.Integer) or isinstance(kind, sa.Numeric) and kind.scale is not None and kind.scale <= 6


# --- computing rollup values ------------------------------------------------------

def _column_value(spec: RollupSpec, value: Any) -> Any:
    fn = spec.field.function
    if fn == "count":
        return int(value or 0)
    if fn == "sum" and value is None:
        return Decimal("0.000000")
    if value is None:
        return None
    if fn in ("sum", "avg") or isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
        if isinstance(value, float):
            value = Decimal(repr(value))
        return Decimal(value).quantize(SIX, rounding=ROUND_HALF_UP)
    return value


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, Decimal)) and isinstance(b, (int, Decimal)) and not isinstance(a, bool):
        return Decimal(a) == Decimal(b)
    return a == b


def _aggregate_python(fn: str, values: list) -> Any:
    if fn == "count":   # of the values given, as SQL's count(field)
        return sum(1 for v in values if v is not None)
    values = [v for v in values if v is not None]
    if fn == "sum":
        return sum((Decimal(v) for v in values), Decimal(0))
    if not values:
        return None
    if fn == "min":
        return min(values)
    if fn == "max":
        return max(values)
    return sum((Decimal(v) for v in values), Decimal(0)) / len(values)


def _statement(schema: CompiledSchema, spec: RollupSpec, dialect: str, all_parents: bool):
    """("sql" | "rows" | "python", statement): built once per schema and
    rollup, the parent ids bound at run time (an expanding IN)."""
    return schema.cached(("rollup_statement", spec.parent, spec.field.name, dialect, all_parents),
                         lambda: _make_statement(schema, spec, dialect, all_parents))


def _make_statement(schema: CompiledSchema, spec: RollupSpec, dialect: str, all_parents: bool):
    child = schema.table(spec.child).alias("rc")
    tables = {**schema.tables, spec.child: child}
    via = child.c[spec.via]
    conditions = [child.c._deleted_at.is_(None), via.is_not(None)]
    if not all_parents:
        conditions.append(via.in_(sa.bindparam("ids", expanding=True)))
    elif spec.prefix is not None:
        conditions.append(via.startswith(spec.prefix, autoescape=True))
    fn = spec.field.function
    column = child.c[spec.field.field] if spec.field.field else None
    from_ = child
    if spec.field.filter:
        if spec.filter is None:
            raise ValueError(f"the filter of rollup {spec.parent}.{spec.field.name} does not compile")
        resolver = JoinResolver(schema.objects, spec.child, tables)
        try:
            if spec.filter.functions & _CONTEXT_FUNCTIONS:
                raise ExpressionError([])   # values of the moment: evaluated per run, in Python
            conditions.append(to_sql(spec.filter, resolver))
            from_ = resolver.from_clause
        except ExpressionError:
            return "python", sa.select(child).where(*conditions)
    if fn in ("sum", "avg") and dialect == "sqlite":   # SQLite sums decimals as floats: add them in Python
        return "rows", sa.select(via, column).select_from(from_).where(*conditions)
    if fn == "count":
        agg = sa.func.count(column) if column is not None else sa.func.count()
    else:
        agg = getattr(sa.func, fn)(column)
    return "sql", sa.select(via, agg).select_from(from_).where(*conditions).group_by(via)


def compute_rollup(conn: sa.Connection, schema: CompiledSchema, spec: RollupSpec, parent_ids: Iterable[str] | None) -> dict[str, Any]:
    """The value of `spec` for each parent id (all parents with children
    when `parent_ids` is None; parents without children are left out)."""
    ids = None if parent_ids is None else sorted(set(parent_ids))
    if ids is not None and not ids:
        return {}
    mode, statement = _statement(schema, spec, conn.dialect.name, ids is None)
    params = {} if ids is None else {"ids": [spec.key(pid) for pid in ids]}
    if mode == "python":
        return _compute_in_python(conn, schema, spec, [dict(r._mapping) for r in conn.execute(statement, params)])
    if mode == "rows":
        grouped: dict[str, list] = {}
        for key, value in conn.execute(statement, params):
            grouped.setdefault(spec.parent_of(key), []).append(value)
        return {pid: _column_value(spec, _aggregate_python(spec.field.function, values)) for pid, values in grouped.items()}
    return {spec.parent_of(key): _column_value(spec, value) for key, value in conn.execute(statement, params)}


def _compute_in_python(conn, schema, spec, rows: list[dict]) -> dict[str, Any]:
    fetch = db_fetch(conn, schema)
    context = default_context()
    grouped: dict[str, list] = {}
    for row in rows:
        view = RecordView(schema.objects, spec.child, row, fetch)
        try:
            keep = spec.filter.evaluate(view, context=context) is True
        except ExpressionError as exc:
            raise ValueError(f"the filter of rollup {spec.parent}.{spec.field.name} failed on {spec.child} {row['id']}: {exc}") from None
        if keep:
            grouped.setdefault(spec.parent_of(row[spec.via]), []).append(row[spec.field.field] if spec.field.field else 1)
    return {pid: _column_value(spec, _aggregate_python(spec.field.function, values)) for pid, values in grouped.items()}


def empty_value(spec: RollupSpec) -> Any:
    return _column_value(spec, None)


def db_fetch(conn: sa.Connection, schema: CompiledSchema):
    def fetch(object_name: str, rid: str):
        table = schema.tables.get(object_name)
        if table is None:
            return None
        query = schema.cached(("rollup_fetch", object_name), lambda: sa.select(table).where(
            table.c.id == sa.bindparam("rid"), table.c._deleted_at.is_(None)))
        row = conn.execute(query, {"rid": rid}).first()
        return dict(row._mapping) if row is not None else None
    return fetch


# --- refreshing after a change -------------------------------------------------------

def _lock_rows(conn, schema: CompiledSchema, table, ids: list[str]) -> dict[str, dict]:
    def build():
        query = sa.select(table).where(table.c.id.in_(sa.bindparam("ids", expanding=True))).order_by(table.c.id)
        if conn.dialect.name == "postgresql":
            # NO KEY UPDATE: compatible with the KEY SHARE lock a child's foreign
            # key check takes, so two child writers never deadlock on the parent.
            query = query.with_for_update(key_share=True)  # FOR NO KEY UPDATE
        return query
    query = schema.cached(("rollup_lock", table.name, conn.dialect.name), build)
    return {r.id: dict(r._mapping) for r in conn.execute(query, {"ids": ids})}


def _update_statement(schema: CompiledSchema, table, columns: frozenset[str]):
    # bind names start with "_": field names cannot, so they never clash with a column
    return schema.cached(("rollup_update", table.name, columns), lambda: sa.update(table).where(
        table.c.id == sa.bindparam("_id")).values({name: sa.bindparam(f"_v_{name}", type_=table.c[name].type) for name in columns}))


class _Prepared:
    """A statement SQLAlchemy compiled once for a dialect (SQL, quoting,
    parameter order, value conversions), run with `exec_driver_sql`.
    Executing the construct redoes per call what never changes here, which
    on SQLite costs about as much again as the statement itself; a delta
    UPDATE runs once per saved child."""

    __slots__ = ("sql", "fixed", "order", "convert")

    def __init__(self, statement, dialect):
        compiled = statement.compile(dialect=dialect)
        self.sql = compiled.string
        binds = compiled.binds
        self.fixed = {name: bind.value for name, bind in binds.items() if not bind.required}
        self.order = tuple(compiled.positiontup) if compiled.positional else None
        self.convert = {name: proc for name, bind in binds.items()
                        if (proc := bind.type.bind_processor(dialect)) is not None}

    def execute(self, conn: sa.Connection, params: Mapping[str, Any]):
        values = {**self.fixed, **params}
        for name, convert in self.convert.items():
            values[name] = convert(values[name])
        order = self.order
        return conn.exec_driver_sql(self.sql, values if order is None else tuple(values[n] for n in order))


def _delta_statement(schema: CompiledSchema, table, names: tuple[str, ...], dialect) -> _Prepared:
    """UPDATE ... SET f = f + :d_f per field, for a parent whose values are
    all stored (a NULL one was never computed: it matches no row)."""
    def build():
        values = {}
        for name in names:
            column = table.c[name]
            moved = column + sa.bindparam(f"_d_{name}", type_=column.type)
            if dialect.name == "sqlite" and not isinstance(column.type, sa.Integer):
                # SQLite keeps decimals as binary floating point: rounding each
                # sum to the stored scale keeps the error of one addition
                # from adding up over many.
                moved = sa.func.round(moved, 6)
            values[name] = moved
        statement = sa.update(table).where(table.c.id == sa.bindparam("_id", type_=table.c.id.type),
                                           *(table.c[n].is_not(None) for n in names)).values(values)
        return _Prepared(statement, dialect)
    return schema.cached(("rollup_delta", table.name, names, dialect.name), build)


def _share(spec: RollupSpec, row: Mapping[str, Any] | None, session: Session) -> tuple[str, int | Decimal] | None:
    """What the child `row` (None: no such child) adds to its parent's value
    of the incremental rollup `spec`: (parent id, amount), or None."""
    if row is None or row.get("_deleted_at") is not None:
        return None
    pid = spec.parent_of(row.get(spec.via))
    if pid is None:
        return None
    if spec.filter is not None and not _keeps(spec, row, session):
        return None
    value = row.get(spec.field.field) if spec.field.field else 1
    if spec.field.function == "count":
        return pid, 0 if value is None else 1
    if value is None:   # a sum skips blanks
        return pid, 0
    return pid, Decimal(repr(value)) if isinstance(value, float) else Decimal(value)


def _add_shares(specs: list[RollupSpec], change: Change, session: Session,
                deltas: dict[str, dict[str, dict[str, Any]]]) -> None:
    """Add what `change` moves of the incremental rollups `specs` to
    `deltas` (parent object -> parent id -> field -> amount): the old
    values leave the old parent, the new ones join the new. Zero amounts
    are left out."""
    for spec in specs:
        if change.fields is not None and not (change.fields & spec.deps):
            continue
        for row, sign in ((change.old, -1), (change.new, 1)):
            share = _share(spec, row, session)
            if share is not None and share[1]:
                amounts = deltas.setdefault(spec.parent, {}).setdefault(share[0], {})
                name = spec.field.name
                moved = amounts.get(name, 0) + sign * share[1]
                if moved:
                    amounts[name] = moved
                else:   # a child whose share did not move
                    del amounts[name]
                    if not amounts:
                        del deltas[spec.parent][share[0]]


def _keeps(spec: RollupSpec, row: Mapping[str, Any], session: Session) -> bool:
    try:
        try:
            return session.evaluate(spec.filter, row) is True
        except ExpressionError as exc:
            # The time budget is wall-clock time: a pause of the process can
            # cross it once; a filter that really runs too long fails again.
            if not any(e.code == "budget_exceeded" and "longer" in e.message for e in exc.errors):
                raise
            return session.evaluate(spec.filter, row) is True
    except ExpressionError as exc:
        raise ValueError(f"the filter of rollup {spec.parent}.{spec.field.name} failed on {spec.child} {row.get('id')}: {exc}") from None


def refresh_parents(conn: sa.Connection, schema: CompiledSchema, parent: str, pending: Mapping[str, set[str]],
                    deltas: Mapping[str, Mapping[str, Any]] | None = None) -> list[Change]:
    """Bring rollup fields of `parent` records up to date: those named per
    parent id in `pending` recomputed from the children, those in `deltas`
    (parent id -> field -> amount) moved by the amount; then the parent's
    formulas that read them. Writes what differs; the changes it made that
    something else reads."""
    return _refresh(conn, schema, parent, pending, deltas or {})[0]


def _refresh(conn, schema: CompiledSchema, parent: str, pending: Mapping[str, set[str]],
             deltas: Mapping[str, Mapping[str, Any]]) -> tuple[list[Change], int]:
    """`refresh_parents`, and how many records it wrote."""
    deltas = {pid: moved for pid, amounts in deltas.items() if (moved := {k: v for k, v in amounts.items() if v})}
    if not pending and not deltas:
        return [], 0
    table = schema.table(parent)
    if not pending:
        read = dependents(schema).read.get(parent, frozenset())
        if not any(read.intersection(amounts) for amounts in deltas.values()):
            return _move_in_place(conn, schema, parent, deltas)
    rows = _lock_rows(conn, schema, table, sorted(pending.keys() | deltas.keys()))
    specs = {s.field.name: s for s in dependents(schema).by_parent.get(parent, [])}
    wanted: dict[str, set[str]] = {}
    for pid, names in pending.items():
        for name in names:
            wanted.setdefault(name, set()).add(pid)
    new_values: dict[str, dict[str, Any]] = {pid: {} for pid in rows}
    for pid, amounts in deltas.items():
        row = rows.get(pid)
        for name, amount in amounts.items() if row is not None else ():
            stored = row.get(name)
            if stored is None:   # never computed (a field added since): from the children
                wanted.setdefault(name, set()).add(pid)
            else:
                new_values[pid][name] = _column_value(specs[name], stored + amount)
    for name, pids in wanted.items():
        spec = specs[name]
        values = compute_rollup(conn, schema, spec, pids)
        for pid in pids:
            if pid in rows:
                value = values.get(pid, empty_value(spec))
                if not _same(rows[pid].get(name), value):
                    new_values[pid][name] = value
    changes = _write_refresh(conn, schema, parent, rows, new_values)
    return changes, len(changes)


def _move_in_place(conn, schema: CompiledSchema, parent: str, deltas: Mapping[str, Mapping[str, Any]]) -> tuple[list[Change], int]:
    """Move rollups that nothing reads by their (non-zero) `deltas`, one
    statement per parent. It is atomic, so exact under concurrent writers
    without a lock taken first (READ COMMITTED re-reads the row). A parent
    whose value was never computed is computed from its children."""
    table = schema.table(parent)
    missed = {}
    for pid in sorted(deltas):
        amounts = deltas[pid]
        names = tuple(sorted(amounts))
        statement = _delta_statement(schema, table, names, conn.dialect)
        result = statement.execute(conn, {"_id": pid, **{f"_d_{n}": amounts[n] for n in names}})
        if result.rowcount != 1:
            missed[pid] = set(names)
    if not missed:
        return [], len(deltas)
    changes, written = _refresh(conn, schema, parent, missed, {})
    return changes, written + len(deltas) - len(missed)


def _write_refresh(conn, schema, obj_name: str, rows: dict[str, dict], new_values: dict[str, dict[str, Any]]) -> list[Change]:
    table = schema.table(obj_name)
    rules = schema_rules(schema, obj_name)
    fetch = db_fetch(conn, schema)
    changes = []
    for pid, values in new_values.items():
        if not values:
            continue
        old = rows[pid]
        record = {**old, **values}
        affected = rules.formulas_affected(values)
        if affected:
            run = SaveRun(rules, record, old, fetch=fetch)
            run.compute_formulas(affected)
            if run.errors:
                from .records import Invalid

                raise Invalid(f"refreshing {obj_name} {pid} failed", run.errors)
        update = {k: record[k] for k in record if k in table.c and not _same(record[k], old.get(k))}
        if not update:
            continue
        conn.execute(_update_statement(schema, table, frozenset(update)), {"_id": pid, **{f"_v_{k}": v for k, v in update.items()}})
        changes.append(Change(obj_name, old, record, set(update)))
    return changes


def _select_in(conn, query, column, values: set) -> set:
    """The first column of `query` where `column` is one of `values`, asked
    in chunks (a record read through a lookup can have many readers)."""
    found = set()
    for chunk in chunks(sorted(values)):
        found.update(conn.execute(query.where(column.in_(chunk))).scalars())
    return found


def _path_dependents(conn, schema, change: Change, pending: dict[str, dict[str, set[str]]]) -> list[Change]:
    """What reads the changed record through a lookup path: formulas of
    other records, refreshed here (the changes they made), and rollups
    whose filter reads it, added to `pending` (parent object -> parent id
    -> rollup fields) to be recomputed."""
    deps = dependents(schema).paths.get(change.obj, [])
    if not deps or change.fields is None or change.new is None:
        return []
    rid = change.new["id"]
    out: list[Change] = []
    by_obj: dict[str, tuple[set[str], set[str]]] = {}
    for dep in deps:
        if dep.leaf not in change.fields:
            continue
        ids = {rid}
        for obj_name, lookup in reversed(dep.chain):
            table = schema.table(obj_name)
            ids = _select_in(conn, sa.select(table.c.id).where(table.c._deleted_at.is_(None)), table.c[lookup], ids)
            if not ids:
                break
        if ids and dep.rollup is not None:
            spec, child = dep.rollup, schema.table(dep.obj)
            via = child.c[spec.via]
            for key in _select_in(conn, sa.select(via).where(via.is_not(None)).distinct(), child.c.id, ids):
                if (pid := spec.parent_of(key)) is None:
                    continue
                pending.setdefault(spec.parent, {}).setdefault(pid, set()).add(spec.field.name)
        elif ids:
            entry = by_obj.setdefault(dep.obj, (set(), set()))
            entry[0].update(ids)
            entry[1].add(dep.path)
    for obj_name, (ids, paths) in by_obj.items():
        rules = schema_rules(schema, obj_name)
        affected = rules.formulas_affected(paths)
        if not affected:
            continue
        table = schema.table(obj_name)
        rows = _lock_rows(conn, schema, table, sorted(ids))
        fetch = db_fetch(conn, schema)
        new_values = {}
        for pid, old in rows.items():
            record = dict(old)
            run = SaveRun(rules, record, old, fetch=fetch)
            run.compute_formulas(affected)
            new_values[pid] = {k: record[k] for k in record if not _same(record[k], old.get(k))}
        out += _write_refresh(conn, schema, obj_name, rows, new_values)
    return out


def as_stored(conn: sa.Connection, schema: CompiledSchema, obj_name: str, row: dict[str, Any]) -> dict[str, Any]:
    """`row`, read before its delete, with the rollups and formulas stored
    now: deleting its children first refreshed them, and what it takes from
    its parents must be what it gave them."""
    read = {name for spec in dependents(schema).by_child.get(obj_name, ()) for name in spec.deps}
    names = [f.name for f in schema.objects[obj_name].fields if isinstance(f, (RollupField, FormulaField)) and f.name in read]
    if not names:
        return row
    table = schema.table(obj_name)
    stored = conn.execute(sa.select(*(table.c[n] for n in names)).where(table.c.id == row["id"])).first()
    return {**row, **stored._mapping} if stored is not None else row


def propagate(conn: sa.Connection, schema: CompiledSchema, changes: list[Change]) -> int:
    """Bring rollups and lookup formulas up to date after `changes`, wave
    by wave (each refresh may change what others depend on). Returns the
    number of records refreshed."""
    deps = live_dependents(conn, schema)
    if not any(c.obj in deps.by_child or c.obj in deps.paths for c in changes):
        return 0  # nothing summarises or reads these records: most saves
    # Delta filters run in the context recomputations use (`compute_rollup`),
    # so both agree on dates in the company's time zone.
    session = Session(default_context())
    if len(changes) == 1 and changes[0].obj in deps.in_place:
        # one save of a child whose parents only move by deltas nothing
        # reads (the common case): no waves to follow
        deltas: dict[str, dict[str, dict[str, Any]]] = {}
        _add_shares(deps.in_place[changes[0].obj], changes[0], session, deltas)
        refreshed = 0
        for parent in sorted(deltas):   # parents locked in one order, as everywhere
            following, written = _move_in_place(conn, schema, parent, deltas[parent])
            refreshed += written + (propagate(conn, schema, following) if following else 0)
        return refreshed
    refreshed = 0
    wave = list(changes)
    for _ in range(MAX_WAVES):
        if not wave:
            return refreshed
        pending: dict[str, dict[str, set[str]]] = {}
        deltas: dict[str, dict[str, dict[str, Any]]] = {}
        following: list[Change] = []
        for change in wave:
            specs = deps.by_child.get(change.obj, [])
            _add_shares([spec for spec in specs if spec.incremental], change, session, deltas)
            for spec in specs:
                if spec.incremental or change.fields is not None and not (change.fields & spec.deps):
                    continue
                for row in (change.old, change.new):
                    pid = spec.parent_of(row.get(spec.via)) if row is not None else None
                    if pid is not None:
                        pending.setdefault(spec.parent, {}).setdefault(pid, set()).add(spec.field.name)
            if change.obj in deps.paths:
                following += _path_dependents(conn, schema, change, pending)
        refreshed += len(following)
        for parent in sorted(pending.keys() | deltas.keys()):
            changes, written = _refresh(conn, schema, parent, pending.get(parent, {}), deltas.get(parent, {}))
            following += changes
            refreshed += written
        wave = following
    raise RuntimeError(f"rollups and formulas kept changing after {MAX_WAVES} rounds")


# --- commands ---------------------------------------------------------------------------

def _specs(schema: CompiledSchema, object_name: str | None, field_name: str | None) -> list[RollupSpec]:
    specs = [s for items in dependents(schema).by_parent.values() for s in items]
    if object_name is not None:
        specs = [s for s in specs if s.parent == object_name]
    if field_name is not None:
        specs = [s for s in specs if s.field.name == field_name]
    # chains: a rollup over a rollup comes after the one it reads
    ordered, placed = [], set()
    remaining = list(specs)
    while remaining:
        progressed = False
        for spec in list(remaining):
            reads = {(spec.child, spec.field.field)} if spec.field.field else set()
            if not any((s.parent, s.field.name) in reads for s in remaining if s is not spec):
                ordered.append(spec)
                placed.add((spec.parent, spec.field.name))
                remaining.remove(spec)
                progressed = True
        if not progressed:
            ordered += remaining
            break
    return ordered


def expected_values(conn, schema, spec: RollupSpec) -> dict[str, Any]:
    table = schema.table(spec.parent)
    values = compute_rollup(conn, schema, spec, None)
    return {pid: values.get(pid, empty_value(spec)) for pid in conn.execute(sa.select(table.c.id)).scalars()}


def check_drift(conn: sa.Connection, schema: CompiledSchema, object_name: str | None = None,
                field_name: str | None = None, limit: int = 1000) -> list[Drift]:
    """Stored rollup values that differ from a recomputation (deleted
    parents included), at most `limit`."""
    drift: list[Drift] = []
    for spec in _specs(schema, object_name, field_name):
        table = schema.table(spec.parent)
        stored = dict(conn.execute(sa.select(table.c.id, table.c[spec.field.name])).all())
        for pid, value in expected_values(conn, schema, spec).items():
            if not _same(stored.get(pid), value):
                drift.append(Drift(spec.parent, spec.field.name, pid, stored.get(pid), value))
                if len(drift) >= limit:
                    return drift
    return drift


def recompute(conn: sa.Connection, schema: CompiledSchema, object_name: str | None = None,
              field_name: str | None = None) -> int:
    """Recompute every rollup (of one object, or one field) and everything
    that depends on the values that moved; the number of records changed."""
    changed = 0
    for spec in _specs(schema, object_name, field_name):
        table = schema.table(spec.parent)
        stored = dict(conn.execute(sa.select(table.c.id, table.c[spec.field.name])).all())
        wrong = {pid: {spec.field.name} for pid, value in expected_values(conn, schema, spec).items()
                 if not _same(stored.get(pid), value)}
        if wrong:
            changes = refresh_parents(conn, schema, spec.parent, wrong)
            changed += len(changes) + propagate(conn, schema, changes)
    return changed
