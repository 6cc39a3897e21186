"""The record service: the one entry point for every write (API, forms,
import, automation), always with the acting user.

The save path, in order: unknown and read-only keys, coercion and
normalisation (field-type registry), literal defaults and auto-numbers,
the rules hooks (defaults, formulas, validation rules, stage criteria: see
`RuleHooks`), required values, lookup and user existence, unique values;
then in one transaction the row write with `version` + 1, history rows for
`track_history` fields and an outbox event. All problems of one save are
reported together.
"""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass, field as dc_field
from datetime import datetime, timezone
from typing import Any, Iterator

import sqlalchemy as sa

from loomcrm.metadata.model import FieldDef, ObjectDef
from loomcrm.platform import systemdb
from loomcrm.platform.db import write_transaction

from .fields import FieldError, field_type
from .fields.dates import iso_utc
from .tables import CompiledSchema, table_name, uid_of

WRITABLE_SYSTEM = ("owner",)
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


class NotFound(RecordError):
    status, title = 404, "Not found"


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

    def after_delete(self, conn: sa.Connection, schema: CompiledSchema, obj: ObjectDef, row: dict, user) -> None:
        """In the same transaction, after a record went to the recycle bin."""

    def after_restore(self, conn: sa.Connection, schema: CompiledSchema, obj: ObjectDef, row: dict, user) -> None:
        """In the same transaction, after a record came back from the recycle bin."""

    def is_required(self, ctx: SaveContext, f: FieldDef) -> bool:
        return f.required


def now_utc() -> datetime:
    return datetime.now(timezone.utc)


def record_json(obj: ObjectDef, row: dict[str, Any]) -> dict[str, Any]:
    """A stored row as the API's JSON object (values still Python: Decimals stay exact)."""
    out: dict[str, Any] = {"id": row["id"], "version": row["version"], "created_at": iso_utc(row["created_at"]),
                           "updated_at": iso_utc(row["updated_at"]), "created_by": row["created_by"],
                           "updated_by": row["updated_by"], "owner": row["owner"]}
    for f in obj.fields:
        out[f.name] = field_type(f).to_json(f, row.get(f.name))
    return out


