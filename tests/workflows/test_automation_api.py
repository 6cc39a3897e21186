"""The automation endpoints (run log, replay, notifications, workflows in
the draft), the admin users endpoint, and the CLI around them."""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest
from fastapi.testclient import TestClient

from loomcrm.platform import auth
from loomcrm.platform.app import create_app, ensure_secret_key

from flows import world_for
from support import LOOM

FAILING = {"name": "bad_task", "object": "deal", "trigger": {"on": "create"},
           "actions": [{"type": "create", "object": "task", "values": {"subject": "concat('secret ', name)"}}]}
TELL = {"name": "tell", "object": "deal", "trigger": {"on": "create"},
        "actions": [{"type": "notify", "to": "concat(owner, ',', 'bob')", "message": {"en": "New: {{ record.name }}", "zh-CN": "新：{{ record.name }}"}}]}


@pytest.fixture
def api(sqlite_url):
    world = world_for(sqlite_url)
    app = create_app(world.automation.settings, world.engine)
    secret = ensure_secret_key(world.engine, "")
    clients = {}
    with TestClient(app) as client:
        for name in ("alice", "bob"):
            token = auth.create_token(world.engine, secret, name)
            clients[name] = {"Authorization": f"Bearer {token}"}
        client.world = world
        client.as_ = clients
        yield client
    world.engine.dispose()


def test_the_run_log_is_for_admins_pages_and_filters(api):
    world, alice = api.world, api.world.users["alice"]
    world.workflows(FAILING, TELL)
    for i in range(3):
        world.records.create("deal", {"name": f"N{i}"}, alice)
    world.drain()
    assert api.get("/api/v1/_automation/runs", headers=api.as_["bob"]).status_code == 403
    page = api.get("/api/v1/_automation/runs", params={"limit": 4}, headers=api.as_["alice"]).json()
    assert len(page["data"]) == 4 and page["next_cursor"]
    rest = api.get("/api/v1/_automation/runs", params={"limit": 4, "cursor": page["next_cursor"]}, headers=api.as_["alice"]).json()
    assert len(rest["data"]) == 2 and rest["next_cursor"] is None
    ids = [r["id"] for r in page["data"] + rest["data"]]
    assert len(set(ids)) == 6
    first = page["data"][0]
    assert set(first) >= {"id", "workflow", "action", "object", "record", "event", "source", "status", "attempts", "error",
                          "created_at", "finished_at"}
    dead = api.get("/api/v1/_automation/runs", params={"status": "dead"}, headers=api.as_["alice"]).json()["data"]
    assert len(dead) == 3 and all(r["workflow"] == "bad_task" and "No secrets" in r["error"] for r in dead)
    assert api.get("/api/v1/_automation/runs", params={"status": "bogus"}, headers=api.as_["alice"]).status_code == 400
    assert api.get("/api/v1/_automation/runs", params={"cursor": "!!"}, headers=api.as_["alice"]).status_code == 400


def test_a_dead_run_is_replayed_and_others_are_not(api):
    world, alice = api.world, api.world.users["alice"]
    world.workflows(FAILING)
    world.records.create("deal", {"name": "Again"}, alice)
    world.drain()
    (run,) = api.get("/api/v1/_automation/runs", headers=api.as_["alice"]).json()["data"]
    # fix the cause: the workflow's task no longer says secret
    world.workflows({**FAILING, "actions": [{"type": "create", "object": "task", "values": {"subject": "concat('ok ', name)"}}]})
    replayed = api.post(f"/api/v1/_automation/runs/{run['id']}/replay", headers=api.as_["alice"])
    assert replayed.status_code == 202 and replayed.json()["status"] == "pending"
    assert api.post(f"/api/v1/_automation/runs/{run['id']}/replay", headers=api.as_["alice"]).status_code == 409
    assert api.post("/api/v1/_automation/runs/nope/replay", headers=api.as_["alice"]).status_code == 404
    assert api.post(f"/api/v1/_automation/runs/{run['id']}/replay", headers=api.as_["bob"]).status_code == 403
    world.clock.advance(seconds=5)
    world.drain()
    # replayed under the fixed definition: it goes through this time
    (again,) = api.get("/api/v1/_automation/runs", headers=api.as_["alice"]).json()["data"]
    assert again["status"] == "done" and again["attempts"] == 1
    assert again["result"]["created"]["object"] == "task"


