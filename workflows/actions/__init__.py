"""What each action does (SPEC §3.5). An action gets an `Act` and either
answers its result (kept on the run) or raises `Retry` (tried again later)
or `Dead` (not worth trying again). Actions that only change the database
run inside the run's transaction, which also marks the run done: they take
effect exactly once. E-mail and webhooks reach outside: they read what they
need from the database and answer a `Delivery`, which the executor calls
with no connection held; they are delivered at least once, with a stable
id the receiver can drop repeats by."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import sqlalchemy as sa

from loomcrm.metadata.expressions import ExpressionError
from loomcrm.runtime.records import Origin
from loomcrm.runtime.tables import CompiledSchema

from ..definitions import Flow
from ..records import Evaluator
from ..runs import Claim


Delivery = Callable[[], dict[str, Any]]


class Retry(Exception):
    """Failed this time; worth trying again."""


class Dead(Exception):
    """Failed in a way another try would not change."""

    def __init__(self, message: str, code: str | None = None):
        super().__init__(message)
        self.code = code


@dataclass
class Act:
    """One action of one run, about to take effect."""

    automation: Any                 # the engine.Automation: settings, database, runtime
    conn: sa.Connection | None      # the run's transaction (None for actions that reach outside)
    claim: Claim
    flow: Flow
    index: int
    action: Any                     # the action's metadata model
    schema: CompiledSchema          # the current metadata
    record: dict[str, Any]          # the record as stored now (or as it was, when deleted)
    deleted: bool
    user: Any                       # the workflow's user
    evaluate: Evaluator

    @property
    def origin(self) -> Origin:
        """Writes of this action, as their outbox events will say."""
        return Origin("automation", self.flow.name, self.claim.id, (self.claim.row["depth"] or 0) + 1)

    @property
    def run(self) -> dict[str, Any]:
        return self.claim.row

    def value(self, key: str) -> Any:
        compiled = self.flow.expressions[self.index].get(key)
        if compiled is None:
            return None
        try:
            return self.evaluate(compiled)
        except ExpressionError as exc:
            raise Dead(f"{key} could not be evaluated: {exc}", "expression") from None


def registry() -> dict[str, Callable[[Act], Any]]:
    """action type -> what performs it"""
    from ..assignment import assign
    from .email import send_email
    from .notify import notify
    from .records import create_record, update_record
    from .routing import route
    from .webhook import call_webhook

    return {"update": update_record, "create": create_record, "assign": assign, "route": route, "notify": notify,
            "email": send_email, "webhook": call_webhook}
