"""The field-type registry: one small class per SPEC field type.

A field type owns everything that depends on the type and nothing else:
its column type, its JSON Schema and pydantic type, the coercion and
normalisation of input values (JSON from the API, text from query strings
and CSV files), the conversion of stored values back to JSON, and the filter
operators it supports. Adding a type is adding one class and registering it.
"""

from __future__ import annotations

from dataclasses import dataclass, field as dc_field
from datetime import timezone
from functools import partial
from typing import Any, Callable, ClassVar, Mapping
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from loomcrm.metadata.model import FieldDef, ObjectDef

ObjectMap = Mapping[str, ObjectDef]


class FieldError(ValueError):
    """One problem with one value: `code` is a SPEC §5 field error code."""

    def __init__(self, code: str, message: str, field: str | None = None, **extra: Any):
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field
        self.extra = extra

    def as_dict(self) -> dict[str, Any]:
        out = {"field": self.field, "code": self.code, "message": self.message}
        out.update({k: v for k, v in self.extra.items() if v is not None})
        return out


@dataclass(frozen=True)
class FieldContext:
    """What coercion needs to know about the installation."""

    timezone: ZoneInfo = dc_field(default_factory=lambda: ZoneInfo("UTC"))
    phone_region: str = "CN"


DEFAULT_CONTEXT = FieldContext()

COMPARISON_OPS = ("eq", "ne", "lt", "lte", "gt", "gte", "in", "isnull")
EQUALITY_OPS = ("eq", "ne", "in", "isnull")
TEXT_OPS = ("eq", "ne", "in", "contains", "startswith", "endswith", "isnull")


class FieldType:
    """The base class: override what differs. Values passed to `coerce` are
    never None (the caller handles blanks)."""

    name: ClassVar[str]
    writable: ClassVar[bool] = True       # may a writer set it (formula, rollup, auto_number: no)
    searchable: ClassVar[bool] = False    # part of the `q` text search
    operators: ClassVar[tuple[str, ...]] = EQUALITY_OPS

    # -- storage -----------------------------------------------------------
    def column_type(self, field: FieldDef, objects: ObjectMap) -> sa.types.TypeEngine:
        raise NotImplementedError

    def python_type(self, field: FieldDef) -> Any:
        return Any

    def json_schema(self, field: FieldDef) -> dict[str, Any]:
        return {}

    # -- values ------------------------------------------------------------
    def coerce(self, field: FieldDef, value: Any, ctx: FieldContext) -> Any:
        """A JSON input value -> the stored Python value, or FieldError."""
        return value

    def coercer(self, field: FieldDef) -> Callable[[Any, FieldContext], Any]:
        """`coerce` for one field. Types whose checks need work from the
        field's definition (bounds, option sets) do it here once; the record
        service keeps one coercer per field per metadata version."""
        return partial(self.coerce, field)

    def search_text(self, text: str) -> str | None:
        """A search box's text as it would appear in this type's stored
        values (None: it cannot appear in them); for searchable types."""
        return text

    def parse_text(self, field: FieldDef, text: str, ctx: FieldContext) -> Any:
        """Text from a query string or a CSV cell -> the stored value."""
        return self.coerce(field, text, ctx)

    def text_input(self, field: FieldDef, text: str, ctx: FieldContext) -> Any:
        """Stripped, non-blank text -> the input value a save takes for it,
        so that `coerce(text_input(text))` is `parse_text(text)`: the text
        itself for the types whose `coerce` reads text (so an import coerces
        each cell once, in the record service)."""
        return text

    def parse_csv(self, field: FieldDef, text: str, ctx: FieldContext) -> Any:
        text = text.strip()
        if text == "":
            return None
        return self.parse_text(field, text, ctx)

    def to_json(self, field: FieldDef, value: Any) -> Any:
        """A stored value -> its JSON form (the API's and the history's)."""
        return value

    def is_blank(self, value: Any) -> bool:
        # Asked of every value of every save: the common answers first.
        if value is None:
            return True
        if isinstance(value, str):
            return value.strip() == ""
        return isinstance(value, list) and not value


_REGISTRY: dict[str, FieldType] = {}


def register(cls: type[FieldType]) -> type[FieldType]:
    _REGISTRY[cls.name] = cls()
    return cls


def field_type(name_or_field: str | FieldDef) -> FieldType:
    name = name_or_field if isinstance(name_or_field, str) else name_or_field.type
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown field type {name!r}") from None


def registered_types() -> dict[str, FieldType]:
    return dict(_REGISTRY)


class UTCDateTime(sa.types.TypeDecorator):
    """A timestamp stored in UTC: aware on PostgreSQL, naive UTC on SQLite,
    always read back as an aware UTC datetime."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        value = value.astimezone(timezone.utc)
        if dialect.name == "sqlite":
            value = value.replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)
