"""The shipped crm pack, read once for the rules tests."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from loomcrm.runtime.install import read_bundle

CRM = Path(__file__).resolve().parents[2] / "apps" / "crm"


@lru_cache(maxsize=1)
def crm_objects():
    return {o.name: o for o in read_bundle(CRM).objects}
