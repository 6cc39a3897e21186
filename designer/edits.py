"""From the designer's forms to metadata: each function takes what the
admin submitted and the object as it is in the draft, and answers the
object's new bundle JSON, or `FormProblems` naming the inputs at fault.
Nothing here touches the database."""

from __future__ import annotations

import re
import unicodedata
from typing import Any, Mapping, get_args

from pydantic import TypeAdapter, ValidationError

from loomcrm.metadata.model import FieldDef, ObjectDef, as_json
from loomcrm.runtime.forms.views import N_

LOCALES = (("en", "en"), ("zh", "zh-CN"))       # (input suffix, locale)
FLAGS = ("required", "unique", "indexed")
EXPRESSIONS = ("default_expr", "required_if", "visible_if", "read_only_if")
_FIELD = TypeAdapter(FieldDef)
# Each field type's model, to know which settings it takes.
FIELD_MODELS = {get_args(cls.model_fields["type"].annotation)[0]: cls for cls in get_args(get_args(FieldDef)[0])}
FIELD_TYPES = tuple(FIELD_MODELS)
# The settings the field form shows for each type (beyond the common ones).
NUMBER_SETTINGS = ("min", "max")
TYPE_SETTINGS: dict[str, tuple[str, ...]] = {
    "text": ("max_length", "pattern"), "long_text": ("max_length",), "integer": NUMBER_SETTINGS,
    "decimal": ("precision", "scale", *NUMBER_SETTINGS), "currency": ("scale", *NUMBER_SETTINGS),
    "percent": ("scale", *NUMBER_SETTINGS), "date": NUMBER_SETTINGS, "datetime": NUMBER_SETTINGS,
    "formula": ("expression", "returns", "scale"), "rollup": ("from", "via", "function", "field", "filter"),
    "auto_number": ("prefix", "digits"), "lookup": ("to", "on_delete"),
}
# ... and the other way round: which types each setting's input serves.
SETTING_TYPES: dict[str, list[str]] = {}
for _kind, _keys in TYPE_SETTINGS.items():
    for _key in _keys:
        SETTING_TYPES.setdefault(_key, []).append(_kind)
INTEGER_SETTINGS = frozenset({"max_length", "precision", "scale", "digits"})
NUMBERS = frozenset({"integer", "decimal", "currency", "percent"})
FORMULA_RETURNS = {"number": "decimal", "text": "text", "boolean": "boolean", "date": "date", "datetime": "datetime"}


class FormProblems(Exception):
    """What is wrong with a form: input name (None: the form) -> message."""

    def __init__(self, problems: dict[str | None, str]):
        self.problems = problems
        super().__init__("; ".join(f"{k or 'form'}: {v}" for k, v in problems.items()))


def text_of(form: Mapping[str, str], name: str) -> dict[str, str] | None:
    """A localized text from its inputs `name_en`, `name_zh`."""
    values = {locale: str(form.get(f"{name}_{suffix}") or "").strip() for suffix, locale in LOCALES}
    values = {k: v for k, v in values.items() if v}
    return values or None


def texts_of(name: str, value) -> dict[str, str]:
    """A localized text as the values of its inputs `name_en`, `name_zh`."""
    if value is None:
        return {}
    if isinstance(value, str):
        return {f"{name}_en": value}
    return {f"{name}_{suffix}": value.get(locale, "") for suffix, locale in LOCALES}


def _input_of(loc: tuple) -> str | None:
    """The form input a pydantic error location points at."""
    parts = [p for p in loc if isinstance(p, str) and p not in FIELD_MODELS]
    if not parts:
        return None
    head = parts[0]
    if head in ("label", "help", "plural_label", "description", "message"):
        return f"{head}_en"
    if head == "from_":
        return "from"
    return head


def slug(text: str) -> str:
    """A name made from a label, as the pages' name inputs make it."""
    plain = unicodedata.normalize("NFKD", text.lower()).encode("ascii", "ignore").decode()
    return re.sub(r"^[0-9_]+", "", re.sub(r"[^a-z0-9]+", "_", plain).strip("_"))[:63]


def _problems(exc: ValidationError, prefix: tuple = ()) -> FormProblems:
    found: dict[str | None, str] = {}
    for e in exc.errors():
        loc = tuple(e["loc"])[len(prefix):] if tuple(e["loc"])[: len(prefix)] == prefix else tuple(e["loc"])
        where = _input_of(loc)
        message = e["msg"]
        if e["type"] == "string_pattern_mismatch" and where in ("name", "value", None) or where == "name":
            message = N_("Use lower-case letters, digits and _ only, starting with a letter.")
        found.setdefault(where, message)
    return FormProblems(found)


