"""Lead conversion with the crm pack, on SQLite and PostgreSQL: a lead
becomes an account, a contact and an opportunity in one step, its
activities and tasks move to the account, and it is marked converted with
links both ways; an account its duplicate rule finds is linked instead of
made; any refusal undoes everything; a rep converts only what they may; the
bundle checks of the `conversion` key."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from loomcrm.metadata.checks import check_bundle
from loomcrm.platform import directory, systemdb
from loomcrm.runtime import conversion
from loomcrm.runtime.commands import pack_install
from loomcrm.runtime.install import bundle_from_json
from loomcrm.runtime.records import Actor, Conflict, Invalid, NotFound, RecordError

from rules_app import make_app
from runtime_helpers import engine_for

ADMIN = Actor(None, "admin")


def make_lead(runtime, user=ADMIN, **values):
    return runtime.records.create("lead", {"name": "王磊", "company": "常州精工机械", "source": "website",
                                           "status": "qualified", "phone": "13912345678", "industry": "manufacturing",
                                           **values}, user)


def follow_ups(runtime, lead_id, user=ADMIN):
    link = {"object": "lead", "id": lead_id}
    activity = runtime.records.create("activity", {"subject": "首次电话", "activity_type": "call", "related_to": link,
                                                   "activity_time": "2026-11-02T09:30:00Z", "notes": "有采购计划"}, user)
    task = runtime.records.create("task", {"subject": "发送报价", "related_to": link, "due_date": "2099-01-01",
                                           "priority": "high", "status": "not_started"}, user)
    return activity, task


def count(runtime, object_name) -> int:
    table = runtime.schema().table(object_name)
    with runtime.engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table).where(table.c._deleted_at.is_(None))).scalar()


def test_a_lead_becomes_an_account_a_contact_and_an_opportunity(crm):
    lead = make_lead(crm)
    activity, task = follow_ups(crm, lead["id"])
    plan = conversion.preview(crm, "lead", lead["id"], ADMIN)
    account_plan, contact_plan, deal_plan = plan["targets"]
    assert account_plan["values"] == {"name": "常州精工机械", "industry": "manufacturing", "province": "jiangsu",
                                           "city": "常州市", "source": "website", "lifecycle": "prospect"}
    assert account_plan["matches"] == [] and deal_plan["optional"] and deal_plan["missing"] == ["close_date"]

    done = conversion.convert(crm, "lead", lead["id"], {"opportunity": {"values": {"close_date": "2027-01-31",
                                                                                   "amount": 180000}}}, ADMIN)
    account, contact, deal, marked = done["account"], done["contact"], done["opportunity"], done["lead"]
    assert (account["name"], account["province"], account["lead"]) == ("常州精工机械", "jiangsu", lead["id"])
    assert (contact["name"], contact["phone"], contact["account"], contact["lead"]) == (
        "王磊", "+8613912345678", account["id"], lead["id"])
    assert (deal["name"], deal["account"], deal["contact"], deal["lead"], deal["stage"]) == (
        "常州精工机械", account["id"], contact["id"], lead["id"], "initial_contact")
    assert marked["status"] == "converted"
    assert (marked["converted_account"], marked["converted_contact"], marked["converted_opportunity"]) == (
        account["id"], contact["id"], deal["id"])
    # the follow-ups moved to the account, and count there
    for moved in (crm.records.get("activity", activity["id"]), crm.records.get("task", task["id"])):
        assert moved["related_to"] == {"object": "account", "id": account["id"]}
    assert account["last_activity_at"] == "2026-11-02T09:30:00Z" and marked["last_activity_at"] is None
    assert account["open_opportunities"] == 1
    with crm.engine.connect() as conn:
        h = systemdb.history
        entry = conn.execute(sa.select(h.c.new_value).where(h.c.record_id == lead["id"], h.c.field == "_converted")).scalar()
    assert entry == {"account": account["id"], "contact": contact["id"], "opportunity": deal["id"]}

    assert conversion.preview(crm, "lead", lead["id"], ADMIN)["converted"] is True
    with pytest.raises(Conflict):
        conversion.convert(crm, "lead", lead["id"], {}, ADMIN)
    # the linked records are fixed once converted
    with pytest.raises(Invalid):
        crm.records.update("lead", lead["id"], {"converted_account": None}, ADMIN)


def test_an_account_its_duplicate_rule_finds_is_linked_instead(crm):
    existing = crm.records.create("account", {"name": "常州精工机械", "lifecycle": "customer"}, ADMIN)
    known = crm.records.create("contact", {"name": "王磊", "account": existing["id"], "phone": "139 1234 5678"}, ADMIN)
    lead = make_lead(crm)
    plan = conversion.preview(crm, "lead", lead["id"], ADMIN)
    assert plan["targets"][0]["matches"] == [existing["id"]]
    assert plan["targets"][1]["matches"] == [known["id"]]      # the same mobile, written another way
    accounts = count(crm, "account")
    done = conversion.convert(crm, "lead", lead["id"], {"account": {"id": existing["id"]}, "opportunity": None}, ADMIN)
    assert set(done) == {"lead", "account", "contact"} and done["account"]["id"] == existing["id"]
    assert done["contact"]["account"] == existing["id"] and done["lead"]["converted_opportunity"] is None
    assert count(crm, "account") == accounts and done["account"]["lifecycle"] == "customer"


def test_a_refusal_undoes_everything(crm):
    lead = make_lead(crm)
    activity, _ = follow_ups(crm, lead["id"])
    before = {name: count(crm, name) for name in ("account", "contact", "opportunity")}
    with pytest.raises(Invalid) as refused:   # the opportunity lacks its close date
        conversion.convert(crm, "lead", lead["id"], {"opportunity": {"values": {}}}, ADMIN)
    assert refused.value.detail.startswith("the opportunity could not be made")
    assert ("opportunity", "close_date", "required") in [(e["object"], e["field"], e["code"])
                                                         for e in refused.value.errors]
    assert {name: count(crm, name) for name in before} == before
    kept = crm.records.get("lead", lead["id"])
    assert (kept["status"], kept["converted_account"], kept["version"]) == ("qualified", None, lead["version"])
    assert crm.records.get("activity", activity["id"])["related_to"] == {"object": "lead", "id": lead["id"]}

    bad_bodies = [[], {"deal": {}}, {"account": {"id": "x", "values": {}}}, {"account": "new"},
                  {"opportunity": {"id": "anything"}}, {"account": {"values": []}}, {"contact": None}]
    for body in bad_bodies:
        with pytest.raises(RecordError) as caught:
            conversion.convert(crm, "lead", lead["id"], body, ADMIN)
        assert caught.value.status == 422, body
    with pytest.raises(NotFound):
        conversion.convert(crm, "lead", lead["id"], {"account": {"id": "nosuchaccount"}}, ADMIN)
    with pytest.raises(NotFound):
        conversion.convert(crm, "account", lead["id"], {}, ADMIN)   # accounts have no conversion
    assert {name: count(crm, name) for name in before} == before
    # converted is what converting does, not a status one picks
    with pytest.raises(Invalid) as picked:
        crm.records.update("lead", lead["id"], {"status": "converted"}, ADMIN)
    assert [e.get("rule") for e in picked.value.errors] == ["converted_by_converting"]


def test_a_rep_converts_their_own_lead_only(crm):
    roles = sorted(crm.roles()[1])
    wang, zhao = (directory.create_user(crm.engine, name, "sales_rep", "a long password", roles=roles)
                  for name in ("wang", "zhao"))
    lead = make_lead(crm, wang)
    with pytest.raises(NotFound):
        conversion.convert(crm, "lead", lead["id"], {"opportunity": None}, zhao)
    done = conversion.convert(crm, "lead", lead["id"], {"opportunity": None}, wang)
    assert done["account"]["owner"] == wang.id and done["contact"]["owner"] == wang.id


def test_the_api_converts_and_answers_problems(database_url):
    pack_install(database_url, "crm")
    app, runtime = make_app(engine_for(database_url))
    client = TestClient(app, headers={"Authorization": "Bearer admin"})
    try:
        lead = client.post("/api/v1/lead", json={"name": "李娜", "company": "苏州远航", "status": "qualified", "source": "website",
                                                 "email": "li@yuanhang.cn"}).json()
        plan = client.get(f"/api/v1/lead/{lead['id']}/_convert")
        assert plan.status_code == 200 and plan.json()["targets"][1]["values"]["email"] == "li@yuanhang.cn"
        refused = client.post(f"/api/v1/lead/{lead['id']}/_convert", json={"opportunity": {"values": {}}})
        assert refused.status_code == 422 and refused.json()["errors"][0]["object"] == "opportunity"
        assert client.post(f"/api/v1/lead/{lead['id']}/_convert", content=b"{not json").status_code == 400
        done = client.post(f"/api/v1/lead/{lead['id']}/_convert", json={})
        assert done.status_code == 200 and set(done.json()) == {"lead", "account", "contact"}
        assert client.post(f"/api/v1/lead/{lead['id']}/_convert", json={}).status_code == 409
    finally:
        runtime.engine.dispose()


def test_the_bundle_checks_conversion():
    bundle = json.loads(json.dumps({
        "manifest": {"format": "loom/1", "name": "b", "version": "1.0.0"},
        "objects": [
            {"name": "lead", "fields": [
                {"name": "name", "type": "text"}, {"name": "status", "type": "picklist", "options": [{"value": "new"}]},
                {"name": "to_account", "type": "lookup", "to": "account"},
                {"name": "to_person", "type": "text"},
                {"name": "fixed", "type": "lookup", "to": "person", "read_only": True}],
             "conversion": {"targets": [
                 {"object": "account", "link": "to_account", "fields": {"title": "name", "name": "nmae"},
                  "values": {"size": "huge"}},
                 {"object": "person", "link": "to_person", "links": {"account": "deal", "name": "account"},
                  "back": "account"},
                 {"object": "person", "link": "fixed"},
                 {"object": "deal", "link": "to_account"}],
                 "mark": {"status": "done"}, "move_to": "task"}},
            {"name": "account", "fields": [{"name": "name", "type": "text"}, {"name": "size", "type": "integer"}]},
            {"name": "person", "fields": [{"name": "name", "type": "text"},
                                          {"name": "account", "type": "lookup", "to": "account"}]}]}))
    problems = {(p.path, p.code) for p in check_bundle(bundle_from_json(bundle))}
    at = "conversion.targets"
    assert problems == {
        (f"{at}[0].fields.title", "unknown_field"), (f"{at}[0].fields.name", "unknown_field"),
        (f"{at}[0].values.size", "bad_conversion"),
        (f"{at}[1].link", "bad_conversion"), (f"{at}[1].links.account", "bad_conversion"),
        (f"{at}[1].links.name", "bad_conversion"), (f"{at}[1].back", "bad_conversion"),
        (f"{at}[2].object", "bad_conversion"), (f"{at}[2].link", "bad_conversion"),
        (f"{at}[3].object", "unknown_object"),
        ("conversion.mark.status", "bad_conversion"), ("conversion.move_to", "bad_conversion")}
