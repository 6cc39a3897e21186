"""Rollups, lookup formulas and conditional fields on a small bundle of
their own, on SQLite and PostgreSQL: every aggregate, filters in SQL and
in Python, two-hop formulas, chains, concurrent child writes, drift, and
the edges of rollups kept by deltas (children leaving a filter, moving
parent and amount at once, blanks, deletes and restores)."""

from __future__ import annotations

import contextlib
import json
import random
import threading
from datetime import datetime, timezone
from decimal import Decimal

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from loomcrm.runtime.install import bundle_from_json, install_bundle
from loomcrm.runtime.rollup_triggers import existing, maintained
from loomcrm.runtime.rollups import check_drift, dependents, live_dependents, recompute

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
            {"name": "priced", "type": "rollup", "from": "purchase", "via": "customer", "function": "count", "field": "amount"},
            {"name": "taxed", "type": "rollup", "from": "purchase", "via": "customer", "function": "sum", "field": "amount",
             "filter": "coalesce(customer.region.tax_rate, 0) > 0"},
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


def test_a_filter_over_a_lookup_path_follows_the_looked_up_records(shop):
    client, runtime = shop
    free = post(client, "region", {"name": "Free port", "tax_rate": 0})
    taxed = post(client, "region", {"name": "Inland", "tax_rate": 8})
    c = post(client, "customer", {"name": "Acme", "region": free["id"]})
    other = post(client, "customer", {"name": "Other", "region": free["id"]})
    for amount in (100, 50):
        post(client, "purchase", {"customer": c["id"], "amount": amount})
    post(client, "purchase", {"customer": other["id"], "amount": 7})
    assert get(client, "customer", c["id"])["taxed"] == 0
    # the record two hops away changes: every customer of the region follows
    patch(client, "region", free["id"], {"tax_rate": 5})
    assert get(client, "customer", c["id"])["taxed"] == 150 and get(client, "customer", other["id"])["taxed"] == 7
    patch(client, "region", free["id"], {"tax_rate": 0})
    assert get(client, "customer", c["id"])["taxed"] == 0
    # the first hop changes: the customer moves to a taxed region
    patch(client, "customer", c["id"], {"region": taxed["id"]})
    assert get(client, "customer", c["id"])["taxed"] == 150
    patch(client, "region", taxed["id"], {"name": "Inland (renamed)"})   # a field the filter does not read
    assert get(client, "customer", c["id"])["taxed"] == 150
    with runtime.engine.connect() as conn:
        assert check_drift(conn, runtime.schema()) == []


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


def no_drift(runtime):
    with runtime.engine.connect() as conn:
        return [d.as_json() for d in check_drift(conn, runtime.schema())]


def test_a_child_leaving_and_entering_the_filter_moves_the_sum_and_the_count(shop):
    client, runtime = shop
    c = post(client, "customer", {"name": "Acme"})
    p = post(client, "purchase", {"code": "R1", "customer": c["id"], "amount": 120})
    post(client, "purchase", {"code": "R2", "customer": c["id"], "amount": 30})
    patch(client, "purchase", p["id"], {"status": "cancelled"})
    patch(client, "purchase", p["id"], {"code": "X1"})              # the Python filter of rush_count
    c = get(client, "customer", c["id"])
    assert (c["total"], c["rush_count"], c["purchases"]) == (30, 1, 2)
    patch(client, "purchase", p["id"], {"status": "open", "code": "R1"})
    c = get(client, "customer", c["id"])
    assert (c["total"], c["rush_count"], c["vip"]) == (150, 2, False)
    assert no_drift(runtime) == []


def test_moving_to_another_parent_and_changing_the_amount_in_one_save(shop):
    client, runtime = shop
    a = post(client, "customer", {"name": "A"})
    b = post(client, "customer", {"name": "B"})
    p = post(client, "purchase", {"code": "R1", "customer": a["id"], "amount": 700})
    patch(client, "purchase", p["id"], {"customer": b["id"], "amount": 1100, "code": "A1", "note": "moved"})
    a, b = get(client, "customer", a["id"]), get(client, "customer", b["id"])
    assert (a["total"], a["purchases"], a["priced"], a["rush_count"], a["biggest"]) == (0, 0, 0, 0, None)
    assert (b["total"], b["purchases"], b["priced"], b["rush_count"], b["vip"]) == (1100, 1, 1, 0, True)
    patch(client, "purchase", p["id"], {"customer": None})          # no parent at all
    assert get(client, "customer", b["id"])["total"] == 0
    assert no_drift(runtime) == []