def test_notifications_are_the_users_own_and_can_be_read(api):
    world, alice = api.world, api.world.users["alice"]
    world.workflows(TELL)
    world.records.create("deal", {"name": "Ping"}, alice)
    world.drain()
    mine = api.get("/api/v1/_me/notifications", params={"unread": "true"}, headers=api.as_["bob"]).json()["data"]
    assert [n["message"] for n in mine] == ["新：Ping"] and mine[0]["read_at"] is None and mine[0]["object"] == "deal"
    alices = api.get("/api/v1/_me/notifications", headers=api.as_["alice"]).json()["data"]
    assert [n["message"] for n in alices] == ["New: Ping"]
    assert api.post(f"/api/v1/_me/notifications/{alices[0]['id']}/read", headers=api.as_["bob"]).status_code == 404
    read = api.post(f"/api/v1/_me/notifications/{mine[0]['id']}/read", headers=api.as_["bob"]).json()
    assert read["read_at"] is not None
    assert api.get("/api/v1/_me/notifications", params={"unread": "true"}, headers=api.as_["bob"]).json()["data"] == []


def test_workflows_are_changed_in_the_draft_checked_and_published(api):
    admin = api.as_["alice"]
    bad = {"object": "deal", "trigger": {"on": "update", "fields": ["amout"]}, "condition": "amount > 'x'",
           "actions": [{"type": "notify", "to": "owner", "message": "hi"}]}
    answer = api.put("/api/v1/_meta/workflows/big", json=bad, headers=admin)
    assert answer.status_code == 422
    paths = {e["field"] for e in answer.json()["errors"]}
    assert {"trigger.fields[0]", "condition"} <= paths
    good = {**bad, "trigger": {"on": "update", "fields": ["amount"]}, "condition": "amount > 1000"}
    assert api.put("/api/v1/_meta/workflows/big", json=good, headers=api.as_["bob"]).status_code == 403
    put = api.put("/api/v1/_meta/workflows/big", json=good, headers=admin)
    assert put.status_code == 200 and "big" in put.json()["workflows"]
    assert api.get("/api/v1/_meta/workflows/big", headers=admin).status_code == 404   # not published yet
    assert api.post("/api/v1/_meta/publish", json={"comment": "a workflow"}, headers=admin).status_code == 200
    assert api.get("/api/v1/_meta/workflows/big", headers=admin).json()["condition"] == "amount > 1000"
    assert [w["name"] for w in api.get("/api/v1/_meta/workflows", headers=admin).json()["data"]] == ["big"]
    assert api.delete("/api/v1/_meta/workflows/big", headers=admin).status_code == 200
    assert api.post("/api/v1/_meta/publish", json={}, headers=admin).status_code == 200
    assert api.get("/api/v1/_meta/workflows", headers=admin).json()["data"] == []
    assert api.delete("/api/v1/_meta/workflows/big", headers=admin).status_code == 404


def test_admins_list_and_create_users(api):
    admin = api.as_["alice"]
    listed = api.get("/api/v1/_admin/users", headers=admin).json()["data"]
    assert {u["username"] for u in listed} == {"alice", "bob", "carol", "dave"}   # not automation's own user
    assert api.get("/api/v1/_admin/users", headers=api.as_["bob"]).status_code == 403
    made = api.post("/api/v1/_admin/users", headers=admin, json={"username": "erin", "password": "a long password", "role": "user",
                                                                 "email": "Erin@Example.com", "locale": "zh-CN"})
    assert made.status_code == 201 and made.json()["email"] == "Erin@example.com" and made.json()["locale"] == "zh-CN"
    again = api.post("/api/v1/_admin/users", headers=admin, json={"username": "erin", "password": "a long password", "role": "user"})
    assert again.status_code == 409
    bad = api.post("/api/v1/_admin/users", headers=admin, json={"username": "-x", "password": "short", "role": "boss",
                                                                "email": "nope", "extra": 1})
    assert bad.status_code == 422
    assert {e["field"] for e in bad.json()["errors"]} == {"username", "password", "role", "email", "extra"}


