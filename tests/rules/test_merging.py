"""Merging duplicate accounts with the crm pack, on SQLite and PostgreSQL:
every kind of child (contacts, opportunities and orders through lookups, a
sub-account, activities and tasks through related-to) moves to the record
kept, the picked values win, history keeps a merge entry, the others go to
the recycle bin together and come back together; refusals change nothing."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from loomcrm.platform import directory, systemdb
from loomcrm.runtime import merging
from loomcrm.runtime.commands import pack_install
from loomcrm.runtime.records import Actor, Forbidden, Invalid, NotFound, RecordError

from rules_app import make_app
from runtime_helpers import engine_for

ADMIN = Actor(None, "admin")


def account(runtime, name, user=ADMIN, **values):
    return runtime.records.create("account", {"name": name, "lifecycle": "customer", **values}, user)


def children(runtime, account_id, tag):
    """One child of every kind linked to the account."""
    create = runtime.records.create
    contact = create("contact", {"name": f"联系人{tag}", "account": account_id, "phone": f"1391234567{tag}"}, ADMIN)
    deal = create("opportunity", {"name": f"商机{tag}", "account": account_id, "stage": "initial_contact",
                                  "contact": contact["id"], "close_date": "2027-03-31", "amount": 1000 * int(tag)}, ADMIN)
    order = create("order", {"account": account_id, "order_date": "2026-11-01", "status": "draft",
                             "list_amount": 500}, ADMIN)
    link = {"object": "account", "id": account_id}
    activity = create("activity", {"subject": f"拜访{tag}", "activity_type": "visit", "related_to": link,
                                   "activity_time": f"2026-11-0{tag}T09:00:00Z", "notes": "见面"}, ADMIN)
    task = create("task", {"subject": f"回访{tag}", "related_to": link, "due_date": "2099-01-01", "priority": "low",
                           "status": "not_started"}, ADMIN)
    branch = create("account", {"name": f"分公司{tag}", "lifecycle": "customer", "parent_account": account_id}, ADMIN)
    return {"contact": contact, "opportunity": deal, "order": order, "activity": activity, "task": task,
            "account": branch}


def history(runtime, rid, field):
    h = systemdb.history
    with runtime.engine.connect() as conn:
        return conn.execute(sa.select(h.c.new_value).where(h.c.record_id == rid, h.c.field == field)).scalars().all()


def test_three_accounts_merge_into_one_with_every_child(crm):
    kept = account(crm, "常州精工", industry="manufacturing")
    second = account(crm, "常州精工机械有限公司", phone="0519-8888 6666", employees=120)
    third = account(crm, "精工机械(常州)", website="https://jinggong.example.cn", employees=80)
    crm.records.update("account", kept["id"], {"parent_account": second["id"]}, ADMIN)   # links to a record that goes
    moved = {"2": children(crm, second["id"], "2"), "3": children(crm, third["id"], "3")}

    done = merging.merge(crm, "account", {"survivor": kept["id"], "others": [second["id"], third["id"]],
                                          "values": {"industry": second["id"], "employees": third["id"]}}, ADMIN)
    record = done["record"]
    assert done["merged"] == [second["id"], third["id"]]
    assert (record["name"], record["industry"], record["employees"]) == ("常州精工", None, 80)
    # blank on the kept record: taken from the first other that has it
    assert record["phone"] == crm.records.get("account", kept["id"])["phone"] == second["phone"]
    assert record["website"] == third["website"]
    assert record["parent_account"] is None                  # it would have pointed at itself
    for tag, kids in moved.items():
        for name in ("contact", "opportunity", "order"):
            assert crm.records.get(name, kids[name]["id"])["account"] == kept["id"], (tag, name)
        assert crm.records.get("account", kids["account"]["id"])["parent_account"] == kept["id"]
        for name in ("activity", "task"):
            assert crm.records.get(name, kids[name]["id"])["related_to"] == {"object": "account", "id": kept["id"]}
    # rollups follow the children
    assert record["open_opportunities"] == 2 and float(record["open_pipeline"]) == 5000
    assert record["last_activity_at"] == "2026-11-03T09:00:00Z"
    [entry] = history(crm, kept["id"], "_merged")
    assert entry["merged"] == [{"id": second["id"], "title": "常州精工机械有限公司"},
                               {"id": third["id"], "title": "精工机械(常州)"}]
    assert {k: entry["values"][k] for k in ("industry", "phone", "website", "employees")} == {
        "industry": second["id"], "phone": second["id"], "website": third["id"], "employees": third["id"]}
    assert history(crm, second["id"], "_merged") == [{"into": kept["id"]}]
    for gone in (second, third):
        with pytest.raises(NotFound):
            crm.records.get("account", gone["id"])
    # the others come back together (their names clash with no one's); their children stay with the record kept
    crm.records.restore("account", third["id"], ADMIN)
    assert crm.records.get("account", second["id"])["name"] == "常州精工机械有限公司"
    assert crm.records.get("contact", moved["2"]["contact"]["id"])["account"] == kept["id"]


def test_refusals_change_nothing(crm):
    first, second = account(crm, "甲公司"), account(crm, "乙公司")
    rival = account(crm, "丙公司")
    contact = children(crm, second["id"], "2")["contact"]
    for body in ({"survivor": first["id"], "others": []}, {"survivor": first["id"], "others": [first["id"]]},
                 {"survivor": first["id"], "others": [second["id"], rival["id"], "x"]},
                 {"survivor": first["id"], "others": second["id"]}, [first["id"], second["id"]],
                 {"survivor": first["id"], "others": [second["id"]], "values": {"nmae": second["id"]}},
                 {"survivor": first["id"], "others": [second["id"]], "values": {"name": rival["id"]}},
                 {"survivor": first["id"], "others": [second["id"]], "values": {"open_pipeline": second["id"]}}):
        with pytest.raises(RecordError) as caught:
            merging.merge(crm, "account", body, ADMIN)
        assert caught.value.status == 422, body
    with pytest.raises(NotFound):
        merging.merge(crm, "account", {"survivor": first["id"], "others": ["nosuchrecord"]}, ADMIN)
    # the values picked break a rule of the record kept: nothing moves, nothing goes
    a = crm.records.create("contact", {"name": "张伟", "account": first["id"], "phone": "13912345678"}, ADMIN)
    b = crm.records.create("contact", {"name": "张伟", "account": first["id"], "office_phone": "0519-8888 6666"}, ADMIN)
    note = crm.records.create("activity", {"subject": "电话", "activity_type": "call", "notes": "x",
                                           "related_to": {"object": "contact", "id": b["id"]},
                                           "activity_time": "2026-11-02T09:00:00Z"}, ADMIN)
    with pytest.raises(Invalid) as refused:
        merging.merge(crm, "contact", {"survivor": a["id"], "others": [b["id"]],
                                       "values": {"phone": b["id"], "office_phone": a["id"]}}, ADMIN)
    assert refused.value.detail.startswith("the merged record could not be saved")
    assert crm.records.get("contact", b["id"])["version"] == b["version"]
    assert crm.records.get("contact", a["id"])["phone"] == a["phone"]
    assert crm.records.get("activity", note["id"])["related_to"] == {"object": "contact", "id": b["id"]}
    assert crm.records.get("contact", contact["id"])["account"] == second["id"]


def test_a_rep_without_the_right_to_delete_cannot_merge(crm):
    roles = sorted(crm.roles()[1])
    wang = directory.create_user(crm.engine, "wang", "sales_rep", "a long password", roles=roles)
    first, second = account(crm, "甲公司", wang), account(crm, "乙公司", wang)
    contact = children(crm, second["id"], "2")["contact"]
    with pytest.raises(Forbidden):
        merging.merge(crm, "account", {"survivor": first["id"], "others": [second["id"]]}, wang)
    assert crm.records.get("contact", contact["id"])["account"] == second["id"]
    assert crm.records.get("account", second["id"])["name"] == "乙公司"


def test_the_api_merges(database_url):
    pack_install(database_url, "crm")
    app, runtime = make_app(engine_for(database_url))
    client = TestClient(app, headers={"Authorization": "Bearer admin"})
    try:
        ids = [client.post("/api/v1/contact", json={"name": name, "account": client.post(
            "/api/v1/account", json={"name": f"{name}的公司", "lifecycle": "lead"}).json()["id"],
            "email": "same@example.cn"}).json()["id"] for name in ("张伟", "张 伟")]
        done = client.post("/api/v1/contact/_merge", json={"survivor": ids[0], "others": [ids[1]],
                                                           "values": {"name": ids[1]}})
        assert done.status_code == 200 and done.json()["record"]["name"] == "张 伟"
        assert client.get(f"/api/v1/contact/{ids[1]}").status_code == 404
        assert client.post("/api/v1/contact/_merge", json={"survivor": ids[0]}).status_code == 422
        assert client.post("/api/v1/contact/_merge", content=b"[").status_code == 400
    finally:
        runtime.engine.dispose()
