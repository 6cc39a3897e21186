"""Rollups the database keeps itself: counts and sums that move by deltas
(`rollups._incremental`) and that nothing else reads are maintained by
triggers on the child table, created with each published version, one set
per child table and lookup. The child's own write then moves its parents
in the same statement, without a second round trip from the record
service, and writes made around Loom (SQL by hand) keep the values exact
too.

A trigger's name holds a hash of its child table and lookup and one of its
definition, so the record service knows which rollups the database keeps
by looking the names up (`maintained`, once per metadata version): a
rollup without a trigger — a database published before triggers existed,
a filter the SQL back end cannot translate — is kept by
`rollups.propagate` as before, never by both.

Each publish drops every Loom trigger before it changes tables (SQLite
rebuilds a table to alter it, and a trigger naming a table mid-rebuild
breaks the rebuild) and creates the new version's afterwards
(`sync_triggers`), in the publish's transaction. Other processes take the
new version within `Runtime.refresh_interval` (1 s): a publish that moves
a rollup between a trigger and the record service (a formula starts to
read it, its filter changes) can leave drift from saves made in that
second by a process still on the old version; `loom rollups check` finds
it, as it finds drift from a changed filter.

A parent whose value is NULL (never computed: a field added since) is
computed from its children instead of moved, as the record service does."""

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
    """The triggers of one child table's rollups through one lookup."""

    specs: tuple[RollupSpec, ...]
    identity: str                   # what every one of its names starts with
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
    # through a related-to field ("object:id") a trigger would have to split
    # the value: those stay with the record service
    return [spec for specs in deps.by_child.values() for spec in specs
            if spec.incremental and spec.prefix is None and spec.field.name not in deps.read.get(spec.parent, ())]


def trigger_sets(schema: CompiledSchema, dialect) -> list[TriggerSet]:
    """The triggers this version wants: one set per child table and lookup,
    for the rollups through it the SQL back end can express."""
    return schema.cached(("rollup_triggers_wanted", dialect.name), lambda: _trigger_sets(schema, dialect))


def _trigger_sets(schema: CompiledSchema, dialect) -> list[TriggerSet]:
    if dialect.name not in ("sqlite", "postgresql"):
        return []
    groups: dict[tuple[str, str], list[_Rollup]] = {}
    for spec in eligible(schema):
        try:
            rollup = _Rollup(schema, spec, dialect)
        except (ExpressionError, sa.exc.CompileError, NotImplementedError):
            continue   # kept by the record service
        groups.setdefault((spec.child, spec.via), []).append(rollup)
    out = []
    for (child, via), rollups in sorted(groups.items()):
        try:
            out.append(_definition(child, via, rollups, dialect))
        except sa.exc.CompileError:
            continue
    return out


class _Rollup:
    """One rollup's pieces of SQL for a trigger. What a child gives is what
    `rollups._share` computes: a child that is not deleted, has a parent
    and passes the filter gives its value (a sum skips blanks; a count
    counts the child, or its non-blank value)."""

    def __init__(self, schema: CompiledSchema, spec: RollupSpec, dialect):
        self.spec = spec
        self.quote = quote = dialect.identifier_preparer.quote
        self.child, self.parent = child, parent = schema.table(spec.child), schema.table(spec.parent)
        self.stored = parent.c[spec.field.name]
        # SQLite keeps decimals as binary floating point: a sum is rounded to
        # its 6 stored decimals after each move, as the record service's delta is
        self.rounded = dialect.name == "sqlite" and not isinstance(self.stored.type, sa.Integer)
        self.filters = {row: (sql_text(to_sql(spec.filter, _RowResolver(row, child, quote)), dialect)
                              if spec.filter is not None else None) for row in ("OLD", "NEW")}
        # a parent never computed (NULL: a field added since) is computed
        # from its children instead of moved
        others = child.alias("loom_c")
        conditions = [others.c[spec.via] == parent.c.id, others.c._deleted_at.is_(None)]
        if spec.filter is not None:
            conditions.append(to_sql(spec.filter, JoinResolver(schema.objects, spec.child, {**schema.tables, spec.child: others})))
        if spec.field.function == "count":
            total = sa.func.count(others.c[spec.field.field]) if spec.field.field else sa.func.count()
        else:
            total = sa.func.coalesce(sa.func.sum(others.c[spec.field.field]), 0)
            total = sa.func.round(total, 6) if self.rounded else total
        self.everything = sa.select(total).where(*conditions).scalar_subquery()

    def counts(self, row: str) -> str:
        """The filter on `row` (deleted and parentless rows are left out
        by the caller)."""
        return f"({self.filters[row]})" if self.filters[row] is not None else "TRUE"

    def share(self, row: str) -> str:
        f = self.spec.field
        value = f"{row}.{self.quote(f.field)}" if f.field else None
        if f.function == "count":
            return "1" if value is None else f"(CASE WHEN {value} IS NULL THEN 0 ELSE 1 END)"
        return f"COALESCE({value}, 0)"

    def given(self, row: str) -> str:
        """What `row` gives its parent (0 when the filter leaves it out)."""
        return f"(CASE WHEN {self.counts(row)} THEN {self.share(row)} ELSE 0 END)"

    def moved(self, amount: str, fill: bool = True):
        """The parent's new value after `amount`; never computed: computed
        (`fill`) or left NULL."""
        column = f"{self.quote(self.parent.name)}.{self.quote(self.spec.field.name)}"
        plus = f"round({column} + {amount}, 6)" if self.rounded else f"{column} + {amount}"
        return sa.case((self.stored.is_(None), self.everything if fill else sa.null()), else_=sa.literal_column(plus))


