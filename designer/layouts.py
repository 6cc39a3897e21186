"""The layout editor's form and an object's layouts, both ways.

The page is one form whose items are in page order: an area marker
(`item=@form:3`, `@list`, `@card`, `@pool`) and then the fields placed in
that area (`item=amount`). Dragging a field moves its input, so the order
of the submitted items is the layout; nothing is renumbered."""

from __future__ import annotations

from typing import Any

from loomcrm.metadata.model import FieldDef, ObjectDef, as_json
from loomcrm.runtime.forms.views import N_

from .edits import FormProblems, text_of

NUMBERS = frozenset({"integer", "decimal", "currency", "percent"})
GROUPABLE = frozenset({"picklist", "stage", "user", "boolean"})


def summable(f: FieldDef) -> bool:
    return f.type in NUMBERS or f.type == "rollup" or (f.type == "formula" and f.returns in NUMBERS)


def areas(form) -> dict[str, list[str]]:
    """Area -> the fields placed there, in order."""
    placed: dict[str, list[str]] = {}
    current = None
    for key, value in form.multi_items():
        if key != "item" or not isinstance(value, str):
            continue
        if value.startswith("@"):
            current = value[1:]
            placed.setdefault(current, [])
        elif current is not None:
            placed[current].append(value)
    return placed


def layouts_from(obj: ObjectDef, form) -> dict[str, Any]:
    """The object's `layouts` (bundle JSON) from the layout editor."""
    names = {f.name for f in obj.fields}
    placed = areas(form)
    unknown = {n for fields in placed.values() for n in fields} - names
    if unknown:
        raise FormProblems({None: N_("The field list changed: reload the page.")})
    layouts: dict[str, Any] = {}
    sections = []
    for area, fields in placed.items():
        if not area.startswith("form:"):
            continue
        number = area.split(":", 1)[1]
        if not fields:
            continue           # an empty section says nothing: dropped
        section: dict[str, Any] = {"fields": fields}
        if label := text_of({k.removeprefix(f"section-{number}-"): v for k, v in form.items()
                             if k.startswith(f"section-{number}-")}, "label"):
            section["label"] = label
        columns = str(form.get(f"section-{number}-columns") or "2")
        section["columns"] = int(columns) if columns in ("1", "2", "3", "4") else 2
        sections.append(section)
    if sections:
        layouts["form"] = sections
    if placed.get("list"):
        listing: dict[str, Any] = {"columns": placed["list"]}
        sort = str(form.get("sort_field") or "")
        if sort:
            if sort not in names and sort not in ("created_at", "updated_at"):
                raise FormProblems({"sort_field": N_("Choose one of the options.")})
            listing["sort"] = ("-" if form.get("sort_desc") else "") + sort
        layouts["list"] = listing
    group = str(form.get("group_by") or "")
    if group:
        field = obj.field(group)
        if field is None or field.type not in GROUPABLE:
            raise FormProblems({"group_by": N_("Choose one of the options.")})
        kanban: dict[str, Any] = {"group_by": group, "card": placed.get("card", [])}
        total = str(form.get("sum") or "")
        if total:
            summed = obj.field(total)
            if summed is None or not summable(summed):
                raise FormProblems({"sum": N_("Choose one of the options.")})
            kanban["sum"] = total
        layouts["kanban"] = kanban
    return layouts


def with_layouts(obj: ObjectDef, layouts: dict[str, Any]) -> ObjectDef:
    data = as_json(obj)
    data.pop("layouts", None)
    if layouts:
        data["layouts"] = layouts
    return ObjectDef.model_validate(data)


def editor_state(obj: ObjectDef) -> dict[str, Any]:
    """What the editor shows: sections with their fields, the list's
    columns, the board's card, and for each area the fields not in it."""
    names = [f.name for f in obj.fields]
    sections = [{"n": str(i), "label": s.label, "columns": s.columns, "fields": list(s.fields)}
                for i, s in enumerate(obj.layouts.form)]
    if not sections:
        sections = [{"n": "0", "label": None, "columns": 2, "fields": names}]
    in_form = {n for s in sections for n in s["fields"]}
    listing = obj.layouts.list_
    columns = list(listing.columns) if listing else names[:6]     # what the list page shows without a layout
    sort = listing.sort.split(",")[0] if listing and listing.sort else ""
    kanban = obj.layouts.kanban
    card = list(kanban.card) if kanban else []
    return {"sections": sections, "form_pool": [n for n in names if n not in in_form],
            "columns": columns, "list_pool": [n for n in names if n not in columns],
            "sort_field": sort.lstrip("-"), "sort_desc": sort.startswith("-"),
            "group_by": kanban.group_by if kanban else "", "sum": kanban.sum or "" if kanban else "",
            "card": card, "card_pool": [n for n in names if n not in card],
            "groupable": [f for f in obj.fields if f.type in GROUPABLE],
            "numeric": [f for f in obj.fields if summable(f)]}
