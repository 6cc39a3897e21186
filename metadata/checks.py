"""The semantic pass of `loom pack validate`: what the JSON Schema cannot say.

Names (duplicates, reserved words), references between objects and fields
(lookups, rollups, layouts, rules, stages, workflows, sample data), stage
order, defaults, ranges, patterns, computed fields, formula cycles, and
every expression through the expression checker.

The checks run on whatever parsed: `check_bundle` takes a `Bundle` of the
files that passed the schema, plus `Known` - objects of required bundles,
and the names seen in files that did not parse (so that a reference to
them is not reported a second time). Nothing here raises on odd input.
"""

from __future__ import annotations

import ast
import keyword
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError
from decimal import Decimal, InvalidOperation
from typing import Any

from . import model
from .bundle import FOLDERS, DataFile, Problem, json_path
from .expressions import Scope, check
from .model import (
    Bundle, Dashboard, FieldDef, FormulaField, LookupField, ObjectDef, ObjectRights, Pool, RelatedToField, Report, Role,
    RollupField, StageField, Workflow,
)

NUMERIC = frozenset({"integer", "decimal", "currency", "percent"})
TEMPORAL = frozenset({"date", "datetime"})
COMPUTED = frozenset({"formula", "rollup", "auto_number"})
TEXTUAL = frozenset({"text", "long_text", "email", "phone", "url"})
RESERVED_FIELD_NAMES = frozenset(model.SYSTEM_FIELDS) | frozenset(keyword.kwlist) | frozenset(model.EXPRESSION_FUNCTIONS)


@dataclass
class Known:
    """What the checks know beyond the bundle's valid files.

    `external`: objects of required bundles, name -> (bundle name, object).
    `broken`: objects of this bundle whose file did not pass the schema,
    name -> the field names seen in it; references to them are not checked.
    `partial`: the valid part of those objects, for expression scopes."""

    external: dict[str, tuple[str, ObjectDef]] = field(default_factory=dict)
    broken: dict[str, set[str]] = field(default_factory=dict)
    partial: dict[str, ObjectDef] = field(default_factory=dict)
    # reports of required bundles, name -> bundle name (dashboards may show them)
    external_reports: dict[str, str] = field(default_factory=dict)


def check_bundle(bundle: Bundle, *, files: Mapping[str, Sequence[str]] | None = None,
                 manifest_file: str = "bundle.json", data_files: Sequence[DataFile] = (),
                 known: Known | None = None) -> list[Problem]:
    """Every semantic problem of `bundle`. `files` names the file of each
    definition by folder (default `objects/<name>.json`, `roles/<name>.json`, ...)."""
    files = dict(files or {})
    for folder in FOLDERS:
        files.setdefault(folder, [f"{folder}/{item.name}.json" for item in getattr(bundle, folder)])
    checker = _Checker(bundle, files, manifest_file, known or Known())
    checker.run(data_files)
    return checker.problems


# --- helpers --------------------------------------------------------------------------

def value_type(objects: Mapping[str, ObjectDef], obj: ObjectDef, fld: FieldDef, depth: int = 0) -> str:
    """The type of the values a field holds: a formula's `returns`, a
    rollup's result, `text` for an auto number, else the field's type."""
    if isinstance(fld, FormulaField):
        return fld.returns
    if isinstance(fld, RollupField):
        if fld.function == "count":
            return "integer"
        child = objects.get(fld.from_)
        inner = child.field(fld.field) if child and fld.field else None
        if inner is None and fld.field in ("created_at", "updated_at"):
            return "datetime" if fld.function in ("min", "max") else "decimal"
        kind = "decimal" if inner is None or depth > 10 else value_type(objects, child, inner, depth + 1)
        if fld.function == "avg" or (fld.function == "sum" and kind not in NUMERIC):
            return "decimal"
        return kind
    if fld.type == "auto_number":
        return "text"
    return fld.type


def references(source: str) -> list[list[str]]:
    """The names an expression reads, as dotted paths (`account.industry` ->
    ["account", "industry"]); function names are left out. [] when the
    source does not parse (the expression check reports that)."""
    try:
        tree = ast.parse(source.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return []
    found: list[list[str]] = []
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name):
                stack.append(node.func)
            stack.extend(node.args)
            stack.extend(k.value for k in node.keywords)
            continue
        if isinstance(node, ast.Attribute):
            parts: list[str] = []
            inner: ast.AST = node
            while isinstance(inner, ast.Attribute):
                parts.insert(0, inner.attr)
                inner = inner.value
            if isinstance(inner, ast.Name):
                found.append([inner.id, *parts])
                continue
            stack.append(inner)
            continue
        if isinstance(node, ast.Name):
            found.append([node.id])
            continue
        stack.extend(ast.iter_child_nodes(node))
    return found


