"""SQLAlchemy Core tables generated from metadata, one per object.

A table is named `o_<object>` (never clashing with the `loom_` system
tables) and holds the system fields of SPEC §3.1, one nullable column per
stored field (required is enforced by the record service, so that adding a
required field to a full table never needs a default or a rewrite), and the
recycle-bin columns `_deleted_at`, `_deleted_by`, `_deleted_batch`.

Constraint and index names derive from the stable uids of the object and
fields, so a rename never invalidates them. Build the tables once per
metadata version (`build_schema`) and keep them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field as dc_field
from typing import Any, Callable, Hashable, Iterable, Mapping

import sqlalchemy as sa

from loomcrm.metadata.model import FieldDef, ObjectDef

from .fields import UTCDateTime, field_type

TABLE_PREFIX = "o_"
MAX_IDENTIFIER = 63
SYSTEM_COLUMNS = ("id", "version", "created_at", "updated_at", "created_by", "updated_by", "owner")
RECYCLE_COLUMNS = ("_deleted_at", "_deleted_by", "_deleted_batch")


def table_name(obj: ObjectDef | str) -> str:
    name = obj if isinstance(obj, str) else obj.name
    full = TABLE_PREFIX + name
    if len(full) <= MAX_IDENTIFIER:
        return full
    return full[:50] + "_" + hashlib.sha1(name.encode()).hexdigest()[:12]


def uid_of(thing: ObjectDef | FieldDef) -> str:
    return thing.uid or thing.name


def constraint_name(prefix: str, *parts: str) -> str:
    return f"{prefix}_" + hashlib.sha1("|".join(parts).encode()).hexdigest()[:20]


def unique_name(obj: ObjectDef, f: FieldDef) -> str:
    return constraint_name("uq", uid_of(obj), uid_of(f))


def field_index_name(obj: ObjectDef, f: FieldDef) -> str:
    return constraint_name("ix", uid_of(obj), uid_of(f))


def declared_index_name(obj: ObjectDef, fields: Iterable[FieldDef]) -> str:
    return constraint_name("ix", uid_of(obj), *[uid_of(f) for f in fields])


def foreign_key_name(obj: ObjectDef, f: FieldDef) -> str:
    return constraint_name("fk", uid_of(obj), uid_of(f))


def is_stored(f: FieldDef) -> bool:
    return True  # every SPEC type keeps its value in a column (formulas and rollups too)


def column_for(f: FieldDef, objects: Mapping[str, ObjectDef]) -> sa.Column:
    return sa.Column(f.name, field_type(f).column_type(f, objects), nullable=True)


def system_columns() -> list[sa.Column]:
    return [
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("version", sa.Integer, nullable=False, server_default="1"),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("created_by", sa.String(32)),
        sa.Column("updated_by", sa.String(32)),
        sa.Column("owner", sa.String(32)),
        sa.Column("_deleted_at", UTCDateTime()),
        sa.Column("_deleted_by", sa.String(32)),
        sa.Column("_deleted_batch", sa.String(32)),
    ]


def foreign_key_for(obj: ObjectDef, f: FieldDef) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint([f.name], [f"{table_name(f.to)}.id"], name=foreign_key_name(obj, f))


def table_items(obj: ObjectDef, objects: Mapping[str, ObjectDef], *, with_foreign_keys: bool | Iterable[str] = True) -> list:
    """Columns, constraints and indexes of an object's table, for
    `sa.Table(name, meta, *items)` or Alembic's `create_table`."""
    items: list = system_columns()
    fk_fields = None if with_foreign_keys is True else set(with_foreign_keys or ())
    for f in obj.fields:
        if not is_stored(f):
            continue
        items.append(column_for(f, objects))
        if f.unique:
            items.append(sa.UniqueConstraint(f.name, name=unique_name(obj, f)))
        if f.type == "lookup" and f.to in objects and (fk_fields is None or f.name in fk_fields):
            items.append(foreign_key_for(obj, f))
    return items


def index_specs(obj: ObjectDef) -> list[tuple[str, list[str], bool]]:
    """(name, columns, unique) of every index an object's table carries
    besides unique constraints: created_at order, indexed fields, lookups
    and declared indexes."""
    specs: list[tuple[str, list[str], bool]] = [(constraint_name("ix", uid_of(obj), "created_at"), ["created_at", "id"], False)]
    seen = {("created_at", "id")}
    for f in obj.fields:
        if (f.indexed or f.type in ("lookup", "related_to")) and not f.unique:
            specs.append((field_index_name(obj, f), [f.name], False))
            seen.add((f.name,))
    for names in obj.indexes:
        fields = [obj.field(n) for n in names]
        if any(f is None for f in fields) or tuple(names) in seen:
            continue
        seen.add(tuple(names))
        specs.append((declared_index_name(obj, fields), list(names), False))
    return specs


def build_table(obj: ObjectDef, objects: Mapping[str, ObjectDef], meta: sa.MetaData) -> sa.Table:
    table = sa.Table(table_name(obj), meta, *table_items(obj, objects))
    for name, columns, unique in index_specs(obj):
        sa.Index(name, *[table.c[c] for c in columns], unique=unique)
    return table


@dataclass
class CompiledSchema:
    """The tables and object definitions of one metadata version."""

    version: int
    objects: dict[str, ObjectDef]
    metadata: sa.MetaData
    tables: dict[str, sa.Table]
    extra: dict = dc_field(default_factory=dict)  # per-version caches (models, OpenAPI, ...)
    roles: dict = dc_field(default_factory=dict)  # the roles bundles define, by name
    reports: dict = dc_field(default_factory=dict)  # saved reports, by name
    dashboards: dict = dc_field(default_factory=dict)
    pools: dict = dc_field(default_factory=dict)    # lead pools (公海), by name
    approvals: dict = dc_field(default_factory=dict)  # approval processes (审批流), by name
    calendars: dict = dc_field(default_factory=dict)  # business calendars (SLA clocks), by name
    surveys: dict = dc_field(default_factory=dict)    # satisfaction surveys, by name
    web_forms: dict = dc_field(default_factory=dict)  # public web forms, by name

    def object(self, name: str) -> ObjectDef | None:
        return self.objects.get(name)

    def table(self, name: str) -> sa.Table:
        return self.tables[name]

    def cached(self, key: Hashable, build: Callable[[], Any]) -> Any:
        """`build()`, once per metadata version: plans, rules and statements
        made from this schema, kept in `extra` under `key`. (Building a
        statement with its conditions costs about as much as running it.)"""
        value = self.extra.get(key)
        if value is None:
            value = self.extra[key] = build()
        return value


def build_schema(objects: Iterable[ObjectDef], version: int = 0) -> CompiledSchema:
    by_name = {o.name: o for o in objects}
    meta = sa.MetaData()
    tables = {name: build_table(obj, by_name, meta) for name, obj in by_name.items()}
    return CompiledSchema(version=version, objects=by_name, metadata=meta, tables=tables)


def create_all(conn: sa.Connection, schema: CompiledSchema) -> None:
    """Create every table of a schema from scratch (tests, first install)."""
    schema.metadata.create_all(conn)
