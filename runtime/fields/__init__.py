"""Field types: `field_type(field)` gives the class that owns a type."""

from . import choices, computed, dates, numbers, relations, text  # noqa: F401  (registration)
from .registry import (
    DEFAULT_CONTEXT, FieldContext, FieldError, FieldType, UTCDateTime, field_type, registered_types,
)

__all__ = [
    "DEFAULT_CONTEXT", "FieldContext", "FieldError", "FieldType", "UTCDateTime", "field_type", "registered_types",
]
