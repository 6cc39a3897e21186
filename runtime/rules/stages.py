"""Stage moves exactly as SPEC §3.3. `plan_move` says what a move from S to
T must satisfy; the record service and the kanban board share it.

- T is a lost stage: only T's entry criteria.
- S open, T after S: required fields and exit criteria of S and of every
  open stage between S and T, then T's entry criteria.
- S open, T before S: only with allow_backward; then T's entry criteria.
- S won or lost (a reopen): only with allow_backward; then as a move from
  the first stage to T.
- On create (or from no stage): as a move from the first stage to T, the
  first stage's own criteria included when T is after it; entering the
  first stage itself checks its entry criteria.
"""

from __future__ import annotations

from dataclasses import dataclass, field as dc_field

from loomcrm.metadata.model import Stage, StageField


@dataclass
class MovePlan:
    backward: bool = False                                                   # refused: allow_backward is off
    required: list[tuple[Stage, int, str]] = dc_field(default_factory=list)  # (stage, index, field name)
    exit: list[Stage] = dc_field(default_factory=list)                       # stages whose exit criteria apply
    entry: Stage | None = None                                               # the stage whose entry criteria apply


def _forward(stages: list[Stage], start: int, target: int, plan: MovePlan) -> None:
    for stage in stages[start:target]:
        if stage.category != "open":
            continue
        plan.required += [(stage, i, name) for i, name in enumerate(stage.required_fields)]
        plan.exit.append(stage)


def plan_move(field: StageField, old: str | None, new: str | None, *, is_new: bool) -> MovePlan | None:
    """What the move must satisfy; None when there is no move to check."""
    stages = list(field.stages)
    index = {s.value: i for i, s in enumerate(stages)}
    if new is None or new not in index:
        return None
    t = index[new]
    target = stages[t]
    plan = MovePlan()
    if target.category == "lost" and not (is_new and t == 0):
        plan.entry = target
        return plan
    if is_new or old is None or old not in index:
        if t == 0:
            plan.entry = target
            return plan
        _forward(stages, 0, t, plan)
        plan.entry = target
        return plan
    if old == new:
        return None
    s = index[old]
    source = stages[s]
    if source.category != "open":
        if not field.allow_backward:
            plan.backward = True
            return plan
        if t > 0:
            _forward(stages, 0, t, plan)
        plan.entry = target
        return plan
    if t > s:
        _forward(stages, s, t, plan)
        plan.entry = target
        return plan
    if not field.allow_backward:
        plan.backward = True
        return plan
    plan.entry = target
    return plan
