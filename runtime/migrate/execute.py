"""Apply a migration plan with Alembic's Operations, atomically.

Everything runs in one `ddl_transaction`: the DDL of every step, the data
moves, the archive rows and the new `loom_metadata_versions` row. If any
step fails, the schema and the published metadata are exactly as before, on
SQLite too. Batch mode rebuilds tables on SQLite; on PostgreSQL the same
calls are plain ALTER statements (adding a nullable column without a
default never rewrites the table).

Dropped fields are copied into an archive table before the column goes;
dropped objects' tables are renamed into the archive. Putting the uid back
into the draft restores them with their data.
"""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass, field as dc_field
from datetime import datetime, timezone
from typing import Callable, Mapping

import sqlalchemy as sa
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Engine

from loomcrm.metadata import diff as d
from loomcrm.metadata.bundle import FOLDERS
from loomcrm.metadata.model import ObjectDef, as_json
from loomcrm.metadata.versions import DraftConflict, Snapshot, VersionStore, ensure_uids
from loomcrm.platform import audit, systemdb
from loomcrm.platform.db import ddl_transaction

from ..fields import DEFAULT_CONTEXT, FieldContext, field_type
from ..rollup_triggers import drop_triggers, sync_triggers
from ..tables import (
    build_schema, declared_index_name, foreign_key_name, index_specs, table_items, table_name, uid_of, unique_name,
)
from .checks import check_snapshot
from .plan import CLEAR, Plan, Step, make_plan
from .preflight import conversion_failures

StepHook = Callable[[int, Step], None]


class PublishRefused(Exception):
    """The plan has steps that need a decision or cannot run."""

    def __init__(self, plan: Plan, problems: list[dict[str, str]]):
        super().__init__("; ".join(p["message"] for p in problems))
        self.plan = plan
        self.problems = problems


@dataclass(frozen=True)
class DeferredIndex:
    name: str
    table: str
    columns: list[str]


@dataclass
class Env:
    conn: sa.Connection
    ops: Operations
    plan: Plan
    confirm: Mapping[str, str]
    user_id: str | None
    ctx: FieldContext
    version: int
    deferred_indexes: list[DeferredIndex] = dc_field(default_factory=list)

    @property
    def old_objects(self) -> dict[str, ObjectDef]:
        return {o.name: o for o in self.plan.old.objects}

    @property
    def new_objects(self) -> dict[str, ObjectDef]:
        return {o.name: o for o in self.plan.new.objects}

    @contextlib.contextmanager
    def batch(self, table: str):
        with self.ops.batch_alter_table(table, recreate="auto") as batch:
            yield batch

    def archive(self, *, kind: str, obj: ObjectDef, field=None, definition: dict, table: str, rows: int) -> None:
        self.conn.execute(sa.insert(systemdb.archives).values(
            id=uuid.uuid4().hex, kind=kind, object_uid=uid_of(obj), object_name=obj.name,
            field_uid=uid_of(field) if field is not None else None, field_name=field.name if field is not None else None,
            definition=definition, table_name=table, rows=rows, metadata_version=self.version,
            archived_by=self.user_id, archived_at=datetime.now(timezone.utc)))

    def mark_restored(self, entry_id: str) -> None:
        self.conn.execute(sa.update(systemdb.archives).where(systemdb.archives.c.id == entry_id)
                          .values(restored_at=datetime.now(timezone.utc)))


def archive_table_name() -> str:
    return "z_" + uuid.uuid4().hex[:24]


def _field_json(f) -> dict:
    return f.model_dump(mode="json", by_alias=True, exclude_defaults=True) | {"name": f.name, "type": f.type}


def _copy_values(env: Env, table: str, column: str, col_type, rows: list[tuple[str, object]] | None = None) -> tuple[str, int]:
    """Copy (id, value) into a new archive table: all non-null values of a
    column, or the given rows."""
    z = archive_table_name()
    env.ops.create_table(z, sa.Column("id", sa.String(32), primary_key=True), sa.Column("value", col_type))
    target = sa.table(z, sa.column("id"), sa.column("value", col_type))
    if rows is None:
        source = sa.table(table, sa.column("id"), sa.column(column))
        result = env.conn.execute(sa.insert(target).from_select(
            ["id", "value"], sa.select(source.c.id, source.c[column]).where(source.c[column].is_not(None))))
        return z, result.rowcount or 0
    if rows:
        env.conn.execute(sa.insert(target), [{"id": rid, "value": value} for rid, value in rows])
    return z, len(rows)


