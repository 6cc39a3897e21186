"""Date and datetime fields: ISO 8601 in and out; datetimes without an
offset are read in the company's time zone and stored in UTC."""

from __future__ import annotations

from datetime import date, datetime, timezone

import sqlalchemy as sa

from .registry import COMPARISON_OPS, FieldError, FieldType, UTCDateTime, register


def parse_date(field, value) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if not isinstance(value, str) or len(value) != 10:
        raise FieldError("type", f"{field.name} must be a date like 2024-12-31")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise FieldError("type", f"{field.name} must be a date like 2024-12-31") from None


def parse_datetime(field, value, zone) -> datetime:
    if isinstance(value, datetime):
        result = value
    elif isinstance(value, str) and 10 <= len(value) <= 40:
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            result = datetime.fromisoformat(text)
        except ValueError:
            raise FieldError("type", f"{field.name} must be an ISO 8601 date and time") from None
        if len(value.strip()) == 10:  # a bare date: midnight
            result = datetime.combine(result.date(), datetime.min.time())
    else:
        raise FieldError("type", f"{field.name} must be an ISO 8601 date and time")
    if result.tzinfo is None:
        result = result.replace(tzinfo=zone)
    return result.astimezone(timezone.utc)


def iso_utc(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


@register
class DateType(FieldType):
    name = "date"
    operators = COMPARISON_OPS

    def column_type(self, field, objects):
        return sa.Date()

    def python_type(self, field):
        return date

    def json_schema(self, field):
        return {"type": "string", "format": "date"}

    def coerce(self, field, value, ctx):
        result = parse_date(field, value)
        if field.min and result < date.fromisoformat(field.min):
            raise FieldError("min", f"{field.name} must be on or after {field.min}")
        if field.max and result > date.fromisoformat(field.max):
            raise FieldError("max", f"{field.name} must be on or before {field.max}")
        return result

    def to_json(self, field, value):
        return value.isoformat() if value is not None else None


@register
class DateTimeType(FieldType):
    name = "datetime"
    operators = COMPARISON_OPS

    def column_type(self, field, objects):
        return UTCDateTime()

    def python_type(self, field):
        return datetime

    def json_schema(self, field):
        return {"type": "string", "format": "date-time"}

    def coerce(self, field, value, ctx):
        result = parse_datetime(field, value, ctx.timezone)
        if field.min and result < parse_datetime(field, field.min, ctx.timezone):
            raise FieldError("min", f"{field.name} must be on or after {field.min}")
        if field.max and result > parse_datetime(field, field.max, ctx.timezone):
            raise FieldError("max", f"{field.name} must be on or before {field.max}")
        return result

    def to_json(self, field, value):
        return iso_utc(value)
