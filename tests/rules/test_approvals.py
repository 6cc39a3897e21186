"""Approval processes with the crm pack's order approval, on SQLite and
PostgreSQL: each mode (或签, 会签) and action (approve, reject, send back,
加签, 转交, 撤回), steps skipped by their condition, manager chains across
departments, locked fields refused on every write path, two approvers of
one step deciding at once (exactly one decision), timeouts on a shifted
clock, `approval_status()` in a rule, the API, and the bundle checks."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from loomcrm.metadata.checks import check_bundle
from loomcrm.metadata.model import ApprovalProcess, Bundle, BundleManifest, ObjectDef
from loomcrm.platform import directory, systemdb
from loomcrm.runtime import approvals
from loomcrm.runtime.approvals import ApprovalError
from loomcrm.runtime.commands import pack_install
from loomcrm.runtime.records import Actor, Forbidden, Invalid, Origin

from runtime_helpers import engine_for

ADMIN = Actor(None, "admin")


@pytest.fixture
def office(crm):
    """The crm pack with a sales department: li heads it, chen heads east
    below it, where the reps wang and zhao work; a sales director and two
    in finance; an account of wang's."""
    runtime = crm
    roles = sorted(runtime.roles()[1])
    engine = runtime.engine
    people = {"li": directory.create_user(engine, "li", "sales_manager", "a long password", roles=roles)}
    directory.create_department(engine, "sales", label="销售部", manager="li")
    people["chen"] = directory.create_user(engine, "chen", "sales_manager", "a long password", roles=roles,
                                           department="sales")
    directory.create_department(engine, "east", label="华东", parent="sales", manager="chen")
    for name, role in (("wang", "sales_rep"), ("zhao", "sales_rep")):
        people[name] = directory.create_user(engine, name, role, "a long password", roles=roles, department="east")
    people |= {name: directory.create_user(engine, name, role, "a long password", roles=roles)
               for name, role in (("zhou", "sales_director"), ("qian", "finance"), ("sun", "finance"))}
    account = runtime.records.create("account", {"name": "常州精工", "lifecycle": "customer",
                                                 "owner": people["wang"].id}, ADMIN)
    return runtime, people, account["id"]


def order(runtime, people, account, *, discount=30, amount=100000, owner="wang"):
    return runtime.records.create("order", {"account": account, "order_date": "2026-12-01", "status": "draft",
                                            "list_amount": amount, "discount": discount}, people[owner])


def tasks(runtime, request) -> list[tuple[str, str, str]]:
    """(step, approver, status) of the request's tasks, as stored now."""
    state = approvals.of_record(runtime, ADMIN, request["object"], request["record_id"])["requests"]
    return [(t["step"], t["username"], t["status"]) for t in next(r for r in state if r["id"] == request["id"])["tasks"]]


def history(runtime, rid) -> list[dict]:
    h = systemdb.history
    with runtime.engine.connect() as conn:
        return conn.execute(sa.select(h.c.new_value).where(h.c.record_id == rid, h.c.field == "_approval")
                            .order_by(h.c.id)).scalars().all()


def notified(runtime, user) -> list[str]:
    n = systemdb.notifications
    with runtime.engine.connect() as conn:
        return conn.execute(sa.select(n.c.message).where(n.c.user_id == user.id).order_by(n.c.created_at)).scalars().all()


