"""Rollup fields (SPEC §3.2) and the refreshes a change causes elsewhere.

After a record is written, deleted or restored, `propagate` brings every
value that depends on it up to date, in the same transaction:

- rollups on its parents (count / sum / min / max / avg over the children
  through a lookup, with an optional filter), for the old and the new
  parent when the child was re-parented;
- formulas of the parents that read those rollups, and rollups of the
  grandparents over them (a chain such as payment -> order.paid_amount ->
  account.collected_amount);
- formulas of other records that read the changed record through a lookup
  path (`account.industry`).

A rollup is recomputed from the children, never adjusted by a delta, so it
is exact whatever happened before. On PostgreSQL the parent rows are locked
(`SELECT ... FOR UPDATE`, in id order) before the aggregate is read in a new
statement: under READ COMMITTED that statement sees every child committed by
a writer that held the lock before, so concurrent child writes never lose an
update. SQLite serialises writers. The filter runs in SQL where the SQL back
end can translate it, else in Python over the children. These refreshes do
not change `version` or `updated_at` (SPEC §3.1).

`recompute` rebuilds every rollup (the `loom rollups recompute` command) and
`check_drift` reports stored values that differ from a recomputation
(`loom rollups check`).
"""

from __future__ import annotations

from dataclasses import dataclass, field as dc_field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Iterable, Mapping

import sqlalchemy as sa

from loomcrm.metadata.expressions import ExpressionError, Scope
from loomcrm.metadata.model import FormulaField, LookupField, RollupField

from .expressions import Compiled, compile_expression
from .expressions.sql import JoinResolver, to_sql
from .rules.compiled import rules_for
from .rules.engine import RecordView, SaveRun
from .tables import CompiledSchema

MAX_WAVES = 50
SIX = Decimal("0.000001")


@dataclass(frozen=True)
class RollupSpec:
    parent: str
    field: RollupField
    child: str
    via: str
    deps: frozenset[str]          # child fields whose change can move the value
    filter: Compiled | None


@dataclass(frozen=True)
class PathDep:
    """A formula of `obj` reading `path`, whose hop `level` ends on `target`
    reading its field `leaf`; `chain` are the lookups from `obj` to `target`."""

    obj: str
    path: str
    target: str
    leaf: str
    chain: tuple[tuple[str, str], ...]   # (object, lookup field) per hop, from obj


@dataclass
class Dependents:
    by_child: dict[str, list[RollupSpec]] = dc_field(default_factory=dict)
    by_parent: dict[str, list[RollupSpec]] = dc_field(default_factory=dict)
    paths: dict[str, list[PathDep]] = dc_field(default_factory=dict)


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
    token = schema.extra.get("rules_token")
    if token is None:
        import uuid

        token = schema.extra.setdefault("rules_token", (schema.version, uuid.uuid4().hex))
    return token


def dependents(schema: CompiledSchema) -> Dependents:
    cached = schema.extra.get("rollup_dependents")
    if cached is not None:
        return cached
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
            spec = RollupSpec(parent.name, f, f.from_, f.via, frozenset(reads), compiled)
            deps.by_child.setdefault(f.from_, []).append(spec)
            deps.by_parent.setdefault(parent.name, []).append(spec)
    for obj in schema.objects.values():
        rs = rules_for(schema.objects, obj.name, version)
        for _, compiled in rs.formulas:
            for path in (n for n in compiled.names if "." in n):
                parts = path.split(".")
                current, chain = obj, []
                for part in parts[:-1]:
                    lookup = current.field(part)
                    if not isinstance(lookup, LookupField) or lookup.to not in schema.objects:
                        break
                    chain.append((current.name, part))
                    current = schema.objects[lookup.to]
                    leaf = parts[len(chain)]
                    deps.paths.setdefault(current.name, []).append(PathDep(obj.name, path, current.name, leaf, tuple(chain)))
    schema.extra["rollup_dependents"] = deps
    return deps


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
    if fn == "count":
        return len(values)
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


