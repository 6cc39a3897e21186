"""Rollups, lookup formulas and conditional fields on a small bundle of
their own, on SQLite and PostgreSQL: every aggregate, filters in SQL and
in Python, two-hop formulas, chains, concurrent child writes, drift."""

from __future__ import annotations

import json
import threading
from decimal import Decimal

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from loomcrm.runtime.install import bundle_from_json, install_bundle
from loomcrm.runtime.rollups import check_drift, recompute

from rules_app import USERS, make_app
from runtime_helpers import engine_for

SHOP = {
    "manifest": {"format": "loom/1", "name": "shop", "version": "1.0.0"},
    "objects": [
        {"name": "region", "fields": [
            {"name": "name", "type": "text", "required": True},
            {"name": "tax_rate", "type": "percent"},
            {"name": "revenue", "type": "rollup", "from": "customer", "via": "region", "function": "sum", "field": "total"}]},
        {"name": "customer", "fields": [
            {"name": "name", "type": "text", "required": True},
            {"name": "region", "type": "lookup", "to": "region", "on_delete": "set_null"},
            {"name": "total", "type": "rollup", "from": "purchase", "via": "customer", "function": "sum", "field": "amount",
             "filter": "status != 'cancelled'"},
            {"name": "purchases", "type": "rollup", "from": "purchase", "via": "customer", "function": "count"},
            {"name": "biggest", "type": "rollup", "from": "purchase", "via": "customer", "function": "max", "field": "amount"},
            {"name": "smallest", "type": "rollup", "from": "purchase", "via": "customer", "function": "min", "field": "amount"},
            {"name": "average", "type": "rollup", "from": "purchase", "via": "customer", "function": "avg", "field": "amount"},
            {"name": "rush_count", "type": "rollup", "from": "purchase", "via": "customer", "function": "count",
             "filter": "matches(code, '^R')"},
            {"name": "vip", "type": "formula", "expression": "total >= 1000", "returns": "boolean"}]},
        {"name": "purchase", "fields": [
            {"name": "code", "type": "text"},
            {"name": "customer", "type": "lookup", "to": "customer", "on_delete": "cascade"},
            {"name": "amount", "type": "currency"},
            {"name": "status", "type": "picklist", "options": [{"value": "open"}, {"value": "cancelled"}], "default": "open"},
            {"name": "note", "type": "text", "read_only_if": "status == 'cancelled'"},
            {"name": "tax", "type": "formula", "expression": "round(coalesce(amount, 0) * coalesce(customer.region.tax_rate, 0) / 100, 2)",
             "returns": "currency", "scale": 2},
            {"name": "region_name", "type": "formula", "expression": "customer.region.name", "returns": "text"}],
         "validation_rules": [{"name": "note_on_change", "check": "not is_blank(note)", "when": "is_changed(amount)",
                               "message": "Say why the amount changed", "field": "note"}]},
    ],
}


@pytest.fixture
def shop(database_url):
    engine = engine_for(database_url)
    install_bundle(engine, bundle_from_json(json.loads(json.dumps(SHOP))))
    app, runtime = make_app(engine)
    client = TestClient(app, headers={"Authorization": "Bearer user"})
    yield client, runtime
    engine.dispose()


def post(client, obj, body, status=201):
    r = client.post(f"/api/v1/{obj}", json=body)
    assert r.status_code == status, r.text
    return json.loads(r.content, parse_float=Decimal)


def patch(client, obj, rid, body, status=200):
    r = client.patch(f"/api/v1/{obj}/{rid}", json=body)
    assert r.status_code == status, r.text
    return json.loads(r.content, parse_float=Decimal)


def get(client, obj, rid):
    return json.loads(client.get(f"/api/v1/{obj}/{rid}").content, parse_float=Decimal)


def test_every_aggregate_with_sql_and_python_filters(shop):
    client, _ = shop
    c = post(client, "customer", {"name": "Acme"})
    assert (c["total"], c["purchases"], c["biggest"], c["average"], c["vip"]) == (0, 0, None, None, False)
    for code, amount in (("R1", 100), ("A2", 250.5), ("R3", 800)):
        post(client, "purchase", {"code": code, "customer": c["id"], "amount": amount})
    c = get(client, "customer", c["id"])
    assert c["total"] == Decimal("1150.5") and c["purchases"] == 3 and c["vip"] is True
    assert c["biggest"] == 800 and c["smallest"] == 100 and c["average"] == Decimal("383.5") and c["rush_count"] == 2
    assert c["version"] == 1


def test_filtered_rollup_follows_status_and_the_formula_on_the_parent(shop):
    client, _ = shop
    c = post(client, "customer", {"name": "Acme"})
    p = post(client, "purchase", {"customer": c["id"], "amount": 1200})
    assert get(client, "customer", c["id"])["vip"] is True
    patch(client, "purchase", p["id"], {"status": "cancelled"})
    c = get(client, "customer", c["id"])
    assert c["total"] == 0 and c["vip"] is False and c["purchases"] == 1