def test_any_one_manager_approves_and_the_order_is_approved(office):
    runtime, people, account = office
    made = order(runtime, people, account, discount=30)
    request = approvals.submit(runtime, people["wang"], "order", made["id"], comment="老客户续约")
    assert request["step"] == "sales_manager"
    assert sorted(tasks(runtime, request)) == [("sales_manager", "chen", "pending"), ("sales_manager", "li", "pending")]
    assert runtime.records.get("order", made["id"])["status"] == "pending_approval"
    assert [m.endswith("waits for your approval (Order approval).") for m in notified(runtime, people["li"])] == [True]
    done = approvals.act(runtime, people["chen"], request["id"], "approve", comment="同意")
    assert done["status"] == "approved" and sorted(tasks(runtime, done)) == [("sales_manager", "chen", "approved"),
                                                                    ("sales_manager", "li", "skipped")]
    assert runtime.records.get("order", made["id"])["status"] == "approved"
    assert [(h["action"], h.get("comment")) for h in history(runtime, made["id"])] == [
        ("submitted", "老客户续约"), ("approved", "同意")]
    assert any("was approved" in m for m in notified(runtime, people["wang"]))
    with pytest.raises(ApprovalError) as settled:
        approvals.act(runtime, people["li"], request["id"], "approve")
    assert settled.value.code == "not_pending"


def test_an_any_step_settled_ends_its_other_tasks_and_opens_the_next(office):
    runtime, people, account = office
    made = order(runtime, people, account, discount=30, amount=1000000)   # a manager, then finance
    request = approvals.submit(runtime, people["wang"], "order", made["id"])
    moved = approvals.act(runtime, people["li"], request["id"], "approve", comment="可以")
    assert moved == {"id": request["id"], "process": "order_approval", "object": "order", "record_id": made["id"],
                     "status": "pending", "step": "finance"}
    assert sorted(tasks(runtime, request)) == [("finance", "qian", "pending"), ("finance", "sun", "pending"),
                                               ("sales_manager", "chen", "skipped"), ("sales_manager", "li", "approved")]
    assert runtime.records.get("order", made["id"])["status"] == "pending_approval"


def test_all_must_approve_with_the_manager_found_across_departments(office):
    runtime, people, account = office
    made = order(runtime, people, account, discount=45, amount=1000000)   # 会签, then finance
    request = approvals.submit(runtime, people["wang"], "order", made["id"])
    assert request["step"] == "manager_and_director"
    assert sorted(tasks(runtime, request)) == [("manager_and_director", "chen", "pending"),
                                      ("manager_and_director", "zhou", "pending")]
    after_one = approvals.act(runtime, people["zhou"], request["id"], "approve")
    assert after_one["status"] == "pending" and after_one["step"] == "manager_and_director"
    after_both = approvals.act(runtime, people["chen"], request["id"], "approve")
    assert after_both["step"] == "finance" and {t[1] for t in tasks(runtime, after_both) if t[2] == "pending"} == {"qian", "sun"}
    with runtime.engine.connect() as conn:   # a manager's own manager is one department up
        assert approvals.managers_above(conn, people["chen"].id, 1) == people["li"].id
        assert approvals.managers_above(conn, people["wang"].id, 2) == people["li"].id
        assert approvals.managers_above(conn, people["wang"].id, 3) is None


def test_reject_send_back_recall_and_resubmit(office):
    runtime, people, account = office
    made = order(runtime, people, account)
    first = approvals.submit(runtime, people["wang"], "order", made["id"])
    rejected = approvals.act(runtime, people["li"], first["id"], "reject", comment="折扣太高")
    assert rejected["status"] == "rejected" and runtime.records.get("order", made["id"])["status"] == "draft"
    second = approvals.submit(runtime, people["wang"], "order", made["id"])
    returned = approvals.act(runtime, people["li"], second["id"], "send_back", comment="补充合同")
    assert returned["status"] == "returned" and runtime.records.get("order", made["id"])["status"] == "draft"
    third = approvals.submit(runtime, people["wang"], "order", made["id"])
    with pytest.raises(Forbidden):
        approvals.act(runtime, people["zhao"], third["id"], "recall")
    recalled = approvals.act(runtime, people["wang"], third["id"], "recall")
    assert recalled["status"] == "recalled" and {t[2] for t in tasks(runtime, recalled)} == {"cancelled"}
    actions = [h["action"] for h in history(runtime, made["id"])]
    assert actions == ["submitted", "rejected", "submitted", "sent_back", "submitted", "recalled"]
    assert history(runtime, made["id"])[1]["comment"] == "折扣太高"


