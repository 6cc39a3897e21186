"""Rollups the database keeps itself: a count or sum that moves by deltas
(`rollups._incremental`) and that nothing else reads is maintained by
triggers on the child table, created with each published version. The
child's own write then moves its parents in the same statement, without a
second round trip from the record service, and writes made around Loom
(SQL by hand) keep the value exact too.

A trigger's name holds a hash of its rollup and one of its definition, so
the record service knows which rollups the database keeps by looking the
names up (`maintained`, once per metadata version): a rollup without a
trigger — a database published before triggers existed, a filter the SQL
back end cannot translate — is kept by `rollups.propagate` as before,
never by both.

Each publish drops every Loom trigger before it changes tables (SQLite
rebuilds a table to alter it, and a trigger naming a table mid-rebuild
breaks the rebuild) and creates the new version's afterwards
(`sync_triggers`), in the publish's transaction. Other processes take the
new version within `Runtime.refresh_interval` (1 s): a publish that moves
a rollup between a trigger and the record service (a formula starts to
read it, its filter changes) can leave drift from saves made in that
second by a process still on the old version; `loom rollups check` finds
it, as it finds drift from a changed filter.

What a trigger adds and takes back is what `rollups._share` computes: a
child that is not deleted, has a parent and passes the filter gives its
value (a sum skips blanks; a count counts the child, or its non-blank
value). A parent whose value is NULL (never computed: a field added since)
is computed from its children instead, as the record service does.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import sqlalchemy as sa

from loomcrm.metadata.expressions import ExpressionError

from .expressions.sql import JoinResolver, sql_text, to_sql
from .rollups import RollupSpec, dependents
from .tables import CompiledSchema

PREFIX = "loom_r_"


@dataclass(frozen=True)
class TriggerSet:
    spec: RollupSpec
    names: tuple[str, ...]          # the triggers that must all exist
    ddl: tuple[str, ...]            # statements creating them (and, on PostgreSQL, their function)


class _RowResolver:
    """Names of the child as columns of a trigger's NEW or OLD row."""

    def __init__(self, row: str, table: sa.Table, quote):
        self.row, self.table, self.quote = row, table, quote

    def column(self, path: tuple[str, ...]):
        if len(path) != 1:
            raise ExpressionError([])   # lookup paths never reach here (not incremental)
        return sa.literal_column(f"{self.row}.{self.quote(path[0])}", type_=self.table.c[path[0]].type)


def eligible(schema: CompiledSchema) -> list[RollupSpec]:
    """Rollups that move by deltas and whose value nothing else reads."""
    deps = dependents(schema)
    return [spec for specs in deps.by_child.values() for spec in specs
            if spec.incremental and spec.field.name not in deps.read.get(spec.parent, ())]


def trigger_sets(schema: CompiledSchema, dialect) -> list[TriggerSet]:
    """The triggers this version wants, per rollup the SQL back end can
    express."""
    return schema.cached(("rollup_triggers_wanted", dialect.name), lambda: _trigger_sets(schema, dialect))


def _trigger_sets(schema: CompiledSchema, dialect) -> list[TriggerSet]:
    out = []
    for spec in eligible(schema):
        try:
            made = _definition(schema, spec, dialect)
        except (ExpressionError, sa.exc.CompileError, NotImplementedError):
            continue   # kept by the record service
        if made is not None:
            out.append(made)
    return out