def test_formula_over_two_lookups_updates_when_a_parent_changes(shop):
    client, _ = shop
    north = post(client, "region", {"name": "North", "tax_rate": 10})
    south = post(client, "region", {"name": "South", "tax_rate": 6})
    c = post(client, "customer", {"name": "Acme", "region": north["id"]})
    p = post(client, "purchase", {"customer": c["id"], "amount": 200})
    assert p["tax"] == 20 and p["region_name"] == "North"
    patch(client, "region", north["id"], {"tax_rate": 13, "name": "North-East"})
    p2 = get(client, "purchase", p["id"])
    assert p2["tax"] == 26 and p2["region_name"] == "North-East" and p2["version"] == p["version"]
    patch(client, "customer", c["id"], {"region": south["id"]})
    assert get(client, "purchase", p["id"])["tax"] == 12
    # the chain: region.revenue sums customer.total
    assert get(client, "region", south["id"])["revenue"] == 200 and get(client, "region", north["id"])["revenue"] == 0


def test_reparenting_moves_the_amount_and_cascade_restore_brings_it_back(shop):
    client, _ = shop
    a = post(client, "customer", {"name": "A"})
    b = post(client, "customer", {"name": "B"})
    p = post(client, "purchase", {"customer": a["id"], "amount": 70})
    post(client, "purchase", {"customer": a["id"], "amount": 30})
    patch(client, "purchase", p["id"], {"customer": b["id"]})
    assert (get(client, "customer", a["id"])["total"], get(client, "customer", b["id"])["total"]) == (30, 70)
    region = post(client, "region", {"name": "R"})
    patch(client, "customer", b["id"], {"region": region["id"]})
    assert get(client, "region", region["id"])["revenue"] == 70
    assert client.delete(f"/api/v1/customer/{b['id']}").status_code == 204        # cascades to the purchase
    assert get(client, "region", region["id"])["revenue"] == 0
    assert client.post(f"/api/v1/customer/{b['id']}/restore").status_code == 200
    assert get(client, "customer", b["id"])["total"] == 70 and get(client, "region", region["id"])["revenue"] == 70


def test_read_only_if_and_is_changed_rules(shop):
    client, _ = shop
    c = post(client, "customer", {"name": "A"})
    p = post(client, "purchase", {"customer": c["id"], "amount": 10})
    problem = patch(client, "purchase", p["id"], {"amount": 12}, status=422)
    assert [(e["field"], e["code"], e["rule"]) for e in problem["errors"]] == [("note", "rule", "note_on_change")]
    patch(client, "purchase", p["id"], {"code": "X"})                       # amount untouched: quiet
    patch(client, "purchase", p["id"], {"status": "cancelled", "note": "customer withdrew"})
    problem = patch(client, "purchase", p["id"], {"note": "changed my mind"}, status=422)
    assert problem["errors"][0]["code"] == "read_only" and problem["errors"][0]["rule"] == "read_only_if"


def test_concurrent_child_writes_lose_no_update(shop):
    client, _ = shop
    # six writers at once: the wall-clock budget of one expression is not
    # what this test is about, so it is generous here
    _, runtime = make_app(shop[1].engine, budget_ms=5000)
    c = post(client, "customer", {"name": "Busy"})
    user = USERS["Bearer user"]
    failures = []

    def writer(n):
        try:
            for i in range(8):
                runtime.records.create("purchase", {"customer": c["id"], "amount": n * 10 + i}, user)
        except Exception as exc:  # reported below
            failures.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == [], [getattr(f, "errors", f) for f in failures]
    expected = sum(n * 10 + i for n in range(6) for i in range(8))
    c = get(client, "customer", c["id"])
    assert c["total"] == expected and c["purchases"] == 48


def test_drift_is_reported_and_recompute_repairs_it(shop):
    client, runtime = shop
    c = post(client, "customer", {"name": "A"})
    post(client, "purchase", {"customer": c["id"], "amount": 40})
    schema = runtime.schema()
    table = schema.table("customer")
    with runtime.engine.begin() as conn:
        conn.execute(sa.update(table).where(table.c.id == c["id"]).values(total=Decimal("999"), purchases=7))
    with runtime.engine.connect() as conn:
        drift = {(d.object, d.field, d.id) for d in check_drift(conn, schema)}
    assert drift == {("customer", "total", c["id"]), ("customer", "purchases", c["id"])}
    with runtime.engine.begin() as conn:
        assert recompute(conn, schema) >= 1
    with runtime.engine.connect() as conn:
        assert check_drift(conn, schema) == []
    c = get(client, "customer", c["id"])
    assert c["total"] == 40 and c["vip"] is False
