"""The difference between two metadata versions as a list of plain
operations, matched by stable uid (a renamed field keeps its uid, so it is a
rename, never a drop and an add). Pure: no database; the runtime turns each
operation into DDL (`loomcrm.runtime.migrate`).

Operations come out in the order they must run: drops of indexes and unique
constraints first, then dropped fields and objects (archived), renames,
creates, added and changed fields, and new constraints last.
"""

from __future__ import annotations

from dataclasses import dataclass, field as dc_field
from typing import Iterable, Mapping

from .model import FieldDef, ObjectDef

# Keys whose change alters a field's stored column; any other key is
# metadata only (labels, help, rules, options, ...).
STORAGE_KEYS = ("type", "precision", "scale", "returns", "function", "from_", "field", "prefix", "digits")


def _uid(thing) -> str:
    return thing.uid or thing.name


@dataclass
class Operation:
    kind = "operation"
    obj: ObjectDef

    @property
    def key(self) -> str:
        """A stable id of the operation, used to confirm it."""
        return f"{self.kind}:{_uid(self.obj)}"

    def describe(self) -> str:
        raise NotImplementedError


@dataclass
class FieldOperation(Operation):
    field: FieldDef

    @property
    def key(self) -> str:
        return f"{self.kind}:{_uid(self.obj)}:{_uid(self.field)}"


@dataclass
class CreateObject(Operation):
    kind = "create_object"
    deferred_lookups: list[str] = dc_field(default_factory=list)

    def describe(self):
        return f"create object {self.obj.name} with {len(self.obj.fields)} fields"


@dataclass
class RestoreObject(Operation):
    """Bring an archived object back with its records."""

    kind = "restore_object"
    archived: ObjectDef | None = None

    def describe(self):
        return f"restore object {self.obj.name} from the archive, with its records"


@dataclass
class DropObject(Operation):
    kind = "drop_object"

    def describe(self):
        return f"drop object {self.obj.name} (its records are archived and can be restored)"


@dataclass
class RenameObject(Operation):
    kind = "rename_object"
    old: ObjectDef | None = None

    def describe(self):
        return f"rename object {self.old.name} to {self.obj.name}"


@dataclass
class AddField(FieldOperation):
    kind = "add_field"

    def describe(self):
        return f"add field {self.obj.name}.{self.field.name} ({self.field.type})"


@dataclass
class RestoreField(FieldOperation):
    kind = "restore_field"

    def describe(self):
        return f"restore field {self.obj.name}.{self.field.name} from the archive, with its values"


@dataclass
class DropField(FieldOperation):
    kind = "drop_field"

    def describe(self):
        return f"drop field {self.obj.name}.{self.field.name} (its values are archived and can be restored)"


@dataclass
class RenameField(FieldOperation):
    kind = "rename_field"
    old: FieldDef | None = None

    def describe(self):
        return f"rename field {self.obj.name}.{self.old.name} to {self.field.name}"


@dataclass
class ChangeType(FieldOperation):
    kind = "change_type"
    old: FieldDef | None = None

    def describe(self):
        old, new = self.old, self.field
        what = f"{old.type} to {new.type}" if old.type != new.type else f"the storage of {new.type}"
        return f"change {self.obj.name}.{new.name} from {what}; values that do not convert need a decision"


@dataclass
class ChangeMaxLength(FieldOperation):
    kind = "change_max_length"
    old: FieldDef | None = None

    def describe(self):
        return f"change the maximum length of {self.obj.name}.{self.field.name} from {self.old.max_length} to {self.field.max_length}"


@dataclass
class ChangeLookupTarget(FieldOperation):
    kind = "change_lookup_target"
    old: FieldDef | None = None

    def describe(self):
        return f"point lookup {self.obj.name}.{self.field.name} at {self.field.to} instead of {self.old.to}; links that do not exist there need a decision"


@dataclass
class RenameOption(FieldOperation):
    """An option's value changed: the records holding the old value follow."""

    kind = "rename_option"
    old_value: str = ""

    @property
    def key(self) -> str:
        return f"{self.kind}:{_uid(self.obj)}:{_uid(self.field)}:{self.old_value}"

    def describe(self):
        return f"rename value {self.old_value!r} of {self.obj.name}.{self.field.name} to {self.new_value!r}; the records holding it follow"

    @property
    def new_value(self) -> str:
        return next(o.value for o in self.field.options if self.old_value in o.previous)


@dataclass
class AddForeignKey(FieldOperation):
    kind = "add_foreign_key"

    def describe(self):
        return f"link {self.obj.name}.{self.field.name} to {self.field.to} in the database"


