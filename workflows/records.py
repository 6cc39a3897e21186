"""Records as workflows see them: an event's JSON snapshot back to stored
values, the current row, and expressions evaluated over either (with
lookup paths such as `account.industry` read from the database)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Mapping

import sqlalchemy as sa

from loomcrm.metadata.model import ObjectDef
from loomcrm.runtime.expressions import Compiled, EvalContext
from loomcrm.runtime.fields import FieldContext, FieldError, field_type
from loomcrm.runtime.rollups import db_fetch
from loomcrm.runtime.rules.engine import RecordView, roles_of
from loomcrm.runtime.tables import CompiledSchema

_MOMENTS = ("created_at", "updated_at")
_SYSTEM = ("id", "version", "created_by", "updated_by", "owner")


def stored(obj: ObjectDef, data: Mapping[str, Any] | None, ctx: FieldContext) -> dict[str, Any]:
    """A record's JSON (an outbox snapshot) as the stored values the
    expression language reads (decimals, dates, ...)."""
    if not data:
        return {}
    out: dict[str, Any] = {name: data.get(name) for name in _SYSTEM if name in data}
    for name in _MOMENTS:
        value = data.get(name)
        out[name] = datetime.fromisoformat(value.replace("Z", "+00:00")) if isinstance(value, str) else value
    for f in obj.fields:
        value = data.get(f.name)
        if value is None:
            out[f.name] = None
            continue
        try:
            out[f.name] = field_type(f).coerce(f, value, ctx)
        except (FieldError, TypeError, ValueError):
            out[f.name] = value   # a formula's stored type: taken as it is
    return out


def current(conn: sa.Connection, schema: CompiledSchema, object_name: str, rid: str | None) -> dict[str, Any] | None:
    """The record as stored now (None when deleted or gone)."""
    if rid is None or schema.tables.get(object_name) is None:
        return None
    return db_fetch(conn, schema)(object_name, rid)


class Evaluator:
    """Expressions of one workflow over one record, as its user."""

    def __init__(self, conn: sa.Connection, schema: CompiledSchema, obj: ObjectDef, record: dict[str, Any], *,
                 user=None, prior: Mapping[str, Any] | None = None, is_new: bool = False, timezone: str | None = None):
        self.conn = conn
        self.view = RecordView(schema.objects, obj.name, record, db_fetch(conn, schema))
        self.record = record
        self.context = EvalContext(is_new=is_new, prior=prior, user_id=getattr(user, "id", None), roles=roles_of(user),
                                   timezone=timezone)

    def __call__(self, compiled: Compiled) -> Any:
        return compiled.evaluate(self.view if compiled.paths else self.record, context=self.context)
