"""A migration plan: the operations of the metadata diff, each with the
result of its preflight against the data, readable by a person before
anything runs."""

from __future__ import annotations

from dataclasses import dataclass, field as dc_field
from typing import Any

import sqlalchemy as sa

from loomcrm.metadata import diff as d
from loomcrm.metadata.model import FieldDef, ObjectDef
from loomcrm.metadata.versions import Snapshot
from loomcrm.platform import systemdb

CLEAR = "clear"  # the one decision for values that do not convert: archive them, then clear


@dataclass
class Preflight:
    """What an operation would do to existing rows."""

    rows: int                      # rows affected (that do not convert, duplicates, too long, ...)
    problem: str                   # a sentence for the admin
    options: tuple[str, ...] = ()  # decisions the admin may confirm; empty: refused while rows > 0
    sample: list[str] = dc_field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"rows": self.rows, "problem": self.problem, "options": list(self.options), "sample": self.sample}


@dataclass
class Step:
    op: d.Operation
    preflight: Preflight | None = None

    @property
    def key(self) -> str:
        return self.op.key

    def blocked(self, confirm: dict[str, str]) -> str | None:
        """Why this step cannot run with these confirmations, or None."""
        pf = self.preflight
        if pf is None or pf.rows == 0:
            return None
        if not pf.options:
            return pf.problem
        if confirm.get(self.key) not in pf.options:
            return f"{pf.problem}; confirm one of {', '.join(pf.options)} with {{\"{self.key}\": \"{pf.options[0]}\"}}"
        return None

    def as_json(self) -> dict[str, Any]:
        return {"key": self.key, "kind": self.op.kind, "object": self.op.obj.name, "description": self.op.describe(),
                "preflight": self.preflight.as_json() if self.preflight else None}


@dataclass
class ArchiveEntry:
    id: str
    kind: str
    object_uid: str
    field_uid: str | None
    table_name: str
    definition: dict


@dataclass
class Plan:
    base_version: int
    old: Snapshot
    new: Snapshot
    steps: list[Step]
    archive_entries: dict[tuple[str, str | None], ArchiveEntry] = dc_field(default_factory=dict)

    def problems(self, confirm: dict[str, str] | None = None) -> list[dict[str, str]]:
        confirm = confirm or {}
        return [{"key": s.key, "message": reason} for s in self.steps if (reason := s.blocked(confirm))]

    @property
    def empty(self) -> bool:
        return not self.steps

    def describe(self) -> str:
        if not self.steps:
            return "Nothing to change."
        lines = []
        for i, step in enumerate(self.steps, 1):
            lines.append(f"{i}. {step.op.describe()}")
            if step.preflight and step.preflight.rows:
                extra = f" (confirm: {', '.join(step.preflight.options)} as {step.key})" if step.preflight.options else " (refused)"
                lines.append(f"   ! {step.preflight.problem}{extra}")
        return "\n".join(lines)

    def as_json(self, confirm: dict[str, str] | None = None) -> dict[str, Any]:
        return {"base_version": self.base_version, "steps": [s.as_json() for s in self.steps],
                "problems": self.problems(confirm), "text": self.describe()}


def load_archive(conn: sa.Connection) -> tuple[d.Archive, dict[tuple[str, str | None], ArchiveEntry]]:
    """The newest unrestored archive of each dropped object and field."""
    t = systemdb.archives
    rows = conn.execute(sa.select(t).where(t.c.restored_at.is_(None), t.c.kind.in_(("field", "object")))
                        .order_by(t.c.archived_at, t.c.id)).fetchall()
    objects: dict[str, ObjectDef] = {}
    fields: dict[tuple[str, str], FieldDef] = {}
    entries: dict[tuple[str, str | None], ArchiveEntry] = {}
    for row in rows:
        entry = ArchiveEntry(row.id, row.kind, row.object_uid, row.field_uid, row.table_name, row.definition)
        if row.kind == "object":
            objects[row.object_uid] = ObjectDef.model_validate(row.definition)
            entries[(row.object_uid, None)] = entry
        else:
            fields[(row.object_uid, row.field_uid)] = ObjectDef.model_validate(
                {"name": "archived", "fields": [row.definition]}).fields[0]
            entries[(row.object_uid, row.field_uid)] = entry
    return d.Archive(objects=objects, fields=fields), entries


def make_plan(conn: sa.Connection, old: Snapshot, new: Snapshot, base_version: int, *, field_context=None) -> Plan:
    from .preflight import run_preflight

    archive, entries = load_archive(conn)
    ops = d.diff(old.objects, new.objects, archive)
    plan = Plan(base_version=base_version, old=old, new=new, steps=[Step(op) for op in ops], archive_entries=entries)
    for step in plan.steps:
        step.preflight = run_preflight(conn, plan, step.op, field_context)
    return plan
