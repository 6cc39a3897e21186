"""Plain functions behind the `loom pack install/export` and `loom migrate
plan/publish` commands; the CLI wraps them in Typer commands."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

from loomcrm.platform import systemdb
from loomcrm.platform.db import create_engine

from .fields import FieldContext
from .install import InstallResult, export_bundle, install_bundle, write_bundle
from .migrate.execute import PublishResult, plan_for, publish
from .migrate.plan import Plan


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


def install_default_pack(engine, *, user_id: str | None = None, context: FieldContext | None = None) -> InstallResult | None:
    """For `loom serve`: install the `crm` pack when no metadata is published yet."""
    from loomcrm.metadata.versions import VersionStore

    with engine.connect() as conn:
        if VersionStore().published_version(conn) > 0:
            return None
    return install_bundle(engine, "crm", user_id=user_id, ctx=context)
