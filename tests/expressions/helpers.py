"""Shared helpers for the expression tests."""

from __future__ import annotations

from datetime import datetime, timezone

from loomcrm.runtime.expressions import EvalContext

# A fixed clock: Saturday 2024-06-15 22:30 UTC, already Sunday in Shanghai.
CLOCK = datetime(2024, 6, 15, 22, 30, tzinfo=timezone.utc)


def ctx(**kw) -> EvalContext:
    kw.setdefault("clock", CLOCK)
    kw.setdefault("timezone", "UTC")
    return EvalContext(**kw)
