"""Every expression of an object's rules, checked and prepared once per
metadata version: defaults, formulas (in dependency order), conditional
fields, validation rules, stage criteria. A save only evaluates them."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field as dc_field
from decimal import Decimal
from functools import partial
from typing import Callable, Hashable, Iterable, Mapping

from cachetools import LRUCache

from loomcrm.metadata.expressions import ExpressionError, Scope
from loomcrm.metadata.model import (
    Criterion, DuplicateRule, FieldDef, FormulaField, ObjectDef, Sla, Stage, StageField, ValidationRule,
)

from ..expressions import Compiled, compile_expression
from ..expressions.compiled import formulas_program, rules_program
from .formulas import formula_value
from .stages import MovePlan, plan_move


@dataclass(frozen=True)
class CompiledCriterion:
    stage: str
    kind: str                 # "exit" or "entry"
    index: int
    criterion: Criterion
    compiled: Compiled | None

    @property
    def rule(self) -> str:
        return self.criterion.name or f"{self.kind}_criteria[{self.index}]"


@dataclass
class StagePlan:
    field: StageField
    order: dict[str, int]
    criteria: dict[tuple[str, str], list[CompiledCriterion]]   # (stage, "exit"/"entry") -> criteria
    by_value: dict[str, Stage] = dc_field(default_factory=dict)

    def __post_init__(self):
        self.by_value = {s.value: s for s in self.field.stages}
        self._moves: dict[tuple, MovePlan | None] = {}

    def move(self, old: str | None, new: str | None, is_new: bool) -> MovePlan | None:
        """`plan_move` of the field, worked out once per move (read only)."""
        key = (old, new, is_new)
        try:
            return self._moves[key]
        except KeyError:
            pass
        plan = plan_move(self.field, old, new, is_new=is_new)
        if (old is None or old in self.order) and (new is None or new in self.order):
            self._moves[key] = plan   # only real stages: a bounded cache
        return plan


@dataclass
class Broken:
    """An expression that did not compile (metadata published around the
    checks): every save of the object reports it instead of skipping it."""

    where: str
    field: str | None
    error: str
    rule: str | None = None
    stage: str | None = None


@dataclass
class SlaPlan:
    """An SLA's conditions, compiled (None: not given, or broken)."""

    sla: Sla
    start: Compiled | None
    stop: Compiled | None
    pause: Compiled | None
    targets: list[tuple[Compiled | None, int]]


@dataclass
class RuleSet:
    obj: ObjectDef
    objects: Mapping[str, ObjectDef]
    version: Hashable | None
    defaults: list[tuple[FieldDef, Compiled]] = dc_field(default_factory=list)
    # fields filled from a phone number's place (`fill_from_phone`)
    phone_places: list[FieldDef] = dc_field(default_factory=list)
    formulas: list[tuple[FormulaField, Compiled]] = dc_field(default_factory=list)
    required_if: list[tuple[FieldDef, Compiled]] = dc_field(default_factory=list)
    visible_if: dict[str, Compiled] = dc_field(default_factory=dict)
    read_only_if: dict[str, Compiled] = dc_field(default_factory=dict)
    rules: list[tuple[ValidationRule, Compiled | None, Compiled]] = dc_field(default_factory=list)
    # the formulas and the rules, each as one generated function
    # (`expressions.compiled.formulas_program`, `rules_program`), and
    # whether they read lookup paths
    formulas_program: Callable | None = None
    formulas_paths: bool = False
    rules_program: Callable | None = None
    rules_paths: bool = False
    stages: list[StagePlan] = dc_field(default_factory=list)
    duplicates: list[DuplicateRule] = dc_field(default_factory=list)
    broken: list[Broken] = dc_field(default_factory=list)
    slas: list[SlaPlan] = dc_field(default_factory=list)
    # a new record's rollup values: it has no children yet
    new_rollups: dict[str, object] = dc_field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not (self.defaults or self.formulas or self.required_if or self.visible_if or self.read_only_if
                    or self.rules or self.stages or self.duplicates or self.broken or self.slas)

    def formulas_affected(self, changed: Iterable[str]) -> list[tuple[FormulaField, Compiled]]:
        """The formulas to recompute when `changed` (field names, or dotted
        paths such as "account.industry") changed, in dependency order."""
        dirty = set(changed)
        heads = {name.split(".", 1)[0] for name in dirty}
        out = []
        for f, compiled in self.formulas:
            names = compiled.names
            if names & dirty or any(n.split(".", 1)[0] in heads and "." in n for n in names) \
                    or any(n in heads for n in names if "." not in n):
                out.append((f, compiled))
                dirty.add(f.name)
                heads.add(f.name)
        return out


def _compile(rs: RuleSet, source: str, expect: str | None, where: str, field: str | None,
             rule: str | None = None, stage: str | None = None) -> Compiled | None:
    scope = Scope(rs.objects, rs.obj.name, version=rs.version)
    try:
        return compile_expression(source, scope, expect=expect)
    except ExpressionError as exc:
        rs.broken.append(Broken(where, field, str(exc)[:300], rule, stage))
        return None


