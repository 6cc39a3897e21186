"""Dependent picklists (`depends_on`), with the crm pack's account
(province narrowed by region) on SQLite and PostgreSQL: the record
service refuses a province outside the region on every writer, leaves a
record it does not touch alone, and the phone never fills a province the
region rules out; the bundle checks of the keys."""

from __future__ import annotations

import pytest

from loomcrm.metadata.checks import check_bundle
from loomcrm.metadata.model import Bundle, BundleManifest, ObjectDef
from loomcrm.runtime.records import Invalid


def account(runtime, **values):
    return runtime.records.create("account", {"name": "常州精工", **values}, None)


def refused(call) -> list[tuple[str, str]]:
    with pytest.raises(Invalid) as caught:
        call()
    return [(e["field"], e["code"]) for e in caught.value.errors]


def test_a_province_must_lie_in_the_region(crm):
    made = account(crm, region="east", province="jiangsu")
    assert (made["region"], made["province"]) == ("east", "jiangsu")
    assert refused(lambda: account(crm, name="深圳", region="east", province="guangdong")) == [("province", "invalid_option")]
    assert account(crm, name="无区域", province="guangdong")["province"] == "guangdong"   # no region: every province
    assert account(crm, name="无省份", region="overseas")["region"] == "overseas"
    # moving the region under a province it does not hold is refused, and so is the other way round
    assert refused(lambda: crm.records.update("account", made["id"], {"region": "south"}, None)) == [
        ("province", "invalid_option")]
    assert refused(lambda: crm.records.update("account", made["id"], {"province": "sichuan"}, None)) == [
        ("province", "invalid_option")]
    both = crm.records.update("account", made["id"], {"region": "southwest", "province": "sichuan"}, None)
    assert (both["region"], both["province"]) == ("southwest", "sichuan")
    # an import is refused row by row, the good rows kept
    results = crm.records.create_many("account", [{"name": "A", "region": "north", "province": "beijing"},
                                                  {"name": "B", "region": "north", "province": "hainan"}], None)
    assert results[0]["province"] == "beijing" and [(e["field"], e["code"]) for e in results[1].errors] == [
        ("province", "invalid_option")]


def test_a_record_saved_before_the_dependency_stays_editable(crm):
    made = account(crm, province="guangdong")
    table = crm.schema().table("account")
    with crm.engine.begin() as conn:   # as stored before `depends_on` was published
        conn.execute(table.update().where(table.c.id == made["id"]).values(region="east"))
    kept = crm.records.update("account", made["id"], {"employees": 40}, None)
    assert (kept["region"], kept["province"], kept["employees"]) == ("east", "guangdong", 40)


def test_the_phone_fills_no_province_the_region_rules_out(crm):
    east = account(crm, region="east", phone="13912345678")       # a Jiangsu number
    assert east["province"] == "jiangsu"
    south = account(crm, name="广州", region="south", phone="13912345679")
    assert south["province"] is None
    anywhere = account(crm, name="无区域", phone="13912345670")
    assert anywhere["province"] == "jiangsu"


def test_the_bundle_checks_depends_on():
    obj = ObjectDef.model_validate({"name": "account", "fields": [
        {"name": "region", "type": "picklist", "options": [{"value": "east"}, {"value": "south"}]},
        {"name": "note", "type": "text"},
        {"name": "province", "type": "picklist", "depends_on": "region",
         "options": [{"value": "jiangsu", "parents": ["east"]}, {"value": "guangdong", "parents": ["south", "west"]}]},
        {"name": "city", "type": "picklist", "depends_on": "note", "options": [{"value": "a"}]},
        {"name": "town", "type": "picklist", "depends_on": "twon", "options": [{"value": "a"}]},
        {"name": "size", "type": "picklist", "options": [{"value": "s", "parents": ["east"]}]},
        {"name": "self", "type": "picklist", "depends_on": "self", "options": [{"value": "a"}]}]})
    problems = check_bundle(Bundle(manifest=BundleManifest(format="loom/1", name="b", version="1.0.0"), objects=[obj]))
    assert {(p.path, p.code) for p in problems} == {
        ("fields[2].options[1].parents[1]", "bad_dependency"), ("fields[3].depends_on", "bad_dependency"),
        ("fields[4].depends_on", "unknown_field"), ("fields[5].options[0].parents", "bad_dependency"),
        ("fields[6].depends_on", "bad_dependency")}
