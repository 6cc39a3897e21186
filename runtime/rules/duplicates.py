"""Duplicate rules (SPEC §3.1): a record matches another when every field
of the rule is set and equal after normalisation: text ignores case and
runs of whitespace; e-mails ignore case; phones compare in E.164 (the
field type normalised them on input). Deleted records never match.
`block` refuses the save with 409 and the ids of the matches; `warn` saves
and answers the matches under `_warnings`."""

from __future__ import annotations

from typing import Any, Mapping

import sqlalchemy as sa

from loomcrm.metadata.model import DuplicateRule, ObjectDef

from ..fields import field_type
from ..tables import CompiledSchema
from . import messages
from .engine import error

MAX_MATCHES = 20
_CASELESS = ("text", "long_text", "email", "url")


def normalize(kind: str, value: Any) -> Any:
    if value is None:
        return None
    if kind in _CASELESS and isinstance(value, str):
        return " ".join(value.split()).casefold() if kind in ("text", "long_text") else value.strip().casefold()
    if kind == "phone" and isinstance(value, str):
        return "".join(value.split())
    return value


def _prefilter(column, kind: str, probe):
    """A condition the database can use (`probe` is the bound value from
    `_probe`); the exact comparison follows in Python."""
    if kind in ("text", "long_text"):
        return sa.func.replace(sa.func.lower(column), " ", "") == probe
    if kind in ("email", "url"):
        return sa.func.lower(column) == probe
    return column == probe


def _probe(kind: str, value: Any) -> Any:
    """The value `_prefilter` compares with, normalised as its SQL side is."""
    if kind in ("text", "long_text"):
        return "".join(normalize(kind, str(value)).split()).lower()
    if kind in ("email", "url"):
        return normalize(kind, str(value)).lower()
    return value


def _query(schema: CompiledSchema, obj: ObjectDef, rule: DuplicateRule, fields: list, other_than: bool):
    """The candidates' query of `rule`, built once per metadata version:
    values bound as v0, v1, ..., and `rid` when the record itself is left
    out."""
    def build():
        table = schema.table(obj.name)
        conditions = [table.c._deleted_at.is_(None)]
        if other_than:
            conditions.append(table.c.id != sa.bindparam("rid"))
        for i, f in enumerate(fields):
            column = table.c[f.name]
            conditions.append(_prefilter(column, f.type, sa.bindparam(f"v{i}", type_=column.type)))
        return (sa.select(table.c.id, *[table.c[f.name] for f in fields]).where(*conditions)
                .order_by(table.c.id).limit(MAX_MATCHES * 5))
    return schema.cached(("duplicates", obj.name, rule.name, tuple(rule.fields), other_than), build)


def find_matches(conn: sa.Connection, schema: CompiledSchema, obj: ObjectDef, rule: DuplicateRule,
                 record: Mapping[str, Any], rid: str | None) -> list[str]:
    fields = [obj.field(name) for name in rule.fields]
    if any(f is None for f in fields) or any(field_type(f).is_blank(record.get(f.name)) for f in fields):
        return []
    params = {f"v{i}": _probe(f.type, record[f.name]) for i, f in enumerate(fields)}
    if rid is not None:
        params["rid"] = rid
    wanted = [normalize(f.type, record[f.name]) for f in fields]
    matches = []
    for row in conn.execute(_query(schema, obj, rule, fields, rid is not None), params):
        if [normalize(f.type, row._mapping[f.name]) for f in fields] == wanted:
            matches.append(row.id)
            if len(matches) >= MAX_MATCHES:
                break
    return matches


def check_duplicates(conn: sa.Connection, schema: CompiledSchema, obj: ObjectDef, record: Mapping[str, Any],
                     rid: str | None, changed: set[str] | None, locale: str) -> tuple[list[dict], list[dict]]:
    """(blocking problems, warnings) of `record`; a rule runs on create and
    when one of its fields changed."""
    blocks, warnings = [], []
    for rule in obj.duplicate_rules:
        if changed is not None and not (set(rule.fields) & changed):
            continue
        matches = find_matches(conn, schema, obj, rule, record, rid)
        if not matches:
            continue
        message = messages.declared(rule.message, locale) or messages.text(
            "duplicate", locale, object=messages.label(obj, locale), rule=rule.name)
        problem = error(rule.fields[0], "duplicate", message, rule.name, None, matches=matches, fields=list(rule.fields))
        (blocks if rule.action == "block" else warnings).append(problem)
    return blocks, warnings