_CONTEXT_FUNCTIONS = frozenset({"today", "now", "current_user", "has_role"})


def _statement(schema: CompiledSchema, spec: RollupSpec, dialect: str, all_parents: bool):
    """("sql" | "rows" | "python", statement): built once per schema and
    rollup, the parent ids bound at run time (an expanding IN)."""
    key = ("rollup_statement", spec.parent, spec.field.name, dialect, all_parents)
    cached = schema.extra.get(key)
    if cached is not None:
        return cached
    child = schema.table(spec.child).alias("rc")
    tables = {**schema.tables, spec.child: child}
    via = child.c[spec.via]
    conditions = [child.c._deleted_at.is_(None), via.is_not(None)]
    if not all_parents:
        conditions.append(via.in_(sa.bindparam("ids", expanding=True)))
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
            result = ("python", sa.select(child).where(*conditions))
            schema.extra[key] = result
            return result
    if fn in ("sum", "avg") and dialect == "sqlite":   # SQLite sums decimals as floats: add them in Python
        result = ("rows", sa.select(via, column).select_from(from_).where(*conditions))
    else:
        if fn == "count":
            agg = sa.func.count(column) if column is not None else sa.func.count()
        else:
            agg = getattr(sa.func, fn)(column)
        result = ("sql", sa.select(via, agg).select_from(from_).where(*conditions).group_by(via))
    schema.extra[key] = result
    return result


def compute_rollup(conn: sa.Connection, schema: CompiledSchema, spec: RollupSpec, parent_ids: Iterable[str] | None) -> dict[str, Any]:
    """The value of `spec` for each parent id (all parents with children
    when `parent_ids` is None; parents without children are left out)."""
    ids = None if parent_ids is None else sorted(set(parent_ids))
    if ids is not None and not ids:
        return {}
    mode, statement = _statement(schema, spec, conn.dialect.name, ids is None)
    params = {} if ids is None else {"ids": ids}
    if mode == "python":
        return _compute_in_python(conn, schema, spec, [dict(r._mapping) for r in conn.execute(statement, params)])
    if mode == "rows":
        grouped: dict[str, list] = {}
        for pid, value in conn.execute(statement, params):
            grouped.setdefault(pid, []).append(value)
        return {pid: _column_value(spec, _aggregate_python(spec.field.function, values)) for pid, values in grouped.items()}
    return {pid: _column_value(spec, value) for pid, value in conn.execute(statement, params)}


def _compute_in_python(conn, schema, spec, rows: list[dict]) -> dict[str, Any]:
    fetch = db_fetch(conn, schema)
    from .expressions import EvalContext

    context = EvalContext()
    grouped: dict[str, list] = {}
    for row in rows:
        view = RecordView(schema.objects, spec.child, row, fetch)
        try:
            keep = spec.filter.evaluate(view, context=context) is True
        except ExpressionError as exc:
            raise ValueError(f"the filter of rollup {spec.parent}.{spec.field.name} failed on {spec.child} {row['id']}: {exc}") from None
        if keep:
            grouped.setdefault(row[spec.via], []).append(row[spec.field.field] if spec.field.field else 1)
    return {pid: _column_value(spec, _aggregate_python(spec.field.function, values)) for pid, values in grouped.items()}


def empty_value(spec: RollupSpec) -> Any:
    return _column_value(spec, None)


def db_fetch(conn: sa.Connection, schema: CompiledSchema):
    def fetch(object_name: str, rid: str):
        table = schema.tables.get(object_name)
        if table is None:
            return None
        row = conn.execute(sa.select(table).where(table.c.id == rid, table.c._deleted_at.is_(None))).first()
        return dict(row._mapping) if row is not None else None
    return fetch


# --- refreshing after a change -------------------------------------------------------