_CRON_FIELDS = (
    ("minute", 0, 59, ()), ("hour", 0, 23, ()), ("day of month", 1, 31, ()),
    ("month", 1, 12, ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")),
    ("day of week", 0, 7, ("sun", "mon", "tue", "wed", "thu", "fri", "sat")),
)


def cron_problem(cron: str) -> str | None:
    """Why a five-field cron expression is wrong, or None."""
    parts = cron.split()
    if len(parts) != 5:
        return "a cron expression has 5 fields: minute hour day-of-month month day-of-week"
    for text, (what, low, high, names) in zip(parts, _CRON_FIELDS):
        for item in text.split(","):
            base, _, step = item.partition("/")
            if step and (not step.isdigit() or int(step) == 0):
                return f"bad step {step!r} in the {what} field"
            if base in ("*", "?") and (base == "*" or what in ("day of month", "day of week")):
                continue
            bounds = base.split("-")
            if len(bounds) > 2 or not base:
                return f"{item!r} is not valid in the {what} field"
            for bound in bounds:
                low_name = bound.lower()
                if low_name in names:
                    continue
                if not bound.isdigit() or not low <= int(bound) <= high:
                    return f"{bound!r} is out of range in the {what} field ({low}-{high})"
    return None


def _number(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return Decimal(str(value))
    if isinstance(value, str):
        try:
            result = Decimal(value.strip())
        except InvalidOperation:
            return None
        return result if result.is_finite() else None
    return None


def _date(value: Any, kind: str) -> date | datetime | None:
    if not isinstance(value, str):
        return None
    try:
        if kind == "date":
            return date.fromisoformat(value) if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value) else None
        parsed = datetime.fromisoformat(value)
        return parsed.replace(tzinfo=None) if parsed.tzinfo is None else parsed
    except ValueError:
        return None


def _full_match(pattern: str, value: str) -> bool:
    try:
        import re2
    except ImportError:  # pragma: no cover - google-re2 is a dependency
        return re.fullmatch(pattern, value) is not None
    options = re2.Options()
    options.log_errors = False
    return re2.compile(pattern, options).fullmatch(value) is not None


def _comparable(a: Any, b: Any) -> bool:
    return not (isinstance(a, datetime) and isinstance(b, datetime) and (a.tzinfo is None) != (b.tzinfo is None))


# --- the checker -------------------------------------------------------------------------

class _Checker:
    def __init__(self, bundle: Bundle, files: dict[str, Sequence[str]], manifest_file: str, known: Known):
        self.bundle = bundle
        self.files = files
        self.object_files = list(files["objects"])
        self.manifest_file = manifest_file
        self.known = known
        self.problems: list[Problem] = []
        self._unchecked: dict[str, dict[str, str]] = {}
        # Scope of expressions and references: this bundle's objects win.
        self.objects: dict[str, ObjectDef] = {name: obj for name, (_, obj) in known.external.items()}
        self.objects.update(known.partial)
        for obj in bundle.objects:
            self.objects.setdefault(obj.name, obj)
            if obj.name in known.external:
                self.objects[obj.name] = obj
        # what this bundle adds to required bundles' objects is part of them here
        for extension in bundle.extensions:
            if extension.name in known.external and not any(o.name == extension.name for o in bundle.objects):
                self.objects[extension.name] = model.extended(self.objects[extension.name], extension)

    # -- reporting

    def add(self, file: str, path: Sequence[str | int] | str, message: str, code: str) -> None:
        where = path if isinstance(path, str) else json_path(path)
        self.problems.append(Problem(file, where, message, code))

    def guarded(self, what: str, file: str, action: Callable[[], None]) -> None:
        try:
            action()
        except Exception as exc:  # a check must never take the whole report down
            self.add(file, "", f"internal error while checking {what}: {type(exc).__name__}: {exc}", "internal_error")

    # -- lookups of names

    def object_known(self, name: str) -> bool:
        return name in self.objects or name in self.known.broken

    def object_checkable(self, name: str) -> ObjectDef | None:
        """The object to check a field reference against; None when the
        reference cannot be checked (unknown or broken object)."""
        if name in self.known.broken and not any(o.name == name for o in self.bundle.objects):
            return None
        return self.objects.get(name)

    def unknown_object(self, file: str, path: Sequence[str | int], name: str) -> None:
        if self.object_known(name):
            return
        hint = self.suggest(name, list(self.objects) + list(self.known.broken))
        self.add(file, path, f"unknown object {name!r}{hint}", "unknown_object")

    @staticmethod
    def suggest(name: str, candidates: Iterable[str]) -> str:
        import difflib

        close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.75)
        return f" (did you mean {close[0]!r}?)" if close else ""

    def field_of(self, file: str, path: Sequence[str | int], obj_name: str | ObjectDef, name: str, *,
                 system: bool | Sequence[str] = False, foreign: bool = False) -> FieldDef | None:
        """The field `name` of `obj_name`, else report it (unless the object
        itself is unknown or broken) and return None. `system` allows the
        system fields (True) or some of them."""
        if isinstance(obj_name, ObjectDef):
            obj, obj_name = obj_name, obj_name.name
        else:
            obj = self.object_checkable(obj_name)
            if obj is None:
                return None
        fld = obj.field(name)
        if fld is not None:
            return fld
        allowed = model.SYSTEM_FIELDS if system is True else (system or ())
        if name in allowed:
            return None
        if name in self.known.broken.get(obj_name, ()):
            return None
        hint = self.suggest(name, [f.name for f in obj.fields])
        place = f" of {obj_name!r}" if foreign else ""
        if name in model.SYSTEM_FIELDS:
            self.add(file, path, f"{name!r} is a system field and cannot be used here", "unknown_field")
        else:
            self.add(file, path, f"unknown field {name!r}{place}{hint}", "unknown_field")
        return None

    # -- expressions

    def expression(self, file: str, path: Sequence[str | int], source: str | None, object_name: str,
                   expect: str | None) -> None:
        if not source or object_name not in self.objects:
            return
        if object_name in self.known.broken:
            return  # its file did not pass the schema: its fields are not all known
        try:
            scope = Scope(objects=self.objects, object_name=object_name, extra_names=self.unchecked_names(object_name))
            errors = check(source, scope, expect=expect)
        except Exception as exc:  # the checker must not take the report down either
            self.add(file, path, f"the expression could not be checked: {type(exc).__name__}: {exc}",
                     "internal_error")
            return
        multiline = "\n" in source.strip()
        for error in errors:
            message = error.message
            if multiline:
                message += f" (line {error.line}, column {error.column})"
            self.add(file, path, message, error.code)

    def unchecked_names(self, object_name: str) -> dict[str, str]:
        """Names an expression may use without them being checked: fields
        seen in object files that did not pass the schema (reported there)."""
        if object_name in self._unchecked:
            return self._unchecked[object_name]
        names: dict[str, str] = {}
        broken = self.known.broken
        obj = self.objects.get(object_name)

        def missing(target: str) -> list[str]:
            have = self.objects.get(target)
            return [n for n in broken.get(target, ()) if have is None or have.field(n) is None]

        for name in missing(object_name):
            names[name] = "any"
        for fld in obj.fields if obj is not None else ():
            if isinstance(fld, LookupField) and fld.to in broken:
                for name in missing(fld.to):
                    names[f"{fld.name}.{name}"] = "any"
        self._unchecked[object_name] = names
        return names

    @staticmethod
    def expect_for(fld: FieldDef | None) -> str | None:
        if fld is None or isinstance(fld, RollupField):
            return None
        if isinstance(fld, FormulaField):
            return fld.returns
        return fld.type

    # -- the run

    def run(self, data_files: Sequence[DataFile]) -> None:
        self.guarded("bundle.json", self.manifest_file, self.check_manifest)
        seen: dict[str, str] = {}
        seen_uids: dict[str, str] = {}
        for obj, file in zip(self.bundle.objects, self.object_files):
            if obj.name in seen:
                self.add(file, ["name"], f"duplicate object name {obj.name!r} (also {seen[obj.name]})", "duplicate_name")
            elif obj.name in self.known.external:
                self.add(file, ["name"], f"object {obj.name!r} is already defined by the required bundle "
                                         f"{self.known.external[obj.name][0]!r}", "duplicate_name")
            seen.setdefault(obj.name, file)
            if obj.uid:
                if obj.uid in seen_uids:
                    self.add(file, ["uid"], f"duplicate uid {obj.uid!r} (also {seen_uids[obj.uid]})", "duplicate_uid")
                seen_uids.setdefault(obj.uid, file)
            self.guarded(f"object {obj.name!r}", file, lambda obj=obj, file=file: self.check_object(obj, file))
        self.guarded("formula cycles", self.object_files[0] if self.object_files else ".", self.check_cycles)
        checks = {"workflows": self.check_workflow, "roles": self.check_role, "reports": self.check_report,
                  "dashboards": self.check_dashboard, "pools": self.check_pool, "approvals": self.check_approval,
                  "calendars": self.check_calendar, "extensions": self.check_extension, "surveys": self.check_survey,
                  "web_forms": self.check_web_form}
        for folder, check_one in checks.items():
            kind = FOLDERS[folder][0]
            seen = {}
            for item, file in zip(getattr(self.bundle, folder), self.files[folder]):
                if item.name in seen:
                    self.add(file, ["name"], f"duplicate {kind} name {item.name!r} (also {seen[item.name]})",
                             "duplicate_name")
                seen.setdefault(item.name, file)
                self.guarded(f"{kind} {item.name!r}", file,
                             lambda item=item, file=file, check_one=check_one: check_one(item, file))
        for data in data_files:
            self.guarded(data.rel, data.rel, lambda data=data: self.check_data(data))

    def check_manifest(self) -> None:
        manifest = self.bundle.manifest
        if manifest.name in manifest.requires:
            self.add(self.manifest_file, ["requires", manifest.name], "a bundle cannot require itself", "bad_requirement")

    # -- objects

    def check_object(self, obj: ObjectDef, file: str) -> None:
        names: dict[str, int] = {}
        uids: dict[str, int] = {}
        for i, fld in enumerate(obj.fields):
            if fld.name in names:
                self.add(file, ["fields", i, "name"], f"duplicate field name {fld.name!r} (also fields[{names[fld.name]}])",
                         "duplicate_name")
            names.setdefault(fld.name, i)
            if fld.name in RESERVED_FIELD_NAMES:
                self.add(file, ["fields", i, "name"], self.reserved_reason(fld.name), "reserved_name")
            if fld.uid:
                if fld.uid in uids:
                    self.add(file, ["fields", i, "uid"], f"duplicate uid {fld.uid!r} (also fields[{uids[fld.uid]}])",
                             "duplicate_uid")
                uids.setdefault(fld.uid, i)
        if obj.title_field:
            self.field_of(file, ["title_field"], obj, obj.title_field)
        for i, fld in enumerate(obj.fields):
            self.check_field(obj, fld, file, ["fields", i])
        self.check_rules(obj, file)
        self.check_layouts(obj, file)
        if obj.conversion is not None:
            self.check_conversion(obj, obj.conversion, file)
        for k, name in enumerate(obj.search):
            fld = self.field_of(file, ["search", k], obj, name)
            if fld is not None and fld.type not in ("text", "long_text", "email", "url", "phone"):
                self.add(file, ["search", k], f"full-text search reads text fields; {name!r} is a {fld.type} field",
                         "wrong_field_type")
        if obj.suggest is not None:
            self.check_suggestion(obj, obj.suggest, file)
        for i, sla in enumerate(obj.slas):
            self.check_sla(obj, sla, file, ["slas", i], {s.name for s in obj.slas[:i]})
        for k, name in enumerate(obj.track_history):
            self.field_of(file, ["track_history", k], obj, name, system=("owner",))
        for i, index in enumerate(obj.indexes):
            for k, name in enumerate(index):
                self.field_of(file, ["indexes", i, k], obj, name, system=True)
                if name in index[:k]:
                    self.add(file, ["indexes", i, k], f"{name!r} is twice in this index", "duplicate_name")

    @staticmethod
    def reserved_reason(name: str) -> str:
        if name in model.SYSTEM_FIELDS:
            return f"{name!r} is a system field; every object has it already"
        if keyword.iskeyword(name):
            return f"{name!r} is a reserved word of the expression language"
        return f"{name!r} is a function of the expression language"

    def check_field(self, obj: ObjectDef, fld: FieldDef, file: str, at: list[str | int]) -> None:
        if fld.fill_from_phone is not None:
            self.check_phone_place(obj, fld, file, at)
        computed = fld.type in COMPUTED
        if computed:
            for key in ("required", "default", "default_expr"):
                value = getattr(fld, key)
                if value not in (None, False):
                    self.add(file, at + [key], f"{fld.type} fields are computed: remove {key!r}", "computed_field")
        elif fld.default is not None and fld.default_expr:
            self.add(file, at + ["default_expr"], "give either 'default' or 'default_expr', not both", "conflicting_keys")
        if fld.default is not None and not computed:
            reason = self.default_problem(obj, fld)
            if reason:
                self.add(file, at + ["default"], reason, "bad_default")
        self.check_range(fld, file, at)
        expect = None if computed else self.expect_for(fld)
        self.expression(file, at + ["default_expr"], fld.default_expr, obj.name, expect)
        for key in ("required_if", "visible_if", "read_only_if"):
            self.expression(file, at + [key], getattr(fld, key), obj.name, "boolean")

        if fld.type == "text" and fld.pattern is not None:
            problem = self.pattern_problem(fld.pattern)
            if problem:
                self.add(file, at + ["pattern"], problem, "bad_pattern")
        elif fld.type in ("picklist", "multi_picklist"):
            seen: dict[str, int] = {}
            for j, option in enumerate(fld.options):
                if option.value in seen:
                    self.add(file, at + ["options", j, "value"],
                             f"duplicate option value {option.value!r} (also options[{seen[option.value]}])",
                             "duplicate_value")
                seen.setdefault(option.value, j)
            self.check_dependency(obj, fld, file, at)
        elif isinstance(fld, LookupField):
            self.unknown_object(file, at + ["to"], fld.to)
            if fld.required and fld.on_delete == "set_null":
                self.add(file, at + ["on_delete"], "a required lookup cannot be set to null when its target "
                                                   "is deleted; use 'restrict' or 'cascade'", "conflicting_keys")
        elif fld.type == "related_to":
            for j, target in enumerate(fld.to):
                self.unknown_object(file, at + ["to", j], target)
        elif isinstance(fld, StageField):
            self.check_stages(obj, fld, file, at)
        elif isinstance(fld, FormulaField):
            self.expression(file, at + ["expression"], fld.expression, obj.name, fld.returns)
            if fld.scale is not None and fld.returns not in ("decimal", "currency", "percent"):
                self.add(file, at + ["scale"], f"'scale' applies to decimal, currency and percent formulas, "
                                               f"not to {fld.returns!r}", "bad_formula")
        elif isinstance(fld, RollupField):
            self.check_rollup(obj, fld, file, at)

    @staticmethod
    def pattern_problem(pattern: str) -> str | None:
        try:
            import re2
        except ImportError:  # pragma: no cover - google-re2 is a dependency
            try:
                re.compile(pattern)
            except re.error as exc:
                return f"not a valid regular expression: {exc}"
            return None
        options = re2.Options()
        options.log_errors = False  # RE2 would also print the error on stderr
        try:
            re2.compile(pattern, options)
        except Exception as exc:
            detail = exc.args[0] if exc.args else exc
            if isinstance(detail, bytes):
                detail = detail.decode("utf-8", "replace")
            return f"not a valid regular expression (RE2 syntax): {detail}"
        return None

    def default_problem(self, obj: ObjectDef, fld: FieldDef) -> str | None:
        value, kind = fld.default, fld.type
        shown = repr(value)
        if kind in TEXTUAL:
            if not isinstance(value, str):
                return f"{shown} is not text"
            if kind == "text":
                if len(value) > fld.max_length:
                    return f"{shown} is longer than max_length ({fld.max_length})"
                if fld.pattern and not self.pattern_problem(fld.pattern) and not _full_match(fld.pattern, value):
                    return f"{shown} does not match the field's pattern"
            elif kind == "long_text" and fld.max_length and len(value) > fld.max_length:
                return f"{shown} is longer than max_length ({fld.max_length})"
            return None
        if kind == "integer":
            return None if isinstance(value, int) and not isinstance(value, bool) else f"{shown} is not an integer"
        if kind in ("decimal", "currency", "percent"):
            number = _number(value)
            if number is None:
                return f"{shown} is not a number"
            scale = getattr(fld, "scale", None)
            if scale is not None and number.as_tuple().exponent < -scale:
                return f"{shown} has more decimals than the field's scale ({scale})"
            return None
        if kind == "boolean":
            return None if isinstance(value, bool) else f"{shown} is not true or false"
        if kind in TEMPORAL:
            return None if _date(value, kind) is not None else (
                f"{shown} is not a date like '2024-12-31'" if kind == "date"
                else f"{shown} is not a date and time like '2024-12-31T17:30:00Z'")
        if kind == "picklist":
            values = [o.value for o in fld.options]
            return None if value in values else f"{shown} is not one of the options {values}"
        if kind == "multi_picklist":
            values = [o.value for o in fld.options]
            if not isinstance(value, list):
                return f"{shown} is not a list of option values"
            wrong = [v for v in value if v not in values]
            return f"{wrong[0]!r} is not one of the options {values}" if wrong else None
        if isinstance(fld, StageField):
            values = [s.value for s in fld.stages]
            return None if value in values else f"{shown} is not one of the stages {values}"
        if kind in ("lookup", "user"):
            return None if isinstance(value, str) else f"{shown} is not an id"
        return f"a {kind} field cannot have a literal default"

    def check_range(self, fld: FieldDef, file: str, at: list[str | int]) -> None:
        low, high = getattr(fld, "min", None), getattr(fld, "max", None)
        default = fld.default
        if fld.type in TEMPORAL:
            low_v, high_v = _date(low, fld.type), _date(high, fld.type)
            for key, raw, parsed in (("min", low, low_v), ("max", high, high_v)):
                if raw is not None and parsed is None:
                    self.add(file, at + [key], f"{raw!r} is not a valid {fld.type}", "bad_range")
            default_v = _date(default, fld.type)
        elif fld.type in NUMERIC:
            low_v, high_v, default_v = _number(low), _number(high), _number(default)
        else:
            return
        if low_v is not None and high_v is not None and _comparable(low_v, high_v) and low_v > high_v:
            self.add(file, at + ["max"], f"max ({high}) is less than min ({low})", "bad_range")
            return
        if default_v is not None:
            if low_v is not None and _comparable(default_v, low_v) and default_v < low_v:
                self.add(file, at + ["default"], f"the default {default!r} is less than min ({low})", "bad_default")
            elif high_v is not None and _comparable(default_v, high_v) and default_v > high_v:
                self.add(file, at + ["default"], f"the default {default!r} is more than max ({high})", "bad_default")

    def check_stages(self, obj: ObjectDef, fld: StageField, file: str, at: list[str | int]) -> None:
        seen: dict[str, int] = {}
        closed_at: int | None = None
        for j, stage in enumerate(fld.stages):
            here = at + ["stages", j]
            if stage.value in seen:
                self.add(file, here + ["value"], f"duplicate stage value {stage.value!r} (also stages[{seen[stage.value]}])",
                         "duplicate_value")
            seen.setdefault(stage.value, j)
            if j == 0 and stage.category != "open":
                self.add(file, here + ["category"], "the first stage must be an open stage (new records start there)",
                         "bad_stages")
            elif stage.category == "open" and closed_at is not None:
                self.add(file, here + ["category"], f"open stage {stage.value!r} comes after the closed stage "
                                                    f"{fld.stages[closed_at].value!r}; open stages come first",
                         "bad_stages")
            if stage.category != "open" and closed_at is None:
                closed_at = j
            for k, name in enumerate(stage.required_fields):
                self.field_of(file, here + ["required_fields", k], obj, name)
            names: dict[str, str] = {}
            for kind in ("exit_criteria", "entry_criteria"):
                for k, criterion in enumerate(getattr(stage, kind)):
                    where = here + [kind, k]
                    if criterion.name:
                        if criterion.name in names:
                            self.add(file, where + ["name"], f"duplicate criterion name {criterion.name!r} "
                                                             f"(also {names[criterion.name]})", "duplicate_name")
                        names.setdefault(criterion.name, f"{kind}[{k}]")
                    if criterion.field:
                        self.field_of(file, where + ["field"], obj, criterion.field)
                    self.expression(file, where + ["check"], criterion.check, obj.name, "boolean")

    def check_dependency(self, obj: ObjectDef, fld: FieldDef, file: str, at: list[str | int]) -> None:
        """A dependent picklist: `depends_on` names another picklist of the
        object, and its options' `parents` are that picklist's values."""
        control_name = getattr(fld, "depends_on", None)
        parented = [j for j, option in enumerate(fld.options) if option.parents]
        if control_name is None:
            for j in parented:
                self.add(file, at + ["options", j, "parents"], "'parents' needs 'depends_on' on the field",
                         "bad_dependency")
            return
        control = self.field_of(file, at + ["depends_on"], obj, control_name)
        if control is None:
            return
        if control.name == fld.name or control.type != "picklist":
            self.add(file, at + ["depends_on"], f"{fld.name} can depend on another picklist only, not on "
                                                f"{control.name} ({control.type})", "bad_dependency")
            return
        values = {o.value for o in control.options}
        for j in parented:
            for k, parent in enumerate(fld.options[j].parents):
                if parent not in values:
                    self.add(file, at + ["options", j, "parents", k],
                             f"{parent!r} is not an option of {control.name}", "bad_dependency")

    def check_rollup(self, obj: ObjectDef, fld: RollupField, file: str, at: list[str | int]) -> None:
        child_name = fld.from_
        if not self.object_known(child_name):
            self.unknown_object(file, at + ["from"], child_name)
            return
        child = self.object_checkable(child_name)
        via = self.field_of(file, at + ["via"], child_name, fld.via, foreign=True)
        if via is not None:
            if isinstance(via, RelatedToField):
                if obj.name not in via.to:
                    self.add(file, at + ["via"], f"{child_name}.{fld.via} cannot link to {obj.name!r} "
                                                 f"(only {', '.join(via.to)})", "bad_rollup")
            elif not isinstance(via, LookupField):
                self.add(file, at + ["via"], f"{child_name}.{fld.via} is a {via.type} field, not a lookup or "
                                             f"related-to field", "bad_rollup")
            elif via.to != obj.name:
                self.add(file, at + ["via"], f"{child_name}.{fld.via} looks up {via.to!r}, not {obj.name!r}", "bad_rollup")
        if fld.field is None:
            if fld.function != "count":
                self.add(file, at, f"a {fld.function} rollup needs 'field' (the child field to aggregate)", "bad_rollup")
        else:
            inner = self.field_of(file, at + ["field"], child_name, fld.field, system=("created_at", "updated_at"),
                                  foreign=True)
            if inner is not None and child is not None and fld.function != "count":
                kind = value_type(self.objects, child, inner)
                allowed = NUMERIC if fld.function in ("sum", "avg") else NUMERIC | TEMPORAL
                if kind not in allowed:
                    need = "a number" if fld.function in ("sum", "avg") else "a number, date or datetime"
                    self.add(file, at + ["field"], f"{fld.function} needs {need}; {child_name}.{fld.field} "
                                                   f"holds {kind}", "bad_rollup")
        if fld.filter:
            self.expression(file, at + ["filter"], fld.filter, child_name, "boolean")

    def check_rules(self, obj: ObjectDef, file: str) -> None:
        seen: dict[str, int] = {}
        for i, rule in enumerate(obj.validation_rules):
            at: list[str | int] = ["validation_rules", i]
            if rule.name in seen:
                self.add(file, at + ["name"], f"duplicate rule name {rule.name!r} (also validation_rules[{seen[rule.name]}])",
                         "duplicate_name")
            seen.setdefault(rule.name, i)
            if rule.field:
                self.field_of(file, at + ["field"], obj, rule.field)
            self.expression(file, at + ["check"], rule.check, obj.name, "boolean")
            self.expression(file, at + ["when"], rule.when, obj.name, "boolean")
        seen = {}
        for i, dup in enumerate(obj.duplicate_rules):
            at = ["duplicate_rules", i]
            if dup.name in seen:
                self.add(file, at + ["name"], f"duplicate rule name {dup.name!r} (also duplicate_rules[{seen[dup.name]}])",
                         "duplicate_name")
            seen.setdefault(dup.name, i)
            for k, name in enumerate(dup.fields):
                self.field_of(file, at + ["fields", k], obj, name)

    def check_conversion(self, obj: ObjectDef, conversion: model.Conversion, file: str) -> None:
        """Each target an object with the source's lookup to it (`link`),
        fields that exist on both sides, links to earlier targets, a marking
        the source's fields accept."""
        seen: list[str] = []
        for i, target in enumerate(conversion.targets):
            at: list[str | int] = ["conversion", "targets", i]
            if not self.object_known(target.object):
                self.unknown_object(file, at + ["object"], target.object)
                continue
            if target.object in seen:
                self.add(file, at + ["object"], f"{target.object!r} is already a target", "bad_conversion")
            link = self.field_of(file, at + ["link"], obj, target.link)
            if link is not None and link.read_only:
                self.add(file, at + ["link"], f"{target.link} is read only: the conversion cannot set it",
                         "bad_conversion")
            elif link is not None and not (isinstance(link, LookupField) and link.to == target.object):
                self.add(file, at + ["link"], f"{target.link} must be a lookup to {target.object!r}", "bad_conversion")
            made = self.object_checkable(target.object)
            for name, source in target.fields.items():
                self.field_of(file, at + ["fields", name], target.object, name, foreign=True)
                self.field_of(file, at + ["fields", name], obj, source)
            for name, value in target.values.items():
                fld = self.field_of(file, at + ["values", name], target.object, name, foreign=True)
                if fld is not None and made is not None:
                    reason = self.default_problem(made, fld.model_copy(update={"default": value}))
                    if reason:
                        self.add(file, at + ["values", name], reason, "bad_conversion")
            for name, other in target.links.items():
                lookup = self.field_of(file, at + ["links", name], target.object, name, foreign=True)
                if other not in seen:
                    self.add(file, at + ["links", name], f"{other!r} is not a target before {target.object!r}",
                             "bad_conversion")
                elif lookup is not None and not (isinstance(lookup, LookupField) and lookup.to == other):
                    self.add(file, at + ["links", name], f"{target.object}.{name} must be a lookup to {other!r}",
                             "bad_conversion")
            if target.back and made is not None:
                back = self.field_of(file, at + ["back"], made, target.back, foreign=True)
                if back is not None and back.read_only:
                    self.add(file, at + ["back"], f"{target.object}.{target.back} is read only: the conversion "
                                                  f"cannot set it", "bad_conversion")
                elif back is not None and not (isinstance(back, LookupField) and back.to == obj.name):
                    self.add(file, at + ["back"], f"{target.object}.{target.back} must be a lookup to {obj.name!r}",
                             "bad_conversion")
            seen.append(target.object)
        for name, value in conversion.mark.items():
            fld = self.field_of(file, ["conversion", "mark", name], obj, name)
            if fld is not None:
                reason = self.default_problem(obj, fld.model_copy(update={"default": value}))
                if reason:
                    self.add(file, ["conversion", "mark", name], reason, "bad_conversion")
        if conversion.move_to is not None and conversion.move_to not in seen:
            self.add(file, ["conversion", "move_to"], f"{conversion.move_to!r} is not one of the targets", "bad_conversion")

    def check_layouts(self, obj: ObjectDef, file: str) -> None:
        layouts = obj.layouts
        shown: dict[str, str] = {}
        for s, section in enumerate(layouts.form):
            for k, name in enumerate(section.fields):
                at: list[str | int] = ["layouts", "form", s, "fields", k]
                self.field_of(file, at, obj, name, system=True)
                if name in shown:
                    self.add(file, at, f"{name!r} is already in the form ({shown[name]})", "duplicate_name")
                shown.setdefault(name, json_path(at))
        if layouts.list_ is not None:
            for k, name in enumerate(layouts.list_.columns):
                self.field_of(file, ["layouts", "list", "columns", k], obj, name, system=True)
            for name in (layouts.list_.sort or "").split(","):
                if name:
                    self.field_of(file, ["layouts", "list", "sort"], obj, name.lstrip("-"), system=True)
        kanban = layouts.kanban
        if kanban is not None:
            group = self.field_of(file, ["layouts", "kanban", "group_by"], obj, kanban.group_by)
            if group is not None and group.type not in ("stage", "picklist"):
                self.add(file, ["layouts", "kanban", "group_by"], f"a kanban groups by a stage or picklist field; "
                                                                  f"{kanban.group_by!r} is a {group.type} field",
                         "wrong_field_type")
            for k, name in enumerate(kanban.card):
                self.field_of(file, ["layouts", "kanban", "card", k], obj, name, system=True)
            if kanban.sum:
                total = self.field_of(file, ["layouts", "kanban", "sum"], obj, kanban.sum)
                if total is not None and value_type(self.objects, obj, total) not in NUMERIC:
                    self.add(file, ["layouts", "kanban", "sum"], f"{kanban.sum!r} is not a number field",
                             "wrong_field_type")

    # -- formula cycles

    def check_cycles(self) -> None:
        """Computed fields that depend on themselves, through formulas and
        rollups, within an object or across objects."""
        located: dict[tuple[str, str], tuple[str, list[str | int]]] = {}
        edges: dict[tuple[str, str], list[tuple[str, str]]] = {}
        for obj, file in zip(self.bundle.objects, self.object_files):
            if self.objects.get(obj.name) is not obj:
                continue  # a duplicate name: reported already
            for i, fld in enumerate(obj.fields):
                node = (obj.name, fld.name)
                if isinstance(fld, FormulaField):
                    located.setdefault(node, (file, ["fields", i, "expression"]))
                    edges[node] = self.depends(obj, fld.expression)
                elif isinstance(fld, RollupField):
                    child = self.objects.get(fld.from_)
                    if child is None:
                        continue
                    located.setdefault(node, (file, ["fields", i, "field" if fld.field else "filter"]))
                    deps = [(child.name, fld.field)] if fld.field else []
                    if fld.filter:
                        deps += self.depends(child, fld.filter)
                    edges[node] = deps
        computed = set(edges)
        reported: set[frozenset[tuple[str, str]]] = set()
        order = list(edges)

        def walk(start: tuple[str, str]) -> None:
            path: list[tuple[str, str]] = []
            on_path: set[tuple[str, str]] = set()
            iterators: list[Any] = []
            path.append(start)
            on_path.add(start)
            iterators.append(iter(edges.get(start, ())))
            while iterators:
                nxt = next(iterators[-1], None)
                if nxt is None:
                    iterators.pop()
                    on_path.discard(path.pop())
                    continue
                if nxt not in computed:
                    continue
                if nxt in on_path:
                    cycle = path[path.index(nxt):]
                    key = frozenset(cycle)
                    if key not in reported:
                        reported.add(key)
                        self.report_cycle(cycle, located)
                    continue
                if nxt in done:
                    continue
                path.append(nxt)
                on_path.add(nxt)
                iterators.append(iter(edges.get(nxt, ())))
            done.add(start)

        done: set[tuple[str, str]] = set()
        for node in order:
            if node not in done:
                walk(node)

    def depends(self, obj: ObjectDef, source: str) -> list[tuple[str, str]]:
        deps = []
        for parts in references(source):
            current = obj
            for k, part in enumerate(parts):
                fld = current.field(part)
                if fld is None:
                    break
                deps.append((current.name, part))
                if k + 1 < len(parts):
                    if not isinstance(fld, LookupField) or fld.to not in self.objects:
                        break
                    current = self.objects[fld.to]
        return deps

    def report_cycle(self, cycle: list[tuple[str, str]], located: Mapping[tuple[str, str], tuple[str, list[str | int]]]) -> None:
        # Start from the node that comes first in the bundle's files.
        ranked = sorted(range(len(cycle)), key=lambda i: (self.object_files.index(located[cycle[i]][0])
                                                          if located[cycle[i]][0] in self.object_files else 0,
                                                          located[cycle[i]][1]))
        start = ranked[0] if ranked else 0
        cycle = cycle[start:] + cycle[:start]
        same = len({obj for obj, _ in cycle}) == 1
        names = [name if same else f"{obj}.{name}" for obj, name in cycle]
        file, path = located[cycle[0]]
        self.add(file, path, "formula cycle: " + " -> ".join(names + names[:1]), "formula_cycle")

    # -- workflows

    def check_workflow(self, flow: Workflow, file: str) -> None:
        if not self.object_known(flow.object):
            self.unknown_object(file, ["object"], flow.object)
            return
        obj = self.object_checkable(flow.object)
        trigger = flow.trigger
        on = trigger.on
        for key, only in (("fields", "update"), ("to", "stage_change"), ("cron", "schedule"),
                          ("field", "time"), ("offset", "time")):
            value = getattr(trigger, key)
            if value not in (None, [], "") and on != only:
                self.add(file, ["trigger", key], f"{key!r} belongs to a {only!r} trigger, not {on!r}", "bad_trigger")
        for k, name in enumerate(trigger.fields if on == "update" else []):
            self.field_of(file, ["trigger", "fields", k], flow.object, name, foreign=True)
        if on == "stage_change" and obj is not None:
            stages = [s.value for f in obj.fields if isinstance(f, StageField) for s in f.stages]
            if not any(isinstance(f, StageField) for f in obj.fields):
                self.add(file, ["trigger", "on"], f"{flow.object!r} has no stage field", "bad_trigger")
            elif trigger.to is not None:
                targets = [trigger.to] if isinstance(trigger.to, str) else trigger.to
                for k, value in enumerate(targets):
                    if value not in stages:
                        where: list[str | int] = ["trigger", "to"] if isinstance(trigger.to, str) else ["trigger", "to", k]
                        self.add(file, where, f"{value!r} is not a stage of {flow.object!r}{self.suggest(value, stages)}",
                                 "unknown_stage")
        if on == "schedule":
            if not trigger.cron:
                self.add(file, ["trigger"], "a schedule trigger needs 'cron'", "bad_trigger")
            else:
                reason = cron_problem(trigger.cron)
                if reason:
                    self.add(file, ["trigger", "cron"], reason, "bad_cron")
        if on == "time":
            if not trigger.field:
                self.add(file, ["trigger"], "a time trigger needs 'field' (a date or datetime field)", "bad_trigger")
            else:
                target = self.field_of(file, ["trigger", "field"], flow.object, trigger.field,
                                       system=("created_at", "updated_at"), foreign=True)
                if target is not None and obj is not None and value_type(self.objects, obj, target) not in TEMPORAL:
                    self.add(file, ["trigger", "field"], f"{trigger.field!r} is a {target.type} field; a time trigger "
                                                         "needs a date or datetime", "wrong_field_type")
            if not trigger.offset:
                self.add(file, ["trigger"], "a time trigger needs 'offset' (e.g. '-3d')", "bad_trigger")
        self.expression(file, ["condition"], flow.condition, flow.object, "boolean")
        for j, action in enumerate(flow.actions):
            self.check_action(flow, action, file, ["actions", j])

    def check_action(self, flow: Workflow, action: Any, file: str, at: list[str | int]) -> None:
        kind = action.type
        if kind in ("update", "create"):
            target = flow.object if kind == "update" else action.object
            if kind == "create" and not self.object_known(target):
                self.unknown_object(file, at + ["object"], target)
                return
            target_obj = self.object_checkable(target)
            for key, source in action.values.items():
                where = at + ["values", key]
                fld = self.field_of(file, where, target, key, foreign=True)
                if fld is not None and fld.type in COMPUTED:
                    self.add(file, where, f"{key!r} is a {fld.type} field; it is computed, not set", "computed_field")
                    fld = None
                # an action links a record through a related_to field as text: concat('lead:', id)
                expect = "text" if fld is not None and fld.type == "related_to" else self.expect_for(fld)
                self.expression(file, where, source, flow.object, expect)
            if kind == "create" and target_obj is not None:
                for fld in target_obj.fields:
                    if (fld.required and fld.type not in COMPUTED and fld.type != "stage" and fld.default is None
                            and not fld.default_expr and not fld.required_if and fld.name not in action.values):
                        self.add(file, at + ["values"], f"the required field {fld.name!r} of {target!r} gets no value",
                                 "missing_value")
        elif kind == "assign":
            if action.strategy == "by_field":
                if not action.field:
                    self.add(file, at, "the by_field strategy needs 'field'", "bad_action")
                else:
                    self.field_of(file, at + ["field"], flow.object, action.field, foreign=True)
            else:
                if action.field:
                    self.add(file, at + ["field"], f"'field' belongs to the by_field strategy, not {action.strategy!r}",
                             "bad_action")
                if not action.users and not action.team:
                    self.add(file, at, f"the {action.strategy} strategy needs 'users' or 'team'", "bad_action")
            if action.team:
                self.expression(file, at + ["team"], action.team, flow.object, "text")
            if action.load_filter is not None:
                if action.strategy != "load_balanced":
                    self.add(file, at + ["load_filter"], f"'load_filter' belongs to the load_balanced strategy, not "
                                                         f"{action.strategy!r}", "bad_action")
                else:
                    self.expression(file, at + ["load_filter"], action.load_filter, flow.object, "boolean")
        elif kind == "route":
            lookup = self.field_of(file, at + ["field"], flow.object, action.field)
            if lookup is not None and not isinstance(lookup, LookupField):
                self.add(file, at + ["field"], f"{action.field!r} is not a lookup", "wrong_field_type")
                return
            target = self.object_checkable(lookup.to) if lookup is not None else None
            for key, theirs in action.match.items():
                self.field_of(file, at + ["match", key], flow.object, key)
                if target is not None:
                    self.field_of(file, at + ["match", key], target, theirs, foreign=True)
            for name in (action.order or "").split(","):
                if name and target is not None:
                    self.field_of(file, at + ["order"], target, name.lstrip("-"), system=True, foreign=True)
        elif kind in ("email", "notify"):
            self.expression(file, at + ["to"], action.to, flow.object, None)
        elif kind == "webhook":
            for key, source in action.values.items():
                self.expression(file, at + ["values", key], source, flow.object, None)

    # -- roles

    def check_role(self, role: Role, file: str) -> None:
        if role.name in model.BUILT_IN_ROLES:
            self.add(file, ["name"], f"{role.name!r} is a built-in role: give the bundle's role another name",
                     "reserved_name")
        order = ("none", "own", "department", "subordinates", "all")
        for name, rights in role.objects.items():
            if not self.object_known(name):
                self.unknown_object(file, ["objects", name], name)
                continue
            for action in ("update", "delete"):
                if order.index(getattr(rights, action)) > order.index(rights.read):
                    self.add(file, ["objects", name, action], f"{action} reaches {getattr(rights, action)!r} records, "
                                                              f"more than read ({rights.read!r}): a user cannot change "
                                                              "what they cannot see", "bad_scope")
            if rights.export and rights.read == "none":
                self.add(file, ["objects", name, "export"], "export needs a read scope", "bad_scope")
        for path, right in role.fields.items():
            obj_name, _, field_name = path.partition(".")
            if not self.object_known(obj_name):
                self.unknown_object(file, ["fields", path], obj_name)
                continue
            fld = self.field_of(file, ["fields", path], obj_name, field_name, foreign=True)
            if fld is not None and fld.required and right != "edit" and fld.type not in COMPUTED \
                    and role.objects.get(obj_name, ObjectRights()).create and fld.default is None and not fld.default_expr:
                self.add(file, ["fields", path], f"{path} is required and has no default, so a user of this role "
                                                 f"who may create {obj_name} records must be able to edit it",
                         "bad_field_right")
        for k, rule in enumerate(role.sharing):
            if not self.object_known(rule.object):
                self.unknown_object(file, ["sharing", k, "object"], rule.object)

    def check_phone_place(self, obj: ObjectDef, fld: FieldDef, file: str, at: list[str | int]) -> None:
        where = at + ["fill_from_phone"]
        if fld.type not in ("text", "picklist"):
            self.add(file, where, f"only text and picklist fields are filled from a phone number, not {fld.type}",
                     "bad_fill")
        source = self.field_of(file, where + ["field"], obj, fld.fill_from_phone.field)
        if source is not None and source.type != "phone":
            self.add(file, where + ["field"], f"{source.name} is a {source.type} field, not a phone field", "bad_fill")

    # -- reports and dashboards

    def check_report(self, report: Report, file: str) -> None:
        if not self.object_known(report.object):
            self.unknown_object(file, ["object"], report.object)
            return
        if report.object in self.known.broken:
            return  # its file did not pass the schema: its fields are not all known
        from .reports import report_problems  # it builds on this module's helpers

        for problem in report_problems(report, self.objects, self.unchecked_names(report.object)):
            self.add(file, problem.path, problem.message, problem.code)
        self.audience(file, report.shared_with)

    def check_dashboard(self, dashboard: Dashboard, file: str) -> None:
        reports = {r.name for r in self.bundle.reports} | set(self.known.external_reports)
        for i, widget in enumerate(dashboard.widgets):
            if widget.report not in reports:
                hint = self.suggest(widget.report, sorted(reports))
                self.add(file, ["widgets", i, "report"], f"unknown report {widget.report!r}{hint} (a dashboard shows "
                                                         "reports of its bundle or of the bundles it requires)",
                         "unknown_report")
        for i, role in enumerate(dashboard.home_of):
            self.role_known(file, ["home_of", i], role)
        self.audience(file, dashboard.shared_with)

    def check_pool(self, pool: Pool, file: str) -> None:
        if not self.object_known(pool.object):
            self.unknown_object(file, ["object"], pool.object)
            return
        obj = self.object_checkable(pool.object)
        if obj is None:
            return
        for i, rule in enumerate(pool.recycle):
            fld = self.field_of(file, ["recycle", i, "field"], obj, rule.field, system=("created_at", "updated_at"))
            if fld is not None and value_type(self.objects, obj, fld) not in TEMPORAL:
                self.add(file, ["recycle", i, "field"], f"{rule.field} is not a date: a pool recycles by how long ago "
                                                        "a date was", "wrong_field_type")
            self.expression(file, ["recycle", i, "filter"], rule.filter, obj.name, "boolean")
        for i, name in enumerate(pool.private_fields):
            self.field_of(file, ["private_fields", i], obj, name)
        for key in ("member_roles", "admin_roles"):
            for i, role in enumerate(getattr(pool, key)):
                self.role_known(file, [key, i], role)
        seen: dict[str, int] = {}
        for i, reason in enumerate(pool.return_reasons):
            if reason.value in seen:
                self.add(file, ["return_reasons", i, "value"], f"duplicate reason {reason.value!r} "
                                                              f"(also return_reasons[{seen[reason.value]}])",
                         "duplicate_value")
            seen.setdefault(reason.value, i)
        if pool.max_hold_days is not None and pool.max_hold_days < pool.protect_days:
            self.add(file, ["max_hold_days"], "shorter than protect_days: a record would go back while protected",
                     "bad_range")

    def check_approval(self, process: model.ApprovalProcess, file: str) -> None:
        if not self.object_known(process.object):
            self.unknown_object(file, ["object"], process.object)
            return
        obj = self.object_checkable(process.object)
        if obj is None:
            return
        for key in ("entry", "auto_submit"):
            self.expression(file, [key], getattr(process, key), obj.name, "boolean")
        for i, name in enumerate(process.locked_fields):
            self.field_of(file, ["locked_fields", i], obj, name)
        seen: dict[str, int] = {}
        for i, step in enumerate(process.steps):
            at: list[str | int] = ["steps", i]
            if step.name in seen:
                self.add(file, at + ["name"], f"duplicate step name {step.name!r} (also steps[{seen[step.name]}])",
                         "duplicate_name")
            seen.setdefault(step.name, i)
            self.expression(file, at + ["when"], step.when, obj.name, "boolean")
            who = step.approvers
            if not (who.users or who.roles or who.manager):
                self.add(file, at + ["approvers"], "name the approvers: users, roles or the submitter's manager",
                         "bad_approval")
            for k, role in enumerate(who.roles):
                self.role_known(file, at + ["approvers", "roles", k], role)
            if step.escalate and step.timeout_hours is None:
                self.add(file, at + ["escalate"], "escalating needs timeout_hours", "bad_approval")
        for key in ("on_submit", "on_approve", "on_reject", "on_recall"):
            for name, value in getattr(process, key).items():
                fld = self.field_of(file, [key, name], obj, name)
                if fld is None:
                    continue
                reason = self.default_problem(obj, fld.model_copy(update={"default": value}))
                if reason:
                    self.add(file, [key, name], reason, "bad_approval")

    def check_survey(self, survey: model.Survey, file: str) -> None:
        if not self.object_known(survey.object):
            self.unknown_object(file, ["object"], survey.object)
            return
        obj = self.object_checkable(survey.object)
        self.expression(file, ["when"], survey.when, survey.object, "boolean")
        self.expression(file, ["to"], survey.to, survey.object, "text")
        wanted = {"csat": ("integer",), "nps": ("integer",), "text": ("text", "long_text")}
        for i, question in enumerate(survey.questions):
            fld = self.field_of(file, ["questions", i, "field"], obj, question.field) if obj is not None else None
            if fld is not None and fld.type not in wanted[question.kind]:
                self.add(file, ["questions", i, "field"], f"a {question.kind} answer goes in a "
                                                          f"{' or '.join(wanted[question.kind])} field, not {fld.type}",
                         "wrong_field_type")

    def check_web_form(self, form: model.WebForm, file: str) -> None:
        if not self.object_known(form.object):
            self.unknown_object(file, ["object"], form.object)
            return
        obj = self.object_checkable(form.object)
        if obj is None:
            return
        for k, name in enumerate(form.fields):
            fld = self.field_of(file, ["fields", k], obj, name)
            if fld is not None and fld.type in (*COMPUTED, "lookup", "related_to", "user", "stage"):
                self.add(file, ["fields", k], f"visitors cannot fill a {fld.type} field", "wrong_field_type")
        for name in form.values:
            self.field_of(file, ["values", name], obj, name)
        for fld in obj.fields:
            if (fld.required and fld.type not in COMPUTED and fld.type != "stage" and fld.default is None
                    and not fld.default_expr and fld.name not in form.fields and fld.name not in form.values):
                self.add(file, ["fields"], f"the required field {fld.name!r} of {form.object!r} is not on the form",
                         "missing_value")

    def check_suggestion(self, obj: ObjectDef, suggest: model.Suggestion, file: str) -> None:
        at: list[str | int] = ["suggest"]
        self.field_of(file, at + ["from"], obj, suggest.from_)
        if not self.object_known(suggest.object):
            self.unknown_object(file, at + ["object"], suggest.object)
            return
        target = self.object_checkable(suggest.object)
        if target is not None and not target.search:
            self.add(file, at + ["object"], f"{suggest.object!r} has no 'search' fields to search", "bad_suggestion")
        self.expression(file, at + ["filter"], suggest.filter, suggest.object, "boolean")

    def check_sla(self, obj: ObjectDef, sla: model.Sla, file: str, at: list[str | int], before: set[str]) -> None:
        if sla.name in before:
            self.add(file, at + ["name"], f"duplicate SLA name {sla.name!r}", "duplicate_name")
        if sla.calendar and sla.calendar not in {c.name for c in self.bundle.calendars}:
            hint = self.suggest(sla.calendar, [c.name for c in self.bundle.calendars])
            self.add(file, at + ["calendar"], f"unknown calendar {sla.calendar!r}{hint}", "unknown_calendar")
        for key in ("start", "stop", "pause"):
            self.expression(file, at + [key], getattr(sla, key), obj.name, "boolean")
        for k, target in enumerate(sla.targets):
            self.expression(file, at + ["targets", k, "when"], target.when, obj.name, "boolean")
        for key, wanted in (("due_field", "datetime"), ("breached_field", "boolean")):
            name = getattr(sla, key)
            fld = self.field_of(file, at + [key], obj, name) if name else None
            if fld is not None and fld.type != wanted:
                self.add(file, at + [key], f"{name!r} must be a {wanted} field, not {fld.type}", "wrong_field_type")
        if sla.escalate_to:
            head, _, tail = sla.escalate_to.partition(".")
            fld = self.field_of(file, at + ["escalate_to"], obj, head, system=("owner",))
            if tail and fld is not None:
                if not isinstance(fld, LookupField):
                    self.add(file, at + ["escalate_to"], f"{head!r} is not a lookup", "wrong_field_type")
                    return
                target = self.object_checkable(fld.to)
                fld = self.field_of(file, at + ["escalate_to"], target, tail, system=("owner",), foreign=True) \
                    if target is not None else None
            if fld is not None and fld.type != "user":
                self.add(file, at + ["escalate_to"], f"{sla.escalate_to!r} must lead to a user field", "wrong_field_type")

    def check_extension(self, extension: model.ObjectExtension, file: str) -> None:
        """Fields, rules and form sections added to another bundle's object:
        checked like the object's own, and never named like what it has."""
        name = extension.name
        if any(o.name == name for o in self.bundle.objects):
            self.add(file, ["name"], f"{name!r} is an object of this bundle: put these in objects/{name}.json",
                     "bad_extension")
            return
        if name not in self.known.external:
            hint = self.suggest(name, list(self.known.external))
            self.add(file, ["name"], f"unknown object {name!r}{hint}: a bundle extends only objects of the "
                                     f"bundles it requires", "unknown_object")
            return
        owner, original = self.known.external[name]
        obj = self.objects[name]
        mine: dict[str, int] = {}
        for i, fld in enumerate(extension.fields):
            at: list[str | int] = ["fields", i]
            if original.field(fld.name) is not None:
                self.add(file, at + ["name"], f"{name!r} of the bundle {owner!r} already has a field {fld.name!r}",
                         "name_clash")
            elif fld.name in mine:
                self.add(file, at + ["name"], f"duplicate field name {fld.name!r} (also fields[{mine[fld.name]}])",
                         "duplicate_name")
            elif fld.name in RESERVED_FIELD_NAMES:
                self.add(file, at + ["name"], self.reserved_reason(fld.name), "reserved_name")
            mine.setdefault(fld.name, i)
            self.check_field(obj, fld, file, at)
        theirs = {rule.name for rule in original.validation_rules}
        for i, rule in enumerate(extension.validation_rules):
            at = ["validation_rules", i]
            if rule.name in theirs:
                self.add(file, at + ["name"], f"{name!r} of the bundle {owner!r} already has a rule {rule.name!r}",
                         "name_clash")
            if rule.field:
                self.field_of(file, at + ["field"], obj, rule.field)
            self.expression(file, at + ["check"], rule.check, name, "boolean")
            self.expression(file, at + ["when"], rule.when, name, "boolean")
        for s, section in enumerate(extension.form):
            for k, field_name in enumerate(section.fields):
                self.field_of(file, ["form", s, "fields", k], obj, field_name, system=True)

    def check_calendar(self, calendar: model.BusinessCalendar, file: str) -> None:
        """A zone the machine knows; each day's ranges forward and apart; a
        date not both a holiday and a day worked."""
        if calendar.timezone is not None:
            try:
                ZoneInfo(calendar.timezone)
            except (ZoneInfoNotFoundError, ValueError):
                self.add(file, ["timezone"], f"unknown time zone {calendar.timezone!r} (an IANA name like "
                                             f"'Asia/Shanghai')", "bad_calendar")
        for key, ranges in [*((["hours", day], r) for day, r in calendar.hours.items()),
                            (["workday_hours"], calendar.workday_hours)]:
            last = ""
            for i, text in enumerate(ranges):
                start, end = text.split("-")
                if end <= start:
                    self.add(file, key + [i], f"{text!r} ends before it starts", "bad_calendar")
                elif start < last:
                    self.add(file, key + [i], f"{text!r} overlaps or comes before the range before it", "bad_calendar")
                last = end
        both = set(calendar.holidays) & set(calendar.workdays)
        for i, day in enumerate(calendar.workdays):
            if day in both:
                self.add(file, ["workdays", i], f"{day} is also a holiday", "bad_calendar")

    def audience(self, file: str, shared_with) -> None:
        if isinstance(shared_with, list):
            for i, role in enumerate(shared_with):
                self.role_known(file, ["shared_with", i], role)

    def role_known(self, file: str, path: Sequence[str | int], role: str) -> None:
        roles = [r.name for r in self.bundle.roles] + list(model.BUILT_IN_ROLES)
        if role not in roles:
            self.add(file, path, f"unknown role {role!r}{self.suggest(role, roles)}", "unknown_role")

    # -- sample data

    def check_data(self, data: DataFile) -> None:
        name = data.object_name
        if not self.object_known(name) or name in self.known.external:
            self.add(data.rel, "", f"sample data for an unknown object {name!r} (data/<object>.csv names an "
                                   "object of this bundle)", "unknown_object")
            return
        obj = self.object_checkable(name)
        if obj is None:
            return
        seen: dict[str, int] = {}
        for k, column in enumerate(data.header):
            at: list[str | int] = ["header", k]
            if column in seen:
                self.add(data.rel, at, f"duplicate column {column!r} (also header[{seen[column]}])", "duplicate_name")
                continue
            seen[column] = k
            fld = self.field_of(data.rel, at, name, column, system=True)
            if fld is not None and fld.type in ("formula", "rollup"):
                self.add(data.rel, at, f"{column!r} is a {fld.type} field; it is computed, not loaded", "computed_field")