def _definition(schema: CompiledSchema, spec: RollupSpec, dialect) -> TriggerSet | None:
    if dialect.name not in ("sqlite", "postgresql"):
        return None
    quote = dialect.identifier_preparer.quote
    child, parent = schema.table(spec.child), schema.table(spec.parent)
    column, target, via = quote(spec.field.name), quote(parent.name), quote(spec.via)
    sqlite = dialect.name == "sqlite"
    # SQLite keeps decimals as binary floating point: a sum is rounded to
    # its 6 stored decimals after each move, as the record service's delta is
    rounded = sqlite and not isinstance(parent.c[spec.field.name].type, sa.Integer)

    def counted(row: str) -> str:
        parts = [f"{row}._deleted_at IS NULL", f"{row}.{via} IS NOT NULL"]
        if spec.filter is not None:
            parts.append(f"({sql_text(to_sql(spec.filter, _RowResolver(row, child, quote)), dialect)})")
        return " AND ".join(parts)

    def share(row: str) -> str:
        value = f"{row}.{quote(spec.field.field)}" if spec.field.field else None
        if spec.field.function == "count":
            return "1" if value is None else f"(CASE WHEN {value} IS NULL THEN 0 ELSE 1 END)"
        return f"COALESCE({value}, 0)"

    def moved(amount: str) -> str:
        return f"round({column} + {amount}, 6)" if rounded else f"{column} + {amount}"

    # A parent whose value was never computed (NULL: a field added since) is
    # computed from its children instead of moved.
    others = child.alias("loom_c")
    conditions = [others.c[spec.via] == parent.c.id, others.c._deleted_at.is_(None)]
    if spec.filter is not None:
        conditions.append(to_sql(spec.filter, JoinResolver(schema.objects, spec.child, {**schema.tables, spec.child: others})))
    if spec.field.function == "count":
        total = sa.func.count(others.c[spec.field.field]) if spec.field.field else sa.func.count()
    else:
        total = sa.func.coalesce(sa.func.sum(others.c[spec.field.field]), 0)
        total = sa.func.round(total, 6) if rounded else total
    everything = sa.select(total).where(*conditions).scalar_subquery()
    stored = parent.c[spec.field.name]

    def move_or_fill(pid: str, amount: str, condition: str | None = None) -> str:
        """Add `amount` to parent `pid`'s value, or compute a value never
        computed (the child's change included)."""
        value = sa.case((stored.is_(None), everything), else_=sa.literal_column(moved(amount)))
        where = [parent.c.id == sa.literal_column(pid)] + ([sa.literal_column(condition)] if condition else [])
        return sql_text(sa.update(parent).where(*where).values({stored: value}), dialect) + ";"

    def fill(*ids: str) -> str:
        return sql_text(sa.update(parent).where(parent.c.id.in_([sa.literal_column(i) for i in ids]), stored.is_(None))
                        .values({stored: everything}), dialect) + ";"

    watched = ", ".join(quote(name) for name in sorted(spec.deps | {"_deleted_at"}))
    if sqlite:
        def move(row: str, sign: str) -> str:
            return (f"UPDATE {target} SET {column} = {moved(f'{sign}{share(row)}')} "
                    f"WHERE id = {row}.{via} AND {column} IS NOT NULL AND {counted(row)};")
        # An update moves two parents (or one twice): the moves first, then
        # whichever of them was never computed.
        bodies = {"i": f"AFTER INSERT ON {quote(child.name)} "
                       f"BEGIN {move_or_fill(f'NEW.{via}', share('NEW'), counted('NEW'))} END",
                  "u": f"AFTER UPDATE OF {watched} ON {quote(child.name)} "
                       f"BEGIN {move('OLD', '-')} {move('NEW', '')} {fill(f'OLD.{via}', f'NEW.{via}')} END",
                  "d": f"AFTER DELETE ON {quote(child.name)} "
                       f"BEGIN {move_or_fill(f'OLD.{via}', '-' + share('OLD'), counted('OLD'))} END"}
        base = _name(spec, repr(sorted(bodies.items())))
        return TriggerSet(spec, tuple(f"{base}_{kind}" for kind in bodies),
                          tuple(f"CREATE TRIGGER {base}_{kind} {body}" for kind, body in bodies.items()))
    # PostgreSQL: one function per rollup. The old and the new parent are
    # moved in id order, as the record service locks parents, each by one
    # statement that also computes a never-computed value: a concurrent
    # writer waiting for the row re-reads it (READ COMMITTED) and adds to
    # what the first one stored. Variables start with "_loom_", as no
    # field's name can.
    body = f"""
DECLARE _loom_old text; _loom_new text; _loom_old_amount numeric := 0; _loom_new_amount numeric := 0;
BEGIN
  IF TG_OP <> 'INSERT' THEN
    IF {counted('OLD')} THEN _loom_old := OLD.{via}; _loom_old_amount := -{share('OLD')}; END IF;
  END IF;
  IF TG_OP <> 'DELETE' THEN
    IF {counted('NEW')} THEN _loom_new := NEW.{via}; _loom_new_amount := {share('NEW')}; END IF;
  END IF;
  IF _loom_old = _loom_new THEN _loom_new_amount := _loom_new_amount + _loom_old_amount; _loom_old := NULL; END IF;
  IF _loom_old IS NOT NULL AND _loom_old_amount <> 0 AND (_loom_new IS NULL OR _loom_old < _loom_new) THEN
    {move_or_fill('_loom_old', '_loom_old_amount')} _loom_old := NULL;
  END IF;
  IF _loom_new IS NOT NULL AND _loom_new_amount <> 0 THEN {move_or_fill('_loom_new', '_loom_new_amount')} END IF;
  IF _loom_old IS NOT NULL AND _loom_old_amount <> 0 THEN {move_or_fill('_loom_old', '_loom_old_amount')} END IF;
  RETURN NULL;
END"""
    if "$loom$" in body:   # a filter's text would end the quoted body
        raise sa.exc.CompileError("the filter holds the function body's quote")
    trigger = f"AFTER INSERT OR DELETE OR UPDATE OF {watched} ON {quote(child.name)} FOR EACH ROW"
    name = _name(spec, body + trigger)
    return TriggerSet(spec, (name,), (
        f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $loom${body}$loom$",
        f"CREATE TRIGGER {name} {trigger} EXECUTE FUNCTION {name}()"))


