"""Helpers for the runtime tests: databases with system tables, objects
from short dicts, rows inserted straight into generated tables."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

import sqlalchemy as sa

from loomcrm.metadata.model import ObjectDef
from loomcrm.metadata.versions import Snapshot, VersionStore
from loomcrm.platform import systemdb
from loomcrm.platform.db import create_engine
from loomcrm.runtime.tables import build_schema


def engine_for(url: str):
    engine = create_engine(url)
    systemdb.upgrade(engine)
    return engine


def obj(name, *fields, uid=None, **keys) -> ObjectDef:
    return ObjectDef.model_validate({"name": name, "uid": uid or f"u_{name}", "fields": list(fields), **keys})


def snap(*objects) -> Snapshot:
    return Snapshot(objects=list(objects))


def published(engine) -> tuple[int, Snapshot]:
    with engine.connect() as conn:
        return VersionStore().published(conn)


def insert_rows(engine, object_name: str, rows: list[dict]) -> list[str]:
    version, snapshot = published(engine)
    table = build_schema(snapshot.objects, version).table(object_name)
    now = datetime.now(timezone.utc)
    ids = []
    with engine.begin() as conn:
        for row in rows:
            rid = row.get("id") or uuid.uuid4().hex
            ids.append(rid)
            conn.execute(sa.insert(table).values(id=rid, version=1, created_at=now, updated_at=now, **{k: v for k, v in row.items() if k != "id"}))
    return ids


def select_all(engine, object_name: str) -> dict[str, dict]:
    version, snapshot = published(engine)
    table = build_schema(snapshot.objects, version).table(object_name)
    with engine.connect() as conn:
        return {r.id: dict(r._mapping) for r in conn.execute(sa.select(table))}


def schema_shape(engine) -> dict:
    """Tables, columns (type class, length, precision), unique constraints,
    indexes and foreign keys of the generated tables, comparable across
    databases built differently."""
    inspector = sa.inspect(engine)
    shape = {}
    for name in sorted(inspector.get_table_names()):
        if not name.startswith("o_"):
            continue
        columns = {}
        for c in inspector.get_columns(name):
            t = c["type"]
            columns[c["name"]] = (type(t).__name__.upper().replace("VARCHAR", "STRING"), getattr(t, "length", None),
                                  getattr(t, "precision", None), getattr(t, "scale", None))
        shape[name] = {
            "columns": columns,
            "unique": sorted((u["name"], tuple(u["column_names"])) for u in inspector.get_unique_constraints(name)),
            "indexes": sorted((i["name"], tuple(i["column_names"])) for i in inspector.get_indexes(name)
                              if not i["name"].startswith("sqlite_autoindex")),
            "foreign_keys": sorted((f["name"], tuple(f["constrained_columns"]), f["referred_table"])
                                   for f in inspector.get_foreign_keys(name)),
        }
    return shape
