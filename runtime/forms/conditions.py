"""`visible_if`, `required_if`, `read_only_if` and formulas of a record
being edited, evaluated by the rules layer itself (`rules.SaveRun`), so a
form shows exactly what a save through the API would enforce.

The values come from a form: they are coerced leniently (a value that does
not parse yet counts as blank) because a person may still be typing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from loomcrm.metadata.model import ObjectDef

from ..fields import FieldError, field_type
from ..rollups import db_fetch
from ..rules import SaveRun, rules_for
from .widgets import editable


@dataclass
class FieldState:
    visible: bool = True
    required: bool = False
    read_only: bool = False


def working_record(obj: ObjectDef, old: Mapping[str, Any] | None, data: Mapping[str, Any], ctx) -> dict[str, Any]:
    """The stored values as they would be after saving `data` (JSON values)."""
    record = dict(old) if old is not None else {f.name: None for f in obj.fields}
    for name, raw in data.items():
        f = obj.field(name)
        if f is None:
            continue
        if raw is None:
            record[name] = None
            continue
        try:
            value = field_type(f).coerce(f, raw, ctx)
            record[name] = None if field_type(f).is_blank(value) else value
        except FieldError:
            record[name] = None
    return record


def field_states(schema, obj: ObjectDef, record: dict[str, Any], old: Mapping[str, Any] | None, user, *,
                 conn=None, field_context=None) -> tuple[dict[str, FieldState], dict[str, Any]]:
    """Per field: visible, required, read only; and the record with defaults
    and formulas applied (to show live formula values)."""
    rules = rules_for(schema.objects, obj.name, schema.version)
    kwargs = {"field_context": field_context} if field_context is not None else {}
    run = SaveRun(rules, record, old, user=user, fetch=db_fetch(conn, schema) if conn is not None else None, **kwargs)
    if rules.empty:
        states = {f.name: FieldState(required=bool(f.required), read_only=not editable(f)) for f in obj.fields}
        return states, record
    run.apply_defaults()
    run.compute_formulas()
    required_if = {f.name: c for f, c in rules.required_if}
    locked = _read_only_now(run, rules, old)
    states: dict[str, FieldState] = {}
    for f in obj.fields:
        visible = run.is_visible(f)
        required = bool(f.required)
        compiled = required_if.get(f.name)
        if compiled is not None and not required:
            try:
                required = run.evaluate(compiled) is True
            except Exception:  # an expression error is reported by the save itself
                required = False
        states[f.name] = FieldState(visible=visible, required=required and visible,
                                    read_only=not editable(f) or f.name in locked)
    return states, run.record


def _read_only_now(run: SaveRun, rules, old) -> set[str]:
    """Fields whose `read_only_if` holds for the stored record (the API
    refuses changing them; a new record has none)."""
    if old is None or not rules.read_only_if:
        return set()
    from ..rules.engine import RecordView

    before = RecordView(rules.objects, rules.obj.name, old, run.fetch, {})
    locked = set()
    for name, compiled in rules.read_only_if.items():
        try:
            if run.evaluate(compiled, before) is True:
                locked.add(name)
        except Exception:
            continue
    return locked
