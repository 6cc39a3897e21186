"""What an evaluation may know besides the record: the change set, the
acting user, the clock and time zone, and the budget."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any, Mapping

from .settings import timezone_name, zone

DEFAULT_BUDGET_MS = 10.0
DEFAULT_MAX_STEPS = 10_000


@dataclass(frozen=True)
class EvalContext:
    """The context of one evaluation, built by the record service per save.

    - `is_new`: the record is being created (`is_new()`; `is_changed()` is
      then false and `prior_value()` None).
    - `prior`: the stored record before this change, keyed like the record;
      None when there is no change set (then nothing counts as changed).
    - `user_id`, `roles`: the acting user (`current_user()`, `has_role()`).
    - `approval`: the status of the record's last approval request
      (`approval_status()`: pending, approved, rejected, recalled, returned).
    - `timezone`: an IANA name; None reads `LOOM_TIMEZONE` (default UTC).
    - `clock`: a fixed "now" (aware), for reproducible runs; None = real time.
    - `budget_ms`, `max_steps`: the evaluation's time and step budget.
    """

    is_new: bool = False
    prior: Mapping[str, Any] | None = None
    user_id: str | None = None
    roles: frozenset[str] = frozenset()
    approval: str | None = None
    timezone: str | None = None
    clock: datetime | None = None
    budget_ms: float = DEFAULT_BUDGET_MS
    max_steps: int = DEFAULT_MAX_STEPS
    tz: tzinfo = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "tz", zone(self.timezone or timezone_name()))
        object.__setattr__(self, "roles", frozenset(self.roles))
        if self.clock is not None and self.clock.tzinfo is None:
            object.__setattr__(self, "clock", self.clock.replace(tzinfo=self.tz))


_defaults: dict[str, EvalContext] = {}


def default_context() -> EvalContext:
    """The context for callers that give none: no change set, no user, the
    configured time zone. Cached per time zone (it is immutable)."""
    name = timezone_name()
    ctx = _defaults.get(name)
    if ctx is None:
        ctx = _defaults[name] = EvalContext(timezone=name)
    return ctx
