"""Province and city filled from a Chinese phone number (`fill_from_phone`),
with the crm pack on SQLite and PostgreSQL: on create, on a changed number,
in an import; never over a value given, never from another country's
number; and the bundle checks of the key."""

from __future__ import annotations

from loomcrm.metadata.checks import check_bundle
from loomcrm.metadata.model import Bundle, BundleManifest, ObjectDef
from loomcrm.runtime.fields.places import option_for, place_of


def test_the_place_of_a_number():
    assert place_of("139 1234 5678") == place_of("+86 13912345678")
    place = place_of("13912345678")
    assert (place.province, place.city, place.province_en) == ("江苏省", "常州市", "Jiangsu")
    beijing = place_of("010-6512 3456")      # a landline: its area
    assert (beijing.province, beijing.city) == ("北京市", "北京市")
    for other in ("+1 415 555 0123", "12345", "not a number", "", None):
        assert place_of(other) is None


def test_a_picklist_option_by_its_value_or_its_label():
    place = place_of("13912345678")
    fields = ObjectDef.model_validate({"name": "x", "fields": [
        {"name": "by_value", "type": "picklist", "options": [{"value": "zhejiang"}, {"value": "jiangsu"}]},
        {"name": "by_label", "type": "picklist", "options": [{"value": "p1", "label": {"zh-CN": "江苏"}}]},
        {"name": "retired", "type": "picklist", "options": [{"value": "jiangsu", "retired": True}]}]}).fields
    assert option_for(place, place.province, fields[0].options) == "jiangsu"
    assert option_for(place, place.province, fields[1].options) == "p1"
    assert option_for(place, place.province, fields[2].options) is None
    assert option_for(place, place.city, fields[0].options) is None


def lead(runtime, **values):
    return runtime.records.create("lead", {"name": "王磊", "company": "常州精工", "source": "website", "status": "new",
                                           **values}, None)


def test_a_new_lead_takes_its_province_and_city_from_its_mobile(crm):
    made = lead(crm, phone="13912345678")
    assert (made["province"], made["city"]) == ("jiangsu", "常州市")
    given = lead(crm, phone="13912345679", province="zhejiang", city="宁波")
    assert (given["province"], given["city"]) == ("zhejiang", "宁波")
    abroad = lead(crm, phone="+1 415 555 0123", email="x@example.com")
    assert (abroad["province"], abroad["city"]) == (None, None)


def test_a_changed_number_fills_what_is_blank_and_an_import_fills_too(crm):
    made = lead(crm, email="a@example.com")
    assert made["province"] is None
    kept = crm.records.update("lead", made["id"], {"description": "called"}, None)
    assert kept["province"] is None
    moved = crm.records.update("lead", made["id"], {"phone": "15012345678"}, None)
    assert (moved["province"], moved["city"]) == ("yunnan", "昭通市")
    cleared = crm.records.update("lead", made["id"], {"city": None}, None)
    assert cleared["city"] is None          # the number did not change: a cleared city stays cleared
    imported = crm.records.create_many("lead", [
        {"name": f"Lead {i}", "company": "Co", "source": "website", "status": "new", "phone": phone}
        for i, phone in enumerate(["13800138000", "18912345678"])], None)
    assert [(r["province"], r["city"]) for r in imported] == [("beijing", "北京市"), ("jiangsu", "常州市")]


def test_the_bundle_checks_fill_from_phone():
    obj = ObjectDef.model_validate({"name": "lead", "fields": [
        {"name": "phone", "type": "phone"}, {"name": "email", "type": "email"},
        {"name": "score", "type": "integer", "fill_from_phone": {"field": "phone", "part": "city"}},
        {"name": "city", "type": "text", "fill_from_phone": {"field": "email", "part": "city"}},
        {"name": "town", "type": "text", "fill_from_phone": {"field": "fax", "part": "city"}}]})
    problems = check_bundle(Bundle(manifest=BundleManifest(format="loom/1", name="b", version="1.0.0"), objects=[obj]))
    assert {(p.path, p.code) for p in problems} == {
        ("fields[2].fill_from_phone", "bad_fill"), ("fields[3].fill_from_phone.field", "bad_fill"),
        ("fields[4].fill_from_phone.field", "unknown_field")}
