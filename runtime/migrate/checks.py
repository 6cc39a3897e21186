"""Consistency checks every publish needs, whatever the caller (the full
validation with file paths lives in `loomcrm.metadata.validate`)."""

from __future__ import annotations

from loomcrm.metadata.model import SYSTEM_FIELDS
from loomcrm.metadata.versions import Snapshot

from ..records import Invalid


def structural_problems(snapshot: Snapshot) -> list[str]:
    problems = []
    names = [o.name for o in snapshot.objects]
    uids = [o.uid for o in snapshot.objects if o.uid]
    if len(set(names)) != len(names) or len(set(uids)) != len(uids):
        problems.append("object names and uids must be unique")
    for obj in snapshot.objects:
        fnames = [f.name for f in obj.fields]
        if len(set(fnames)) != len(fnames):
            problems.append(f"{obj.name}: field names must be unique")
        fuids = [f.uid for f in obj.fields if f.uid]
        if len(set(fuids)) != len(fuids):
            problems.append(f"{obj.name}: field uids must be unique")
        for f in obj.fields:
            if f.name in SYSTEM_FIELDS:
                problems.append(f"{obj.name}.{f.name}: the name of a system field")
            if f.type == "lookup" and f.to not in names:
                problems.append(f"{obj.name}.{f.name}: lookup to unknown object {f.to!r}")
            if f.type == "related_to" and any(t not in names for t in f.to):
                problems.append(f"{obj.name}.{f.name}: related_to names an unknown object")
            if f.type == "rollup" and f.from_ not in names:
                problems.append(f"{obj.name}.{f.name}: rollup from unknown object {f.from_!r}")
        for index in obj.indexes:
            if any(obj.field(n) is None for n in index):
                problems.append(f"{obj.name}: an index names an unknown field")
        for name in obj.track_history:
            if obj.field(name) is None and name not in SYSTEM_FIELDS:
                problems.append(f"{obj.name}: track_history names unknown field {name!r}")
    return problems


def check_snapshot(snapshot: Snapshot) -> None:
    problems = structural_problems(snapshot)
    if problems:
        raise Invalid("the metadata is inconsistent", [{"field": None, "code": "metadata", "message": p} for p in problems])
