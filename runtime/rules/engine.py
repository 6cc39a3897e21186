"""The rules of one save, without a database: defaults and `default_expr`,
formulas, `required` / `required_if` (a field hidden by `visible_if` is not
required), `read_only_if`, validation rules and stage criteria. Every
problem is collected; nothing stops at the first.

`SaveRun` works on the whole record as it will be stored (`record`, changed
in place by defaults and formulas) and the stored record before the save
(`old`, None on create). Lookup paths such as `account.industry` are read
through `fetch(object_name, id) -> row or None`, given by the caller (the
record service reads the database; tests pass a dict).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Callable, Iterable, Iterator, Mapping

from loomcrm.metadata.expressions import ExpressionError
from loomcrm.metadata.model import FieldDef, FormulaField, LookupField

from ..expressions import Compiled, EvalContext, Session
from ..expressions.straight import GAVE_UP
from ..fields import DEFAULT_CONTEXT, FieldContext, FieldError, field_type
from ..fields.places import option_for, place_of
from . import messages
from .compiled import RuleSet
from .formulas import formula_value

Fetch = Callable[[str, str], Mapping[str, Any] | None]
SKIPPABLE = frozenset({"validation", "stages", "duplicates"})
_NO_SKIP: frozenset[str] = frozenset()


def error(field: str | None, code: str, message: str, rule: str | None = None, stage: str | None = None,
          **extra: Any) -> dict[str, Any]:
    out = {"field": field, "code": code, "message": message, "rule": rule, "stage": stage}
    out.update(extra)
    return out


class RecordView(Mapping):
    """The record as expressions see it: its fields, and dotted lookup paths
    resolved on demand through `fetch` (rows are cached for the save)."""

    def __init__(self, objects, object_name: str, record: Mapping[str, Any], fetch: Fetch | None, rows: dict | None = None):
        self.objects = objects
        self.object_name = object_name
        self.record = record
        self.fetch = fetch
        self.rows = rows if rows is not None else {}

    def get(self, key, default=None):
        if "." not in key:
            return self.record.get(key, default)
        return self.path(key)

    def __getitem__(self, key):
        return self.get(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self.record)

    def __len__(self) -> int:
        return len(self.record)

    def path(self, dotted: str) -> Any:
        obj = self.objects.get(self.object_name)
        row: Mapping[str, Any] | None = self.record
        parts = dotted.split(".")
        for part in parts[:-1]:
            f = obj.field(part) if obj is not None else None
            rid = row.get(part) if row is not None else None
            if not isinstance(f, LookupField) or rid is None or self.fetch is None:
                return None
            key = (f.to, rid)
            if key not in self.rows:
                self.rows[key] = self.fetch(f.to, rid)
            row, obj = self.rows[key], self.objects.get(f.to)
            if row is None:
                return None
        return row.get(parts[-1]) if row is not None else None


def roles_of(user: Any) -> frozenset[str]:
    """The roles `has_role()` sees: the user's `roles`, and its `role`."""
    roles, role = getattr(user, "roles", None), getattr(user, "role", None)
    if not roles:   # most users: one role
        return frozenset((role,)) if role else frozenset()
    return frozenset(roles) | {role} if role else frozenset(roles)