def test_blank_amounts_add_nothing_to_a_sum_and_are_not_counted(shop):
    client, runtime = shop
    c = post(client, "customer", {"name": "Acme"})
    p = post(client, "purchase", {"customer": c["id"]})
    c2 = get(client, "customer", c["id"])
    assert (c2["total"], c2["purchases"], c2["priced"], c2["average"]) == (0, 1, 0, None)
    patch(client, "purchase", p["id"], {"amount": 80, "note": "priced"})
    assert (get(client, "customer", c["id"])["total"], get(client, "customer", c["id"])["priced"]) == (80, 1)
    patch(client, "purchase", p["id"], {"amount": None, "note": "unpriced"})
    c2 = get(client, "customer", c["id"])
    assert (c2["total"], c2["priced"], c2["purchases"]) == (0, 0, 1)
    assert no_drift(runtime) == []


def test_cents_add_up_exactly_on_large_sums(shop):
    # SQLite stores decimals as binary floating point: 200 additions of 0.07
    # to 123456789.05 would be off in the 6th decimal without rounding.
    client, runtime = shop
    region = post(client, "region", {"name": "R"})
    c = post(client, "customer", {"name": "Acme", "region": region["id"]})
    user = USERS["Bearer user"]
    runtime.records.create("purchase", {"customer": c["id"], "amount": "123456789.05"}, user)
    for _ in range(200):
        runtime.records.create("purchase", {"customer": c["id"], "amount": "0.07"}, user)
    assert get(client, "customer", c["id"])["total"] == Decimal("123456803.05")
    assert get(client, "region", region["id"])["revenue"] == Decimal("123456803.05")
    assert no_drift(runtime) == []


def test_a_value_never_computed_is_computed_from_the_children(shop):
    client, runtime = shop
    c = post(client, "customer", {"name": "Acme"})
    post(client, "purchase", {"customer": c["id"], "amount": 40})
    table = runtime.schema().table("customer")
    with runtime.engine.begin() as conn:    # as a rollup field added after the children
        conn.execute(sa.update(table).where(table.c.id == c["id"]).values(total=None, purchases=None, rush_count=None))
    post(client, "purchase", {"code": "R9", "customer": c["id"], "amount": 2})
    c = get(client, "customer", c["id"])
    assert (c["total"], c["purchases"], c["rush_count"]) == (42, 2, 1)


def test_a_restored_parent_loses_the_children_that_left_it(shop):
    client, runtime = shop
    region = post(client, "region", {"name": "R"})
    c = post(client, "customer", {"name": "A", "region": region["id"]})
    post(client, "purchase", {"customer": c["id"], "amount": 70})
    assert get(client, "region", region["id"])["revenue"] == 70
    assert client.delete(f"/api/v1/region/{region['id']}").status_code == 204    # the customer's region is cleared
    assert get(client, "customer", c["id"])["region"] is None
    assert client.post(f"/api/v1/region/{region['id']}/restore").status_code == 200
    assert get(client, "region", region["id"])["revenue"] == 0
    assert no_drift(runtime) == []


def test_a_random_history_of_changes_leaves_no_drift(shop):
    client, runtime = shop
    rng = random.Random(7)
    regions = [post(client, "region", {"name": f"R{i}"})["id"] for i in range(2)]
    customers = [post(client, "customer", {"name": f"C{i}", "region": regions[i % 2]})["id"] for i in range(3)]
    purchases: list[str] = []
    deleted: list[tuple[str, str]] = []
    for step in range(60):
        move = rng.random()
        amount = rng.choice([None, "0.10", "19.99", "250", "1000.05"])
        if move < 0.35 or not purchases:
            body = {"code": rng.choice(["R", "A"]) + str(step), "customer": rng.choice(customers + [None]), "amount": amount}
            purchases.append(post(client, "purchase", body)["id"])
        elif move < 0.7:
            body = rng.choice([{"amount": amount, "note": "n"}, {"status": rng.choice(["open", "cancelled"])},
                               {"customer": rng.choice(customers)}, {"code": rng.choice(["R", "A"]) + str(step)}])
            r = client.patch(f"/api/v1/purchase/{rng.choice(purchases)}", json=body)
            assert r.status_code in (200, 422), r.text     # 422: a cancelled purchase's note is read only
        elif move < 0.8:
            rid = purchases.pop(rng.randrange(len(purchases)))
            assert client.delete(f"/api/v1/purchase/{rid}").status_code == 204
            deleted.append(("purchase", rid))
        elif move < 0.88:
            patch(client, "customer", rng.choice(customers), {"region": rng.choice(regions + [None])})
        elif move < 0.94 and deleted:
            kind, rid = deleted.pop(rng.randrange(len(deleted)))
            assert client.post(f"/api/v1/{kind}/{rid}/restore").status_code == 200
            (purchases if kind == "purchase" else customers).append(rid)
        elif len(customers) > 1:
            rid = customers.pop(rng.randrange(len(customers)))   # cascades to its purchases
            assert client.delete(f"/api/v1/customer/{rid}").status_code == 204
            deleted.append(("customer", rid))
            purchases = [p for p in purchases if get(client, "purchase", p).get("id") == p]
        assert no_drift(runtime) == [], step