# --- one function per operation ------------------------------------------------------

def create_object(env: Env, op: d.CreateObject) -> None:
    obj, objects = op.obj, env.new_objects
    fks = [f.name for f in obj.fields if f.type == "lookup" and f.name not in op.deferred_lookups]
    name = table_name(obj)
    env.ops.create_table(name, *table_items(obj, objects, with_foreign_keys=fks))
    for index, columns, unique in index_specs(obj):
        env.ops.create_index(index, name, columns, unique=unique)


def restore_object(env: Env, op: d.RestoreObject) -> None:
    entry = env.plan.archive_entries[(uid_of(op.obj), None)]
    env.ops.rename_table(entry.table_name, table_name(op.obj))
    env.mark_restored(entry.id)


def drop_object(env: Env, op: d.DropObject) -> None:
    z = archive_table_name()
    t = table_name(op.obj)
    rows = env.conn.execute(sa.select(sa.func.count()).select_from(sa.table(t))).scalar() or 0
    env.ops.rename_table(t, z)
    env.archive(kind="object", obj=op.obj, definition=as_json(op.obj) | {"name": op.obj.name, "uid": uid_of(op.obj)}, table=z, rows=rows)


def rename_object(env: Env, op: d.RenameObject) -> None:
    env.ops.rename_table(table_name(op.old), table_name(op.obj))


def add_field(env: Env, op: d.AddField) -> None:
    f, t = op.field, table_name(op.obj)
    column = sa.Column(f.name, field_type(f).column_type(f, env.new_objects), nullable=True)
    with env.batch(t) as batch:
        batch.add_column(column)
    if f.type == "lookup" and f.to in env.new_objects:
        with env.batch(t) as batch:
            batch.create_foreign_key(foreign_key_name(op.obj, f), table_name(f.to), [f.name], ["id"])


def restore_field(env: Env, op: d.RestoreField) -> None:
    entry = env.plan.archive_entries[(uid_of(op.obj), uid_of(op.field))]
    current = next(f for f in op.obj.fields if uid_of(f) == uid_of(op.field))
    archived, t = op.field, table_name(op.obj)
    col_type = field_type(archived).column_type(archived, env.new_objects)
    with env.batch(t) as batch:
        batch.add_column(sa.Column(current.name, col_type, nullable=True))
    table = sa.table(t, sa.column("id"), sa.column(current.name))
    z = sa.table(entry.table_name, sa.column("id"), sa.column("value"))
    env.conn.execute(sa.update(table).where(table.c.id.in_(sa.select(z.c.id)))
                     .values({current.name: sa.select(z.c.value).where(z.c.id == table.c.id).scalar_subquery()}))
    env.ops.drop_table(entry.table_name)
    env.mark_restored(entry.id)
    if archived.type == "lookup" and archived.to in env.new_objects:
        with env.batch(t) as batch:
            batch.create_foreign_key(foreign_key_name(op.obj, archived), table_name(archived.to), [current.name], ["id"])


def drop_field(env: Env, op: d.DropField) -> None:
    f, t = op.field, table_name(op.obj)
    z, rows = _copy_values(env, t, f.name, field_type(f).column_type(f, env.old_objects))
    with env.batch(t) as batch:
        if f.type == "lookup":
            batch.drop_constraint(foreign_key_name(op.obj, f), type_="foreignkey")
        batch.drop_column(f.name)
    env.archive(kind="field", obj=op.obj, field=f, definition=_field_json(f), table=z, rows=rows)


def rename_field(env: Env, op: d.RenameField) -> None:
    with env.batch(table_name(op.obj)) as batch:
        batch.alter_column(op.old.name, new_column_name=op.field.name)