def test_the_cli_prints_the_run_log_replays_and_the_secret(sqlite_url):
    world = world_for(sqlite_url)
    world.workflows(FAILING)
    world.records.create("deal", {"name": "Cli"}, world.users["alice"])
    world.drain()
    env = {**os.environ, "LOOM_DATABASE_URL": sqlite_url}
    lines = subprocess.run([LOOM, "automation", "runs", "--json", "--status", "dead"], env=env, capture_output=True,
                           text=True, check=True).stdout.splitlines()
    (run,) = [json.loads(line) for line in lines]
    assert run["workflow"] == "bad_task" and run["status"] == "dead"
    text = subprocess.run([LOOM, "automation", "runs", "--workflow", "bad_task"], env=env, capture_output=True, text=True,
                          check=True).stdout
    assert run["id"] in text and "dead" in text and "No secrets" in text
    replay = subprocess.run([LOOM, "automation", "replay", run["id"]], env=env, capture_output=True, text=True)
    assert replay.returncode == 0 and "will run again" in replay.stdout
    again = subprocess.run([LOOM, "automation", "replay", run["id"]], env=env, capture_output=True, text=True)
    assert again.returncode == 1 and "pending: only dead runs" in again.stderr
    secret = subprocess.run([LOOM, "webhook", "secret"], env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert re.fullmatch(r"whsec_[A-Za-z0-9+/=]{32}", secret)
    worker = subprocess.run([LOOM, "worker"], env={**env, "LOOM_BROKER_URL": ""}, capture_output=True, text=True)
    assert worker.returncode == 1 and "LOOM_BROKER_URL" in worker.stderr
    world.engine.dispose()


def _signed_in(client, username):
    client.cookies.clear()
    page = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    home = client.post("/login", data={"username": username, "password": "a long password", "csrf_token": token, "next": "/"})
    assert home.status_code == 200
    return re.search(r"X-CSRF-Token&#34;: &#34;([^&]+)&#34;", home.text).group(1)


def test_the_run_log_page_replays_and_the_notifications_page_marks_read(api):
    world, alice = api.world, api.world.users["alice"]
    world.workflows(FAILING, TELL)
    deal = world.records.create("deal", {"name": "Paged"}, alice)
    world.drain()
    csrf = _signed_in(api, "alice")
    log = api.get("/app/_automation")
    assert log.status_code == 200 and "Automation run log" in log.text
    assert "No secrets in subjects" in log.text and "Replay" in log.text and "bad_task" in log.text
    dead = re.search(r'action="/app/_automation/([0-9a-f]{32})/replay"', log.text).group(1)
    assert api.get("/app/_automation", params={"status": "dead"}).text.count('data-run="') == 1
    zh = api.get("/app/_automation", headers={"Accept-Language": "zh-CN"})
    assert "自动化运行日志" in zh.text and "已放弃" in zh.text
    replayed = api.post(f"/app/_automation/{dead}/replay", data={"csrf_token": csrf}, follow_redirects=False)
    assert replayed.status_code == 303
    with world.engine.connect() as conn:
        from loomcrm.workflows import runs

        assert runs.status_of(conn, dead) == "pending"
    timeline_of_admin = api.get(f"/app/deal/{deal['id']}").text
    timeline = timeline_of_admin.split('id="timeline-h"')[1]
    assert "tell" in timeline and "sent a notification" in timeline
    # a rep sees no run log, and their own notifications
    csrf = _signed_in(api, "bob")
    assert api.get("/app/_automation").status_code == 403
    assert "Automation" not in api.get("/").text.split('aria-label="Main"')[1].split("</nav>")[0]
    assert 'class="badge" aria-hidden="true">1<' in api.get("/").text
    page = api.get("/app/_notifications")
    assert "新：Paged" in page.text or "New: Paged" in page.text
    api.post("/app/_notifications/read", data={"csrf_token": csrf})
    assert 'class="badge"' not in api.get("/").text
    assert "t-automation" not in api.get(f"/app/deal/{deal['id']}").text   # the run log is the admins'
    assert "t-automation" in timeline_of_admin