def _definition(child_name: str, via_name: str, rollups: list[_Rollup], dialect) -> TriggerSet:
    quote = dialect.identifier_preparer.quote
    child, parent = rollups[0].child, rollups[0].parent
    via = quote(via_name)
    identity = _identity(child_name, via_name)
    watched = ", ".join(quote(name) for name in sorted(set().union(*(r.spec.deps for r in rollups)) | {"_deleted_at"}))

    def update(pid: str, amounts: list[str], condition: str | None = None, fill: bool = True) -> str:
        """One statement moving each rollup of parent `pid` by its amount."""
        where = [parent.c.id == sa.literal_column(pid)] + ([sa.literal_column(condition)] if condition else [])
        values = {r.stored: r.moved(amount, fill) for r, amount in zip(rollups, amounts)}
        return sql_text(sa.update(parent).where(*where).values(values), dialect) + ";"

    def gives(row: str) -> str:
        """`row` is a live child with a parent that some rollup counts."""
        return f"{row}._deleted_at IS NULL AND {row}.{via} IS NOT NULL AND ({' OR '.join(r.counts(row) for r in rollups)})"

    def given(row: str, sign: str = "") -> list[str]:
        # where `gives(row)` holds, a lone rollup counts the row
        return [sign + (r.share(row) if len(rollups) == 1 else r.given(row)) for r in rollups]

    if dialect.name == "sqlite":
        # An update moves two parents (or one twice): the moves first (a
        # value never computed stays NULL), then whichever was never computed.
        fill = sql_text(sa.update(parent).where(
            parent.c.id.in_([sa.literal_column(f"OLD.{via}"), sa.literal_column(f"NEW.{via}")]),
            sa.or_(*(r.stored.is_(None) for r in rollups))).values(
            {r.stored: sa.case((r.stored.is_(None), r.everything), else_=r.stored) for r in rollups}), dialect) + ";"
        table = quote(child.name)
        insert = update(f"NEW.{via}", given("NEW"), gives("NEW"))
        delete = update(f"OLD.{via}", given("OLD", "-"), gives("OLD"))
        moves = (update(f"OLD.{via}", given("OLD", "-"), gives("OLD"), fill=False) + " "
                 + update(f"NEW.{via}", given("NEW"), gives("NEW"), fill=False))
        bodies = {"i": f"AFTER INSERT ON {table} BEGIN {insert} END",
                  "u": f"AFTER UPDATE OF {watched} ON {table} BEGIN {moves} {fill} END",
                  "d": f"AFTER DELETE ON {table} BEGIN {delete} END"}
        base = identity + _digest(repr(sorted(bodies.items())))
        return TriggerSet(tuple(r.spec for r in rollups), identity,
                          tuple(f"CREATE TRIGGER {base}_{kind} {body}" for kind, body in bodies.items()))
    # PostgreSQL: one function for the lookup's rollups. The old and the new
    # parent are each moved by one statement for all of them, in id order as
    # the record service locks parents; the statement also computes a value
    # never computed, so a concurrent writer waiting for the row re-reads it
    # (READ COMMITTED) and adds to what the first stored. Variables start
    # with "_loom_", as no field's name can, and columns are qualified.
    olds = [f"_loom_old_{i}" for i in range(len(rollups))]
    news = [f"_loom_new_{i}" for i in range(len(rollups))]
    declare = " ".join(f"{name} numeric := 0;" for name in olds + news)
    take_old = " ".join(f"{name} := {amount};" for name, amount in zip(olds, given("OLD", "-")))
    take_new = " ".join(f"{name} := {amount};" for name, amount in zip(news, given("NEW")))
    merge = " ".join(f"{new} := {new} + {old};" for old, new in zip(olds, news))
    body = f"""
#variable_conflict use_column
DECLARE _loom_old text; _loom_new text; {declare}
BEGIN
  IF TG_OP <> 'INSERT' THEN
    IF {gives('OLD')} THEN _loom_old := OLD.{via}; {take_old} END IF;
  END IF;
  IF TG_OP <> 'DELETE' THEN
    IF {gives('NEW')} THEN _loom_new := NEW.{via}; {take_new} END IF;
  END IF;
  IF _loom_old = _loom_new THEN {merge} _loom_old := NULL; END IF;
  IF {' AND '.join(f'{name} = 0' for name in olds)} THEN _loom_old := NULL; END IF;
  IF {' AND '.join(f'{name} = 0' for name in news)} THEN _loom_new := NULL; END IF;
  IF _loom_old IS NOT NULL AND (_loom_new IS NULL OR _loom_old < _loom_new) THEN
    {update('_loom_old', olds)} _loom_old := NULL;
  END IF;
  IF _loom_new IS NOT NULL THEN {update('_loom_new', news)} END IF;
  IF _loom_old IS NOT NULL THEN {update('_loom_old', olds)} END IF;
  RETURN NULL;
END"""
    if "$loom$" in body:   # a filter's text would end the quoted body
        raise sa.exc.CompileError("a filter holds the function body's quote")
    trigger = f"AFTER INSERT OR DELETE OR UPDATE OF {watched} ON {quote(child.name)} FOR EACH ROW"
    name = identity + _digest(body + trigger)
    return TriggerSet(tuple(r.spec for r in rollups), identity, (
        f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $loom${body}$loom$",
        f"CREATE TRIGGER {name} {trigger} EXECUTE FUNCTION {name}()"))