def _lock_rows(conn, schema: CompiledSchema, table, ids: list[str]) -> dict[str, dict]:
    key = ("rollup_lock", table.name, conn.dialect.name)
    query = schema.extra.get(key)
    if query is None:
        query = sa.select(table).where(table.c.id.in_(sa.bindparam("ids", expanding=True))).order_by(table.c.id)
        if conn.dialect.name == "postgresql":
            # NO KEY UPDATE: compatible with the KEY SHARE lock a child's foreign
            # key check takes, so two child writers never deadlock on the parent.
            query = query.with_for_update(key_share=True)  # FOR NO KEY UPDATE
        schema.extra[key] = query
    return {r.id: dict(r._mapping) for r in conn.execute(query, {"ids": ids})}


def _update_statement(schema: CompiledSchema, table, columns: frozenset[str]):
    key = ("rollup_update", table.name, columns)
    statement = schema.extra.get(key)
    if statement is None:
        statement = sa.update(table).where(table.c.id == sa.bindparam("_id")).values(
            {name: sa.bindparam(f"v_{name}", type_=table.c[name].type) for name in columns})
        schema.extra[key] = statement
    return statement


def refresh_parents(conn: sa.Connection, schema: CompiledSchema, parent: str, pending: Mapping[str, set[str]]) -> list[Change]:
    """Recompute the rollup fields named per parent id, then the parent's
    formulas that read them; write what differs. The changes it made."""
    ids = sorted(pending)
    table = schema.table(parent)
    rows = _lock_rows(conn, schema, table, ids)
    specs = {s.field.name: s for s in dependents(schema).by_parent.get(parent, [])}
    wanted: dict[str, set[str]] = {}
    for pid, names in pending.items():
        for name in names:
            wanted.setdefault(name, set()).add(pid)
    new_values: dict[str, dict[str, Any]] = {pid: {} for pid in rows}
    for name, pids in wanted.items():
        spec = specs[name]
        values = compute_rollup(conn, schema, spec, pids)
        for pid in pids:
            if pid in rows:
                value = values.get(pid, empty_value(spec))
                if not _same(rows[pid].get(name), value):
                    new_values[pid][name] = value
    return _write_refresh(conn, schema, parent, rows, new_values)


def _write_refresh(conn, schema, obj_name: str, rows: dict[str, dict], new_values: dict[str, dict[str, Any]]) -> list[Change]:
    table = schema.table(obj_name)
    rules = rules_for(schema.objects, obj_name, rules_version(schema))
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
        conn.execute(_update_statement(schema, table, frozenset(update)), {"_id": pid, **{f"v_{k}": v for k, v in update.items()}})
        changes.append(Change(obj_name, old, record, set(update)))
    return changes


def _path_dependents(conn, schema, change: Change) -> list[Change]:
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
            ids = set(conn.execute(sa.select(table.c.id).where(table.c[lookup].in_(sorted(ids)), table.c._deleted_at.is_(None))).scalars())
            if not ids:
                break
        if ids:
            entry = by_obj.setdefault(dep.obj, (set(), set()))
            entry[0].update(ids)
            entry[1].add(dep.path)
    for obj_name, (ids, paths) in by_obj.items():
        rules = rules_for(schema.objects, obj_name, rules_version(schema))
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


def propagate(conn: sa.Connection, schema: CompiledSchema, changes: list[Change]) -> int:
    """Bring rollups and lookup formulas up to date after `changes`, wave
    by wave (each refresh may change what others depend on). Returns the
    number of records refreshed."""
    deps = dependents(schema)
    refreshed = 0
    wave = list(changes)
    for _ in range(MAX_WAVES):
        if not wave:
            return refreshed
        pending: dict[str, dict[str, set[str]]] = {}
        following: list[Change] = []
        for change in wave:
            for spec in deps.by_child.get(change.obj, []):
                if change.fields is not None and not (change.fields & spec.deps):
                    continue
                for row in (change.old, change.new):
                    pid = row.get(spec.via) if row is not None else None
                    if pid is not None:
                        pending.setdefault(spec.parent, {}).setdefault(pid, set()).add(spec.field.name)
            following += _path_dependents(conn, schema, change)
        for parent, items in pending.items():
            following += refresh_parents(conn, schema, parent, items)
        refreshed += len(following)
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
