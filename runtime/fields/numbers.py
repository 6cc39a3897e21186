"""Integer, decimal, currency, percent and boolean fields.

Decimals are exact: JSON numbers are parsed as Decimal by the API, numeric
strings are accepted, floats go through their shortest repr, and a value
with more decimals than the field's scale is refused, never rounded.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any, Callable

import sqlalchemy as sa

from .registry import COMPARISON_OPS, FieldError, FieldType, register

INT_MIN, INT_MAX = -(2**63), 2**63 - 1
NUMBER_PATTERN = r"^-?\d+(\.\d+)?([eE][-+]?\d+)?$"


def to_decimal(field, value: Any) -> Decimal:
    if isinstance(value, bool):
        raise FieldError("type", f"{field.name} must be a number")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, float):
        result = Decimal(repr(value))
    elif isinstance(value, str) and len(value) <= 100:
        try:
            result = Decimal(value.strip())
        except InvalidOperation:
            raise FieldError("type", f"{field.name} must be a number") from None
    else:
        raise FieldError("type", f"{field.name} must be a number")
    if not result.is_finite():
        raise FieldError("type", f"{field.name} must be a finite number")
    return result


def range_check(field) -> Callable[[Any], None]:
    """A check of a number against the field's `min` and `max`."""
    low, high = getattr(field, "min", None), getattr(field, "max", None)
    low_d = None if low is None else Decimal(str(low))
    high_d = None if high is None else Decimal(str(high))

    def check(value) -> None:
        if low_d is not None and value < low_d:
            raise FieldError("min", f"{field.name} must be at least {low}")
        if high_d is not None and value > high_d:
            raise FieldError("max", f"{field.name} must be at most {high}")
    return check


@register
class IntegerType(FieldType):
    name = "integer"
    operators = COMPARISON_OPS

    def column_type(self, field, objects):
        return sa.BigInteger()

    def python_type(self, field):
        return int

    def json_schema(self, field):
        schema: dict[str, Any] = {"type": "integer", "minimum": INT_MIN, "maximum": INT_MAX}
        if field.min is not None:
            schema["minimum"] = field.min
        if field.max is not None:
            schema["maximum"] = field.max
        return schema

    def coercer(self, field):
        check = range_check(field)

        def coerce(value, ctx):
            number = to_decimal(field, value)
            if number != number.to_integral_value():
                raise FieldError("type", f"{field.name} must be a whole number")
            result = int(number)
            if not INT_MIN <= result <= INT_MAX:
                raise FieldError("max" if result > 0 else "min", f"{field.name} is out of range")
            check(result)
            return result
        return coerce

    def coerce(self, field, value, ctx):
        return self.coercer(field)(value, ctx)


class _DecimalBase(FieldType):
    operators = COMPARISON_OPS
    default_precision = 18

    # Read from the instance's __dict__: pydantic answers a missing attribute
    # (currency and percent fields have no precision) through a slow
    # __getattr__ that raises.
    def precision(self, field) -> int:
        return vars(field).get("precision") or self.default_precision

    def scale(self, field) -> int:
        scale = vars(field).get("scale")
        return 2 if scale is None else scale

    def column_type(self, field, objects):
        return sa.Numeric(self.precision(field), self.scale(field))

    def python_type(self, field):
        return Decimal

    def json_schema(self, field):
        schema: dict[str, Any] = {"type": "number"}
        limit = Decimal(10) ** (self.precision(field) - self.scale(field))
        schema["exclusiveMinimum"], schema["exclusiveMaximum"] = float(-limit), float(limit)
        if field.min is not None:
            schema.pop("exclusiveMinimum")
            schema["minimum"] = field.min
        if field.max is not None:
            schema.pop("exclusiveMaximum")
            schema["maximum"] = field.max
        return schema

    def coercer(self, field):
        scale = self.scale(field)
        limit = Decimal(10) ** (self.precision(field) - scale)
        quantum = Decimal(1).scaleb(-scale)
        check = range_check(field)

        def coerce(value, ctx):
            number = to_decimal(field, value)
            exponent = number.normalize().as_tuple().exponent
            if isinstance(exponent, int) and -exponent > scale:
                raise FieldError("scale", f"{field.name} takes at most {scale} decimals")
            if abs(number) >= limit:
                raise FieldError("max" if number > 0 else "min", f"{field.name} is too large")
            check(number)
            return number.quantize(quantum)
        return coerce

    def coerce(self, field, value, ctx):
        return self.coercer(field)(value, ctx)

    def to_json(self, field, value):
        if value is None:
            return None
        return Decimal(value).quantize(Decimal(1).scaleb(-self.scale(field)))


@register
class DecimalType(_DecimalBase):
    name = "decimal"


@register
class CurrencyType(_DecimalBase):
    name = "currency"


@register
class PercentType(_DecimalBase):
    name = "percent"
    default_precision = 12


_TRUE = {"true", "1", "yes", "y", "t", "on"}
_FALSE = {"false", "0", "no", "n", "f", "off"}


@register
class BooleanType(FieldType):
    name = "boolean"
    operators = ("eq", "ne", "isnull")

    def column_type(self, field, objects):
        return sa.Boolean()

    def python_type(self, field):
        return bool

    def json_schema(self, field):
        return {"type": "boolean"}

    def coerce(self, field, value, ctx):
        if isinstance(value, bool):
            return value
        raise FieldError("type", f"{field.name} must be true or false")

    def text_input(self, field, text, ctx):
        return self.parse_text(field, text, ctx)

    def parse_text(self, field, text, ctx):
        lowered = text.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise FieldError("type", f"{field.name} must be true or false")

    def is_blank(self, value):
        return value is None
