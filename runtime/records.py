"""The record service: the one entry point for every write (API, forms,
import, automation), always with the acting user.

The save path, in order: unknown and read-only keys, coercion and
normalisation (field-type registry), literal defaults and auto-numbers,
the rules hooks (defaults, formulas, validation rules, stage criteria: see
`RuleHooks`), required values, lookup and user existence, unique values;
then in one transaction the row write with `version` + 1, history rows for
`track_history` fields and an outbox event, and the after-write hooks. All
problems of one save are reported together.

`create_many` runs the same path for many new records of one object with
one query per batch for each check and one statement per batch for each
write (imports).
"""

from __future__ import annotations

import contextlib
import dataclasses
import uuid
from functools import partial, wraps
from dataclasses import dataclass, field as dc_field
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Iterator, Mapping

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as sa_postgresql, sqlite as sa_sqlite

from loomcrm.metadata.model import FieldDef, ObjectDef
from loomcrm.platform import systemdb
from loomcrm.platform.db import chunks, write_transaction

from .expressions import Compiled
from .fields import FieldError, FieldType, field_type
from .fields.choices import retired_kept
from .access import strip
from .fields.dates import iso_utc
from .rules.compiled import rules_for
from .rules.duplicates import normalize
from .tables import RECYCLE_COLUMNS, CompiledSchema, uid_of

WRITABLE_SYSTEM = ("owner",)
# History rows about the whole record, besides one per tracked field.
EDITED_FIELD, DELETED_FIELD, RESTORED_FIELD = "_edited", "_deleted", "_restored"
CONVERTED_FIELD, MERGED_FIELD = "_converted", "_merged"   # history of a conversion, a merge (`conversion`, `merging`)
RESTRICTED_SHOWN = 5   # records named in a delete that `restrict` blocks
SYSTEM_READ_ONLY = ("id", "version", "created_at", "updated_at", "created_by", "updated_by")


class RecordError(Exception):
    status = 400
    title = "Bad request"

    def __init__(self, detail: str, errors: list[dict] | None = None, status: int | None = None):
        super().__init__(detail)
        self.detail = detail
        self.errors = errors or []
        if status is not None:
            self.status = status

    def restated(self, detail: str, **marks) -> RecordError:
        """This refusal told as the failure of a larger step (a conversion,
        a merge), each problem marked with `marks`."""
        return type(self)(f"{detail}: {self.detail}", [{**e, **marks} for e in self.errors], self.status)


class NotFound(RecordError):
    status, title = 404, "Not found"


class Forbidden(RecordError):
    status, title = 403, "Forbidden"


class Conflict(RecordError):
    status, title = 409, "Conflict"


class PreconditionFailed(RecordError):
    status, title = 412, "Precondition failed"


class Invalid(RecordError):
    status, title = 422, "Invalid values"


@dataclass
class Actor:
    """Who writes: any object with `id` and `role` (the platform's User) fits."""

    id: str | None
    role: str = "user"


@dataclass(frozen=True)
class Origin:
    """Which writer asked for a write; kept with its outbox event, where
    automation reads it to honour a workflow's `sources` and to stop loops."""

    source: str = "api"            # "form", "api", "import" or "automation"
    workflow: str | None = None    # automation: the workflow whose action wrote
    run: str | None = None         # ... and that action's run
    depth: int = 0                 # automation: how many workflow actions led to this write


API = Origin()


@dataclass
class SaveContext:
    """What the rules hooks see and may change during one save."""

    schema: CompiledSchema
    obj: ObjectDef
    user: Any
    is_new: bool
    old: dict[str, Any] | None          # stored values before the save (None on create)
    values: dict[str, Any]              # stored values after the save (the whole record)
    changed: set[str]
    conn: sa.Connection
    errors: list[FieldError] = dc_field(default_factory=list)
    conflicts: list[FieldError] = dc_field(default_factory=list)   # 409 problems (duplicate rules)
    warnings: list[dict] = dc_field(default_factory=list)          # answered under `_warnings`
    origin: Origin = API
    access: Any = None                                             # the user's Access (runtime.access)


class RuleHooks:
    """Where the rules layer plugs in. Each hook may read and change
    `ctx.values` or append to `ctx.errors`. The defaults do nothing."""

    def defaults(self, ctx: SaveContext) -> None:
        """`default_expr` values for new records."""

    def compute(self, ctx: SaveContext) -> None:
        """Formula fields."""

    def validate(self, ctx: SaveContext) -> None:
        """`required_if`, validation rules, stage criteria, duplicate rules."""

    def after_write(self, ctx: SaveContext) -> None:
        """In the same transaction, after the row is written: rollups on parents."""

    def after_write_many(self, ctxs: list[SaveContext]) -> None:
        """`after_write` for the records of one batch (`create_many`), all
        written by then; override to do the work once for the batch."""
        for ctx in ctxs:
            self.after_write(ctx)

    def after_delete(self, conn: sa.Connection, schema: CompiledSchema, obj: ObjectDef, row: dict, user) -> None:
        """In the same transaction, after a record went to the recycle bin."""

    def before_restore(self, conn: sa.Connection, schema: CompiledSchema, obj: ObjectDef, row: dict, user) -> None:
        """In the same transaction, before a record comes back from the
        recycle bin; raise a RecordError to refuse (a duplicate rule)."""

    def after_restore(self, conn: sa.Connection, schema: CompiledSchema, obj: ObjectDef, row: dict, user) -> None:
        """In the same transaction, after a record came back from the recycle bin."""

    def is_required(self, ctx: SaveContext, f: FieldDef) -> bool:
        """Whether `f`, declared `required`, must be given in this save."""
        return f.required


def now_utc() -> datetime:
    return datetime.now(timezone.utc)


def title_column(obj: ObjectDef) -> str | None:
    """The field that names a record: the object's title field, else `name`."""
    if obj.title_field and obj.field(obj.title_field) is not None:
        return obj.title_field
    return "name" if obj.field("name") is not None else None


def record_title(obj: ObjectDef, record: Mapping[str, Any]) -> str:
    """What a record is called (its id when its title is blank)."""
    column = title_column(obj)
    value = record.get(column) if column else None
    return str(value) if value not in (None, "") else str(record.get("id", ""))