def test_concurrent_moves_of_one_parent_in_place_lose_no_update(shop):
    client, _ = shop
    _, runtime = make_app(shop[1].engine, budget_ms=5000)
    region = post(client, "region", {"name": "Busy"})
    customers = [post(client, "customer", {"name": f"C{n}", "region": region["id"]})["id"] for n in range(4)]
    user = USERS["Bearer user"]
    failures = []

    def writer(n):
        try:
            for i in range(8):
                runtime.records.create("purchase", {"customer": customers[n], "amount": f"{n}.{i}5"}, user)
        except Exception as exc:  # reported below
            failures.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == [], [getattr(f, "errors", f) for f in failures]
    expected = sum(Decimal(f"{n}.{i}5") for n in range(4) for i in range(8))
    assert get(client, "region", region["id"])["revenue"] == expected
    assert no_drift(runtime) == []


def test_deleting_a_parent_that_children_forget_refreshes_their_formulas_and_rollups(shop):
    client, _ = shop
    north = post(client, "region", {"name": "North", "tax_rate": 10})
    c = post(client, "customer", {"name": "Acme", "region": north["id"]})
    p = post(client, "purchase", {"customer": c["id"], "amount": 200})
    assert (p["tax"], p["region_name"]) == (20, "North")
    assert client.delete(f"/api/v1/region/{north['id']}").status_code == 204     # customer.region: set_null
    c2, p2 = get(client, "customer", c["id"]), get(client, "purchase", p["id"])
    assert c2["region"] is None and c2["version"] == c["version"] + 1
    assert (p2["tax"], p2["region_name"], p2["version"]) == (0, None, p["version"])


# A child whose parent's rollups are all counts and sums that nothing reads:
# its saves take the short path of `propagate` (moves in place, no waves).
TEAMS = {
    "manifest": {"format": "loom/1", "name": "teams", "version": "1.0.0"},
    "objects": [
        {"name": "team", "fields": [
            {"name": "name", "type": "text", "required": True},
            {"name": "open_amount", "type": "rollup", "from": "deal", "via": "team", "function": "sum", "field": "amount",
             "filter": "status == 'open'"},
            {"name": "deals", "type": "rollup", "from": "deal", "via": "team", "function": "count"}]},
        {"name": "deal", "fields": [
            {"name": "team", "type": "lookup", "to": "team", "on_delete": "set_null"},
            {"name": "amount", "type": "currency"},
            {"name": "status", "type": "picklist", "options": [{"value": "open"}, {"value": "won"}], "default": "open"}]},
    ],
}


@contextlib.contextmanager
def installed(database_url, bundle):
    """(engine, runtime, API client) of a new database with `bundle`."""
    engine = engine_for(database_url)
    install_bundle(engine, bundle_from_json(json.loads(json.dumps(bundle))))
    app, runtime = make_app(engine)
    try:
        yield engine, runtime, TestClient(app, headers={"Authorization": "Bearer user"})
    finally:
        engine.dispose()