@dataclass
class AddUnique(FieldOperation):
    kind = "add_unique"

    def describe(self):
        return f"make {self.obj.name}.{self.field.name} unique (refused while duplicates exist)"


@dataclass
class DropUnique(FieldOperation):
    kind = "drop_unique"

    def describe(self):
        return f"allow duplicate values of {self.obj.name}.{self.field.name}"


@dataclass
class AddIndex(Operation):
    kind = "add_index"
    fields: list[FieldDef] = dc_field(default_factory=list)

    @property
    def key(self):
        return f"{self.kind}:{_uid(self.obj)}:" + ",".join(_uid(f) for f in self.fields)

    def describe(self):
        return f"add an index on {self.obj.name} ({', '.join(f.name for f in self.fields)})"


@dataclass
class DropIndex(AddIndex):
    kind = "drop_index"

    def describe(self):
        return f"drop the index on {self.obj.name} ({', '.join(f.name for f in self.fields)})"


@dataclass
class UpdateObject(Operation):
    """A change of metadata only: no schema change."""

    kind = "update_object"
    changes: list[str] = dc_field(default_factory=list)

    def describe(self):
        return f"update {self.obj.name}: {', '.join(self.changes)}"


@dataclass
class Archive:
    """What the archive holds, by uid: dropped objects and dropped fields."""

    objects: Mapping[str, ObjectDef] = dc_field(default_factory=dict)
    fields: Mapping[tuple[str, str], FieldDef] = dc_field(default_factory=dict)


def storage_signature(f: FieldDef) -> tuple:
    return tuple(getattr(f, key, None) for key in STORAGE_KEYS)


def index_keys(obj: ObjectDef) -> dict[tuple[str, ...], list[FieldDef]]:
    """Every index an object needs besides unique constraints, by the uids
    of its fields (the same rule as the table builder's)."""
    keys: dict[tuple[str, ...], list[FieldDef]] = {}
    for f in obj.fields:
        if (f.indexed or f.type in ("lookup", "related_to")) and not f.unique:
            keys[(_uid(f),)] = [f]
    for names in obj.indexes:
        fields = [obj.field(n) for n in names]
        if all(f is not None for f in fields):
            keys.setdefault(tuple(_uid(f) for f in fields), fields)
    return keys


def _target_uid(f: FieldDef, objects: Mapping[str, ObjectDef]) -> str:
    target = objects.get(f.to)
    return _uid(target) if target is not None else f.to