def record_json(obj: ObjectDef, row: dict[str, Any]) -> dict[str, Any]:
    """A stored row as the API's JSON object (values still Python: Decimals stay exact)."""
    out: dict[str, Any] = {"id": row["id"], "version": row["version"], "created_at": iso_utc(row["created_at"]),
                           "updated_at": iso_utc(row["updated_at"]), "created_by": row["created_by"],
                           "updated_by": row["updated_by"], "owner": row["owner"]}
    for f in obj.fields:
        out[f.name] = field_type(f).to_json(f, row.get(f.name))
    return out


_PLAIN = (str, int, bool, float, type(None))


def _same(value: Any) -> Any:
    return value


def _record_json_of(plan: _Plan, row: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """`record_json` of a row just written, with the plan's converters, and
    its JSON-storable form for the outbox (`_json_value` of it). Only the
    fields with a converter need one: the others store JSON values
    (text, integers, booleans, lists of text)."""
    created = iso_utc(row["created_at"])
    out: dict[str, Any] = {"id": row["id"], "version": row["version"], "created_at": created,
                           "updated_at": created if row["updated_at"] is row["created_at"] else iso_utc(row["updated_at"]),
                           "created_by": row["created_by"], "updated_by": row["updated_by"], "owner": row["owner"]}
    for name in plan.names:
        out[name] = row.get(name)
    plain = out.copy()
    for name, to_json in plan.to_json:
        value = out[name]
        if value is not None:
            out[name] = value = to_json(value)
            plain[name] = value if type(value) in _PLAIN else _json_value(value)
    return out, plain


def _json_value(value: Any) -> Any:
    """A JSON-storable form for history and outbox rows."""
    if type(value) in _PLAIN:   # most values: answered first (a save converts every field)
        return value
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return iso_utc(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _json_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_value(v) for v in value]
    return value


@dataclass
class _Plan:
    """What the save path needs to know about one object, worked out once
    per metadata version (kept in `CompiledSchema.extra`)."""

    fields: dict[str, tuple[FieldDef, Any]]       # name -> (field, field type)
    coercers: dict[str, Any]                      # name -> the field type's coercer for the field
    writable: dict[str, tuple[Any, Any]]          # name -> (coercer, field type) of the fields a writer may set
    names: list[str]                              # stored fields, in order
    to_json: list[tuple[str, Any]]                # (name, stored value -> JSON value) of fields whose JSON differs
    tracked: list[tuple[str, Any]]                # (name, to_json) of `track_history` fields, in order
    tracked_updates: list[tuple[str, Any]]        # the same, and the owner: its changes are always kept
    untracked: frozenset[str]                     # fields whose changes are kept without values
    defaults: list[FieldDef]                      # writable fields with a literal default
    required: list[tuple[FieldDef, Any]]          # (field, field type) of writable fields declared required
    auto_numbers: list[FieldDef]
    unique: list[FieldDef]
    links: list[FieldDef]                         # lookup and related_to fields
    dependent: list[FieldDef]                     # picklists narrowed by another (`depends_on`)
    users: list[str]                              # user fields, then owner
    columns: list[str]                            # the columns a new row is written with
    insert: sa.Insert
    update: sa.Update
    # Whether creates of the object are blind to each other until written
    # (see `_independent`).
    independent: bool


def _plan(schema: CompiledSchema, obj: ObjectDef) -> _Plan:
    return schema.cached(("records.plan", obj.name), lambda: _make_plan(schema, obj))


def _make_plan(schema: CompiledSchema, obj: ObjectDef) -> _Plan:
    table = schema.table(obj.name)
    kinds = {f.name: (f, field_type(f)) for f in obj.fields}
    coercers = {name: kind.coercer(f) for name, (f, kind) in kinds.items()}
    tracked = [(name, partial(kinds[name][1].to_json, kinds[name][0]) if name in kinds else _same)
               for name in obj.track_history if name in kinds or name == "owner"]
    return _Plan(
        fields=kinds, coercers=coercers,
        writable={name: (coercers[name], kind) for name, (f, kind) in kinds.items() if kind.writable and not f.read_only},
        names=[f.name for f in obj.fields],
        to_json=[(name, partial(kind.to_json, f)) for name, (f, kind) in kinds.items()
                 if type(kind).to_json is not FieldType.to_json],
        tracked=tracked,
        tracked_updates=tracked + ([] if "owner" in obj.track_history else [("owner", _same)]),
        untracked=frozenset(name for name, (f, kind) in kinds.items() if kind.writable and name not in obj.track_history),
        defaults=[f for f, kind in kinds.values() if f.default is not None and kind.writable],
        required=[(f, kind) for f, kind in kinds.values() if f.required and kind.writable],
        auto_numbers=[f for f in obj.fields if f.type == "auto_number"],
        unique=[f for f in obj.fields if f.unique],
        links=[f for f in obj.fields if f.type in ("lookup", "related_to")],
        dependent=[f for f in obj.fields if getattr(f, "depends_on", None)],
        users=[f.name for f in obj.fields if f.type == "user"] + ["owner"],
        # A new record is not in the recycle bin: its columns for that stay NULL.
        columns=[name for name in table.c.keys() if name not in RECYCLE_COLUMNS],
        insert=sa.insert(table),
        update=sa.update(table).where(table.c.id == sa.bindparam("_rid"), table.c.version == sa.bindparam("_rversion")),
        independent=_independent(schema, obj))


def _compiled_in(value: Any) -> Iterator[Compiled]:
    """Every compiled expression inside a RuleSet (whatever kinds of rules it holds)."""
    if isinstance(value, Compiled):
        yield value
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _compiled_in(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _compiled_in(item)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            yield from _compiled_in(getattr(value, f.name))


def _independent(schema: CompiledSchema, obj: ObjectDef) -> bool:
    """Whether a create of `obj` leaves unchanged all that the rules of a
    later create of `obj` read before its write (besides duplicate rules,
    which `create_many` handles on its own). A create changes other records
    only through the rollups that summarise `obj` (and the formulas and
    rollups that follow them); the rules read other records only through
    lookup paths. So: true unless a rollup summarises `obj` and its rules
    read a rollup or formula through a lookup (or a path this cannot follow)."""
    if not any(f.type == "rollup" and getattr(f, "from_", None) == obj.name
               for other in schema.objects.values() for f in other.fields):
        return True
    rules = rules_for(schema.objects, obj.name)
    for path in {p for compiled in _compiled_in(rules) for p in compiled.paths}:
        here = obj
        *hops, leaf = path.split(".")
        for hop in hops:
            f = here.field(hop) if here is not None else None
            here = schema.object(f.to) if f is not None and f.type == "lookup" else None
        f = here.field(leaf) if here is not None else None
        if f is None or f.type in ("rollup", "formula"):
            return False
    return True


_OUTBOX = sa.insert(systemdb.outbox)
_HISTORY = sa.insert(systemdb.history)
# auto-number counters: take `step` numbers from counter `counter`
_BUMP = sa.update(systemdb.counters).where(systemdb.counters.c.key == sa.bindparam("counter")) \
    .values(value=systemdb.counters.c.value + sa.bindparam("step"))
_BUMP_RETURNING = _BUMP.returning(systemdb.counters.c.value)
_COUNTER = sa.select(systemdb.counters.c.value).where(systemdb.counters.c.key == sa.bindparam("counter"))


def _counter_start(dialect: str) -> sa.Insert:
    """A counter's row at 0, unless another writer created it first."""
    insert = {"postgresql": sa_postgresql.insert, "sqlite": sa_sqlite.insert}[dialect]
    return insert(systemdb.counters).values(key=sa.bindparam("counter"), value=0).on_conflict_do_nothing()


def _object_of_table(schema: CompiledSchema, table: sa.Table) -> str:
    return next(name for name, t in schema.tables.items() if t is table)


def _alive(table: sa.Table):
    return table.c._deleted_at.is_(None) if "_deleted_at" in table.c else sa.true()


def _key(value: Any) -> Any:
    """A value as a set member (multi-picklists are lists)."""
    if isinstance(value, list):
        return tuple(_key(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _key(v)) for k, v in value.items()))
    return value


def _duplicate_keys(obj: ObjectDef, plan: _Plan, record: dict[str, Any]) -> set[tuple]:
    """The values under which the object's duplicate rules would match
    `record` against another record (none when a rule's field is blank)."""
    keys = set()
    for rule in obj.duplicate_rules:
        fields = [plan.fields.get(name) for name in rule.fields]
        if any(f is None or f[1].is_blank(record.get(f[0].name)) for f in fields):
            continue
        keys.add((rule.name, *[_key(normalize(f.type, record[f.name])) for f, _ in fields]))
    return keys


# What a database refusal means, by SQLSTATE (PostgreSQL) or by the
# start of SQLite's message. The answer never quotes the database: its
# constraint, table and file names are not the user's business.
_REFUSALS = {
    "23505": ("unique", "this value is taken by another record"),
    "23503": ("not_found", "the linked record does not exist"),
    "23502": ("required", "a value is required"),
    "22001": ("too_long", "the value is too long"),
    "22003": ("max", "the number is too large"),
}
_SQLITE_REFUSALS = {"UNIQUE constraint failed": "23505", "FOREIGN KEY constraint failed": "23503",
                    "NOT NULL constraint failed": "23502"}


def _refusal(exc: sa.exc.DBAPIError, obj: ObjectDef | None = None) -> RecordError:
    """A write the database refused, as the contract's problem: a unique
    clash is a 409 with code `unique` on its field, a missing link a 422
    `not_found`, anything else a 409 that names nothing of the database."""
    text = str(exc.orig)
    state = getattr(exc.orig, "sqlstate", None) or next(
        (code for prefix, code in _SQLITE_REFUSALS.items() if text.startswith(prefix)), None)
    code, message = _REFUSALS.get(state, ("conflict", "the database refused the values"))
    field = _refused_field(exc, obj, text) if obj is not None else None
    errors = [{"field": field, "code": code, "message": message}]
    if code in ("unique", "conflict"):
        return Conflict(message, errors)
    return Invalid(message, errors)


def _refused_field(exc: sa.exc.DBAPIError, obj: ObjectDef, text: str) -> str | None:
    """The field a refusal is about: from PostgreSQL's diagnostics (the
    constraint's or column's name) or SQLite's `table.column`."""
    from .tables import foreign_key_name, unique_name

    diag = getattr(exc.orig, "diag", None)
    constraint = getattr(diag, "constraint_name", None)
    column = getattr(diag, "column_name", None)
    if column is None and ":" in text:
        column = text.split(":", 1)[1].strip().split(",")[0].rpartition(".")[2] or None
    for f in obj.fields:
        if f.name == column or constraint in (unique_name(obj, f), foreign_key_name(obj, f)):
            return f.name
    return None


# PostgreSQL aborted the transaction to break a deadlock or a serialization
# conflict: nothing of it was kept, and running it again is what resolves it
_RETRIED_STATES = frozenset({"40P01", "40001"})
_ATTEMPTS = 3


def _retried(write):
    """A write in a transaction of its own runs again (up to `_ATTEMPTS`
    times) when the database aborted it to let a concurrent one through;
    inside the caller's transaction (`conn=`), the caller decides."""
    @wraps(write)
    def run(self, *args, **kwargs):
        if kwargs.get("conn") is not None:
            return write(self, *args, **kwargs)
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                return write(self, *args, **kwargs)
            except sa.exc.DBAPIError as exc:
                if attempt == _ATTEMPTS or getattr(exc.orig, "sqlstate", None) not in _RETRIED_STATES:
                    raise
    return run


class RecordService:
    def __init__(self, runtime, hooks: RuleHooks):
        self.runtime = runtime
        self.hooks = hooks

    # -- plumbing -------------------------------------------------------------
    @contextlib.contextmanager
    def _transaction(self, conn: sa.Connection | None) -> Iterator[sa.Connection]:
        if conn is not None:
            yield conn
            return
        with write_transaction(self.runtime.engine) as own:
            yield own

    def _schema(self, conn: sa.Connection | None, schema: CompiledSchema | None) -> CompiledSchema:
        return schema or self.runtime.schema()

    @staticmethod
    def object_of(schema: CompiledSchema, name: str) -> ObjectDef:
        obj = schema.object(name) if isinstance(name, str) else None
        if obj is None:
            raise NotFound(f"there is no object {str(name)[:63]!r}")
        return obj

    def _load(self, conn, schema, obj, rid, *, deleted: bool = False, lock: bool = False) -> dict[str, Any]:
        if not isinstance(rid, str) or not 0 < len(rid) <= 32:
            raise NotFound(f"no {obj.name} record {str(rid)[:40]!r}")
        table = schema.table(obj.name)
        lock = lock and conn.dialect.name == "postgresql"

        def build():
            query = sa.select(table).where(table.c.id == sa.bindparam("rid"),
                                           table.c._deleted_at.is_not(None) if deleted else table.c._deleted_at.is_(None))
            return query.with_for_update() if lock else query
        row = conn.execute(schema.cached(("records.load", obj.name, deleted, lock), build), {"rid": rid}).first()
        if row is None:
            raise NotFound(f"no {obj.name} record {rid!r}" + (" in the recycle bin" if deleted else ""))
        return dict(row._mapping)

    # -- reads ------------------------------------------------------------------
    def get(self, object_name: str, rid: str, user=None, *, conn=None, schema=None) -> dict[str, Any]:
        """The record as `user` may see it (404 when it may not)."""
        schema = self._schema(conn, schema)
        obj = self.object_of(schema, object_name)
        access = self.runtime.access.of(user)
        with self._reading(conn) as tx:
            row = self._load(tx, schema, obj, rid)
            self._may(tx, schema, obj, access, row, "read")
        return strip(record_json(obj, row), access.hidden(obj.name))

    @contextlib.contextmanager
    def _reading(self, conn: sa.Connection | None) -> Iterator[sa.Connection]:
        if conn is not None:
            yield conn
            return
        with self.runtime.engine.connect() as own:
            yield own

    def _may(self, conn, schema, obj, access, row: dict[str, Any], action: str) -> None:
        """Raise NotFound when the user may not see the stored record (as if
        it did not exist), Forbidden when it may see it but not `action` it."""
        if access.everything:
            return
        table = schema.table(obj.name)
        if not access.allows(conn, table, obj.name, row["id"], "read", owner=row.get("owner")):
            raise NotFound(f"no {obj.name} record {row['id']!r}")
        if action != "read" and not access.allows(conn, table, obj.name, row["id"], action, owner=row.get("owner")):
            raise Forbidden(f"you may not {action} this {obj.name}")

    # -- writes -----------------------------------------------------------------
    @_retried
    def create(self, object_name: str, data: dict[str, Any], user, *, conn=None, schema=None,
               origin: Origin = API) -> dict[str, Any]:
        schema = self._schema(conn, schema)
        obj = self.object_of(schema, object_name)
        with self._transaction(conn) as tx:
            return self._save(tx, schema, obj, None, data, user, expected_version=None, origin=origin)

    def create_many(self, object_name: str, rows: list[dict[str, Any]], user, *, conn=None,
                    schema=None, origin: Origin = API) -> list[dict[str, Any] | RecordError]:
        """Create records of one object from `rows`, with exactly the checks,
        rules, history and outbox of `create` row by row, but with the reads
        and writes done per batch: lookups, users and unique values are
        checked with one query per batch, rows, history and events written
        with one statement each.

        Answers, per row and in order, the saved record (as `create` does)
        or the RecordError that refused it. Refused rows leave nothing
        behind; the others are saved, in `conn`'s transaction or one of
        create_many's own.

        Rows of one batch see each other as if saved one by one: a unique
        value taken by an earlier row refuses a later one. The rules hooks
        of a row run before the rows ahead of it are written, except that
        rows the object's duplicate rules could match are written first,
        and an object whose saves move what its own rules read (a rollup
        over it that its rules read through a lookup) is saved row by row.
        """
        schema = self._schema(conn, schema)
        obj = self.object_of(schema, object_name)
        rows = list(rows)
        with self._transaction(conn) as tx:
            try:
                with tx.begin_nested():
                    if _plan(schema, obj).independent:
                        return self._create_batch(tx, schema, obj, rows, user, origin)
                    return [self._create_checked(tx, schema, obj, data, user, origin) for data in rows]
            except (RecordError, sa.exc.DBAPIError):
                pass
            # A write was refused (a race with another writer, a rule that
            # failed after the write): undo the batch, then save it again row
            # by row, each in a savepoint, to find and report the row.
            return [self._create_alone(tx, schema, obj, data, user, origin) for data in rows]

    def _create_checked(self, conn, schema, obj, data, user, origin: Origin) -> dict[str, Any] | RecordError:
        """One create whose refusal before the write is answered, not raised."""
        try:
            ctx = self._prepare(conn, schema, obj, None, data, user, origin=origin)
            self._check(conn, schema, obj, ctx)
        except RecordError as exc:
            return exc
        return self._insert(conn, schema, obj, [ctx], user)[0]

    def _create_alone(self, conn, schema, obj, data, user, origin: Origin) -> dict[str, Any] | RecordError:
        try:
            with conn.begin_nested():
                return self._save(conn, schema, obj, None, data, user, expected_version=None, origin=origin)
        except RecordError as exc:
            return exc
        except sa.exc.DBAPIError as exc:
            return _refusal(exc, obj)

    def _create_batch(self, conn, schema, obj, rows, user, origin: Origin) -> list[dict[str, Any] | RecordError]:
        plan = _plan(schema, obj)
        results: list[Any] = [None] * len(rows)
        prepared: list[tuple[int, SaveContext]] = []
        for i, data in enumerate(rows):
            try:
                prepared.append((i, self._prepare(conn, schema, obj, None, data, user, origin=origin)))
            except RecordError as exc:
                results[i] = exc
        ctxs = [ctx for _, ctx in prepared]
        found = self._existing_links(conn, schema, obj, ctxs)
        taken = self._taken_values(conn, schema, obj, ctxs)
        claimed: dict[str, set] = {f.name: set() for f in plan.unique}
        pending: list[tuple[int, SaveContext]] = []
        pending_keys: set[tuple] = set()

        def flush() -> None:
            if not pending:
                return
            for (i, _), saved in zip(pending, self._insert(conn, schema, obj, [ctx for _, ctx in pending], user)):
                results[i] = saved
            pending.clear()
            pending_keys.clear()

        for i, ctx in prepared:
            keys = _duplicate_keys(obj, plan, ctx.values) if obj.duplicate_rules else set()
            if keys & pending_keys:
                flush()   # the duplicate rules look in the database: the rows they could match must be there
            try:
                self._check(conn, schema, obj, ctx, exists=lambda table, rid: rid in found[table.name],
                            is_taken=lambda f, value: _key(value) in taken[f.name] or _key(value) in claimed[f.name])
            except RecordError as exc:
                results[i] = exc
                continue
            for f, value in self._unique_values(schema, obj, ctx):
                claimed[f.name].add(_key(value))
            pending.append((i, ctx))
            pending_keys |= keys
        flush()
        return results

    @_retried
    def update(self, object_name: str, rid: str, data: dict[str, Any], user, *, expected_version: int | None = None,
               conn=None, schema=None, origin: Origin = API) -> dict[str, Any]:
        schema = self._schema(conn, schema)
        obj = self.object_of(schema, object_name)
        with self._transaction(conn) as tx:
            old = self._load(tx, schema, obj, rid, lock=True)
            self._may(tx, schema, obj, self.runtime.access.of(user), old, "update")
            return self._save(tx, schema, obj, old, data, user, expected_version=expected_version, origin=origin)

    def _save(self, conn, schema, obj, old, data, user, *, expected_version, origin: Origin = API) -> dict[str, Any]:
        ctx = self._prepare(conn, schema, obj, old, data, user, expected_version=expected_version, origin=origin)
        self._check(conn, schema, obj, ctx)
        saved = self._insert(conn, schema, obj, [ctx], user)[0] if old is None else self._update(conn, schema, obj, ctx, user)
        if schema.approvals and origin.source != "approval":
            from .approvals import auto_submit   # approvals build on this service

            if auto_submit(self.runtime, conn, schema, obj, {**ctx.values, "id": saved["id"]}, old, user):
                saved = record_json(obj, self._load(conn, schema, obj, saved["id"]))   # as the process left it
        return strip(saved, ctx.access.hidden(obj.name)) if ctx.access is not None else saved

    def _prepare(self, conn, schema, obj, old, data, user, *, expected_version: int | None = None,
                 origin: Origin = API) -> SaveContext:
        """Coercion, defaults and the hooks up to formulas, then required
        values: the save's context with the problems found so far."""
        if not isinstance(data, dict):
            raise RecordError("the body must be a JSON object")
        plan = _plan(schema, obj)
        is_new = old is None
        access = self.runtime.access.of(user)
        if is_new and not access.may_create(obj.name):
            raise Forbidden(f"you may not create {obj.name} records")
        ctx_fields = self.runtime.context
        errors: list[FieldError] = []
        values: dict[str, Any] = {}
        writable = plan.writable
        for key, raw in data.items():
            known = writable.get(key) if isinstance(key, str) else None
            if known is not None:   # most keys: a field the writer may set
                if raw is None:
                    values[key] = None
                    continue
                coerce, kind = known
                try:
                    value = coerce(raw, ctx_fields)
                    values[key] = None if kind.is_blank(value) else value
                except FieldError as exc:
                    kept = retired_kept(plan.fields[key][0], raw, old.get(key)) if (
                        exc.code == "invalid_option" and old is not None) else None
                    if kept is not None:
                        values[key] = kept
                        continue
                    exc.field = key
                    errors.append(exc)
                continue
            if key in WRITABLE_SYSTEM:
                if raw is not None and (not isinstance(raw, str) or len(raw) > 32):
                    errors.append(FieldError("type", "owner must be a user id", key))
                else:
                    values[key] = raw
                continue
            if key in SYSTEM_READ_ONLY:
                errors.append(FieldError("read_only", f"{key} is set by Loom", key))
                continue
            f, _ = plan.fields.get(key, (None, None)) if isinstance(key, str) else (None, None)
            if f is None:   # else a field no writer may set
                errors.append(FieldError("unknown_field", f"{obj.name} has no field {str(key)[:63]!r}", str(key)[:63]))
                continue
            errors.append(FieldError("read_only", f"{f.name} is read only", f.name))
        if expected_version is not None and not is_new and old["version"] != expected_version:
            raise PreconditionFailed(f"the record is at version {old['version']}, not {expected_version}")

        record = dict(old) if old else dict.fromkeys(plan.names)
        if is_new:
            for f in plan.defaults:
                if f.name not in values:
                    try:
                        values[f.name] = plan.coercers[f.name](f.default, ctx_fields)
                    except FieldError:
                        pass
            values.setdefault("owner", getattr(user, "id", None))
        record.update(values)
        changed = set(values) if is_new else {k for k in values if old.get(k) != values[k]}
        if not access.everything:
            self._field_rights(conn, obj, access, user, values, changed, is_new, errors)
        ctx = SaveContext(schema=schema, obj=obj, user=user, is_new=is_new, old=old, values=record, changed=changed,
                          conn=conn, errors=errors, origin=origin, access=access)
        if is_new:
            self.hooks.defaults(ctx)
        self.hooks.compute(ctx)
        for f in plan.dependent:
            value, parent = record.get(f.name), record.get(f.depends_on)
            moved = is_new or value != old.get(f.name) or parent != old.get(f.depends_on)
            if moved and not f.fits(value, parent) and not any(e.field == f.name for e in errors):
                errors.append(FieldError("invalid_option", f"{value!r} is not an option of {f.name} while "
                                                           f"{f.depends_on} is {parent!r}", f.name))
        if not is_new and schema.approvals:
            from .approvals import locked_problems   # approvals build on this service

            errors += [FieldError(p["code"], p["message"], p["field"]) for p in locked_problems(ctx, changed)]
        for f, kind in plan.required:
            if (is_new or f.name in values) and self.hooks.is_required(ctx, f) and kind.is_blank(record.get(f.name)) \
                    and not any(e.field == f.name for e in errors):
                errors.append(FieldError("required", f"{f.name} is required", f.name))
        return ctx

    @staticmethod
    def _field_rights(conn, obj, access, user, values, changed, is_new, errors) -> None:
        """A field the user may only read cannot change, one it may not see
        cannot even be sent; a record cannot leave the user's scope."""
        for key in list(values):
            right = access.field_right(obj.name, key)
            if right == "hidden" or (right == "read" and key in changed and not (is_new and values[key] is None)):
                errors.append(FieldError("read_only", f"you may not change {key}", key))
        owner = values.get("owner")
        if "owner" in changed and not (is_new and owner == getattr(user, "id", None)) \
                and not access.may_own(conn, obj.name, owner, "update"):
            raise Forbidden(f"you may not give this {obj.name} to that user: they are outside your scope")

    def _check(self, conn, schema, obj, ctx: SaveContext, *, exists=None, is_taken=None) -> None:
        """Links, the validation hook and unique values; raises Invalid or
        Conflict with every problem. `exists(table, id)` and
        `is_taken(field, value)` answer from a batch's queries; by default
        they ask the database."""
        access = ctx.access
        if exists is None and (access is None or access.everything):
            def exists(table, rid):
                query = schema.cached(("records.exists", table.name),
                                lambda: sa.select(table.c.id).where(table.c.id == sa.bindparam("rid"), _alive(table)))
                return conn.execute(query, {"rid": rid}).first() is not None
        elif exists is None:
            def exists(table, rid):   # a record the user may not see is as missing as one that is not there
                query = sa.select(table.c.id).where(table.c.id == rid, _alive(table))
                clause = access.clause(table, _object_of_table(schema, table), "read") if table is not systemdb.users else None
                return conn.execute(query if clause is None else query.where(clause)).first() is not None
        if is_taken is None:
            own = schema.table(obj.name)
            own_id = None if ctx.is_new else ctx.old["id"]

            def is_taken(f, value):
                def build():
                    query = sa.select(own.c.id).where(own.c[f.name] == sa.bindparam("value", type_=own.c[f.name].type))
                    return (query if own_id is None else query.where(own.c.id != sa.bindparam("own"))).limit(1)
                query = schema.cached(("records.taken", obj.name, f.name, own_id is None), build)
                return conn.execute(query, {"value": value, "own": own_id}).first() is not None
        errors = ctx.errors
        for name, target, target_id, message in self._links(schema, obj, ctx):
            if target is None or not exists(target, target_id):
                errors.append(FieldError("not_found", message, name))
        self.hooks.validate(ctx)
        # Unique values count deleted records too (their values stay reserved).
        unique_errors = [FieldError("unique", f"another {obj.name} has this {f.name}", f.name)
                         for f, value in self._unique_values(schema, obj, ctx) if is_taken(f, value)] + ctx.conflicts
        if errors:
            raise Invalid(f"{len(errors) + len(unique_errors)} problems with the values", [e.as_dict() for e in errors + unique_errors])
        if unique_errors:
            raise Conflict("a unique value is taken", [e.as_dict() for e in unique_errors])

    @staticmethod
    def _links(schema, obj, ctx: SaveContext) -> Iterator[tuple[str, sa.Table | None, str, str]]:
        """(field, table, id, message if missing) of every record or user
        the save links to anew."""
        plan = _plan(schema, obj)
        record, changed = ctx.values, ctx.changed
        for f in plan.links:
            value = record.get(f.name)
            if f.name not in changed or value is None:
                continue
            if f.type == "lookup":
                yield f.name, schema.tables.get(f.to), value, f"no {f.to} record {value!r}"
            else:
                other, _, rid = value.partition(":")
                yield f.name, schema.tables.get(other), rid, f"no {other} record {rid!r}"
        for name in plan.users:
            value = record.get(name)
            if name in changed and value is not None:
                yield name, systemdb.users, value, f"no user {value!r}"

    @staticmethod
    def _unique_values(schema, obj, ctx: SaveContext) -> Iterator[tuple[FieldDef, Any]]:
        for f in _plan(schema, obj).unique:
            value = ctx.values.get(f.name)
            if f.name in ctx.changed and value is not None:
                yield f, value

    def _existing_links(self, conn, schema, obj, ctxs: list[SaveContext]) -> dict[str, set]:
        """Of the records and users a batch links to: those that exist (and
        that the user may see), by table."""
        wanted: dict[str, tuple[sa.Table, set]] = {}
        for ctx in ctxs:
            for _, table, rid, _ in self._links(schema, obj, ctx):
                if table is not None:
                    wanted.setdefault(table.name, (table, set()))[1].add(rid)
        access = ctxs[0].access if ctxs else None
        found: dict[str, set] = {}
        for name, (table, ids) in wanted.items():
            found[name] = set()
            clause = None
            if access is not None and not access.everything and table is not systemdb.users:
                clause = access.clause(table, _object_of_table(schema, table), "read")
            for chunk in chunks(sorted(ids)):
                query = sa.select(table.c.id).where(table.c.id.in_(chunk), _alive(table))
                found[name].update(conn.execute(query if clause is None else query.where(clause)).scalars())
        return found

    def _taken_values(self, conn, schema, obj, ctxs: list[SaveContext]) -> dict[str, set]:
        """Of the unique values a batch brings: those already stored."""
        table = schema.table(obj.name)
        wanted: dict[str, set] = {f.name: set() for f in _plan(schema, obj).unique}
        for ctx in ctxs:
            for f, value in self._unique_values(schema, obj, ctx):
                wanted[f.name].add(value)
        taken: dict[str, set] = {}
        for name, values in wanted.items():
            taken[name] = set()
            for chunk in chunks(list(values)):
                taken[name].update(map(_key, conn.execute(sa.select(table.c[name]).where(table.c[name].in_(chunk)).distinct()).scalars()))
        return taken

    def _insert(self, conn, schema, obj, ctxs: list[SaveContext], user) -> list[dict[str, Any]]:
        """Write checked new records: auto-numbers, the rows, history and
        events with one statement each; then the after-write hooks. Answers
        each record as `create` does."""
        plan = _plan(schema, obj)
        uid = getattr(user, "id", None)
        rows: list[dict[str, Any]] = []
        try:
            numbers = {f.name: self._next_numbers(conn, obj, f, len(ctxs)) for f in plan.auto_numbers}
            last = None
            for n, ctx in enumerate(ctxs):
                # Distinct, rising creation times keep the order of a batch in `created_at`.
                now = now_utc()
                if last is not None and now <= last:
                    now = last + timedelta(microseconds=1)
                last = now
                record = ctx.values
                row = dict.fromkeys(plan.columns)
                row.update({name: record.get(name) for name in plan.names})
                row.update(id=uuid.uuid4().hex, version=1, created_at=now, updated_at=now, created_by=uid, updated_by=uid,
                           owner=record.get("owner"))
                for f in plan.auto_numbers:
                    row[f.name] = field_type(f).format(f, numbers[f.name] + n)
                rows.append(row)
            conn.execute(plan.insert, rows)
        except sa.exc.DBAPIError as exc:
            if getattr(exc.orig, "sqlstate", None) in _RETRIED_STATES:
                raise
            raise _refusal(exc, obj) from None
        history, events, results = [], [], []
        tracked = set(obj.track_history)
        for ctx, row in zip(ctxs, rows):
            ctx.values = row
            out, plain = _record_json_of(plan, row)
            if plan.tracked:
                history += self._history_rows(obj, row["id"], None, row, tracked, uid, True, row["created_at"], plan)
            events.append(self._event_row(schema, obj, row["id"], "create", row, None, ctx.changed, uid, row["created_at"],
                                          ctx.origin, plain))
            if ctx.warnings:
                out = {**out, "_warnings": ctx.warnings}
            results.append(out)
        if history:
            conn.execute(_HISTORY, history)
        conn.execute(_OUTBOX, events)
        self.hooks.after_write_many(ctxs)
        return results

    def _update(self, conn, schema, obj, ctx: SaveContext, user) -> dict[str, Any]:
        plan = _plan(schema, obj)
        old, record, changed = ctx.old, ctx.values, ctx.changed
        now, uid = now_utc(), getattr(user, "id", None)
        values = {k: record.get(k) for k in changed if k in plan.fields}
        if "owner" in changed:
            values["owner"] = record.get("owner")
        values.update(version=old["version"] + 1, updated_at=now, updated_by=uid)
        try:
            result = conn.execute(plan.update, {**values, "_rid": old["id"], "_rversion": old["version"]})
        except sa.exc.DBAPIError as exc:
            if getattr(exc.orig, "sqlstate", None) in _RETRIED_STATES:
                raise
            raise _refusal(exc, obj) from None
        if result.rowcount != 1:
            raise PreconditionFailed("the record was changed by someone else meanwhile")
        saved = ctx.values = {**old, **values}
        self._history(conn, schema, obj, old["id"], old, saved, changed, uid, False)
        out, plain = _record_json_of(plan, saved)
        conn.execute(_OUTBOX, self._event_row(schema, obj, old["id"], "update", saved, old, changed, uid, now, ctx.origin,
                                              plain))
        self.hooks.after_write(ctx)
        if ctx.warnings:
            out = {**out, "_warnings": ctx.warnings}
        return out

    def _next_numbers(self, conn, obj, f, count: int) -> int:
        """Take `count` numbers from the field's counter; answers the first.
        The first number of a new counter creates its row with INSERT ...
        ON CONFLICT DO NOTHING, then takes the number as always: two
        writers that both find no row never clash on creating it."""
        params = {"counter": f"{uid_of(obj)}:{uid_of(f)}", "step": count}
        last = self._bump(conn, params)
        if last is None:
            conn.execute(_counter_start(conn.dialect.name), {"counter": params["counter"]})
            last = self._bump(conn, params)
        return last - count + 1

    @staticmethod
    def _bump(conn, params) -> int | None:
        """Add `step` to a counter atomically; its new value, or None when the counter has no row yet."""
        if conn.dialect.update_returning:
            return conn.execute(_BUMP_RETURNING, params).scalar()
        if conn.execute(_BUMP, params).rowcount:
            return conn.execute(_COUNTER, params).scalar()
        return None

    def _history_rows(self, obj, rid, old, new, changed, uid, is_new, at, plan: _Plan) -> list[dict[str, Any]]:
        """History rows of a save: each `track_history` field with its old
        and new value; on an update also a change of owner, always, and one
        `_edited` row naming the other fields that changed (without values)."""
        rows = []
        tracked = plan.tracked if is_new else plan.tracked_updates
        for name, to_json in tracked:
            if name not in changed:
                continue
            rows.append({"object": obj.name, "record_id": rid, "field": name,
                         "old_value": None if is_new else _json_value(to_json(old.get(name))),
                         "new_value": _json_value(to_json(new.get(name))), "changed_by": uid,
                         "changed_at": at, "note": "created" if is_new else None})
        if not is_new:
            others = sorted(name for name in changed if name in plan.untracked)
            if others:
                rows.append({"object": obj.name, "record_id": rid, "field": EDITED_FIELD, "old_value": None,
                             "new_value": others, "changed_by": uid, "changed_at": at, "note": None})
        return rows

    @staticmethod
    def _mark(conn, obj, rid, field: str, uid, at, value: Any = None) -> None:
        """A history row for something that happened to the whole record
        (deleted, restored, converted, merged), with what to tell of it."""
        conn.execute(_HISTORY, {"object": obj.name, "record_id": rid, "field": field, "old_value": None,
                                "new_value": value, "changed_by": uid, "changed_at": at, "note": None})

    def mark(self, conn, obj: ObjectDef, rid: str, field: str, value: Any, user) -> None:
        self._mark(conn, obj, rid, field, getattr(user, "id", None), now_utc(), value)

    def _history(self, conn, schema, obj, rid, old, new, changed, uid, is_new) -> None:
        rows = self._history_rows(obj, rid, old, new, changed, uid, is_new, now_utc(), _plan(schema, obj))
        if rows:
            conn.execute(_HISTORY, rows)

    @staticmethod
    def _event_row(schema, obj, rid, event, new, old, changed, uid, at, origin: Origin, new_plain=None) -> dict[str, Any]:
        """An outbox row; `new_plain` is the JSON-storable `record_json(obj, new)` when the caller has it.
        A delete's event carries the record as it was."""
        if new is not None and new_plain is None:
            new_plain = _json_value(record_json(obj, new))
        elif new is None and old is not None:
            new_plain = _json_value(record_json(obj, old))
        payload = {"object": obj.name, "id": rid, "version": new["version"] if new else None,
                   "changed": sorted(changed), "record": new_plain,
                   "old": {k: _json_value(field_type(obj.field(k)).to_json(obj.field(k), old.get(k)))
                           for k in changed if obj.field(k)} | ({"owner": old.get("owner")} if "owner" in changed else {})
                   if old and new is not None else None}
        return {"object": obj.name, "record_id": rid, "event": event, "payload": payload, "actor": uid, "created_at": at,
                "source": origin.source, "metadata_version": schema.version, "depth": origin.depth,
                "cause_workflow": origin.workflow, "cause_run": origin.run}

    def _event(self, conn, schema, obj, rid, event, new, old, changed, uid, origin: Origin) -> None:
        conn.execute(_OUTBOX, self._event_row(schema, obj, rid, event, new, old, changed, uid, now_utc(), origin))

    # -- recycle bin --------------------------------------------------------------
    @_retried
    def delete(self, object_name: str, rid: str, user, *, expected_version: int | None = None, conn=None, schema=None,
               origin: Origin = API, batch: str | None = None) -> None:
        """Move the record (and what its delete cascades to) to the recycle
        bin; records deleted with one `batch` come back together."""
        schema = self._schema(conn, schema)
        obj = self.object_of(schema, object_name)
        with self._transaction(conn) as tx:
            old = self._load(tx, schema, obj, rid, lock=True)
            self._may(tx, schema, obj, self.runtime.access.of(user), old, "delete")
            if expected_version is not None and old["version"] != expected_version:
                raise PreconditionFailed(f"the record is at version {old['version']}, not {expected_version}")
            self._soft_delete(tx, schema, obj, old, user, batch or uuid.uuid4().hex, depth=0, origin=origin)

    def _children(self, schema, obj):
        for child in schema.objects.values():
            for f in child.fields:
                if f.type == "lookup" and f.to == obj.name:
                    yield child, f

    def _soft_delete(self, conn, schema, obj, row, user, batch, depth, origin: Origin) -> None:
        if depth > 20:
            raise Conflict("cascading deletes go deeper than 20 levels")
        uid, now = getattr(user, "id", None), now_utc()
        for child, f in self._children(schema, obj):
            table = schema.table(child.name)
            alive = sa.and_(table.c[f.name] == row["id"], table.c._deleted_at.is_(None))
            if f.on_delete == "restrict":
                linked = conn.execute(sa.select(table.c.id).where(alive).order_by(table.c.created_at, table.c.id)
                                      .limit(RESTRICTED_SHOWN + 1)).scalars().all()
                if linked:
                    count = len(linked) if len(linked) <= RESTRICTED_SHOWN else conn.execute(
                        sa.select(sa.func.count()).select_from(table).where(alive)).scalar()
                    raise Conflict(f"{count} {child.name} record(s) still link to this {obj.name} through {f.name}",
                                   [{"field": f.name, "code": "restricted", "object": child.name, "count": count,
                                     "matches": linked[:RESTRICTED_SHOWN],
                                     "message": f"{count} {child.name} record(s) link to this {obj.name} through {f.name}"}])
            elif f.on_delete == "set_null":
                for r in conn.execute(sa.select(table).where(alive)).fetchall():
                    self._detach(conn, schema, child, dict(r._mapping), f.name, user, origin)
            else:  # cascade
                for r in conn.execute(sa.select(table).where(alive)).fetchall():
                    self._soft_delete(conn, schema, child, dict(r._mapping), user, batch, depth + 1, origin)
        table = schema.table(obj.name)
        conn.execute(sa.update(table).where(table.c.id == row["id"])
                     .values(_deleted_at=now, _deleted_by=uid, _deleted_batch=batch))
        self._mark(conn, obj, row["id"], DELETED_FIELD, uid, now)
        self._event(conn, schema, obj, row["id"], "delete", None, row, set(), uid, origin)
        self.hooks.after_delete(conn, schema, obj, row, user)

    def _detach(self, conn, schema, obj, row, name, user, origin: Origin) -> None:
        """`on_delete: set_null`: the child loses its link."""
        self._relink(conn, schema, obj, row, name, None, user, origin)

    def _relink(self, conn, schema, obj, row, name, value, user, origin: Origin) -> None:
        """The child's link `name` set to `value`. Its formulas and what
        depends on it follow, as after a save; its validation rules do not
        run, since whoever moved it (deleted, converted or merged its
        parent) did not edit the child."""
        ctx = SaveContext(schema=schema, obj=obj, user=user, is_new=False, old=row, values={**row, name: value},
                          changed={name}, conn=conn, origin=origin)
        self.hooks.compute(ctx)
        self._update(conn, schema, obj, ctx, user)

    def move_links(self, conn, schema, obj: ObjectDef, rid: str, to_obj: ObjectDef, to_id: str, user, *,
                   lookups: bool = True, origin: Origin = API) -> int:
        """Point what links to record `rid` of `obj` at record `to_id` of
        `to_obj` instead: related-to fields that can link to both and, with
        `lookups` (`to_obj` is then `obj`), lookups to `obj`; a record that
        would link to itself is unlinked. Each child moves as `_relink` says.
        How many links moved."""
        moved = 0
        for child in schema.objects.values():
            table = schema.table(child.name)
            for f in child.fields:
                if f.type == "related_to" and obj.name in f.to and to_obj.name in f.to:
                    old, new = f"{obj.name}:{rid}", f"{to_obj.name}:{to_id}"
                elif lookups and f.type == "lookup" and f.to == obj.name:
                    old, new = rid, to_id
                else:
                    continue
                rows = conn.execute(sa.select(table).where(table.c[f.name] == old, table.c._deleted_at.is_(None))
                                    .order_by(table.c.id)).fetchall()
                for r in rows:
                    self._relink(conn, schema, child, dict(r._mapping), f.name,
                                 None if child.name == to_obj.name and r.id == to_id else new, user, origin)
                moved += len(rows)
        return moved

    @_retried
    def restore(self, object_name: str, rid: str, user, *, conn=None, schema=None, origin: Origin = API) -> dict[str, Any]:
        """Bring a deleted record back, with the records its delete cascaded to."""
        schema = self._schema(conn, schema)
        obj = self.object_of(schema, object_name)
        with self._transaction(conn) as tx:
            row = self._load(tx, schema, obj, rid, deleted=True, lock=True)
            self._may(tx, schema, obj, self.runtime.access.of(user), row, "delete")
            batch = row["_deleted_batch"]
            uid = getattr(user, "id", None)
            for other in schema.objects.values():
                table = schema.table(other.name)
                where = table.c._deleted_batch == batch if batch else table.c.id == rid
                rows = [dict(r._mapping) for r in tx.execute(sa.select(table).where(where))]
                if not rows:
                    continue
                for r in rows:
                    self.hooks.before_restore(tx, schema, other, r, user)
                ids = [r["id"] for r in rows]
                tx.execute(sa.update(table).where(where).values(_deleted_at=None, _deleted_by=None, _deleted_batch=None))
                for restored in ids:
                    self._mark(tx, other, restored, RESTORED_FIELD, uid, now_utc())
                    back = dict(tx.execute(sa.select(table).where(table.c.id == restored)).first()._mapping)
                    self._event(tx, schema, other, restored, "restore", back, None, set(), uid, origin)
                    self.hooks.after_restore(tx, schema, other, back, user)
            return strip(record_json(obj, self._load(tx, schema, obj, rid)), self.runtime.access.of(user).hidden(obj.name))