def test_send_back_to_an_earlier_step_add_an_approver_and_hand_over(office):
    runtime, people, account = office
    made = order(runtime, people, account, discount=45, amount=1000000)
    request = approvals.submit(runtime, people["wang"], "order", made["id"])
    approvals.act(runtime, people["zhou"], request["id"], "approve")
    at_finance = approvals.act(runtime, people["chen"], request["id"], "approve")
    assert at_finance["step"] == "finance"
    back = approvals.act(runtime, people["qian"], request["id"], "send_back", step=1, comment="重新核价")
    assert back["step"] == "manager_and_director"
    assert sorted(t[1] for t in tasks(runtime, back) if t[2] == "pending") == ["chen", "zhou"]
    # 加签: in an all step the added approver must approve too
    added = approvals.act(runtime, people["zhou"], request["id"], "add", to="li")
    assert sorted(t[1] for t in tasks(runtime, added) if t[2] == "pending") == ["chen", "li", "zhou"]
    with pytest.raises(ApprovalError) as twice:
        approvals.act(runtime, people["zhou"], request["id"], "add", to="li")
    assert twice.value.code == "already_approver"
    # 转交: chen's task goes to zhao, who decides in chen's place
    handed = approvals.act(runtime, people["chen"], request["id"], "hand", to="zhao")
    assert ("manager_and_director", "chen", "handed") in tasks(runtime, handed)
    with pytest.raises(ApprovalError) as gone:
        approvals.act(runtime, people["chen"], request["id"], "approve")
    assert gone.value.code == "decided"
    for name in ("zhou", "li", "zhao"):
        latest = approvals.act(runtime, people[name], request["id"], "approve")
    assert latest["step"] == "finance"
    with pytest.raises(ApprovalError) as stranger:
        approvals.act(runtime, people["wang"], request["id"], "approve")
    assert stranger.value.code == "not_approver"


def test_steps_skipped_entry_refused_and_one_request_at_a_time(office):
    runtime, people, account = office
    small = order(runtime, people, account, discount=5)
    with pytest.raises(ApprovalError) as not_needed:
        approvals.submit(runtime, people["wang"], "order", small["id"])
    assert not_needed.value.code == "not_needed"
    big = order(runtime, people, account, discount=0, amount=600000)      # finance only
    request = approvals.submit(runtime, people["wang"], "order", big["id"])
    assert request["step"] == "finance"
    with pytest.raises(ApprovalError) as again:
        approvals.submit(runtime, people["wang"], "order", big["id"])
    assert again.value.code == "already_pending"
    with pytest.raises(Forbidden):
        approvals.submit(runtime, people["chen"], "order", order(runtime, people, account)["id"])   # not the owner


def test_locked_fields_are_refused_on_every_write_path_but_the_approvers(office):
    runtime, people, account = office
    made = order(runtime, people, account)
    approvals.submit(runtime, people["wang"], "order", made["id"])
    for origin in (Origin("api"), Origin("form"), Origin("import"), Origin("automation", workflow="w")):
        with pytest.raises(Invalid) as locked:
            runtime.records.update("order", made["id"], {"discount": 10}, people["wang"], origin=origin)
        assert [(e["field"], e["code"]) for e in locked.value.errors] == [("discount", "locked")], origin
    with pytest.raises(Invalid):
        runtime.records.update("order", made["id"], {"status": "approved"}, ADMIN)   # admins too
    # a field the process does not lock stays editable; the approver may change a locked one
    assert runtime.records.update("order", made["id"], {"shipping_address": "常州市武进区"}, people["wang"])
    assert runtime.records.update("order", made["id"], {"discount": 25}, people["chen"])["discount"] == 25
    # approved by someone who may not: the rule reads approval_status()
    other = order(runtime, people, account)
    with pytest.raises(Invalid) as unapproved:
        runtime.records.update("order", other["id"], {"status": "approved"}, people["wang"])
    assert [e.get("rule") for e in unapproved.value.errors] == ["discount_limit"]


