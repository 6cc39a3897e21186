"""Plain functions behind the `loom pack install/uninstall/export`, `loom migrate
plan/publish` and `loom rollups recompute/check` commands; the CLI wraps
them in Typer commands."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

from loomcrm.platform import systemdb
from loomcrm.platform.db import create_engine, write_transaction

from .fields import FieldContext
from .install import InstallResult, export_bundle, install_bundle, uninstall_bundle, write_bundle
from .migrate.execute import PublishResult, plan_for, publish
from .migrate.plan import Plan
from .rollups import Drift, check_drift, recompute


def _engine(database_url: str):
    engine = create_engine(database_url)
    systemdb.upgrade(engine)
    return engine


def pack_install(database_url: str, path_or_name: str | Path, *, user_id: str | None = None,
                 confirm: Mapping[str, str] | None = None, context: FieldContext | None = None) -> InstallResult:
    """`loom pack install PATH-or-NAME`: validate, plan and apply in one transaction."""
    engine = _engine(database_url)
    try:
        return install_bundle(engine, path_or_name, user_id=user_id, confirm=confirm, ctx=context)
    finally:
        engine.dispose()


def pack_uninstall(database_url: str, name: str, *, confirm: Mapping[str, str] | None = None,
                   context: FieldContext | None = None) -> PublishResult:
    """`loom pack uninstall NAME`: remove what the bundle brought in one transaction."""
    engine = _engine(database_url)
    try:
        return uninstall_bundle(engine, name, confirm=confirm, ctx=context)
    finally:
        engine.dispose()


def pack_export(database_url: str, name: str, out_dir: str | Path) -> Path:
    """`loom pack export NAME --out DIR`: the installed bundle with admin customisations."""
    engine = _engine(database_url)
    try:
        return write_bundle(export_bundle(engine, name), out_dir)
    finally:
        engine.dispose()


def migrate_plan(database_url: str, *, context: FieldContext | None = None) -> Plan:
    """`loom migrate plan`: the plan from the published metadata to the draft
    (`plan.describe()` is the text to print, `plan.as_json()` the JSON)."""
    engine = _engine(database_url)
    try:
        return plan_for(engine, None, ctx=context)
    finally:
        engine.dispose()


def migrate_publish(database_url: str, *, confirm: Mapping[str, str] | None = None, comment: str = "",
                    user_id: str | None = None, context: FieldContext | None = None) -> PublishResult:
    """`loom migrate publish [--confirm KEY=clear ...]`: apply the draft.
    Raises PublishRefused (its `.problems` say what needs a decision)."""
    engine = _engine(database_url)
    try:
        return publish(engine, None, comment=comment, user_id=user_id, confirm=confirm, ctx=context)
    finally:
        engine.dispose()


DEFAULT_PACKS = ("crm", "service")


def install_default_packs(engine, *, user_id: str | None = None,
                          context: FieldContext | None = None) -> list[InstallResult]:
    """For `loom serve`: install the sales and service packs when no metadata is published yet."""
    from loomcrm.metadata.versions import VersionStore

    with engine.connect() as conn:
        if VersionStore().published_version(conn) > 0:
            return []
    return [install_bundle(engine, name, user_id=user_id, ctx=context) for name in DEFAULT_PACKS]


def _published_schema(engine, object_name: str | None, field_name: str | None):
    """The compiled published schema, after checking that OBJECT and FIELD name a rollup."""
    from loomcrm.metadata.model import RollupField
    from loomcrm.metadata.versions import VersionStore

    from .tables import build_schema

    with engine.connect() as conn:
        version, snapshot = VersionStore().published(conn)
    schema = build_schema(snapshot.objects, version)
    if object_name is not None:
        obj = schema.object(object_name)
        if obj is None:
            raise LookupError(f"there is no object {object_name!r}")
        if field_name is not None and not isinstance(obj.field(field_name), RollupField):
            raise LookupError(f"{object_name} has no rollup field {field_name!r}")
    return schema


def rollups_recompute(database_url: str, object_name: str | None = None, field_name: str | None = None) -> int:
    """`loom rollups recompute [OBJECT [FIELD]]`: rebuild rollups from their
    children in one transaction; the number of records whose values moved."""
    engine = _engine(database_url)
    try:
        schema = _published_schema(engine, object_name, field_name)
        with write_transaction(engine) as conn:
            return recompute(conn, schema, object_name, field_name)
    finally:
        engine.dispose()


def rollups_check(database_url: str, object_name: str | None = None, field_name: str | None = None,
                  limit: int = 1000) -> list[Drift]:
    """`loom rollups check [OBJECT [FIELD]]`: stored rollup values that differ
    from a recomputation (at most `limit`); changes nothing."""
    engine = _engine(database_url)
    try:
        schema = _published_schema(engine, object_name, field_name)
        with engine.connect() as conn:
            return check_drift(conn, schema, object_name, field_name, limit=limit)
    finally:
        engine.dispose()