def change_type(env: Env, op: d.ChangeType) -> None:
    f, old, t = op.field, op.old, table_name(op.obj)
    objects = env.new_objects
    if field_type(f).writable:
        failures, _, converted, failed = conversion_failures(env.conn, env.plan, op, env.ctx, table=t, column=f.name)
    else:
        failures, converted, failed = 0, {}, []
    if failures and env.confirm.get(op.key) != CLEAR:
        raise PublishRefused(env.plan, [{"key": op.key, "message": f"{failures} rows do not convert"}])
    if failed:
        z, rows = _copy_values(env, t, f.name, field_type(old).column_type(old, env.old_objects), failed)
        env.archive(kind="values", obj=op.obj, field=old, definition=_field_json(old), table=z, rows=rows)
    tmp = "_tmp_" + uuid.uuid4().hex[:12]
    new_type = field_type(f).column_type(f, objects)
    with env.batch(t) as batch:
        batch.add_column(sa.Column(tmp, new_type, nullable=True))
    if converted:
        table = sa.table(t, sa.column("id", sa.String), sa.column(tmp, new_type))
        env.conn.execute(sa.update(table).where(table.c.id == sa.bindparam("rid")).values({tmp: sa.bindparam("val", type_=new_type)}),
                         [{"rid": rid, "val": value} for rid, value in converted.items()])
    with env.batch(t) as batch:
        if old.type == "lookup":
            batch.drop_constraint(foreign_key_name(op.obj, old), type_="foreignkey")
        batch.drop_column(f.name)
        batch.alter_column(tmp, new_column_name=f.name)
    if f.type == "lookup" and f.to in objects:
        with env.batch(t) as batch:
            batch.create_foreign_key(foreign_key_name(op.obj, f), table_name(f.to), [f.name], ["id"])


def change_max_length(env: Env, op: d.ChangeMaxLength) -> None:
    if op.field.type != "text":
        return  # long text is unbounded in the database; the service enforces the limit
    with env.batch(table_name(op.obj)) as batch:
        batch.alter_column(op.field.name, type_=sa.String(op.field.max_length),
                           existing_type=sa.String(op.old.max_length), existing_nullable=True)


def change_lookup_target(env: Env, op: d.ChangeLookupTarget) -> None:
    f, t = op.field, table_name(op.obj)
    target = table_name(f.to)
    col = sa.column(f.name)
    table = sa.table(t, sa.column("id"), col)
    other = sa.table(target, sa.column("id"))
    orphan = sa.and_(col.is_not(None), ~sa.exists().where(other.c.id == col))
    bad = env.conn.execute(sa.select(table.c.id, col).where(orphan)).fetchall()
    if bad and env.confirm.get(op.key) != CLEAR:
        raise PublishRefused(env.plan, [{"key": op.key, "message": f"{len(bad)} rows link to no {f.to} record"}])
    if bad:
        z, rows = _copy_values(env, t, f.name, sa.String(32), [(r[0], r[1]) for r in bad])
        env.archive(kind="values", obj=op.obj, field=op.old, definition=_field_json(op.old), table=z, rows=rows)
        env.conn.execute(sa.update(table).where(orphan).values({f.name: None}))
    with env.batch(t) as batch:
        batch.drop_constraint(foreign_key_name(op.obj, op.old), type_="foreignkey")
    with env.batch(t) as batch:
        batch.create_foreign_key(foreign_key_name(op.obj, f), target, [f.name], ["id"])


def add_foreign_key(env: Env, op: d.AddForeignKey) -> None:
    with env.batch(table_name(op.obj)) as batch:
        batch.create_foreign_key(foreign_key_name(op.obj, op.field), table_name(op.field.to), [op.field.name], ["id"])


def add_unique(env: Env, op: d.AddUnique) -> None:
    with env.batch(table_name(op.obj)) as batch:
        batch.create_unique_constraint(unique_name(op.obj, op.field), [op.field.name])


def drop_unique(env: Env, op: d.DropUnique) -> None:
    with env.batch(table_name(op.obj)) as batch:
        batch.drop_constraint(unique_name(op.obj, op.field), type_="unique")


# On PostgreSQL an index on a table this big is built after the publish,
# CONCURRENTLY: inside the publish it would block every write to the table
# for as long as the build takes.
CONCURRENT_INDEX_ROWS = 100_000


def add_index(env: Env, op: d.AddIndex) -> None:
    name, table, columns = declared_index_name(op.obj, op.fields), table_name(op.obj), [f.name for f in op.fields]
    if env.conn.dialect.name == "postgresql" and _estimated_rows(env.conn, table) >= CONCURRENT_INDEX_ROWS:
        env.deferred_indexes.append(DeferredIndex(name, table, columns))
        return
    env.ops.create_index(name, table, columns)