def new_object(starter: dict[str, Any]) -> ObjectDef:
    try:
        return ObjectDef.model_validate(starter)
    except ValidationError as exc:
        raise _problems(exc) from None


def object_settings(obj: ObjectDef, form: Mapping[str, str]) -> ObjectDef:
    data = as_json(obj)
    for key in ("label", "plural_label", "description"):
        data.pop(key, None)
        if (text := text_of(form, key)) is not None:
            data[key] = text
    for key in ("name", "icon", "title_field"):
        value = str(form.get(key) or "").strip()
        if value:
            data[key] = value
        elif key != "name":
            data.pop(key, None)
    try:
        return ObjectDef.model_validate(data)
    except ValidationError as exc:
        raise _problems(exc) from None


def _number(text: str, whole: bool) -> int | str:
    return int(text) if whole else text


def field_json(form: Mapping[str, Any], previous: dict[str, Any] | None, *, options: list[dict] | None = None,
               inferred_returns: str | None = None) -> dict[str, Any]:
    """The field's bundle JSON from the field form. Settings the form does
    not show (a stage field's stages) are kept from `previous`; settings
    the new type does not take are dropped."""
    kind = str(form.get("type") or (previous or {}).get("type") or "")
    if kind not in FIELD_MODELS:
        raise FormProblems({"type": N_("Choose a field type.")})
    data = dict(previous or {})
    data["type"] = kind
    data["name"] = str(form.get("name") or "").strip()
    for key in ("label", "help"):
        data.pop(key, None)
        if (text := text_of(form, key)) is not None:
            data[key] = text
    for flag in FLAGS:
        data[flag] = form.get(flag) in ("on", "true", "1")
    for key in (*EXPRESSIONS, *TYPE_SETTINGS.get(kind, ())):
        value = str(form.get(key) or "").strip()
        data.pop(key, None)
        if not value:
            continue
        if key in INTEGER_SETTINGS or (key in NUMBER_SETTINGS and kind == "integer"):
            try:
                data[key] = int(value)
            except ValueError:
                raise FormProblems({key: N_("Enter a whole number.")}) from None
        else:
            data[key] = value
    if kind in ("picklist", "multi_picklist"):
        data["options"] = options or []
    if kind == "stage":
        data["stages"] = stages_from(form)
        data["allow_backward"] = form.get("allow_backward") in ("on", "true", "1")
    if kind == "formula" and not data.get("returns") and inferred_returns:
        data["returns"] = inferred_returns
    if kind == "related_to":
        data["to"] = list(form.getlist("targets"))
    allowed = {f.alias or name for name, f in FIELD_MODELS[kind].model_fields.items()}
    data = {k: v for k, v in data.items() if k in ("name", "type") or (k in allowed and _given(v))}
    try:
        _FIELD.validate_python(data)
    except ValidationError as exc:
        raise _problems(exc) from None
    return data


_STAGE_INPUT = re.compile(r"stages-(\d+)-(?:(exit|entry)-(\d+)-)?([a-z_]+)$")
STAGE_KEYS = ("value", "category", "probability", "color")


def stage_inputs(form) -> list[dict[str, Any]]:
    """The stage editor's inputs grouped per stage, in the order the page
    shows them (dragging reorders the inputs, not their numbers)."""
    stages: dict[str, dict[str, Any]] = {}
    for key, value in form.multi_items():
        match = _STAGE_INPUT.match(key)
        if match is None or not isinstance(value, str):
            continue
        number, kind, criterion, part = match.groups()
        stage = stages.setdefault(number, {"n": number, "required_fields": [], "exit": {}, "entry": {}})
        if kind:
            stage[kind].setdefault(criterion, {"n": criterion})[part] = value.strip()
        elif part == "required_fields":
            stage["required_fields"].append(value)
        else:
            stage[part] = value.strip()
    for stage in stages.values():
        for kind in ("exit", "entry"):
            stage[kind] = list(stage[kind].values())
    return list(stages.values())