def diff(old: Iterable[ObjectDef], new: Iterable[ObjectDef], archive: Archive | None = None) -> list[Operation]:
    """Operations that turn metadata `old` into `new`, in execution order."""
    archive = archive or Archive()
    old_list, new_list = list(old), list(new)
    old_by_uid = {_uid(o): o for o in old_list}
    new_by_uid = {_uid(o): o for o in new_list}
    old_names = {o.name: o for o in old_list}
    new_names = {o.name: o for o in new_list}

    phases: dict[str, list[Operation]] = {p: [] for p in (
        "drop_index", "drop_unique", "drop_field", "drop_object", "rename_object", "create_object",
        "rename_field", "add_field", "change", "add_foreign_key", "add_unique", "add_index", "update")}

    # objects -------------------------------------------------------------
    created: list[ObjectDef] = []
    for uid, obj in old_by_uid.items():
        if uid not in new_by_uid:
            for f in obj.fields:
                if f.unique:
                    phases["drop_unique"].append(DropUnique(obj, f))
            phases["drop_object"].append(DropObject(obj))
    pairs: list[tuple[ObjectDef, ObjectDef]] = []
    for uid, obj in new_by_uid.items():
        before = old_by_uid.get(uid)
        if before is None and uid in archive.objects:
            phases["create_object"].append(RestoreObject(obj, archived=archive.objects[uid]))
            pairs.append((archive.objects[uid], obj))
            continue
        if before is None:
            created.append(obj)
            continue
        if before.name != obj.name:
            phases["rename_object"].append(RenameObject(obj, old=before))
        pairs.append((before, obj))

    # archived lookups to an object restored with them still point at it
    for uid, archived in archive.objects.items():
        if uid in new_by_uid and uid not in old_by_uid:
            old_names.setdefault(archived.name, archived)

    # new tables in dependency order; lookups to tables made later are deferred
    existing = {o.name for o in new_list if _uid(o) in old_by_uid or _uid(o) in archive.objects}
    pending = list(created)
    while pending:
        ready = [o for o in pending if all(f.to in existing or f.to == o.name or f.to not in new_names
                                          for f in o.fields if f.type == "lookup")]
        batch = ready or pending[:1]
        for obj in batch:
            deferred = [f.name for f in obj.fields if f.type == "lookup" and f.to not in existing
                        and f.to != obj.name and f.to in new_names]
            phases["create_object"].append(CreateObject(obj, deferred_lookups=deferred))
            for name in deferred:
                phases["add_foreign_key"].append(AddForeignKey(obj, obj.field(name)))
            existing.add(obj.name)
            pending.remove(obj)

    # fields of objects that exist on both sides -------------------------------
    for before, after in pairs:
        obj_uid = _uid(after)
        old_fields = {_uid(f): f for f in before.fields}
        new_fields = {_uid(f): f for f in after.fields}
        retyped: set[str] = set()
        for fuid, f in old_fields.items():
            if fuid not in new_fields:
                if f.unique:
                    phases["drop_unique"].append(DropUnique(before, f))
                phases["drop_field"].append(DropField(before, f))
        for fuid, f in new_fields.items():
            prior = old_fields.get(fuid)
            if prior is None:
                archived = archive.fields.get((obj_uid, fuid))
                if archived is not None:
                    phases["add_field"].append(RestoreField(after, archived))
                    prior = archived.model_copy(update={"name": f.name, "unique": False})
                else:
                    phases["add_field"].append(AddField(after, f))
                    if f.unique:
                        phases["add_unique"].append(AddUnique(after, f))
                    continue
            elif prior.name != f.name:
                phases["rename_field"].append(RenameField(after, f, old=prior))
            if storage_signature(prior) != storage_signature(f):
                retyped.add(fuid)
                if prior.unique:
                    phases["drop_unique"].append(DropUnique(before, prior))
                phases["change"].append(ChangeType(after, f, old=prior))
                if f.unique:
                    phases["add_unique"].append(AddUnique(after, f))
                continue
            if f.type in ("text", "long_text") and prior.max_length != f.max_length:
                phases["change"].append(ChangeMaxLength(after, f, old=prior))
            if f.type == "lookup" and _target_uid(prior, old_names) != _target_uid(f, new_names):
                phases["change"].append(ChangeLookupTarget(after, f, old=prior))
            if f.type in ("picklist", "multi_picklist"):
                had, has = {o.value for o in prior.options}, {o.value for o in f.options}
                for option in f.options:
                    for value in option.previous:
                        if value in had and value not in has:
                            phases["change"].append(RenameOption(after, f, old_value=value))
            if prior.unique and not f.unique:
                phases["drop_unique"].append(DropUnique(before, prior))
            elif f.unique and not prior.unique:
                phases["add_unique"].append(AddUnique(after, f))
        old_idx, new_idx = index_keys(before), index_keys(after)
        for key, fields in old_idx.items():
            if key not in new_idx or any(k in retyped for k in key):
                phases["drop_index"].append(DropIndex(before, fields=fields))
        for key, fields in new_idx.items():
            if key not in old_idx or any(k in retyped for k in key):
                phases["add_index"].append(AddIndex(after, fields=fields))
        changes = _metadata_changes(before, after)
        if changes:
            phases["update"].append(UpdateObject(after, changes=changes))
    return [op for ops in phases.values() for op in ops]


_STRUCTURAL = {"name", "uid", "unique", "indexed", "max_length", "to", "from", *STORAGE_KEYS}


def _metadata_changes(before: ObjectDef, after: ObjectDef) -> list[str]:
    """Names of the parts that changed without touching storage."""
    changes = []
    b, a = before.model_dump(by_alias=True), after.model_dump(by_alias=True)
    for key in a:
        if key in ("fields", "name", "uid", "indexes"):
            continue
        if a[key] != b.get(key):
            changes.append(key)
    old_fields = {_uid(f): f.model_dump(by_alias=True) for f in before.fields}
    for f in after.fields:
        prior = old_fields.get(_uid(f))
        if prior is None:
            continue
        current = f.model_dump(by_alias=True)
        keys = [k for k in current if k not in _STRUCTURAL and current[k] != prior.get(k)]
        if keys:
            changes.append(f"{f.name} ({', '.join(keys)})")
    common = set(old_fields) & {_uid(f) for f in after.fields}
    if [_uid(f) for f in before.fields if _uid(f) in common] != [_uid(f) for f in after.fields if _uid(f) in common]:
        changes.append("field order")
    return changes