def _estimated_rows(conn: sa.Connection, table: str) -> float:
    # The planner's estimate: counting a big table would itself take long.
    return conn.execute(sa.text("SELECT reltuples FROM pg_class WHERE oid = to_regclass(:t)"), {"t": table}).scalar() or 0


def build_deferred_indexes(engine: Engine, indexes: list["DeferredIndex"]) -> list[str]:
    """CREATE INDEX CONCURRENTLY, outside any transaction, for the indexes a
    publish left to build. The publish has committed by then, so a failed
    build is reported (and leaves no invalid index behind), not raised;
    running it again is safe."""
    preparer = engine.dialect.identifier_preparer
    failures = []
    if not indexes:
        return failures
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for index in indexes:
            name = preparer.quote(index.name)
            columns = ", ".join(preparer.quote(c) for c in index.columns)
            try:
                conn.exec_driver_sql(f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON {preparer.quote(index.table)} ({columns})")
            except sa.exc.DBAPIError as exc:
                conn.exec_driver_sql(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
                failures.append(f"index {index.name} on {index.table}: {str(exc.orig).splitlines()[0]}")
    return failures


def drop_index(env: Env, op: d.DropIndex) -> None:
    env.ops.drop_index(declared_index_name(op.obj, op.fields), table_name=table_name(op.obj))


def update_object(env: Env, op: d.UpdateObject) -> None:
    pass  # metadata only


def rename_option(env: Env, op: d.RenameOption) -> None:
    """The records holding the old value take the new one (in a multi-select,
    in the options' order, without doubles)."""
    t = table_name(op.obj)
    if op.field.type == "picklist":
        table = sa.table(t, sa.column(op.field.name))
        env.conn.execute(sa.update(table).where(table.c[op.field.name] == op.old_value).values({op.field.name: op.new_value}))
        return
    table = sa.table(t, sa.column("id"), sa.column(op.field.name, sa.JSON))
    order = [o.value for o in op.field.options]
    changed = []
    for rid, values in env.conn.execute(sa.select(table.c.id, table.c[op.field.name]).where(table.c[op.field.name].is_not(None))):
        if isinstance(values, list) and op.old_value in values:
            chosen = {op.new_value if v == op.old_value else v for v in values}
            changed.append({"rid": rid, "val": [v for v in order if v in chosen] + sorted(chosen - set(order))})
    if changed:
        env.conn.execute(sa.update(table).where(table.c.id == sa.bindparam("rid"))
                         .values({op.field.name: sa.bindparam("val", type_=sa.JSON)}), changed)


EXECUTORS: dict[type, Callable] = {
    d.CreateObject: create_object, d.RestoreObject: restore_object, d.DropObject: drop_object,
    d.RenameObject: rename_object, d.AddField: add_field, d.RestoreField: restore_field, d.DropField: drop_field,
    d.RenameField: rename_field, d.ChangeType: change_type, d.ChangeMaxLength: change_max_length,
    d.ChangeLookupTarget: change_lookup_target, d.AddForeignKey: add_foreign_key, d.AddUnique: add_unique,
    d.DropUnique: drop_unique, d.AddIndex: add_index, d.DropIndex: drop_index, d.UpdateObject: update_object,
    d.RenameOption: rename_option,
}


def apply_plan(conn: sa.Connection, plan: Plan, *, confirm: Mapping[str, str] | None = None, user_id: str | None = None,
               ctx: FieldContext | None = None, on_step: StepHook | None = None) -> list[DeferredIndex]:
    """Run every step on `conn` (inside the caller's ddl_transaction);
    returns the indexes to build once it has committed."""
    migration = MigrationContext.configure(conn, opts={"render_as_batch": True})
    env = Env(conn=conn, ops=Operations(migration), plan=plan, confirm=confirm or {}, user_id=user_id,
              ctx=ctx or DEFAULT_CONTEXT, version=plan.base_version + 1)
    for index, step in enumerate(plan.steps):
        EXECUTORS[type(step.op)](env, step.op)
        if on_step is not None:
            on_step(index, step)
    return env.deferred_indexes


@dataclass
class PublishResult:
    version: int
    plan: Plan
    index_failures: list[str] = dc_field(default_factory=list)  # indexes built after the commit that failed


def plan_for(engine: Engine, snapshot: Snapshot | None = None, *, ctx: FieldContext | None = None) -> Plan:
    """The plan from the published metadata to `snapshot` (default: the draft)."""
    store = VersionStore()
    with engine.connect() as conn:
        base, old = store.published(conn)
        if snapshot is None:
            _, snapshot, _ = store.draft(conn)
        snapshot = ensure_uids(snapshot, previous=old)
        return make_plan(conn, old, snapshot, base, field_context=ctx)


def _what_changed(old: Snapshot, new: Snapshot, plan: Plan, comment: str) -> dict:
    """The audit log's account of a publish: the migration steps, and the
    definitions (objects, workflows, roles, reports, dashboards) added,
    changed or removed."""
    def named(things) -> dict[str, dict]:
        return {t.name: as_json(t) for t in things}

    details: dict = {"comment": comment[:500], "steps": [s.op.describe() for s in plan.steps][:100]}
    for kind in FOLDERS:
        before, after = named(getattr(old, kind)), named(getattr(new, kind))
        touched = sorted(n for n in before.keys() | after.keys() if before.get(n) != after.get(n))
        if touched:
            details[kind] = touched[:100]
    return details


def reindex_search(conn: sa.Connection, schema, old: Snapshot, new: Snapshot) -> None:
    """Full-text documents anew for the objects whose `search` fields
    changed (or that were renamed: documents name their object)."""
    from ..search import DOCS, reindex

    before = {o.uid: o for o in old.objects}
    for obj in new.objects:
        prior = before.get(obj.uid)
        if prior is None or prior.search != obj.search or prior.name != obj.name:
            if prior is not None and prior.name != obj.name:
                conn.execute(sa.delete(DOCS).where(DOCS.c.object == prior.name))
            if obj.search or prior is not None:
                reindex(conn, schema, obj)
    dropped = {o.name for o in old.objects} - {o.name for o in new.objects}
    if dropped:
        conn.execute(sa.delete(DOCS).where(DOCS.c.object.in_(sorted(dropped))))


def publish(engine: Engine, snapshot: Snapshot | None = None, *, comment: str = "", user_id: str | None = None,
            confirm: Mapping[str, str] | None = None, expected_base: int | None = None, ctx: FieldContext | None = None,
            on_step: StepHook | None = None, after: Callable[[sa.Connection, int, Plan], None] | None = None) -> PublishResult:
    """Publish `snapshot` (default: the draft) as the next metadata version,
    migrating the database to it, all in one transaction. `after` runs in the
    same transaction once the schema is in place (install uses it to record
    the bundle and load sample data)."""
    store = VersionStore()
    with ddl_transaction(engine) as conn:
        base, old = store.published(conn)
        from_draft = snapshot is None
        if from_draft:
            draft_base, snapshot, exists = store.draft(conn)
            if exists and draft_base != base:
                raise DraftConflict(f"the draft was based on version {draft_base}, but version {base} is published; discard it or rebase it")
        if expected_base is not None and expected_base != base:
            raise DraftConflict(f"version {base} is published, not {expected_base}")
        snapshot = ensure_uids(snapshot, previous=old)
        check_snapshot(snapshot)
        plan = make_plan(conn, old, snapshot, base, field_context=ctx)
        problems = plan.problems(dict(confirm or {}))
        if problems:
            raise PublishRefused(plan, problems)
        if plan.empty and snapshot.to_json() == old.to_json():
            # Nothing differs: publishing again is a no-op, not a new version
            # (so a repeated or racing publish changes nothing twice).
            if from_draft:
                store.discard_draft(conn)
            return PublishResult(version=base, plan=plan)
        # Loom's triggers name tables: off while tables change, then those
        # of the new version (rollups the database keeps itself)
        drop_triggers(conn)
        deferred = apply_plan(conn, plan, confirm=confirm, user_id=user_id, ctx=ctx, on_step=on_step)
        schema = build_schema(snapshot.objects, base + 1)
        sync_triggers(conn, schema)
        reindex_search(conn, schema, old, snapshot)
        version = store.record_version(conn, snapshot, expected_base=base, comment=comment, user_id=user_id)
        audit.record(conn, user_id, "metadata.publish", f"version {version}", _what_changed(old, snapshot, plan, comment))
        if after is not None:
            after(conn, version, plan)
        if from_draft:
            store.discard_draft(conn)
    return PublishResult(version=version, plan=plan, index_failures=build_deferred_indexes(engine, deferred))