def stages_from(form) -> list[dict[str, Any]]:
    """A stage field's stages (bundle JSON) from the stage editor."""
    stages = []
    for row in stage_inputs(form):
        if not row.get("value"):
            continue
        stage: dict[str, Any] = {"value": row["value"], "category": row.get("category") or "open"}
        for key, name in (("label", "label"), ("guidance", "guidance")):
            if text := text_of(row, name):
                stage[key] = text
        if row.get("probability"):
            try:
                stage["probability"] = int(row["probability"])
            except ValueError:
                raise FormProblems({f"stages-{row['n']}-probability": N_("Enter a whole number.")}) from None
        if row.get("color") and row["color"].lower() != "#000000":
            stage["color"] = row["color"]
        if row["required_fields"]:
            stage["required_fields"] = row["required_fields"]
        for kind in ("exit", "entry"):
            criteria = []
            for c in row[kind]:
                if not c.get("check"):
                    continue
                criterion: dict[str, Any] = {"check": c["check"]}
                if message := text_of(c, "message"):
                    criterion["message"] = message
                for key in ("field", "name"):
                    if c.get(key):
                        criterion[key] = c[key]
                criteria.append(criterion)
            if criteria:
                stage[f"{kind}_criteria"] = criteria
        stages.append(stage)
    return stages


def object_renamed(snapshot, old: str, new: str):
    """The snapshot with every reference to object `old` following its new
    name: other objects' lookups, related-to targets and roll-ups, the
    workflows on it or creating it, the roles' rights, field rights and
    sharing rules, conversions and suggestions to it, and the reports, pools,
    approval processes, surveys and web forms on it."""
    from loomcrm.metadata.model import Role, Workflow

    def swap(name: str) -> str:
        return new if name == old else name

    objects = []
    for obj in snapshot.objects:
        data = as_json(obj)
        for fld in data["fields"]:
            if fld["type"] == "lookup":
                fld["to"] = swap(fld["to"])
            elif fld["type"] == "related_to":
                fld["to"] = [swap(t) for t in fld["to"]]
            elif fld["type"] == "rollup":
                fld["from"] = swap(fld["from"])
        if conversion := data.get("conversion"):
            for target in conversion["targets"]:
                target["object"] = swap(target["object"])
                target["links"] = {k: swap(v) for k, v in target.get("links", {}).items()}
            if conversion.get("move_to"):
                conversion["move_to"] = swap(conversion["move_to"])
        if suggest := data.get("suggest"):
            suggest["object"] = swap(suggest["object"])
        objects.append(ObjectDef.model_validate(data))
    flows = []
    for flow in snapshot.workflows:
        data = as_json(flow)
        data["object"] = swap(data["object"])
        for action in data["actions"]:
            if action.get("type") == "create":
                action["object"] = swap(action["object"])
        flows.append(Workflow.model_validate(data))
    roles = []
    for role in snapshot.roles:
        data = as_json(role)
        data["objects"] = {swap(k): v for k, v in data.get("objects", {}).items()}
        data["fields"] = {(new + k[len(old):] if k.startswith(old + ".") else k): v for k, v in data.get("fields", {}).items()}
        for rule in data.get("sharing", []):
            rule["object"] = swap(rule["object"])
        roles.append(Role.model_validate(data))
    reports = [r.model_copy(update={"object": swap(r.object)}) for r in snapshot.reports]
    pools = [p.model_copy(update={"object": swap(p.object)}) for p in snapshot.pools]
    processes = [a.model_copy(update={"object": swap(a.object)}) for a in snapshot.approvals]
    surveys = [x.model_copy(update={"object": swap(x.object)}) for x in snapshot.surveys]
    web_forms = [x.model_copy(update={"object": swap(x.object)}) for x in snapshot.web_forms]
    return snapshot.model_copy(update={"objects": objects, "workflows": flows, "roles": roles, "reports": reports,
                                       "pools": pools, "approvals": processes, "surveys": surveys,
                                       "web_forms": web_forms})


def _given(value: Any) -> bool:
    return value is not None and value is not False and value != ""


