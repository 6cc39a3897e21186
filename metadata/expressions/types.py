"""The types of the expression language and how metadata maps onto them.

Expressions see a handful of types; many field types share one (every
stored string, whatever it means, is `text`). Integers and decimals are one
`number` type: the language mixes them freely and a formula returning any
number kind accepts any number expression (SPEC 3.2).
"""

from __future__ import annotations

TEXT, NUMBER, BOOLEAN, DATE, DATETIME, LIST, LINK = "text", "number", "boolean", "date", "datetime", "list", "link"
NULL = "null"  # the literal None: fits wherever a value may be missing
ANY = "any"    # unknown (after an error, or a name of unknown type): never reported twice

TYPES = frozenset({TEXT, NUMBER, BOOLEAN, DATE, DATETIME, LIST, LINK, NULL, ANY})
ORDERED = frozenset({TEXT, NUMBER, DATE, DATETIME})

FIELD_TYPES: dict[str, str] = {
    "text": TEXT, "long_text": TEXT, "email": TEXT, "phone": TEXT, "url": TEXT,
    "picklist": TEXT, "stage": TEXT, "lookup": TEXT, "user": TEXT, "auto_number": TEXT,
    "integer": NUMBER, "decimal": NUMBER, "currency": NUMBER, "percent": NUMBER,
    "boolean": BOOLEAN, "date": DATE, "datetime": DATETIME,
    "multi_picklist": LIST, "related_to": LINK,
}

SYSTEM_FIELD_TYPES: dict[str, str] = {
    "id": TEXT, "version": NUMBER, "created_at": DATETIME, "updated_at": DATETIME,
    "created_by": TEXT, "updated_by": TEXT, "owner": TEXT,
}


def from_name(name: str | None) -> str:
    """The expression type for a type name given by a caller: an expression
    type, a formula's `returns` or a field type. None means any type."""
    if name is None:
        return ANY
    if name in TYPES:
        return name
    if name in FIELD_TYPES:
        return FIELD_TYPES[name]
    raise ValueError(f"unknown type name {name!r}")


def fits(actual: str, expected: str) -> bool:
    """Whether a value of type `actual` may stand where `expected` is needed."""
    return actual == expected or ANY in (actual, expected) or actual == NULL


def unify(a: str, b: str) -> str | None:
    """The common type of two branches (`if`/`else`, `coalesce`, `min`), or
    None when they have none."""
    if a == b or b == NULL:
        return a
    if a == NULL:
        return b
    if ANY in (a, b):
        return ANY
    return None


def comparable(a: str, b: str) -> bool:
    """Whether `==` / `!=` between the two types can ever be true."""
    return unify(a, b) is not None


def describe(t: str) -> str:
    return {NULL: "None", ANY: "any value", LIST: "a list", LINK: "a related_to link"}.get(t, t)
