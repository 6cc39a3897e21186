"""Checking an expression against the object it runs on."""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from typing import Mapping

from ..model import ObjectDef


@dataclass(frozen=True)
class ExprError:
    code: str
    message: str
    line: int = 1
    column: int = 1


@dataclass(frozen=True)
class Scope:
    """The names an expression may use: the fields of `object_name`, and
    through its lookups the fields of the objects in `objects`."""

    objects: Mapping[str, ObjectDef]
    object_name: str
    extra_names: Mapping[str, str] = field(default_factory=dict)


def check(source: str, scope: Scope, *, expect: str | None = None) -> list[ExprError]:
    """Problems of `source` in `scope`; `expect` is the type the result must
    have ("boolean", or a formula's `returns`), None for any type."""
    try:
        ast.parse(source, mode="eval")
    except SyntaxError as exc:
        return [ExprError("syntax", exc.msg, exc.lineno or 1, exc.offset or 1)]
    return []
