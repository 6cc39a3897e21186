"""Changing the metadata draft, for the API and the designer alike.

Every change reads the draft, applies a function to it and writes it back
in one write transaction, after the structural checks. A caller that shows
the admin a copy of the draft (the designer's forms, an API client with an
ETag) passes what it saw: when the draft changed since, the change is
refused with `DraftChanged`, which says who changed what, so that two
admins never overwrite each other in silence.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable

import sqlalchemy as sa

from loomcrm.metadata import diff
from loomcrm.metadata.model import ObjectDef, as_json
from loomcrm.metadata.versions import DraftConflict, Snapshot, ensure_uids
from loomcrm.platform import systemdb
from loomcrm.platform.db import write_transaction

from .migrate.checks import check_snapshot


def tag_of(data: Any) -> str:
    """A short, stable fingerprint of JSON data (an ETag)."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


@dataclass(frozen=True)
class Draft:
    base_version: int
    snapshot: Snapshot
    exists: bool
    updated_by: str | None = None        # a user name
    updated_at: datetime | None = None

    @property
    def tag(self) -> str:
        return tag_of(self.snapshot.to_json())

    def object_tag(self, name: str) -> str:
        obj = self.snapshot.object(name)
        return tag_of(as_json(obj) if obj else None)


class DraftChanged(DraftConflict):
    """Someone changed the draft since the caller read it."""

    def __init__(self, who: str | None, when: datetime | None, changes: list[str]):
        self.who, self.when, self.changes = who, when, changes
        what = "; ".join(changes[:5]) or "the draft"
        super().__init__(f"{who or 'another admin'} changed the draft since you opened it: {what}")


def read(engine) -> Draft:
    with engine.connect() as conn:
        return _read(conn)


def _read(conn: sa.Connection) -> Draft:
    from loomcrm.metadata.versions import VersionStore

    base, snapshot, exists = VersionStore().draft(conn)
    if not exists:
        return Draft(base, snapshot, False)
    t, users = systemdb.metadata_draft, systemdb.users
    row = conn.execute(sa.select(users.c.username, t.c.updated_at)
                       .select_from(t.outerjoin(users, users.c.id == t.c.updated_by)).where(t.c.id == 1)).first()
    return Draft(base, snapshot, True, row.username if row else None, row.updated_at if row else None)


def object_changes(seen: ObjectDef | None, now: ObjectDef | None) -> list[str]:
    """What happened to one object between two reads, in words."""
    if seen is None and now is None:
        return []
    if seen is None:
        return [f"created object {now.name}"]
    if now is None:
        return [f"removed object {seen.name}"]
    return [op.describe() for op in diff.diff([seen], [now], diff.Archive())] or [f"changed object {now.name}"]


def change(runtime, user_id: str | None, edit: Callable[[Snapshot], Snapshot], *, seen_tag: str | None = None,
           seen_object: ObjectDef | None = None, object_name: str | None = None,
           workflow_name: str | None = None, seen_workflow: dict | None = None) -> Snapshot:
    """Apply `edit` to the draft and store it; answer the new draft.

    `seen_tag`: the draft's tag as the caller read it (the whole draft).
    `object_name` and `seen_object`: the one object the caller edits, as it
    read it (None: it did not exist); only a change to that object
    conflicts, so admins working on different objects do not disturb each
    other. `workflow_name` and `seen_workflow` (its JSON) do the same for
    one workflow."""
    store = runtime.store
    with write_transaction(runtime.engine) as conn:
        published_version, published = store.published(conn)
        current = _read(conn)
        if current.exists and current.base_version != published_version:
            raise DraftConflict(f"the draft was based on version {current.base_version}, but version "
                                f"{published_version} is published; discard it first")
        if seen_tag is not None and seen_tag != current.tag:
            raise DraftChanged(current.updated_by, current.updated_at, ["the draft"])
        if object_name is not None:
            now = current.snapshot.object(object_name)
            if (as_json(now) if now else None) != (as_json(seen_object) if seen_object else None):
                raise DraftChanged(current.updated_by, current.updated_at, object_changes(seen_object, now))
        if workflow_name is not None:
            flow = current.snapshot.workflow(workflow_name)
            if (as_json(flow) if flow else None) != seen_workflow:
                raise DraftChanged(current.updated_by, current.updated_at, [f"changed workflow {workflow_name}"])
        snapshot = ensure_uids(edit(current.snapshot), previous=published)
        check_snapshot(snapshot)
        store.save_draft(conn, snapshot, published_version, user_id)
    return snapshot


def as_problem_fields(exc: DraftChanged) -> dict[str, Any]:
    return {"changed_by": exc.who, "changed_at": exc.when.isoformat() if exc.when else None, "changes": exc.changes}