def options_from(form) -> list[dict[str, Any]]:
    """A picklist's options from the rows of the options table. A row whose
    value changed from the one it was loaded with (`option_was`) keeps the
    old value in `previous`, so that publishing moves the records holding
    it; a retired row stays for the records that hold it."""
    columns = [form.getlist(name) for name in ("option_value", "option_label_en", "option_label_zh", "option_color",
                                                  "option_was", "option_previous", "option_state")]
    rows = [[column[i] if i < len(column) else "" for column in columns] for i in range(len(columns[0]))]
    options = []
    for value, en, zh, color, was, previous, state in rows:
        value = value.strip() or slug(en)       # a row with only a label takes its value from it
        if not value:
            continue
        option: dict[str, Any] = {"value": value}
        label = {k: v.strip() for k, v in (("en", en), ("zh-CN", zh)) if v.strip()}
        if label:
            option["label"] = label
        if color and color.lower() != "#000000":
            option["color"] = color
        if state == "retired":
            option["retired"] = True
        earlier = [p for p in previous.split(",") if p]
        if was.strip() and was.strip() != value and was.strip() not in earlier:
            earlier.append(was.strip())
        earlier = [p for p in earlier if p != value]
        if earlier:
            option["previous"] = earlier
        options.append(option)
    values = [o["value"] for o in options]
    if len(set(values)) != len(values):
        raise FormProblems({"options": N_("Two options have the same value.")})
    return options


# field keys the designer's field form does not edit (yet): kept as they are
UNEDITED_KEYS = ("fill_from_phone", "depends_on")


def _keep_parents(old: dict[str, Any], new: dict[str, Any]) -> None:
    """An option's `parents` (a dependent picklist's), which the options
    table does not edit, kept on the option of that value or renamed from it."""
    parents = {o["value"]: o["parents"] for o in old.get("options") or [] if o.get("parents")}
    for option in new.get("options") or [] if parents else []:
        found = next((parents[v] for v in [option["value"], *option.get("previous", [])] if v in parents), None)
        if found and "parents" not in option:
            option["parents"] = found


def with_field(obj: ObjectDef, field: dict[str, Any], replacing: str | None) -> ObjectDef:
    """The object with `field` added at the end (and on the form), or put in
    place of the field named `replacing` (its uid kept: a rename keeps the
    values)."""
    data = as_json(obj)
    fields = data["fields"]
    if replacing is None:
        if any(f["name"] == field["name"] for f in fields):
            raise FormProblems({"name": N_("Another field has this name.")})
        fields.append(field)
        sections = data.get("layouts", {}).get("form")
        if sections:     # a new field shows on the form: at the end of its last section
            sections[-1]["fields"].append(field["name"])
    else:
        at = next((i for i, f in enumerate(fields) if f["name"] == replacing), None)
        if at is None:
            raise FormProblems({None: N_("The field is no longer in the draft.")})
        if field["name"] != replacing and any(f["name"] == field["name"] for f in fields):
            raise FormProblems({"name": N_("Another field has this name.")})
        if fields[at].get("uid"):
            field["uid"] = fields[at]["uid"]
        for key in UNEDITED_KEYS:   # what the field form does not show, it keeps
            if key in fields[at] and key not in field and fields[at]["type"] == field.get("type"):
                field[key] = fields[at][key]
        _keep_parents(fields[at], field)
        fields[at] = field
        if field["name"] != replacing:
            _renamed_in(data, replacing, field["name"])
    try:
        return ObjectDef.model_validate(data)
    except ValidationError as exc:
        raise _problems(exc, ("fields",)) from None


def _renamed_in(data: dict[str, Any], old: str, new: str) -> None:
    """Follow a field's rename in the object's own lists of field names
    (title, history, indexes, layouts, duplicate rules, where a rule's or
    a stage's message shows, a dependent picklist's parent, the conversion
    map's source side). Expressions are not rewritten: the plan shows each
    one that no longer checks, with its place."""
    def swap(names: list[str]) -> list[str]:
        return [new if n == old else n for n in names]

    if data.get("title_field") == old:
        data["title_field"] = new
    data["track_history"] = swap(data.get("track_history", []))
    data["indexes"] = [swap(i) for i in data.get("indexes", [])]
    for rule in data.get("duplicate_rules", []):
        rule["fields"] = swap(rule["fields"])
    for rule in data.get("validation_rules", []):
        if rule.get("field") == old:
            rule["field"] = new
    layouts = data.get("layouts", {})
    for section in layouts.get("form", []):
        section["fields"] = swap(section["fields"])
    if listing := layouts.get("list"):
        listing["columns"] = swap(listing["columns"])
        if listing.get("sort"):
            listing["sort"] = ",".join(("-" if k.startswith("-") else "") + (new if k.lstrip("-") == old else k.lstrip("-"))
                                       for k in listing["sort"].split(","))
    if kanban := layouts.get("kanban"):
        kanban["card"] = swap(kanban.get("card", []))
        for key in ("group_by", "sum"):
            if kanban.get(key) == old:
                kanban[key] = new
    for fld in data["fields"]:
        for stage in fld.get("stages", []):
            stage["required_fields"] = swap(stage.get("required_fields", []))
            for criterion in (*stage.get("exit_criteria", []), *stage.get("entry_criteria", [])):
                if criterion.get("field") == old:
                    criterion["field"] = new
        if fld.get("depends_on") == old:
            fld["depends_on"] = new
    if conversion := data.get("conversion"):   # the source's side of the conversion map
        for target in conversion.get("targets", []):
            if target.get("link") == old:
                target["link"] = new
            target["fields"] = {k: new if v == old else v for k, v in target.get("fields", {}).items()}
        conversion["mark"] = {new if k == old else k: v for k, v in conversion.get("mark", {}).items()}
    for key in ("track_history", "indexes"):
        if not data[key]:
            data.pop(key)


