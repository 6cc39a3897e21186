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


# Text as a CSV cell brings it, per type: (field keys, good texts, bad texts).
TEXTS = [
    ({"type": "text", "max_length": 5}, ["abc"], ["abcdefg"]),
    ({"type": "long_text"}, ["line one\nline two"], []),
    ({"type": "integer", "min": 0}, ["7", "7.0", "1e3"], ["-1", "7.5", "seven"]),
    ({"type": "decimal", "precision": 5, "scale": 2}, ["123.45", "1e2"], ["1234.5", "1.005", "NaN"]),
    ({"type": "currency", "min": 0, "max": 10}, ["10", "0.10"], ["10.01", "-0.01", "x"]),
    ({"type": "percent"}, ["12.5"], ["1.234"]),
    ({"type": "boolean"}, ["Yes", "off", "1"], ["maybe"]),
    ({"type": "date", "min": "2020-01-01"}, ["2020-01-01"], ["2019-12-31", "2020-13-01", "yesterday"]),
    ({"type": "datetime"}, ["2024-03-01T08:00", "2024-03-01 08:00:00Z", "2024-03-01"], ["2024-03-01T25:00"]),
    ({"type": "email"}, ["Ada@Example.COM"], ["not an address"]),
    ({"type": "phone"}, ["138 0013 8000", "+1 650 253 0000"], ["12"]),
    ({"type": "url"}, ["example.com/a"], ["ftp://example.com", "mailto:x@y.z"]),
    # an imported cell may give an option's value or label, case aside
    ({"type": "picklist", "options": [{"value": "a", "label": {"en": "Alpha", "zh-CN": "甲"}}, {"value": "b"}]},
     ["a", "A", "alpha", "甲", " B "], ["c", "Alph"]),
    ({"type": "stage", "stages": [{"value": "open"}, {"value": "won"}]}, ["won"], ["lost"]),
    ({"type": "multi_picklist", "options": [{"value": "a"}, {"value": "b"}]}, ["b; a", "a,b,a"], ["a;c"]),
    ({"type": "lookup", "to": "account"}, ["abc123"], ["x' OR 1=1 --"]),
    ({"type": "related_to", "to": ["lead"]}, ["lead:abc"], ["account:abc"]),
]


@pytest.mark.parametrize("keys, good, bad", TEXTS, ids=[t[0]["type"] for t in TEXTS])
def test_text_input_coerced_is_what_the_text_parses_to(keys, good, bad):
    """An import hands the record service `text_input(text)`, which coerces
    it: that must give what `parse_text` gives, and refuse what it refuses
    with the same error."""
    f = fd(**keys)
    kind = field_type(f)
    for text in good:
        assert coerce(f, kind.text_input(f, text, CTX)) == kind.parse_text(f, text, CTX), text
    for text in bad:
        with pytest.raises(FieldError) as parsed:
            kind.parse_text(f, text, CTX)
        with pytest.raises(FieldError) as handed:
            coerce(f, kind.text_input(f, text, CTX))
        assert (handed.value.code, handed.value.message) == (parsed.value.code, parsed.value.message), text


@pytest.mark.parametrize("keys, good, bad", TEXTS, ids=[t[0]["type"] for t in TEXTS])
def test_a_fields_coercer_is_its_coerce(keys, good, bad):
    f = fd(**keys)
    kind = field_type(f)
    coercer = kind.coercer(f)
    for text in good:
        value = kind.text_input(f, text, CTX)
        assert coercer(value, CTX) == coerce(f, value)
    for text in bad:
        try:
            value = kind.text_input(f, text, CTX)
        except FieldError:
            continue   # refused as text already (boolean)
        with pytest.raises(FieldError) as once:
            coercer(value, CTX)
        assert once.value.code == error(f, value)


def test_computed_types_are_not_writable():
    f = fd(type="formula", expression="1 + 1", returns="integer")
    assert not field_type(f).writable
    assert not field_type(fd(type="auto_number", prefix="OPP-", digits=6)).writable
    a = fd(type="auto_number", prefix="OPP-", digits=6)
    assert field_type(a).format(a, 42) == "OPP-000042"
