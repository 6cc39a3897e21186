"""Preflights: count the rows an operation would harm before it runs."""

from __future__ import annotations

import sqlalchemy as sa

from loomcrm.metadata import diff as d

from ..fields import DEFAULT_CONTEXT, FieldError, field_type
from ..tables import table_name, uid_of
from .plan import CLEAR, Plan, Preflight

SAMPLE = 5
BATCH = 2000


def old_table_of(plan: Plan, obj) -> str | None:
    """The current table name of an object of the new metadata (None if the
    table does not exist yet)."""
    old = next((o for o in plan.old.objects if uid_of(o) == uid_of(obj)), None)
    if old is not None:
        return table_name(old)
    if (uid_of(obj), None) in plan.archive_entries:
        return table_name(obj)  # restored before field steps run, under the new name
    return None


TEXT_TYPES = ("text", "long_text", "email", "phone", "url", "picklist", "stage")


def convert_value(old_field, new_field, value, ctx):
    """A stored value of `old_field` as a value of `new_field`, or FieldError."""
    new_type = field_type(new_field)
    if not new_type.writable:
        raise FieldError("read_only", f"{new_field.name} is computed")
    as_json = field_type(old_field).to_json(old_field, value)
    if new_field.type in TEXT_TYPES and not isinstance(as_json, str):
        if isinstance(as_json, (dict, list)):
            raise FieldError("type", f"{new_field.name} cannot hold {type(as_json).__name__} values")
        as_json = str(as_json).lower() if isinstance(as_json, bool) else str(as_json)
    if isinstance(as_json, str):
        return new_type.parse_text(new_field, as_json, ctx)
    return new_type.coerce(new_field, as_json, ctx)


def typed_table(table: str, column: str, type_) -> sa.TableClause:
    return sa.table(table, sa.column("id", sa.String), sa.column(column, type_))


def conversion_failures(conn, plan: Plan, op: d.ChangeType, ctx, table: str | None = None, column: str | None = None):
    """(failures, sample ids, {id: converted value}, [(id, old value) that fail]).
    Before the plan runs (the preflight) the column has its old name."""
    table = table or old_table_of(plan, op.obj)
    column = column or op.old.name
    objects = {o.name: o for o in plan.old.objects}
    old_type = field_type(op.old)
    col_type = old_type.column_type(op.old, objects)
    t = typed_table(table, column, col_type)
    failures, sample, converted, failed = 0, [], {}, []
    for rid, value in conn.execute(sa.select(t.c.id, t.c[column]).where(t.c[column].is_not(None))):
        try:
            converted[rid] = convert_value(op.old, op.field, value, ctx)
        except FieldError:
            failures += 1
            failed.append((rid, value))
            if len(sample) < SAMPLE:
                sample.append(rid)
    return failures, sample, converted, failed


def run_preflight(conn: sa.Connection, plan: Plan, op: d.Operation, ctx=None) -> Preflight | None:
    ctx = ctx or DEFAULT_CONTEXT
    table = old_table_of(plan, op.obj)
    if table is None:
        return None
    if isinstance(op, d.ChangeType):
        if not field_type(op.field).writable:
            return Preflight(0, "computed values are cleared and computed again")
        failures, sample, _, _ = conversion_failures(conn, plan, op, ctx)
        return Preflight(failures, f"{failures} rows of {op.obj.name}.{op.field.name} do not convert to {op.field.type}",
                         (CLEAR,), sample)
    if isinstance(op, d.ChangeMaxLength):
        new_max = op.field.max_length
        if new_max is None or (op.old.max_length is not None and new_max >= op.old.max_length):
            return Preflight(0, "")
        col = sa.column(op.old.name)
        t = sa.table(table, sa.column("id"), col)
        rows = conn.execute(sa.select(t.c.id).where(sa.func.length(col) > new_max).limit(10_000)).fetchall()
        return Preflight(len(rows), f"{len(rows)} rows of {op.obj.name}.{op.field.name} are longer than {new_max} characters (Loom never truncates)",
                         (), [r[0] for r in rows[:SAMPLE]])
    if isinstance(op, d.AddUnique):
        col = sa.column(op.field.name)
        t = sa.table(table, col)
        groups = conn.execute(sa.select(col, sa.func.count()).select_from(t).where(col.is_not(None))
                              .group_by(col).having(sa.func.count() > 1).limit(10_000)).fetchall()
        dupes = sum(g[1] for g in groups)
        return Preflight(dupes, f"{dupes} rows of {op.obj.name} share a value of {op.field.name} with another row",
                         (), [str(g[0])[:100] for g in groups[:SAMPLE]])
    if isinstance(op, d.ChangeLookupTarget):
        target_table = old_table_of(plan, plan.new.object(op.field.to))
        col = sa.column(op.field.name)
        t = sa.table(table, sa.column("id"), col)
        query = sa.select(t.c.id).where(col.is_not(None))
        if target_table is not None:
            target = sa.table(target_table, sa.column("id"))
            query = query.where(~sa.exists().where(target.c.id == col))
        rows = conn.execute(query).fetchall()
        return Preflight(len(rows), f"{len(rows)} rows of {op.obj.name}.{op.field.name} link to no {op.field.to} record",
                         (CLEAR,), [r[0] for r in rows[:SAMPLE]])
    return None