def without_field(obj: ObjectDef, name: str) -> ObjectDef:
    data = as_json(obj)
    data["fields"] = [f for f in data["fields"] if f["name"] != name]
    if not data["fields"]:
        raise FormProblems({None: N_("An object keeps at least one field.")})
    _removed_from(data, name)
    return ObjectDef.model_validate(data)


def _removed_from(data: dict[str, Any], name: str) -> None:
    """Drop a removed field from the object's own lists of field names."""
    def keep(names: list[str]) -> list[str]:
        return [n for n in names if n != name]

    if data.get("title_field") == name:
        data.pop("title_field")
    for key in ("track_history", "indexes"):
        values = [keep(i) if isinstance(i, list) else i for i in data.get(key, []) if i != name]
        data[key] = [v for v in values if v]
        if not data[key]:
            data.pop(key)
    data["duplicate_rules"] = [r for r in data.get("duplicate_rules", []) if name not in r["fields"]]
    for rule in data.get("validation_rules", []):
        if rule.get("field") == name:
            rule.pop("field")
    layouts = data.get("layouts", {})
    layouts["form"] = [s | {"fields": keep(s["fields"])} for s in layouts.get("form", []) if keep(s["fields"])]
    if (listing := layouts.get("list")) is not None:
        listing["columns"] = keep(listing["columns"])
        if not listing["columns"]:
            layouts.pop("list")
        elif listing.get("sort") and any(k.lstrip("-") == name for k in listing["sort"].split(",")):
            listing.pop("sort")
    if (kanban := layouts.get("kanban")) is not None:
        if kanban.get("group_by") == name:
            layouts.pop("kanban")
        else:
            kanban["card"] = keep(kanban.get("card", []))
            if kanban.get("sum") == name:
                kanban.pop("sum")
    for fld in data["fields"]:
        for stage in fld.get("stages", []):
            stage["required_fields"] = keep(stage.get("required_fields", []))


def reordered(obj: ObjectDef, names: list[str]) -> ObjectDef:
    data = as_json(obj)
    by_name = {f["name"]: f for f in data["fields"]}
    if sorted(names) != sorted(by_name):
        raise FormProblems({None: N_("The field list changed: reload the page.")})
    data["fields"] = [by_name[n] for n in names]
    return ObjectDef.model_validate(data)


def with_rule(obj: ObjectDef, form: Mapping[str, str], replacing: str | None) -> ObjectDef:
    data = as_json(obj)
    rule: dict[str, Any] = {"name": str(form.get("name") or "").strip(), "check": str(form.get("check") or "").strip(),
                            "active": form.get("active") in ("on", "true", "1")}
    if (message := text_of(form, "message")) is not None:
        rule["message"] = message
    for key in ("when", "field"):
        if value := str(form.get(key) or "").strip():
            rule[key] = value
    rules = data.setdefault("validation_rules", [])
    others = [r for r in rules if r["name"] != replacing]
    if any(r["name"] == rule["name"] for r in others):
        raise FormProblems({"name": N_("Another rule has this name.")})
    at = next((i for i, r in enumerate(rules) if r["name"] == replacing), None)
    if at is None:
        rules.append(rule)
    else:
        rules[at] = rule
    try:
        return ObjectDef.model_validate(data)
    except ValidationError as exc:
        raise _problems(exc, ("validation_rules", at if at is not None else len(rules) - 1)) from None


def without_rule(obj: ObjectDef, name: str) -> ObjectDef:
    data = as_json(obj)
    data["validation_rules"] = [r for r in data.get("validation_rules", []) if r["name"] != name]
    return ObjectDef.model_validate(data)