def formula_order(obj: ObjectDef, compiled: Mapping[str, Compiled]) -> tuple[list[str], list[str]]:
    """Formula names in dependency order, and the names caught in a cycle."""
    formulas = [f.name for f in obj.fields if isinstance(f, FormulaField) and f.name in compiled]
    state: dict[str, int] = {}
    order: list[str] = []
    cyclic: list[str] = []

    def visit(name: str, trail: list[str]) -> None:
        mark = state.get(name)
        if mark == 2:
            return
        if mark == 1:
            cyclic.extend(trail[trail.index(name):])
            return
        state[name] = 1
        for dep in sorted(compiled[name].names):
            if dep in compiled:
                visit(dep, trail + [dep])
        state[name] = 2
        order.append(name)

    for name in formulas:
        visit(name, [name])
    return order, sorted(set(cyclic))


def build_rules(objects: Mapping[str, ObjectDef], object_name: str, version: Hashable | None = None) -> RuleSet:
    obj = objects[object_name]
    rs = RuleSet(obj=obj, objects=objects, version=version)
    formulas: dict[str, Compiled] = {}
    for f in obj.fields:
        if f.type == "rollup":
            rs.new_rollups[f.name] = 0 if f.function == "count" else Decimal(0) if f.function == "sum" else None
        if f.fill_from_phone is not None and f.type in ("text", "picklist"):
            rs.phone_places.append(f)
        if f.default_expr and f.type not in ("formula", "rollup", "auto_number"):
            c = _compile(rs, f.default_expr, None, "default_expr", f.name)
            if c is not None:
                rs.defaults.append((f, c))
        if isinstance(f, FormulaField):
            c = _compile(rs, f.expression, None, "formula", f.name)
            if c is not None:
                formulas[f.name] = c
        for key, target in (("required_if", None), ("visible_if", rs.visible_if), ("read_only_if", rs.read_only_if)):
            source = getattr(f, key)
            if source:
                c = _compile(rs, source, "boolean", key, f.name)
                if c is None:
                    continue
                if target is None:
                    rs.required_if.append((f, c))
                else:
                    target[f.name] = c
        if isinstance(f, StageField):
            plan = StagePlan(field=f, order={s.value: i for i, s in enumerate(f.stages)}, criteria={})
            for stage in f.stages:
                for kind, items in (("exit", stage.exit_criteria), ("entry", stage.entry_criteria)):
                    compiled_items = []
                    for i, criterion in enumerate(items):
                        rule = criterion.name or f"{kind}_criteria[{i}]"
                        c = _compile(rs, criterion.check, "boolean", "criterion", criterion.field, rule, stage.value)
                        compiled_items.append(CompiledCriterion(stage.value, kind, i, criterion, c))
                    plan.criteria[(stage.value, kind)] = compiled_items
            rs.stages.append(plan)
    order, cyclic = formula_order(obj, formulas)
    for name in cyclic:
        rs.broken.append(Broken("formula", name, "formula cycle: " + " -> ".join(cyclic + cyclic[:1])))
    rs.formulas = [(obj.field(name), formulas[name]) for name in order if name not in cyclic]
    for rule in obj.validation_rules:
        if not rule.active:
            continue
        when = _compile(rs, rule.when, "boolean", "rule", rule.field, rule.name) if rule.when else None
        check = _compile(rs, rule.check, "boolean", "rule", rule.field, rule.name)
        if check is not None and (when is not None or not rule.when):
            rs.rules.append((rule, when, check))
    if rs.formulas:
        rs.formulas_program = formulas_program([(compiled, f.name, partial(formula_value, f)) for f, compiled in rs.formulas])
        rs.formulas_paths = any(compiled.paths for _, compiled in rs.formulas)
    if rs.rules:
        rs.rules_program = rules_program([(when, check) for _, when, check in rs.rules])
        rs.rules_paths = any(c is not None and c.paths for _, when, check in rs.rules for c in (when, check))
    rs.duplicates = list(obj.duplicate_rules)
    for sla in obj.slas:
        where = f"sla {sla.name}"
        compiled = {key: _compile(rs, getattr(sla, key), "boolean", where, None, sla.name) if getattr(sla, key) else None
                    for key in ("start", "stop", "pause")}
        targets = [(_compile(rs, t.when, "boolean", where, None, sla.name) if t.when else None, t.minutes)
                   for t in sla.targets]
        rs.slas.append(SlaPlan(sla, targets=targets, **compiled))
    return rs


# Rule sets by (metadata version, objects mapping, object name).
_cache: LRUCache = LRUCache(maxsize=512)
_lock = threading.Lock()


def clear_rules_cache() -> None:
    with _lock:
        _cache.clear()


def rules_for(objects: Mapping[str, ObjectDef], object_name: str, version: Hashable | None = None) -> RuleSet:
    """The compiled rules of `object_name`, built once per metadata version
    (and per objects mapping: two databases at the same version never share)."""
    if version is None:
        return build_rules(objects, object_name, None)
    key = (version, id(objects), object_name)
    with _lock:
        hit = _cache.get(key)
    if hit is not None and hit.objects is objects:   # ids are reused once an object is gone
        return hit
    built = build_rules(objects, object_name, version)
    with _lock:
        _cache[key] = built
    return built