@pytest.mark.parametrize("kept_by", ["triggers", "record service"])
def test_rollups_nothing_reads_move_in_place_through_every_kind_of_change(database_url, kept_by):

    engine = engine_for(database_url)
    install_bundle(engine, bundle_from_json(json.loads(json.dumps(TEAMS))))
    if kept_by == "record service":   # a database published before Loom made triggers
        with engine.begin() as conn:
            # the triggers alone: a PostgreSQL function left without its trigger keeps nothing
            for name, table in existing(conn).items():
                if table is not None:
                    conn.exec_driver_sql(f"DROP TRIGGER {name}" + (f' ON "{table}"' if conn.dialect.name == "postgresql" else ""))
    app, runtime = make_app(engine)
    client = TestClient(app, headers={"Authorization": "Bearer user"})
    try:
        assert [s.field.name for s in dependents(runtime.schema()).in_place["deal"]] == ["open_amount", "deals"]
        with engine.connect() as conn:
            kept = maintained(conn, runtime.schema())
            left = live_dependents(conn, runtime.schema()).by_child.get("deal", [])
        if kept_by == "triggers":
            assert kept == {("team", "open_amount"), ("team", "deals")} and left == []
        else:
            assert kept == set() and [s.field.name for s in left] == ["open_amount", "deals"]
        a, b = post(client, "team", {"name": "A"}), post(client, "team", {"name": "B"})

        def totals(team):
            t = get(client, "team", team["id"])
            return t["open_amount"], t["deals"]

        first = post(client, "deal", {"team": a["id"], "amount": 100})
        second = post(client, "deal", {"team": a["id"], "amount": 50})
        post(client, "deal", {"team": a["id"], "amount": 30, "status": "won"})
        assert totals(a) == (150, 3)
        patch(client, "deal", first["id"], {"amount": 120})
        assert totals(a) == (170, 3)
        patch(client, "deal", second["id"], {"team": b["id"], "amount": 55})     # moves and changes at once
        assert (totals(a), totals(b)) == ((120, 2), (55, 1))
        patch(client, "deal", first["id"], {"status": "won"})                   # leaves the filter
        assert totals(a) == (0, 2)
        assert client.delete(f"/api/v1/deal/{second['id']}").status_code == 204
        assert totals(b) == (0, 0)
        assert client.post(f"/api/v1/deal/{second['id']}/restore").status_code == 200
        assert totals(b) == (55, 1)
        table = runtime.schema().table("team")
        with engine.begin() as conn:    # as rollup fields added after the children
            conn.execute(sa.update(table).where(table.c.id == b["id"]).values(open_amount=None, deals=None))
        post(client, "deal", {"team": b["id"], "amount": 5})
        assert totals(b) == (60, 2)
        assert no_drift(runtime) == []
    finally:
        engine.dispose()


def test_triggers_keep_rollups_for_writes_made_around_loom_and_follow_a_changed_filter(database_url):
    teams = json.loads(json.dumps(TEAMS))
    # quotes and a percent sign written into the trigger's SQL; a parent
    # field named like what a trigger might hold in a variable
    teams["objects"][1]["fields"].append({"name": "note", "type": "text"})
    teams["objects"][0]["fields"] += [
        {"name": "odd", "type": "rollup", "from": "deal", "via": "team", "function": "count",
         "filter": "note == \"50% o'clock\" or contains(coalesce(note, ''), '%_')"},
        {"name": "amount", "type": "currency"}, {"name": "pid", "type": "text"},
        # names PL/pgSQL gives its own variables in a trigger
        {"name": "found", "type": "rollup", "from": "deal", "via": "team", "function": "count"},
        {"name": "tg_op", "type": "rollup", "from": "deal", "via": "team", "function": "sum", "field": "amount"}]
    with installed(database_url, teams) as (engine, runtime, client):
        with engine.connect() as conn:
            assert ("team", "odd") in maintained(conn, runtime.schema())
        a = post(client, "team", {"name": "A", "amount": 1, "pid": "x"})
        post(client, "deal", {"team": a["id"], "amount": 100, "note": "50% o'clock"})
        won = post(client, "deal", {"team": a["id"], "amount": 40, "status": "won", "note": "5%_off"})
        deals = runtime.schema().table("deal")
        with engine.begin() as conn:   # SQL by hand, around the record service
            now = datetime.now(timezone.utc)
            conn.execute(sa.insert(deals).values(id="byhand", team=a["id"], amount=Decimal("7.25"), status="open", version=1,
                                                 created_at=now, updated_at=now))
            conn.execute(sa.update(deals).where(deals.c.id == won["id"]).values(status="open"))
        t = get(client, "team", a["id"])
        assert (t["open_amount"], t["deals"], t["odd"], t["found"], t["tg_op"]) == (Decimal("147.25"), 3, 2, 3, Decimal("147.25"))
        with engine.begin() as conn:
            conn.execute(sa.delete(deals).where(deals.c.id == "byhand"))
        assert get(client, "team", a["id"])["deals"] == 2

        # A new version whose filter differs: its trigger replaces the old
        # one, nothing is counted twice
        bundle = json.loads(json.dumps(teams))
        bundle["manifest"]["version"] = "1.1.0"
        bundle["objects"][0]["fields"][1]["filter"] = "status == 'won'"
        install_bundle(engine, bundle_from_json(bundle))
        app2, runtime2 = make_app(engine)
        client2 = TestClient(app2, headers={"Authorization": "Bearer user"})
        with engine.begin() as conn:   # a changed filter leaves stored values to a recompute
            recompute(conn, runtime2.schema())
        post(client2, "deal", {"team": a["id"], "amount": 60, "status": "won"})
        t = get(client2, "team", a["id"])
        assert (t["open_amount"], t["deals"]) == (60, 3)
        assert no_drift(runtime2) == []