def _identity(child: str, via: str) -> str:
    """The start of a trigger's name: which child table and lookup it keeps
    the rollups of."""
    return f"{PREFIX}{_digest(f'{child}.{via}')}_"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def existing(conn: sa.Connection) -> dict[str, str | None]:
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
    by an earlier publish or Loom version) counts too: it moves the values,
    so the record service must not; the next publish replaces it."""
    def find():
        triggers = [name for name, table in existing(conn).items() if table is not None]
        return frozenset((spec.parent, spec.field.name) for made in trigger_sets(schema, conn.dialect)
                         if any(name.startswith(made.identity) for name in triggers) for spec in made.specs)
    return schema.cached(("rollups_maintained", conn.dialect.name), find)


def drop_triggers(conn: sa.Connection) -> None:
    """Every Loom trigger (before a publish changes tables)."""
    quote = conn.dialect.identifier_preparer.quote
    for name, table in existing(conn).items():
        if table is None:
            conn.exec_driver_sql(f"DROP FUNCTION IF EXISTS {name} CASCADE")
        else:
            conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name}" + (f" ON {quote(table)}" if conn.dialect.name == "postgresql" else ""))


def sync_triggers(conn: sa.Connection, schema: CompiledSchema) -> None:
    """Create the triggers of `schema` (after `drop_triggers` and the
    table changes)."""
    for made in trigger_sets(schema, conn.dialect):
        for statement in made.ddl:
            # a driver with %s placeholders reads % as one even without parameters
            escaped = conn.dialect.paramstyle in ("format", "pyformat")
            conn.exec_driver_sql(statement.replace("%", "%%") if escaped else statement)
