"""Published metadata versions and the draft, stored in the system tables.

The published metadata is the newest row of `loom_metadata_versions`
(version 0 is the empty metadata of a new database). Admins edit one draft
(`loom_metadata_draft`, id 1) based on a published version; publishing
applies the migration from the published metadata to the draft and writes
the next version in the same transaction as the schema change.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel

from loomcrm.platform import systemdb

from .model import (
    ApprovalProcess, BusinessCalendar, Dashboard, ObjectDef, ObjectExtension, Pool, Report, Role, Survey, WebForm, Workflow,
)


class Snapshot(BaseModel):
    """Everything one metadata version describes."""

    objects: list[ObjectDef] = []
    workflows: list[Workflow] = []
    roles: list[Role] = []
    reports: list[Report] = []
    dashboards: list[Dashboard] = []
    pools: list[Pool] = []
    approvals: list[ApprovalProcess] = []
    calendars: list[BusinessCalendar] = []
    surveys: list[Survey] = []
    web_forms: list[WebForm] = []
    # only in a bundle's pristine snapshot: what it adds to other bundles'
    # objects (the published metadata has them merged into the objects)
    extensions: list[ObjectExtension] = []

    def object(self, name: str) -> ObjectDef | None:
        return next((o for o in self.objects if o.name == name), None)

    def object_by_uid(self, uid: str) -> ObjectDef | None:
        return next((o for o in self.objects if o.uid == uid), None)

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_defaults=True)

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> "Snapshot":
        return cls.model_validate(data or {})

    def with_object(self, obj: ObjectDef) -> "Snapshot":
        objects = [o for o in self.objects if o.name != obj.name and not (obj.uid and o.uid == obj.uid)]
        replaced = [i for i, o in enumerate(self.objects) if o.name == obj.name or (obj.uid and o.uid == obj.uid)]
        if replaced:
            objects.insert(replaced[0], obj)
        else:
            objects.append(obj)
        return self.model_copy(update={"objects": objects})

    def without_object(self, name: str) -> "Snapshot":
        return self.model_copy(update={"objects": [o for o in self.objects if o.name != name]})

    def role(self, name: str) -> Role | None:
        return next((r for r in self.roles if r.name == name), None)

    def workflow(self, name: str) -> Workflow | None:
        return next((w for w in self.workflows if w.name == name), None)

    def with_workflow(self, flow: Workflow) -> "Snapshot":
        """The snapshot with `flow` added, or replacing the one of its name in place."""
        flows = list(self.workflows)
        at = next((i for i, w in enumerate(flows) if w.name == flow.name), None)
        if at is None:
            flows.append(flow)
        else:
            flows[at] = flow
        return self.model_copy(update={"workflows": flows})

    def without_workflow(self, name: str) -> "Snapshot":
        return self.model_copy(update={"workflows": [w for w in self.workflows if w.name != name]})

    def report(self, name: str) -> Report | None:
        return next((r for r in self.reports if r.name == name), None)

    def dashboard(self, name: str) -> Dashboard | None:
        return next((d for d in self.dashboards if d.name == name), None)

    def pool(self, name: str) -> Pool | None:
        return next((p for p in self.pools if p.name == name), None)


def new_uid() -> str:
    return uuid.uuid4().hex[:16]


def ensure_uids(snapshot: Snapshot, previous: Snapshot | None = None) -> Snapshot:
    """Give every object and field a uid. Objects and fields without one
    take the uid of the same-named one in `previous` (an unchanged name is
    the same thing), else a new one."""
    objects = []
    for obj in snapshot.objects:
        before = previous.object(obj.name) if previous else None
        obj_uid = obj.uid or (before.uid if before and before.uid else new_uid())
        fields = []
        for f in obj.fields:
            if f.uid:
                fields.append(f)
                continue
            old = before.field(f.name) if before else None
            fields.append(f.model_copy(update={"uid": old.uid if old is not None and old.uid and old.type == f.type else new_uid()}))
        objects.append(obj.model_copy(update={"uid": obj_uid, "fields": fields}))
    return snapshot.model_copy(update={"objects": objects})


@dataclass(frozen=True)
class VersionInfo:
    version: int
    comment: str
    created_by: str | None
    created_at: datetime | None


class DraftConflict(Exception):
    """The draft was based on an older published version than the current one."""


class VersionStore:
    """Reads and writes versions and the draft on a connection the caller
    holds, so a publish can write them in its own transaction."""

    versions = systemdb.metadata_versions
    draft_table = systemdb.metadata_draft

    def published_version(self, conn: sa.Connection) -> int:
        return conn.execute(sa.select(sa.func.max(self.versions.c.version))).scalar() or 0

    def published(self, conn: sa.Connection) -> tuple[int, Snapshot]:
        row = conn.execute(
            sa.select(self.versions.c.version, self.versions.c.snapshot).order_by(self.versions.c.version.desc()).limit(1)
        ).first()
        if row is None:
            return 0, Snapshot()
        return row.version, Snapshot.from_json(row.snapshot)

    def snapshot(self, conn: sa.Connection, version: int) -> Snapshot:
        if version == 0:
            return Snapshot()
        data = conn.execute(sa.select(self.versions.c.snapshot).where(self.versions.c.version == version)).scalar()
        if data is None:
            raise KeyError(f"no metadata version {version}")
        return Snapshot.from_json(data)

    def history(self, conn: sa.Connection) -> list[VersionInfo]:
        rows = conn.execute(
            sa.select(self.versions.c.version, self.versions.c.comment, self.versions.c.created_by, self.versions.c.created_at)
            .order_by(self.versions.c.version.desc())
        )
        return [VersionInfo(r.version, r.comment, r.created_by, r.created_at) for r in rows]

    def draft(self, conn: sa.Connection) -> tuple[int, Snapshot, bool]:
        """(base version, snapshot, whether a draft row exists). Without a
        draft, the draft is the published metadata."""
        row = conn.execute(sa.select(self.draft_table).where(self.draft_table.c.id == 1)).first()
        if row is None:
            version, snap = self.published(conn)
            return version, snap, False
        return row.base_version, Snapshot.from_json(row.snapshot), True

    def save_draft(self, conn: sa.Connection, snapshot: Snapshot, base_version: int, user_id: str | None) -> None:
        values = {"base_version": base_version, "snapshot": snapshot.to_json(), "updated_by": user_id,
                  "updated_at": datetime.now(timezone.utc)}
        updated = conn.execute(sa.update(self.draft_table).where(self.draft_table.c.id == 1).values(**values))
        if updated.rowcount == 0:
            conn.execute(sa.insert(self.draft_table).values(id=1, **values))

    def discard_draft(self, conn: sa.Connection) -> None:
        conn.execute(sa.delete(self.draft_table).where(self.draft_table.c.id == 1))

    def record_version(self, conn: sa.Connection, snapshot: Snapshot, *, expected_base: int, comment: str = "",
                       user_id: str | None = None) -> int:
        """Write the next published version; refuses when someone else
        published since `expected_base` (the primary key catches a race)."""
        current = self.published_version(conn)
        if current != expected_base:
            raise DraftConflict(f"metadata version {current} was published since this change was planned on version {expected_base}")
        version = current + 1
        conn.execute(sa.insert(self.versions).values(
            version=version, snapshot=snapshot.to_json(), comment=comment, created_by=user_id,
            created_at=datetime.now(timezone.utc)))
        return version
