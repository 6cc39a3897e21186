"""SLA clocks on a shifted clock: targets by priority and customer tier,
counted in an office calendar's working time (Shanghai, lunch off), paused
while waiting on the customer, warned, breached and escalated by the sweep."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
import sqlalchemy as sa

from loomcrm.metadata.validate import validate_bundle
from loomcrm.platform import directory, systemdb
from loomcrm.runtime import slas
from loomcrm.runtime.install import bundle_from_json, install_bundle
from loomcrm.runtime.records import Actor
from loomcrm.runtime.rules.hooks import Rules
from loomcrm.runtime.state import Runtime

from runtime_helpers import engine_for

UTC = timezone.utc
SLAS = [
    {"name": "first_response", "label": {"en": "First response", "zh-CN": "首次响应"}, "calendar": "office",
     "stop": "not is_blank(first_response_at)", "targets": [{"when": "priority == 'urgent'", "minutes": 30},
                                                            {"minutes": 120}],
     "due_field": "first_response_due", "breached_field": "first_response_breached", "escalate_to": "queue.manager"},
    {"name": "resolution", "label": {"en": "Resolution", "zh-CN": "解决"}, "calendar": "office",
     "start": "status != 'new'", "stop": "status in ('resolved', 'closed')", "pause": "status == 'waiting'",
     "targets": [{"when": "priority == 'urgent'", "minutes": 60}, {"when": "account.tier == 'gold'", "minutes": 240},
                 {"minutes": 480}],
     "warn_before": 60, "due_field": "resolution_due", "breached_field": "resolution_breached",
     "escalate_to": "queue.manager"},
]
BUNDLE = {
    "manifest": {"format": "loom/1", "name": "desk", "version": "1.0.0"},
    "calendars": [{"name": "office", "timezone": "Asia/Shanghai"}],
    "objects": [
        {"name": "customer", "title_field": "name", "fields": [
            {"name": "name", "type": "text"},
            {"name": "tier", "type": "picklist", "options": [{"value": "standard"}, {"value": "gold"}]}]},
        {"name": "queue", "title_field": "name", "fields": [
            {"name": "name", "type": "text"}, {"name": "manager", "type": "user"}]},
        {"name": "case", "title_field": "subject", "fields": [
            {"name": "subject", "type": "text"},
            {"name": "account", "type": "lookup", "to": "customer"},
            {"name": "queue", "type": "lookup", "to": "queue"},
            {"name": "priority", "type": "picklist", "options": [{"value": "normal"}, {"value": "urgent"}]},
            {"name": "status", "type": "picklist", "options": [{"value": "new"}, {"value": "open"}, {"value": "waiting"},
                                                               {"value": "resolved"}, {"value": "closed"}]},
            {"name": "first_response_at", "type": "datetime"},
            {"name": "first_response_due", "type": "datetime", "read_only": True},
            {"name": "first_response_breached", "type": "boolean", "read_only": True},
            {"name": "resolution_due", "type": "datetime", "read_only": True},
            {"name": "resolution_breached", "type": "boolean", "read_only": True}],
         "slas": SLAS},
    ],
}
ADMIN = Actor(None, "admin")


def at(day, hour, minute=0):
    return datetime(2026, 12, day, hour, minute, tzinfo=UTC)


@pytest.fixture
def desk(database_url):
    engine = engine_for(database_url)
    install_bundle(engine, bundle_from_json(BUNDLE))
    rules = Rules(clock=at(4, 9))
    runtime = Runtime(engine, refresh_interval=0, hooks=rules)
    agent = directory.create_user(engine, "agent", "user", "a long password")
    boss = directory.create_user(engine, "boss", "user", "a long password")
    with engine.begin() as conn:
        conn.execute(sa.update(systemdb.users).where(systemdb.users.c.id == boss.id)
                     .values(email="boss@example.com", locale="zh-CN"))
    gold = runtime.records.create("customer", {"name": "Acme", "tier": "gold"}, ADMIN)
    queue = runtime.records.create("queue", {"name": "Hardware", "manager": boss.id}, ADMIN)
    yield runtime, rules, agent, boss, gold, queue
    engine.dispose()


def _notes(runtime, user):
    with runtime.engine.connect() as conn:
        return [r.message for r in conn.execute(sa.select(systemdb.notifications.c.message)
                                                .where(systemdb.notifications.c.user_id == user.id)
                                                .order_by(systemdb.notifications.c.created_at))]


def _as_utc(value):
    return datetime.fromisoformat(value).astimezone(UTC) if value else None


def test_a_case_through_its_clocks(desk):
    runtime, rules, agent, boss, gold, queue = desk
    # Friday 4 December, 17:00 in Shanghai: one working hour is left that day
    case = runtime.records.create("case", {"subject": "Printer on fire", "account": gold["id"], "queue": queue["id"],
                                           "priority": "normal", "status": "new", "owner": agent.id}, ADMIN)
    # 2 working hours: 17:00-18:00 Friday, then 09:00-10:00 Monday (01:00 UTC)
    assert _as_utc(case["first_response_due"]) == at(7, 2)
    assert case["resolution_due"] is None        # it starts when the case is opened

    rules.clock = at(4, 9, 30)
    case = runtime.records.update("case", case["id"], {"status": "open"}, ADMIN)
    # gold: 4 working hours from 17:30 Friday: 0.5 h Friday, 09:00-12:00 Monday, 13:00-13:30 after lunch
    assert _as_utc(case["resolution_due"]) == at(7, 5, 30)

    # the weekend passes quietly; Monday 10:00 Shanghai the first response is late
    assert slas.sweep(runtime, now=at(7, 1, 59)) == {"warned": 0, "breached": 0}
    assert slas.sweep(runtime, now=at(7, 2)) == {"warned": 0, "breached": 1}
    assert runtime.records.get("case", case["id"], ADMIN)["first_response_breached"] is True
    assert any("First response was due at 2026-12-07 02:00 UTC" in n for n in _notes(runtime, agent))
    assert any("首次响应" in n and "已逾期" in n for n in _notes(runtime, boss))     # the queue's manager, in Chinese
    with runtime.engine.connect() as conn:
        mail = conn.execute(sa.select(systemdb.mail_outbox)).fetchall()
    assert [m.address for m in mail] == ["boss@example.com"] and f"/app/case/{case['id']}" in mail[0].body
    assert slas.sweep(runtime, now=at(7, 2, 1)) == {"warned": 0, "breached": 0}    # once

    rules.clock = at(7, 2, 10)
    case = runtime.records.update("case", case["id"], {"first_response_at": at(7, 2, 10).isoformat()}, ADMIN)
    assert case["first_response_breached"] is True        # answered late stays late

    # an hour of working time before the resolution is due (11:30, lunch not counted): a warning
    assert slas.sweep(runtime, now=at(7, 3, 29)) == {"warned": 0, "breached": 0}
    assert slas.sweep(runtime, now=at(7, 3, 30)) == {"warned": 1, "breached": 0}
    assert any("Resolution is due at 2026-12-07 05:30 UTC" in n for n in _notes(runtime, agent))
    # 11:40 Shanghai: waiting on the customer until 13:30 (50 minutes of working time: lunch does not count)
    rules.clock = at(7, 3, 40)
    case = runtime.records.update("case", case["id"], {"status": "waiting"}, ADMIN)
    assert case["resolution_due"] is None
    assert slas.sweep(runtime, now=at(7, 6)) == {"warned": 0, "breached": 0}
    rules.clock = at(7, 5, 30)
    case = runtime.records.update("case", case["id"], {"status": "open"}, ADMIN)
    assert _as_utc(case["resolution_due"]) == at(7, 6, 20)
    with runtime.engine.connect() as conn:
        clocks = {c["sla"]: c for c in slas.clocks_json(conn, runtime.schema(), runtime.schema().object("case"),
                                                        case["id"], now=at(7, 5, 30))}
    assert clocks["resolution"]["remaining_minutes"] == 50 and clocks["first_response"]["state"] == "stopped"

    # raised to urgent: an hour from the opening, long gone: breached at the next save
    rules.clock = at(7, 5, 40)
    case = runtime.records.update("case", case["id"], {"priority": "urgent"}, ADMIN)
    assert case["resolution_breached"] is True
    # the save found the breach; the sweep announces it, once
    assert slas.sweep(runtime, now=at(7, 5, 41)) == {"warned": 0, "breached": 1}
    assert any("Resolution was due at 2026-12-07 01:30 UTC" in n for n in _notes(runtime, agent))
    assert slas.sweep(runtime, now=at(7, 5, 42)) == {"warned": 0, "breached": 0}
    rules.clock = at(7, 6)
    case = runtime.records.update("case", case["id"], {"status": "resolved"}, ADMIN)
    # reopened: the clock runs on, the time it was resolved paused
    rules.clock = at(7, 7)
    case = runtime.records.update("case", case["id"], {"status": "open", "priority": "normal"}, ADMIN)
    with runtime.engine.connect() as conn:
        clocks = {c["sla"]: c for c in slas.clocks_json(conn, runtime.schema(), runtime.schema().object("case"),
                                                        case["id"], now=at(7, 7))}
    assert clocks["resolution"]["state"] == "breached" and clocks["resolution"]["stopped_at"] is None


def test_a_deleted_case_is_not_escalated_until_it_is_restored(desk):
    runtime, rules, agent, boss, gold, queue = desk
    case = runtime.records.create("case", {"subject": "Gone", "queue": queue["id"], "priority": "urgent",
                                           "status": "open", "owner": agent.id}, ADMIN)
    runtime.records.delete("case", case["id"], ADMIN)
    assert slas.sweep(runtime, now=at(10, 0)) == {"warned": 0, "breached": 0}
    assert _notes(runtime, boss) == []
    runtime.records.restore("case", case["id"], ADMIN)
    assert slas.sweep(runtime, now=at(10, 1)) == {"warned": 0, "breached": 2}
    assert len(_notes(runtime, boss)) == 1


def test_pack_validate_checks_slas(tmp_path):
    import json

    broken = json.loads(json.dumps(BUNDLE))
    case = broken["objects"][2]
    case["slas"][0]["calendar"] = "ofice"
    case["slas"][0]["stop"] = "is_blank(first_respons_at)"
    case["slas"][1]["due_field"] = "subject"
    case["slas"][1]["escalate_to"] = "queue.name"
    folder = tmp_path / "desk"
    (folder / "objects").mkdir(parents=True)
    (folder / "calendars").mkdir()
    (folder / "bundle.json").write_text(json.dumps(broken["manifest"]))
    (folder / "calendars" / "office.json").write_text(json.dumps(broken["calendars"][0]))
    for obj in broken["objects"]:
        (folder / "objects" / f"{obj['name']}.json").write_text(json.dumps(obj))
    problems = {(p.path, p.code) for p in validate_bundle(folder)}
    assert problems == {("slas[0].calendar", "unknown_calendar"), ("slas[0].stop", "unknown_name"),
                        ("slas[1].due_field", "wrong_field_type"), ("slas[1].escalate_to", "wrong_field_type")}


def test_many_breaches_at_once_reach_the_manager_in_one_message(desk):
    runtime, rules, agent, boss, gold, queue = desk
    cases = [runtime.records.create("case", {"subject": f"Outage {i}", "queue": queue["id"], "priority": "urgent",
                                             "status": "open", "owner": agent.id}, ADMIN) for i in range(3)]
    assert slas.sweep(runtime, now=at(8, 5)) == {"warned": 0, "breached": 6}   # both clocks of each
    told = _notes(runtime, boss)
    assert told == ["6 条记录已超时。"]
    assert len([n for n in _notes(runtime, agent) if "Outage" in n]) == 6      # the owner hears of each
    with runtime.engine.connect() as conn:
        [mail] = conn.execute(sa.select(systemdb.mail_outbox)).fetchall()
    assert mail.subject == "6 条记录已超时。" and all(f"/app/case/{c['id']}" in mail.body for c in cases)


def test_the_clocks_endpoint_and_the_history_of_a_breach(desk):
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from loomcrm.runtime.api.routes import build_api_router

    runtime, rules, agent, boss, gold, queue = desk
    case = runtime.records.create("case", {"subject": "Late", "queue": queue["id"], "priority": "urgent",
                                           "status": "open", "owner": agent.id}, ADMIN)
    app = FastAPI()
    app.include_router(build_api_router(runtime, user_dependency=lambda: ADMIN))
    client = TestClient(app)
    answer = client.get(f"/api/v1/case/{case['id']}/_slas").json()["data"]
    assert [(c["sla"], c["state"], c["target_minutes"]) for c in answer] == [("first_response", "running", 30),
                                                                              ("resolution", "running", 60)]
    assert client.get("/api/v1/case/nothing/_slas").status_code == 404
    slas.sweep(runtime, now=at(8, 5))
    assert [c["state"] for c in client.get(f"/api/v1/case/{case['id']}/_slas").json()["data"]] == ["breached"] * 2