def _identity(parent: str, field: str) -> str:
    """The part of a trigger's name that says which rollup it keeps."""
    return f"{PREFIX}{hashlib.sha256(f'{parent}.{field}'.encode()).hexdigest()[:12]}_"


def _name(spec: RollupSpec, definition: str) -> str:
    return _identity(spec.parent, spec.field.name) + hashlib.sha256(definition.encode()).hexdigest()[:12]


def _existing(conn: sa.Connection) -> dict[str, str | None]:
    """Loom's triggers in the database: name -> table (None for a
    PostgreSQL trigger function)."""
    pattern = PREFIX.replace("_", r"\_") + "%"
    if conn.dialect.name == "sqlite":
        rows = conn.exec_driver_sql("SELECT name, tbl_name FROM sqlite_master WHERE type = 'trigger' "
                                    "AND name LIKE ? ESCAPE '\\'", (pattern,)).all()
        return dict(rows)
    if conn.dialect.name == "postgresql":
        triggers = conn.exec_driver_sql(
            "SELECT t.tgname, c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE NOT t.tgisinternal AND n.nspname = current_schema() AND t.tgname LIKE %s", (pattern,)).all()
        functions = conn.exec_driver_sql(
            "SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
            "WHERE n.nspname = current_schema() AND p.proname LIKE %s", (pattern,)).scalars().all()
        return {**{f"{name}()": None for name in functions}, **dict(triggers)}
    return {}


def maintained(conn: sa.Connection, schema: CompiledSchema) -> frozenset[tuple[str, str]]:
    """(parent, field) of the rollups this database keeps by triggers,
    asked once per metadata version. A trigger of an older definition (made
    by an earlier publish or Loom version) counts too: it moves the value,
    so the record service must not; the next publish replaces it."""
    def find():
        present = _existing(conn)
        specs = [spec for items in dependents(schema).by_child.values() for spec in items]
        return frozenset((spec.parent, spec.field.name) for spec in specs
                         if any(name.startswith(_identity(spec.parent, spec.field.name)) for name in present))
    return schema.cached(("rollups_maintained", conn.dialect.name), find)


def drop_triggers(conn: sa.Connection) -> None:
    """Every Loom trigger (before a publish changes tables)."""
    quote = conn.dialect.identifier_preparer.quote
    for name, table in _existing(conn).items():
        if table is None:
            conn.exec_driver_sql(f"DROP FUNCTION IF EXISTS {name} CASCADE")
        else:
            conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name}" + (f" ON {quote(table)}" if conn.dialect.name == "postgresql" else ""))


def sync_triggers(conn: sa.Connection, schema: CompiledSchema) -> None:
    """Create the triggers of `schema` (after `drop_triggers` and the
    table changes)."""
    for made in trigger_sets(schema, conn.dialect):
        for statement in made.ddl:
            # psycopg reads % as a placeholder even without parameters
            conn.exec_driver_sql(statement.replace("%", "%%") if conn.dialect.name == "postgresql" else statement)
