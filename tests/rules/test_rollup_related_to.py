"""Rollups through a related-to field (`"object:id"`), on SQLite and
PostgreSQL: an activity counts for the record it is linked to and for no
other, moves with a re-link, leaves with a delete and comes back with a
restore; a formula reads the latest of two such rollups (the crm pack's
`last_activity_at`); drift stays empty; the bundle check names a
related-to field that cannot link to the rollup's object."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient

from loomcrm.metadata.checks import check_bundle
from loomcrm.runtime.install import bundle_from_json, install_bundle
from loomcrm.runtime.rollups import check_drift, recompute

from rules_app import make_app
from runtime_helpers import engine_for

LINKS = ["lead", "account"]
BOOK = {
    "manifest": {"format": "loom/1", "name": "book", "version": "1.0.0"},
    "objects": [
        *({"name": name, "fields": [
            {"name": "name", "type": "text", "required": True},
            {"name": "calls", "type": "rollup", "from": "call", "via": "related_to", "function": "count"},
            {"name": "minutes", "type": "rollup", "from": "call", "via": "related_to", "function": "sum",
             "field": "minutes", "filter": "minutes > 1"},
            {"name": "last_call", "type": "rollup", "from": "call", "via": "related_to", "function": "max", "field": "at"},
            {"name": "last_done", "type": "rollup", "from": "chore", "via": "about", "function": "max",
             "field": "updated_at", "filter": "done"},
            {"name": "last_touch", "type": "formula", "expression": "max(last_call, last_done)", "returns": "datetime"}]}
          for name in LINKS),
        {"name": "call", "fields": [
            {"name": "subject", "type": "text"},
            {"name": "related_to", "type": "related_to", "to": LINKS},
            {"name": "minutes", "type": "integer"},
            {"name": "at", "type": "datetime"}]},
        {"name": "chore", "fields": [
            {"name": "subject", "type": "text"},
            {"name": "about", "type": "related_to", "to": LINKS},
            {"name": "done", "type": "boolean"}]},
    ],
}


def _client(database_url):
    engine = engine_for(database_url)
    install_bundle(engine, bundle_from_json(json.loads(json.dumps(BOOK))))
    app, runtime = make_app(engine)
    return TestClient(app, headers={"Authorization": "Bearer user"}), runtime, engine


def _call(client, related, minutes, at="2026-11-02T09:00:00Z"):
    r = client.post("/api/v1/call", json={"subject": "c", "related_to": related, "minutes": minutes, "at": at})
    assert r.status_code == 201, r.text
    return r.json()


def _get(client, obj, rid):
    return client.get(f"/api/v1/{obj}/{rid}").json()


def test_rollups_follow_the_record_an_activity_is_linked_to(database_url):
    client, runtime, engine = _client(database_url)
    try:
        lead = client.post("/api/v1/lead", json={"name": "Wang"}).json()
        account = client.post("/api/v1/account", json={"name": "Acme"}).json()
        twin = client.post("/api/v1/account", json={"name": lead["id"]}).json()   # same id text, other object
        first = _call(client, {"object": "lead", "id": lead["id"]}, 5)
        _call(client, f"lead:{lead['id']}", 1, at="2026-11-03T10:00:00Z")
        got = _get(client, "lead", lead["id"])
        assert got["calls"] == 2 and float(got["minutes"]) == 5 and got["last_call"].startswith("2026-11-03T10:00")
        assert got["last_touch"] == got["last_call"]
        assert _get(client, "account", account["id"])["calls"] == 0 and _get(client, "account", twin["id"])["calls"] == 0

        # re-linked: it leaves the lead and counts for the account
        r = client.patch(f"/api/v1/call/{first['id']}", json={"related_to": {"object": "account", "id": account["id"]}})
        assert r.status_code == 200, r.text
        got, acc = _get(client, "lead", lead["id"]), _get(client, "account", account["id"])
        assert (got["calls"], float(got["minutes"])) == (1, 0) and (acc["calls"], float(acc["minutes"])) == (1, 5)
        assert acc["last_call"].startswith("2026-11-02T09:00")

        # a completed chore is a later touch than the last call
        chore = client.post("/api/v1/chore", json={"subject": "send quote", "about": f"account:{account['id']}"}).json()
        assert _get(client, "account", account["id"])["last_done"] is None
        client.patch(f"/api/v1/chore/{chore['id']}", json={"done": True})
        acc = _get(client, "account", account["id"])
        assert acc["last_done"] is not None and acc["last_touch"] == acc["last_done"] > acc["last_call"]

        assert client.delete(f"/api/v1/call/{first['id']}").status_code == 204
        acc = _get(client, "account", account["id"])
        assert (acc["calls"], acc["last_call"]) == (0, None) and acc["last_touch"] == acc["last_done"]
        assert client.post(f"/api/v1/call/{first['id']}/restore").status_code == 200
        assert _get(client, "account", account["id"])["calls"] == 1

        # unlinked: counts nowhere
        client.patch(f"/api/v1/call/{first['id']}", json={"related_to": None})
        assert _get(client, "account", account["id"])["calls"] == 0
        with engine.begin() as conn:
            assert check_drift(conn, runtime.schema()) == []
            conn.execute(runtime.schema().table("lead").update().values(calls=7))
            assert {d.id for d in check_drift(conn, runtime.schema())} == {lead["id"]}
            assert recompute(conn, runtime.schema(), "lead") == 1
            assert check_drift(conn, runtime.schema()) == []
    finally:
        engine.dispose()


def test_a_related_to_field_that_cannot_link_to_the_object_is_named():
    bundle = json.loads(json.dumps(BOOK))
    bundle["objects"][2]["fields"][1]["to"] = ["lead"]
    problems = check_bundle(bundle_from_json(bundle))
    assert [(p.file, p.path, p.code) for p in problems] == [
        ("objects/account.json", f"fields[{n}].via", "bad_rollup") for n in (1, 2, 3)]
    assert "call.related_to cannot link to 'account' (only lead)" in problems[0].message
