"""The designer's plain words: field types, the steps of a migration plan
and their preflights, said in the admin's language with the labels the
admin gave (not the column names)."""

from __future__ import annotations

import re
from typing import Callable

from loomcrm.metadata import diff as d
from loomcrm.metadata.model import localized

TYPE_TEXTS = {
    "text": "Text", "long_text": "Long text", "integer": "Whole number", "decimal": "Decimal number",
    "currency": "Currency", "percent": "Percent", "boolean": "Checkbox", "date": "Date", "datetime": "Date and time",
    "email": "E-mail", "phone": "Phone", "url": "Web address", "picklist": "Picklist",
    "multi_picklist": "Multi-select picklist", "lookup": "Lookup", "related_to": "Related to (several objects)",
    "stage": "Stage", "formula": "Formula", "rollup": "Roll-up summary", "auto_number": "Auto-number",
    "user": "User",
}
STEP_TEXTS = {
    "create_object": "Create object %(object)s (fields: %(n)s)",
    "restore_object": "Restore object %(object)s from the archive, with its records",
    "drop_object": "Remove object %(object)s: its records are archived and can be restored",
    "rename_object": "Rename object %(old)s to %(object)s: records kept",
    "add_field": "Add column %(field)s (%(type)s) to %(object)s",
    "restore_field": "Restore field %(field)s of %(object)s from the archive, with its values",
    "drop_field": "Remove field %(field)s of %(object)s: its values are archived and can be restored",
    "rename_field": "Rename %(old)s to %(field)s on %(object)s: values kept",
    "change_type": "Change %(field)s of %(object)s from %(old_type)s to %(type)s",
    "change_max_length": "Change the maximum length of %(field)s of %(object)s from %(old)s to %(new)s",
    "change_lookup_target": "Point %(field)s of %(object)s at %(target)s instead of %(old)s",
    "add_foreign_key": "Link %(field)s of %(object)s to %(target)s in the database",
    "add_unique": "Make %(field)s of %(object)s unique",
    "drop_unique": "Allow duplicate values of %(field)s of %(object)s",
    "add_index": "Add an index on %(object)s (%(fields)s)",
    "drop_index": "Remove the index on %(object)s (%(fields)s)",
    "update_object": "Change the settings of %(object)s: %(changes)s",
    "rename_option": "Rename the value %(old)s of %(field)s on %(object)s to %(new)s: the records holding it follow",
}
PREFLIGHT_TEXTS = {
    "change_type": "%(n)s of %(total)s records cannot convert",
    "change_max_length": "%(n)s of %(total)s records are longer than %(max)s characters; Loom never cuts text",
    "add_unique": "%(n)s of %(total)s records share a value with another record",
    "change_lookup_target": "%(n)s of %(total)s records link to no %(target)s record",
}
# The parts of an object or field a metadata-only change names.
CHANGE_TEXTS = {
    "label": "label", "plural_label": "plural label", "description": "description", "icon": "icon",
    "title_field": "title field", "validation_rules": "validation rules", "duplicate_rules": "duplicate rules",
    "layouts": "layouts", "track_history": "history tracking", "field order": "field order", "help": "help text",
    "required": "required", "options": "options", "stages": "stages", "allow_backward": "moving back a stage",
    "default": "default value", "default_expr": "default value", "required_if": "required when",
    "visible_if": "shown when", "read_only_if": "read-only when", "read_only": "read only", "pattern": "pattern",
    "min": "lowest value", "max": "highest value", "expression": "formula", "filter": "filter",
    "on_delete": "when the looked-up record is deleted", "prefix": "prefix", "digits": "digits",
}
_FIELD_CHANGE = re.compile(r"^(\w+) \((.+)\)$")


def changes_text(op: d.UpdateObject, gettext: Callable[[str], str], locale: str) -> str:
    """An UpdateObject's changed parts in words: "validation rules; Notes: label, help text"."""
    parts = []
    for change in op.changes:
        match = _FIELD_CHANGE.match(change)
        if match is None:
            parts.append(gettext(CHANGE_TEXTS.get(change, change)))
            continue
        name, keys = match.groups()
        f = op.obj.field(name)
        shown = localized(f.label, locale, name) if f is not None else name
        parts.append(f"{shown}{gettext(': ')}" + ", ".join(gettext(CHANGE_TEXTS.get(k.strip(), k.strip()))
                                                            for k in keys.split(",")))
    return "; ".join(parts)


# Steps that take something away (archived, or cleared with a decision):
# the admin types the object's name to confirm them. Removals always;
# conversions when the table has records.
REMOVALS = frozenset({"drop_object", "drop_field"})
CONVERSIONS = frozenset({"change_type", "change_lookup_target"})


def destructive(kind: str, records: int | None) -> bool:
    return kind in REMOVALS or (kind in CONVERSIONS and bool(records))


def fill(text: str, args: dict) -> str:
    for key, value in args.items():
        text = text.replace(f"%({key})s", str(value))
    return text


def type_text(gettext: Callable[[str], str], kind: str) -> str:
    return gettext(TYPE_TEXTS.get(kind, kind))


def step_text(op: d.Operation, gettext: Callable[[str], str], locale: str) -> str:
    """One step of a plan as a sentence."""
    def label(thing) -> str:
        return f"{localized(thing.label, locale, thing.name)} ({thing.name})" if thing.label else thing.name

    args: dict = {"object": label(op.obj)}
    if isinstance(op, d.FieldOperation):
        args |= {"field": label(op.field), "type": type_text(gettext, op.field.type)}
    if isinstance(op, d.CreateObject):
        args["n"] = len(op.obj.fields)
    elif isinstance(op, d.RenameObject):
        args["old"] = label(op.old)
    elif isinstance(op, (d.RenameField,)):
        args["old"] = label(op.old)
    elif isinstance(op, d.RenameOption):
        args |= {"old": op.old_value, "new": op.new_value}
    elif isinstance(op, d.ChangeType):
        args["old_type"] = type_text(gettext, op.old.type)
    elif isinstance(op, d.ChangeMaxLength):
        args |= {"old": op.old.max_length or "—", "new": op.field.max_length or "—"}
    elif isinstance(op, d.ChangeLookupTarget):
        args |= {"target": op.field.to, "old": op.old.to}
    elif isinstance(op, d.AddForeignKey):
        args["target"] = op.field.to
    elif isinstance(op, d.AddIndex):
        args["fields"] = ", ".join(f.name for f in op.fields)
    elif isinstance(op, d.UpdateObject):
        args["changes"] = changes_text(op, gettext, locale)
    template = STEP_TEXTS.get(op.kind)
    return fill(gettext(template), args) if template else op.describe()


def preflight_text(op: d.Operation, rows: int, total: int, gettext: Callable[[str], str]) -> str:
    template = PREFLIGHT_TEXTS.get(op.kind)
    if template is None:
        return ""
    args = {"n": f"{rows:,}", "total": f"{total:,}"}
    if isinstance(op, d.ChangeMaxLength):
        args["max"] = op.field.max_length
    if isinstance(op, d.ChangeLookupTarget):
        args["target"] = op.field.to
    return fill(gettext(template), args)