def test_two_approvers_deciding_at_once_make_one_decision(office):
    runtime, people, account = office
    made = order(runtime, people, account)
    request = approvals.submit(runtime, people["wang"], "order", made["id"])
    outcomes: dict[str, str] = {}
    barrier = threading.Barrier(2)

    def decide(name, action):
        barrier.wait()
        try:
            outcomes[name] = approvals.act(runtime, people[name], request["id"], action)["status"]
        except ApprovalError as exc:
            outcomes[name] = exc.code

    threads = [threading.Thread(target=decide, args=("li", "approve")), threading.Thread(target=decide, args=("chen", "reject"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes.values()) in (["approved", "not_pending"], ["not_pending", "rejected"]), outcomes
    final = approvals.of_record(runtime, ADMIN, "order", made["id"])["requests"][0]
    assert [t["status"] for t in final["tasks"]].count("pending") == 0
    assert sum(t["status"] in ("approved", "rejected") for t in final["tasks"]) == 1
    assert runtime.records.get("order", made["id"])["status"] == {"approved": "approved", "rejected": "draft"}[final["status"]]


def test_timeouts_remind_once_and_escalate_to_the_manager(office):
    runtime, people, account = office
    made = order(runtime, people, account)
    request = approvals.submit(runtime, people["wang"], "order", made["id"])
    now = approvals.utcnow()
    assert approvals.run_timeouts(runtime, now=now + timedelta(hours=23)) == 0
    assert approvals.run_timeouts(runtime, now=now + timedelta(hours=25)) == 2
    assert approvals.run_timeouts(runtime, now=now + timedelta(hours=26)) == 0
    assert any(m.startswith("Reminder:") for m in notified(runtime, people["chen"]))
    state = approvals.of_record(runtime, ADMIN, "order", made["id"])["requests"][0]
    # chen's manager (li) approves the step already; li has no manager: no one else is added
    assert sorted((t[1], t[2]) for t in tasks(runtime, state)) == [("chen", "pending"), ("li", "pending")]
    assert [h["action"] for h in history(runtime, made["id"])] == ["submitted"]
    assert request["id"] == state["id"]


def test_the_api(database_url):
    pack_install(database_url, "crm")
    from rules_app import make_app

    app, runtime = make_app(engine_for(database_url))
    client = TestClient(app, headers={"Authorization": "Bearer admin"})
    try:
        roles = sorted(runtime.roles()[1])
        directory.create_user(runtime.engine, "li", "sales_manager", "a long password", roles=roles)
        account = client.post("/api/v1/account", json={"name": "甲", "lifecycle": "customer"}).json()
        made = client.post("/api/v1/order", json={"account": account["id"], "order_date": "2026-12-01",
                                                  "status": "draft", "list_amount": 1000, "discount": 30}).json()
        submitted = client.post(f"/api/v1/order/{made['id']}/_approvals", json={"comment": "请批"})
        assert submitted.status_code == 201 and submitted.json()["status"] == "pending"
        again = client.post(f"/api/v1/order/{made['id']}/_approvals")
        assert again.status_code == 409 and again.json()["errors"][0]["code"] == "already_pending"
        state = client.get(f"/api/v1/order/{made['id']}/_approvals").json()
        assert state["may_recall"] is True and state["requests"][0]["tasks"][0]["username"] == "li"
        bad = client.post(f"/api/v1/_approvals/{submitted.json()['id']}/bless")
        assert bad.status_code == 422
        assert client.post(f"/api/v1/_approvals/{submitted.json()['id']}/recall", content=b"[").status_code in (400, 422)
        recalled = client.post(f"/api/v1/_approvals/{submitted.json()['id']}/recall", json={"comment": "改价"})
        assert recalled.status_code == 200 and recalled.json()["status"] == "recalled"
        assert client.get("/api/v1/_approvals", params={"box": "submitted"}).status_code == 200
        assert client.get("/api/v1/_approvals", params={"box": "nothing"}).status_code == 422
    finally:
        runtime.engine.dispose()


def test_the_bundle_checks_approvals():
    obj = ObjectDef.model_validate({"name": "deal", "fields": [
        {"name": "amount", "type": "currency"},
        {"name": "status", "type": "picklist", "options": [{"value": "open"}, {"value": "ok"}]}]})
    process = ApprovalProcess.model_validate({
        "name": "big", "object": "deal", "entry": "amout > 1", "locked_fields": ["amount", "colour"],
        "steps": [{"name": "a", "approvers": {}, "when": "amount >"},
                  {"name": "a", "approvers": {"roles": ["boss"]}, "escalate": True}],
        "on_approve": {"status": "done"}, "on_reject": {"nothing": 1}})
    problems = check_bundle(Bundle(manifest=BundleManifest(format="loom/1", name="b", version="1.0.0"), objects=[obj],
                                   approvals=[process]))
    assert {(p.path, p.code) for p in problems if p.file.startswith("approvals/")} == {
        ("entry", "unknown_name"), ("locked_fields[1]", "unknown_field"), ("steps[0].approvers", "bad_approval"),
        ("steps[0].when", "syntax"), ("steps[1].name", "duplicate_name"), ("steps[1].approvers.roles[0]", "unknown_role"),
        ("steps[1].escalate", "bad_approval"), ("on_approve.status", "bad_approval"), ("on_reject.nothing", "unknown_field")}


def test_the_next_approvers_are_emailed_in_their_language_once(crm, smtp):
    """Through the mail outbox and a real SMTP server (aiosmtpd): written
    with the submit, sent by the pump's step, a 4xx retried later."""
    from types import SimpleNamespace

    from loomcrm.workflows import mailer

    runtime, engine = crm, crm.engine
    roles = sorted(runtime.roles()[1])
    wang = directory.create_user(engine, "wang", "sales_rep", "a long password", roles=roles)
    directory.create_user(engine, "li", "sales_manager", "a long password", roles=roles, email="li@example.cn",
                          locale="zh-CN")
    directory.create_user(engine, "chen", "sales_manager", "a long password", roles=roles, email="chen@example.com")
    directory.create_user(engine, "ma", "sales_manager", "a long password", roles=roles)   # no address
    account = runtime.records.create("account", {"name": "常州精工", "lifecycle": "customer", "owner": wang.id}, ADMIN)
    made = order(runtime, {"wang": wang}, account["id"])
    settings = SimpleNamespace(smtp_url=smtp.url, mail_from="Loom <crm@example.com>")
    now = approvals.utcnow()
    assert mailer.deliver(engine, settings, now) == 0                      # nothing written yet
    approvals.submit(runtime, wang, "order", made["id"])
    assert mailer.deliver(engine, SimpleNamespace(smtp_url="", mail_from=""), now + timedelta(seconds=1)) == 0
    smtp.refuse = 1
    assert mailer.deliver(engine, settings, now + timedelta(seconds=1)) == 1   # the other refused with a 451
    assert mailer.deliver(engine, settings, now + timedelta(seconds=2)) == 0   # ... and waits
    assert mailer.deliver(engine, settings, now + timedelta(minutes=5)) == 1
    assert len(smtp.messages) == 3
    by_address = {m["To"]: m for m in smtp.messages}
    assert set(by_address) == {"li@example.cn", "chen@example.com"}
    assert "等待你审批" in by_address["li@example.cn"]["Subject"]
    assert by_address["chen@example.com"]["Subject"].endswith("waits for your approval (Order approval).")
    assert f"/app/order/{made['id']}" in by_address["chen@example.com"].get_content()
    assert mailer.deliver(engine, settings, now + timedelta(hours=1)) == 0   # each once
