"""The one place the expression runtime reads the environment: the
company's time zone (SPEC 1, `LOOM_TIMEZONE`). Everything else takes the
time zone as a parameter, so tests and the platform can pass their own."""

from __future__ import annotations

import os
from functools import lru_cache
from zoneinfo import ZoneInfo

DEFAULT_TIMEZONE = "UTC"


def timezone_name() -> str:
    return os.environ.get("LOOM_TIMEZONE") or DEFAULT_TIMEZONE


@lru_cache(maxsize=64)
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)