def test_a_parent_never_computed_loses_no_child_written_concurrently(database_url):
    """Two writers add children to a parent whose rollups were never
    computed: the second waits for the first and adds to what it stored."""
    with installed(database_url, TEAMS) as (engine, runtime, client):
        a = post(client, "team", {"name": "A"})
        teams, deals = runtime.schema().table("team"), runtime.schema().table("deal")
        with engine.begin() as conn:
            conn.execute(sa.update(teams).where(teams.c.id == a["id"]).values(open_amount=None, deals=None))

        def deal(conn, rid):
            now = datetime.now(timezone.utc)
            conn.execute(sa.insert(deals).values(id=rid, team=a["id"], amount=Decimal("5"), status="open", version=1,
                                                 created_at=now, updated_at=now))

        failures = []

        def second():
            try:
                with engine.begin() as conn:
                    deal(conn, "second")
            except Exception as exc:  # reported below
                failures.append(exc)

        with engine.connect() as first:
            with first.begin():
                deal(first, "first")
                waiting = threading.Thread(target=second)
                waiting.start()
                waiting.join(0.5)   # it waits for the first writer's lock
        waiting.join()
        assert failures == []
        t = get(client, "team", a["id"])
        assert (t["open_amount"], t["deals"]) == (10, 2)
        assert no_drift(runtime) == []


def test_a_lone_filtered_sum_kept_by_a_trigger_follows_every_kind_of_change(database_url):
    bundle = json.loads(json.dumps(TEAMS))
    bundle["objects"][0]["fields"] = [f for f in bundle["objects"][0]["fields"] if f["name"] != "deals"]
    with installed(database_url, bundle) as (engine, runtime, client):
        with engine.connect() as conn:
            assert maintained(conn, runtime.schema()) == {("team", "open_amount")}
        a, b = post(client, "team", {"name": "A"}), post(client, "team", {"name": "B"})
        first = post(client, "deal", {"team": a["id"], "amount": 100})
        post(client, "deal", {"team": a["id"], "amount": 30, "status": "won"})
        patch(client, "deal", first["id"], {"team": b["id"], "amount": 70})
        assert (get(client, "team", a["id"])["open_amount"], get(client, "team", b["id"])["open_amount"]) == (0, 70)
        patch(client, "deal", first["id"], {"status": "won"})
        assert get(client, "team", b["id"])["open_amount"] == 0
        patch(client, "deal", first["id"], {"status": "open"})
        assert client.delete(f"/api/v1/deal/{first['id']}").status_code == 204
        assert get(client, "team", b["id"])["open_amount"] == 0
        assert client.post(f"/api/v1/deal/{first['id']}/restore").status_code == 200
        assert get(client, "team", b["id"])["open_amount"] == 70
        assert no_drift(runtime) == []


def test_a_save_the_database_aborts_to_break_a_deadlock_runs_again(database_url):
    """A re-parented child moves its old and new parent (a trigger, in id
    order) while another transaction holds the new parent and then asks for
    the old one: PostgreSQL aborts the save to break the deadlock (the other
    side waits longer before it looks), and the record service runs it again."""
    with installed(database_url, TEAMS) as (engine, runtime, client):
        first, second = sorted((post(client, "team", {"name": "A"})["id"], post(client, "team", {"name": "B"})["id"]))
        deal = post(client, "deal", {"team": first, "amount": 10})
        teams = runtime.schema().table("team")
        outcome = []

        def move():
            try:
                outcome.append(runtime.records.update("deal", deal["id"], {"team": second}, USERS["Bearer user"]))
            except Exception as exc:  # reported below
                outcome.append(exc)

        with engine.connect() as other:
            if other.dialect.name == "postgresql":
                other.exec_driver_sql("SET deadlock_timeout = '10s'")
                other.commit()
            with other.begin():
                other.execute(sa.update(teams).where(teams.c.id == second).values(name="B2"))
                saving = threading.Thread(target=move)
                saving.start()
                saving.join(0.5)   # the save holds the old parent and waits for the new one
                other.execute(sa.update(teams).where(teams.c.id == first).values(name="A2"))
        saving.join()
        assert not isinstance(outcome[0], Exception), outcome[0]
        assert (get(client, "team", first)["open_amount"], get(client, "team", second)["open_amount"]) == (0, 10)
        assert no_drift(runtime) == []