class SaveRun:
    """The rules of one save. Call the steps in order (`run()` does), or one
    by one as the record service's hooks do; `errors` collects the problems.
    `context`, when given, is the evaluation context to use (it must match
    `old` and `user`); else it is made from them, `timezone`, `clock` and
    `budget_ms`."""

    def __init__(self, rules: RuleSet, record: dict[str, Any], old: Mapping[str, Any] | None = None, *,
                 user: Any = None, locale: str | None = None, timezone: str | None = None, clock: datetime | None = None,
                 fetch: Fetch | None = None, field_context: FieldContext = DEFAULT_CONTEXT,
                 skip: Iterable[str] = (), budget_ms: float | None = None, context: EvalContext | None = None):
        self.rules = rules
        self.obj = rules.obj
        self.record = record
        self.old = old
        self.is_new = old is None
        self.user = user
        self.locale = locale or getattr(user, "locale", None) or "en"
        self.field_context = field_context
        self.skip = frozenset(skip) if skip else _NO_SKIP
        self.errors: list[dict[str, Any]] = []
        if context is None:
            context = EvalContext(is_new=self.is_new, prior=old, user_id=getattr(user, "id", None), roles=roles_of(user),
                                  timezone=timezone, clock=clock,
                                  **({"budget_ms": budget_ms} if budget_ms is not None else {}))
        self.context = context
        self.session = Session(self.context)
        self.rows: dict = {}
        self._view: RecordView | None = None
        self.fetch = fetch
        self._visible: dict[str, bool] = {}
        self._broken_reported = False

    @property
    def view(self) -> RecordView:
        """The record with its lookup paths (made when an expression reads one)."""
        if self._view is None:
            self._view = RecordView(self.rules.objects, self.obj.name, self.record, self.fetch, self.rows)
        return self._view

    # -- helpers ------------------------------------------------------------------
    def evaluate(self, compiled: Compiled, view: Mapping[str, Any] | None = None) -> Any:
        if view is None:
            # the view only adds lookup paths: without any, the record is read directly
            view = self.view if compiled.paths else self.record
        try:
            return self.session.evaluate(compiled, view)
        except ExpressionError as exc:
            # The time budget is wall-clock time: a garbage-collection pause or
            # a busy machine can cross it once. A second try tells a pause
            # from an expression that really runs too long (that fails again).
            if not any(e.code == "budget_exceeded" and "longer" in e.message for e in exc.errors):
                raise
            return self.session.evaluate(compiled, view)

    def failed(self, what: str, exc: ExpressionError, field: str | None, rule: str | None = None,
               stage: str | None = None) -> None:
        self.errors.append(error(field, "expression", messages.text("expression", self.locale, what=what, error=str(exc)[:300]),
                                 rule, stage))

    def label(self, name: str) -> str:
        f = self.obj.field(name)
        return messages.label(f, self.locale) if f is not None else name

    def has_error(self, field: str, code: str | None = None) -> bool:
        return any(e["field"] == field and (code is None or e["code"] == code) for e in self.errors)

    def report_broken(self) -> None:
        """Expressions that did not compile are errors of every save."""
        if self._broken_reported:
            return
        self._broken_reported = True
        for b in self.rules.broken:
            self.errors.append(error(b.field, "expression", f"{b.where}: {b.error}", b.rule, b.stage))

    # -- steps ----------------------------------------------------------------------
    def apply_defaults(self) -> None:
        """On create: the first stage for an empty stage field, and
        `default_expr` for every field still blank."""
        if not self.is_new:
            return
        for plan in self.rules.stages:
            f = plan.field
            if self.record.get(f.name) is None:
                self.record[f.name] = f.stages[0].value
        self.record.update(self.rules.new_rollups)
        for f, compiled in self.rules.defaults:
            kind = field_type(f)
            if not kind.is_blank(self.record.get(f.name)):
                continue
            try:
                value = self.evaluate(compiled)
            except ExpressionError as exc:
                self.failed(f"default_expr of {f.name}", exc, f.name)
                continue
            if value is None:
                continue
            try:
                self.record[f.name] = kind.coerce(f, value, self.field_context)
            except FieldError as exc:
                self.errors.append(error(f.name, exc.code, exc.message))

    def fill_places(self) -> set[str]:
        """Blank fields marked `fill_from_phone`, from where the phone number
        (new, or changed on this save) is registered; the names filled."""
        filled = set()
        for f in self.rules.phone_places:
            source = f.fill_from_phone.field
            number = self.record.get(source)
            if not field_type(f).is_blank(self.record.get(f.name)) or not number:
                continue
            if not self.is_new and self.old.get(source) == number:
                continue
            place = place_of(number, self.field_context.phone_region)
            if place is None:
                continue
            name = place.province if f.fill_from_phone.part == "province" else place.city
            value = option_for(place, name, f.options) if f.type == "picklist" else name[:f.max_length]
            if f.type == "picklist" and not f.fits(value, self.record.get(f.depends_on)):
                continue   # a place outside the one the record's controlling field names: left to the user
            if value is not None:
                self.record[f.name] = value
                filled.add(f.name)
        return filled

    def compute_formulas(self, only: Iterable[tuple[FormulaField, Compiled]] | None = None) -> set[str]:
        """Formulas in dependency order; the names whose value changed."""
        changed = set()
        formulas = self.rules.formulas if only is None else only
        program = self.rules.formulas_program if only is None else None
        if program is not None:   # all at once, as far as it goes; the rest one by one
            record = self.record
            before = [record.get(f.name) for f, _ in formulas]
            done = self.session.run_program(program, self.view if self.rules.formulas_paths else record, record)
            if done is None:   # it failed as a whole: every formula again, one by one, from the values before
                for (f, _), old in zip(formulas, before):
                    record[f.name] = old
                done = 0
            for (f, _), old in zip(formulas[:done], before):
                if old != record[f.name]:
                    changed.add(f.name)
            formulas = formulas[done:]
        for f, compiled in formulas:
            try:
                value = formula_value(f, self.evaluate(compiled))
            except ExpressionError as exc:
                self.failed(f"formula {f.name}", exc, f.name)
                value = None
            except ValueError as exc:
                self.errors.append(error(f.name, "expression", messages.text(
                    "expression", self.locale, what=f"formula {f.name}", error=str(exc))))
                value = None
            if self.record.get(f.name) != value:
                changed.add(f.name)
            self.record[f.name] = value
        return changed

    def is_visible(self, f: FieldDef) -> bool:
        compiled = self.rules.visible_if.get(f.name)
        if compiled is None:
            return True
        try:
            return self.evaluate(compiled) is not False
        except ExpressionError as exc:
            if f.name not in self._visible:
                self.failed(f"visible_if of {f.name}", exc, f.name)
                self._visible[f.name] = True
            return True

    def is_required(self, f: FieldDef) -> bool:
        """`required`, unless `visible_if` hides the field."""
        return bool(f.required) and self.is_visible(f)

    def check_required(self, names: Iterable[str] | None = None) -> None:
        """`required` fields (all of them, or `names`) and every `required_if`."""
        for f in self.obj.fields:
            if names is not None and f.name not in names:
                continue
            kind = field_type(f)
            if kind.writable and self.is_required(f) and kind.is_blank(self.record.get(f.name)) \
                    and not self.has_error(f.name):
                self.errors.append(error(f.name, "required", messages.text("required", self.locale, label=self.label(f.name))))
        self.check_required_if()

    def check_required_if(self) -> None:
        for f, compiled in self.rules.required_if:
            if not field_type(f).is_blank(self.record.get(f.name)) or self.has_error(f.name):
                continue
            try:
                needed = self.evaluate(compiled) is True
            except ExpressionError as exc:
                self.failed(f"required_if of {f.name}", exc, f.name)
                continue
            if needed and self.is_visible(f):
                self.errors.append(error(f.name, "required", messages.text("required", self.locale, label=self.label(f.name)),
                                         "required_if"))

    def check_read_only(self, changed: Iterable[str]) -> None:
        """A change to a field whose `read_only_if` holds for the stored record."""
        if self.is_new or not self.rules.read_only_if:
            return
        before = RecordView(self.rules.objects, self.obj.name, self.old, self.fetch, {})
        for name in changed:
            compiled = self.rules.read_only_if.get(name)
            if compiled is None:
                continue
            try:
                locked = self.evaluate(compiled, before) is True
            except ExpressionError as exc:
                self.failed(f"read_only_if of {name}", exc, name)
                continue
            if locked:
                self.errors.append(error(name, "read_only", messages.text("read_only", self.locale, label=self.label(name)),
                                         "read_only_if"))

    def check_rules(self) -> None:
        if "validation" in self.skip:
            return
        rules = self.rules
        outcomes = None
        if rules.rules_program is not None:   # all at once; a rule it cannot decide runs alone
            outcomes = self.session.run_program(rules.rules_program, self.view if rules.rules_paths else self.record)
        for i, (rule, when, check) in enumerate(rules.rules):
            ok = outcomes[i] if outcomes is not None else GAVE_UP
            if ok is None:
                continue
            if ok is GAVE_UP:
                try:
                    if when is not None and self.evaluate(when) is not True:
                        continue
                    ok = self.evaluate(check) is True
                except ExpressionError as exc:
                    self.failed(f"rule {rule.name}", exc, rule.field, rule.name)
                    continue
            if not ok:
                message = messages.declared(rule.message, self.locale) or messages.text("rule", self.locale, rule=rule.name)
                self.errors.append(error(rule.field, "rule", message, rule.name))

    def check_stages(self) -> None:
        if "stages" in self.skip:
            return
        for plan in self.rules.stages:
            f = plan.field
            old_value = self.old.get(f.name) if self.old is not None else None
            move = plan.move(old_value, self.record.get(f.name), self.is_new)
            if move is None:
                continue
            stages = plan.by_value
            if move.backward:
                self.errors.append(error(f.name, "stage_backward", messages.text(
                    "stage_backward", self.locale, old=messages.label(stages[old_value], self.locale),
                    new=messages.label(stages[self.record[f.name]], self.locale)), None, old_value))
                continue
            for stage, i, name in move.required:
                target = self.obj.field(name)
                if target is not None and field_type(target).is_blank(self.record.get(name)):
                    self.errors.append(error(name, "required", messages.text(
                        "stage_required", self.locale, label=self.label(name), stage=messages.label(stage, self.locale)),
                        f"required_fields[{i}]", stage.value))
            for stage in move.exit:
                self._criteria(plan.criteria.get((stage.value, "exit"), []), stage)
            if move.entry is not None:
                self._criteria(plan.criteria.get((move.entry.value, "entry"), []), move.entry)

    def _criteria(self, items, stage) -> None:
        for item in items:
            if item.compiled is None:
                continue  # reported by report_broken
            try:
                ok = self.evaluate(item.compiled) is True
            except ExpressionError as exc:
                self.failed(f"{stage.value}: {item.rule}", exc, item.criterion.field, item.rule, stage.value)
                continue
            if not ok:
                message = messages.declared(item.criterion.message, self.locale) or messages.text(
                    "stage_criteria", self.locale, stage=messages.label(stage, self.locale), rule=item.rule)
                self.errors.append(error(item.criterion.field, "stage_criteria", message, item.rule, stage.value))

    def run(self, changed: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """Every step in the documented order; `changed` are the fields the
        writer changed (for `read_only_if`; default: every field that differs
        from `old`)."""
        self.report_broken()
        self.apply_defaults()
        self.compute_formulas()
        if changed is None:
            changed = [k for k, v in self.record.items() if self.old is None or self.old.get(k) != v]
        self.check_required(None if self.is_new else set(changed))
        self.check_read_only(changed)
        self.check_rules()
        self.check_stages()
        return self.errors

