from datetime import date, datetime, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from pydantic import TypeAdapter

from loomcrm.metadata.model import FieldDef, FIELD_TYPES
from loomcrm.runtime.fields import FieldContext, FieldError, field_type, registered_types

F = TypeAdapter(FieldDef)
CTX = FieldContext(timezone=ZoneInfo("Asia/Shanghai"), phone_region="CN")


def fd(**keys):
    keys.setdefault("name", "f")
    return F.validate_python(keys)


def coerce(field, value, ctx=CTX):
    return field_type(field).coerce(field, value, ctx)


def error(field, value):
    with pytest.raises(FieldError) as info:
        coerce(field, value)
    return info.value.code


def test_every_spec_type_is_registered():
    assert set(registered_types()) == set(FIELD_TYPES)


def test_text_length_and_pattern():
    f = fd(type="text", max_length=5, pattern=r"[A-Z]+")
    assert coerce(f, "ABC") == "ABC"
    assert error(f, "ABCDEF") == "too_long"
    assert error(f, "abc") == "pattern"
    assert error(f, 12) == "type"


def test_decimals_are_exact_and_never_rounded():
    f = fd(type="currency", scale=2)
    assert coerce(f, "0.1") + coerce(f, 0.2) == Decimal("0.30")
    assert coerce(f, 12) == Decimal("12.00")
    assert error(f, "1.005") == "scale"
    assert error(f, "abc") == "type"
    assert error(f, True) == "type"
    assert error(f, "NaN") == "type"


def test_integer():
    f = fd(type="integer", min=0, max=10)
    assert coerce(f, "7") == 7 and coerce(f, 7.0) == 7
    assert error(f, 7.5) == "type"
    assert error(f, 11) == "max"
    assert error(f, -1) == "min"


def test_dates_and_datetimes():
    assert coerce(fd(type="date"), "2024-02-29") == date(2024, 2, 29)
    assert error(fd(type="date"), "2024-02-30") == "type"
    dt = fd(type="datetime")
    assert coerce(dt, "2024-01-01T08:00:00") == datetime(2024, 1, 1, 0, 0, tzinfo=timezone.utc)
    assert coerce(dt, "2024-01-01T08:00:00Z") == datetime(2024, 1, 1, 8, 0, tzinfo=timezone.utc)
    assert field_type(dt).to_json(dt, coerce(dt, "2024-01-01T08:00:00+02:00")) == "2024-01-01T06:00:00Z"


def test_email_phone_url_normalisation():
    assert coerce(fd(type="email"), " Alice@Example.COM ") == "Alice@example.com"
    assert error(fd(type="email"), "not-an-email") == "type"
    assert coerce(fd(type="phone"), "138 0013 8000") == "+8613800138000"
    assert coerce(fd(type="phone"), "+1 650-253-0000") == "+16502530000"
    assert error(fd(type="phone"), "hello") == "type"
    assert coerce(fd(type="url"), "Example.COM/path") == "https://example.com/path"
    assert error(fd(type="url"), "javascript:alert(1)") == "type"


def test_phone_default_region_is_configurable():
    f = fd(type="phone")
    assert coerce(f, "(650) 253-0000", FieldContext(phone_region="US")) == "+16502530000"


def test_choices():
    p = fd(type="picklist", options=[{"value": "a"}, {"value": "b"}])
    assert coerce(p, "a") == "a"
    assert error(p, "c") == "invalid_option"
    m = fd(type="multi_picklist", options=[{"value": "a"}, {"value": "b"}])
    assert coerce(m, ["b", "a", "b"]) == ["a", "b"]
    assert field_type(m).parse_csv(m, "b; a", CTX) == ["a", "b"]
    assert error(m, ["x"]) == "invalid_option"


def test_relations():
    r = fd(type="related_to", to=["lead", "contact"])
    assert coerce(r, {"object": "lead", "id": "abc"}) == "lead:abc"
    assert field_type(r).to_json(r, "lead:abc") == {"object": "lead", "id": "abc"}
    assert error(r, {"object": "account", "id": "abc"}) == "invalid_option"
    assert error(fd(type="lookup", to="account"), "x' OR 1=1 --") == "type"


def test_csv_parsing():
    b = fd(type="boolean")
    assert field_type(b).parse_csv(b, "Yes", CTX) is True
    assert field_type(b).parse_csv(b, "", CTX) is None
    c = fd(type="currency")
    assert field_type(c).parse_csv(c, " 12.50 ", CTX) == Decimal("12.50")


def test_computed_types_are_not_writable():
    f = fd(type="formula", expression="1 + 1", returns="integer")
    assert not field_type(f).writable
    assert not field_type(fd(type="auto_number", prefix="OPP-", digits=6)).writable
    a = fd(type="auto_number", prefix="OPP-", digits=6)
    assert field_type(a).format(a, 42) == "OPP-000042"