def _json_value(value: Any) -> Any:
    """A JSON-storable form for history and outbox rows."""
    from decimal import Decimal
    from datetime import date

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
        query = sa.select(table).where(table.c.id == rid)
        query = query.where(table.c._deleted_at.is_not(None) if deleted else table.c._deleted_at.is_(None))
        if lock and conn.dialect.name == "postgresql":
            query = query.with_for_update()
        row = conn.execute(query).first()
        if row is None:
            raise NotFound(f"no {obj.name} record {rid!r}" + (" in the recycle bin" if deleted else ""))
        return dict(row._mapping)

    # -- reads ------------------------------------------------------------------
    def get(self, object_name: str, rid: str, user=None, *, conn=None, schema=None) -> dict[str, Any]:
        schema = self._schema(conn, schema)
        obj = self.object_of(schema, object_name)
        if conn is not None:
            return record_json(obj, self._load(conn, schema, obj, rid))
        with self.runtime.engine.connect() as own:
            return record_json(obj, self._load(own, schema, obj, rid))

    # -- writes -----------------------------------------------------------------
    def create(self, object_name: str, data: dict[str, Any], user, *, conn=None, schema=None) -> dict[str, Any]:
        schema = self._schema(conn, schema)
        obj = self.object_of(schema, object_name)
        with self._transaction(conn) as tx:
            return self._save(tx, schema, obj, None, data, user, expected_version=None)

    def update(self, object_name: str, rid: str, data: dict[str, Any], user, *, expected_version: int | None = None,
               conn=None, schema=None) -> dict[str, Any]:
        schema = self._schema(conn, schema)
        obj = self.object_of(schema, object_name)
        with self._transaction(conn) as tx:
            old = self._load(tx, schema, obj, rid, lock=True)
            return self._save(tx, schema, obj, old, data, user, expected_version=expected_version)

    def _save(self, conn, schema, obj, old, data, user, *, expected_version) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise RecordError("the body must be a JSON object")
        is_new = old is None
        ctx_fields = self.runtime.context
        errors: list[FieldError] = []
        values: dict[str, Any] = {}
        for key, raw in data.items():
            f = obj.field(key) if isinstance(key, str) else None
            if key in WRITABLE_SYSTEM:
                if raw is not None and (not isinstance(raw, str) or len(raw) > 32):
                    errors.append(FieldError("type", "owner must be a user id", key))
                else:
                    values[key] = raw
                continue
            if key in SYSTEM_READ_ONLY:
                errors.append(FieldError("read_only", f"{key} is set by Loom", key))
                continue
            if f is None:
                errors.append(FieldError("unknown_field", f"{obj.name} has no field {str(key)[:63]!r}", str(key)[:63]))
                continue
            kind = field_type(f)
            if not kind.writable or f.read_only:
                errors.append(FieldError("read_only", f"{f.name} is read only", f.name))
                continue
            if raw is None:
                values[f.name] = None
                continue
            try:
                value = kind.coerce(f, raw, ctx_fields)
                values[f.name] = None if kind.is_blank(value) else value
            except FieldError as exc:
                exc.field = f.name
                errors.append(exc)
        if expected_version is not None and not is_new and old["version"] != expected_version:
            raise PreconditionFailed(f"the record is at version {old['version']}, not {expected_version}")

        record = dict(old) if old else {f.name: None for f in obj.fields}
        if is_new:
            for f in obj.fields:
                if f.name not in values and f.default is not None and field_type(f).writable:
                    try:
                        values[f.name] = field_type(f).coerce(f, f.default, ctx_fields)
                    except FieldError:
                        pass
            values.setdefault("owner", getattr(user, "id", None))
        record.update(values)
        changed = {k for k in values if is_new or old.get(k) != values[k]}
        ctx = SaveContext(schema=schema, obj=obj, user=user, is_new=is_new, old=old, values=record, changed=changed,
                          conn=conn, errors=errors)
        if is_new:
            self.hooks.defaults(ctx)
        self.hooks.compute(ctx)
        for f in obj.fields:
            if (is_new or f.name in values) and self.hooks.is_required(ctx, f) and field_type(f).writable \
                    and field_type(f).is_blank(record.get(f.name)) and not any(e.field == f.name for e in errors):
                errors.append(FieldError("required", f"{f.name} is required", f.name))
        errors.extend(self._check_links(conn, schema, obj, record, changed))
        self.hooks.validate(ctx)
        unique_errors = self._check_unique(conn, schema, obj, record, changed, None if is_new else old["id"]) + ctx.conflicts
        if errors:
            raise Invalid(f"{len(errors) + len(unique_errors)} problems with the values", [e.as_dict() for e in errors + unique_errors])
        if unique_errors:
            raise Conflict("a unique value is taken", [e.as_dict() for e in unique_errors])

        table = schema.table(obj.name)
        now, uid = now_utc(), getattr(user, "id", None)
        stored = {f.name: record.get(f.name) for f in obj.fields}
        try:
            if is_new:
                rid = uuid.uuid4().hex
                for f in obj.fields:
                    if f.type == "auto_number":
                        stored[f.name] = field_type(f).format(f, self._next_number(conn, obj, f))
                row = {"id": rid, "version": 1, "created_at": now, "updated_at": now, "created_by": uid,
                       "updated_by": uid, "owner": record.get("owner"), **stored}
                conn.execute(sa.insert(table).values(**row))
            else:
                rid = old["id"]
                update = {k: stored[k] for k in changed if k in stored}
                if "owner" in changed:
                    update["owner"] = record.get("owner")
                result = conn.execute(sa.update(table).where(table.c.id == rid, table.c.version == old["version"])
                                      .values(version=old["version"] + 1, updated_at=now, updated_by=uid, **update))
                if result.rowcount != 1:
                    raise PreconditionFailed("the record was changed by someone else meanwhile")
        except sa.exc.IntegrityError as exc:
            raise Conflict(f"the database refused the values: {str(exc.orig).splitlines()[0][:200]}") from None
        saved = dict(conn.execute(sa.select(table).where(table.c.id == rid)).first()._mapping)
        ctx.values = saved
        self._history(conn, obj, rid, old, saved, changed if not is_new else set(obj.track_history), uid, is_new)
        self._event(conn, obj, rid, "create" if is_new else "update", saved, old, changed, uid)
        self.hooks.after_write(ctx)
        result = record_json(obj, saved)
        if ctx.warnings:
            result["_warnings"] = ctx.warnings
        return result

    def _check_links(self, conn, schema, obj, record, changed) -> list[FieldError]:
        errors = []
        for f in obj.fields:
            value = record.get(f.name)
            if f.name not in changed or value is None:
                continue
            if f.type == "lookup":
                target = schema.tables.get(f.to)
                if target is None or conn.execute(sa.select(target.c.id).where(target.c.id == value, target.c._deleted_at.is_(None))).first() is None:
                    errors.append(FieldError("not_found", f"no {f.to} record {value!r}", f.name))
            elif f.type == "related_to":
                other, _, rid = value.partition(":")
                target = schema.tables.get(other)
                if target is None or conn.execute(sa.select(target.c.id).where(target.c.id == rid, target.c._deleted_at.is_(None))).first() is None:
                    errors.append(FieldError("not_found", f"no {other} record {rid!r}", f.name))
        for name in [f.name for f in obj.fields if f.type == "user"] + ["owner"]:
            value = record.get(name)
            if name in changed and value is not None:
                users = systemdb.users
                if conn.execute(sa.select(users.c.id).where(users.c.id == value)).first() is None:
                    errors.append(FieldError("not_found", f"no user {value!r}", name))
        return errors

    def _check_unique(self, conn, schema, obj, record, changed, rid) -> list[FieldError]:
        """Unique values, deleted records included (their values stay reserved)."""
        table = schema.table(obj.name)
        errors = []
        for f in obj.fields:
            value = record.get(f.name)
            if f.unique and f.name in changed and value is not None:
                query = sa.select(table.c.id).where(table.c[f.name] == value)
                if rid is not None:
                    query = query.where(table.c.id != rid)
                if conn.execute(query.limit(1)).first() is not None:
                    errors.append(FieldError("unique", f"another {obj.name} has this {f.name}", f.name))
        return errors

    def _next_number(self, conn, obj, f) -> int:
        key = f"{uid_of(obj)}:{uid_of(f)}"
        counters = systemdb.counters
        result = conn.execute(sa.update(counters).where(counters.c.key == key).values(value=counters.c.value + 1))
        if result.rowcount == 0:
            conn.execute(sa.insert(counters).values(key=key, value=1))
            return 1
        return conn.execute(sa.select(counters.c.value).where(counters.c.key == key)).scalar()

    def _history(self, conn, obj, rid, old, new, changed, uid, is_new) -> None:
        rows = []
        for name in obj.track_history:
            f = obj.field(name)
            if name not in changed or (f is None and name != "owner"):
                continue
            to_json = (lambda v: v) if f is None else (lambda v, f=f: field_type(f).to_json(f, v))
            rows.append({"object": obj.name, "record_id": rid, "field": name,
                         "old_value": None if is_new else _json_value(to_json(old.get(name))),
                         "new_value": _json_value(to_json(new.get(name))), "changed_by": uid,
                         "changed_at": now_utc(), "note": "created" if is_new else None})
        if rows:
            conn.execute(sa.insert(systemdb.history), rows)

    def _event(self, conn, obj, rid, event, new, old, changed, uid) -> None:
        payload = {"object": obj.name, "id": rid, "version": new["version"] if new else None,
                   "changed": sorted(changed), "record": _json_value(record_json(obj, new)) if new else None,
                   "old": {k: _json_value(field_type(obj.field(k)).to_json(obj.field(k), old.get(k)))
                           for k in changed if old and obj.field(k)} if old else None}
        conn.execute(sa.insert(systemdb.outbox).values(object=obj.name, record_id=rid, event=event, payload=payload,
                                                       actor=uid, created_at=now_utc()))

    # -- recycle bin --------------------------------------------------------------
    def delete(self, object_name: str, rid: str, user, *, expected_version: int | None = None, conn=None, schema=None) -> None:
        schema = self._schema(conn, schema)
        obj = self.object_of(schema, object_name)
        with self._transaction(conn) as tx:
            old = self._load(tx, schema, obj, rid, lock=True)
            if expected_version is not None and old["version"] != expected_version:
                raise PreconditionFailed(f"the record is at version {old['version']}, not {expected_version}")
            batch = uuid.uuid4().hex
            self._soft_delete(tx, schema, obj, old, user, batch, depth=0)

    def _children(self, schema, obj):
        for child in schema.objects.values():
            for f in child.fields:
                if f.type == "lookup" and f.to == obj.name:
                    yield child, f

    def _soft_delete(self, conn, schema, obj, row, user, batch, depth) -> None:
        if depth > 20:
            raise Conflict("cascading deletes go deeper than 20 levels")
        uid, now = getattr(user, "id", None), now_utc()
        for child, f in self._children(schema, obj):
            table = schema.table(child.name)
            alive = sa.and_(table.c[f.name] == row["id"], table.c._deleted_at.is_(None))
            if f.on_delete == "restrict":
                if conn.execute(sa.select(table.c.id).where(alive).limit(1)).first() is not None:
                    raise Conflict(f"{child.name} records still link to this {obj.name}",
                                   [{"field": f.name, "code": "restricted", "message": f"{child.name}.{f.name} links here"}])
            elif f.on_delete == "set_null":
                rows = [dict(r._mapping) for r in conn.execute(sa.select(table).where(alive))]
                if rows:
                    conn.execute(sa.update(table).where(alive).values({f.name: None, "version": table.c.version + 1,
                                                                       "updated_at": now, "updated_by": uid}))
                    for r in rows:
                        new = {**r, f.name: None, "version": r["version"] + 1}
                        self._history(conn, child, r["id"], r, new, {f.name}, uid, False)
                        self._event(conn, child, r["id"], "update", new, r, {f.name}, uid)
            else:  # cascade
                for r in conn.execute(sa.select(table).where(alive)).fetchall():
                    self._soft_delete(conn, schema, child, dict(r._mapping), user, batch, depth + 1)
        table = schema.table(obj.name)
        conn.execute(sa.update(table).where(table.c.id == row["id"])
                     .values(_deleted_at=now, _deleted_by=uid, _deleted_batch=batch))
        self._event(conn, obj, row["id"], "delete", None, row, set(), uid)
        self.hooks.after_delete(conn, schema, obj, row, user)

    def restore(self, object_name: str, rid: str, user, *, conn=None, schema=None) -> dict[str, Any]:
        """Bring a deleted record back, with the records its delete cascaded to."""
        schema = self._schema(conn, schema)
        obj = self.object_of(schema, object_name)
        with self._transaction(conn) as tx:
            row = self._load(tx, schema, obj, rid, deleted=True, lock=True)
            batch = row["_deleted_batch"]
            uid = getattr(user, "id", None)
            for other in schema.objects.values():
                table = schema.table(other.name)
                where = table.c._deleted_batch == batch if batch else table.c.id == rid
                ids = [r[0] for r in tx.execute(sa.select(table.c.id).where(where))]
                if not ids:
                    continue
                tx.execute(sa.update(table).where(where).values(_deleted_at=None, _deleted_by=None, _deleted_batch=None))
                for restored in ids:
                    back = dict(tx.execute(sa.select(table).where(table.c.id == restored)).first()._mapping)
                    self._event(tx, other, restored, "restore", back, None, set(), uid)
                    self.hooks.after_restore(tx, schema, other, back, user)
            return record_json(obj, self._load(tx, schema, obj, rid))
