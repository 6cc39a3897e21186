"""Reports (SPEC §3.7) through `POST /api/v1/_reports/run`, on SQLite and
PostgreSQL: each measure and date bucket against a Python reference over
the same rows (exact decimals), bad definitions answered with their JSON
path, and a rep's report counting only what the rep may read."""

from __future__ import annotations

import json
import random
from collections import defaultdict
from datetime import date, timedelta
from decimal import Decimal

import pytest
from fastapi.testclient import TestClient

from loomcrm.metadata.model import Report
from loomcrm.platform import directory
from loomcrm.runtime.commands import pack_install
from loomcrm.runtime.install import bundle_from_json, install_bundle
from loomcrm.runtime.reports import run_report
from loomcrm.runtime.state import Runtime

from runtime_helpers import engine_for
from test_api import BUNDLE, make_app


@pytest.fixture
def deals(database_url):
    engine = engine_for(database_url)
    bundle = json.loads(json.dumps(BUNDLE))
    bundle["data"]["account"] = "id,name,industry\nacme,Acme,tech\nshop,Shop,retail\n"
    install_bundle(engine, bundle_from_json(bundle))
    app, _ = make_app(engine)
    client = TestClient(app, headers={"Authorization": "Bearer admin"})
    accounts = {a["name"]: a for a in client.get("/api/v1/account").json()["data"]}
    rng = random.Random(11)
    made = []
    for i in range(40):
        account = accounts["Acme" if i % 3 else "Shop"]
        row = {"name": f"Deal {i}", "amount": str(Decimal(rng.randint(100, 99999)) / 100),
               "stage": rng.choice(["open", "won", "lost"]), "account": account["id"],
               "close_date": (date(2026, 1, 1) + timedelta(days=rng.randint(0, 300))).isoformat()}
        assert client.post("/api/v1/deal", json=row).status_code == 201
        made.append(row | {"industry": account["industry"]})
    yield client, made
    engine.dispose()


def run(client, definition):
    return client.post("/api/v1/_reports/run", json=definition)


def test_measures_by_group_and_totals(deals):
    client, made = deals
    answer = run(client, {"object": "deal", "group_by": ["stage"], "measures": [
        {"name": "deals", "function": "count"}, {"name": "amount", "function": "sum", "field": "amount"},
        {"name": "biggest", "function": "max", "field": "amount"}, {"name": "smallest", "function": "min", "field": "amount"},
        {"name": "accounts", "function": "count_distinct", "field": "account"}]})
    assert answer.status_code == 200, answer.text
    body = answer.json(parse_float=Decimal)
    assert [c["name"] for c in body["columns"]] == ["stage", "deals", "amount", "biggest", "smallest", "accounts"]
    expected = defaultdict(list)
    for row in made:
        expected[row["stage"]].append(row)
    # a picklist groups in its options' order
    assert [r[0] for r in body["rows"]] == [s for s in ("open", "won", "lost") if s in expected]
    for stage, deals_, total, biggest, smallest, accounts in body["rows"]:
        amounts = [Decimal(r["amount"]) for r in expected[stage]]
        assert (deals_, Decimal(str(total)), Decimal(str(biggest)), Decimal(str(smallest))) == (
            len(amounts), sum(amounts), max(amounts), min(amounts))
        assert accounts == len({r["account"] for r in expected[stage]})
    assert body["totals"][:2] == [None, len(made)]          # aligned with the columns, groups empty
    assert Decimal(str(body["totals"][2])) == sum(Decimal(r["amount"]) for r in made)


def test_lookup_groups_month_buckets_filters_and_weights(deals):
    client, made = deals
    answer = run(client, {"object": "deal", "filter": "stage != 'lost'",
                          "group_by": ["account.industry", {"field": "close_date", "by": "month"}],
                          "measures": [{"name": "amount", "function": "sum", "field": "amount"},
                                       {"name": "weighted", "function": "sum", "field": "amount",
                                        "weight": "1 if stage == 'won' else 0.5"}]})
    assert answer.status_code == 200, answer.text
    expected = defaultdict(lambda: [Decimal(0), Decimal(0)])
    for row in made:
        if row["stage"] == "lost":
            continue
        key = (row["industry"], row["close_date"][:8] + "01")
        expected[key][0] += Decimal(row["amount"])
        expected[key][1] += Decimal(row["amount"]) * (1 if row["stage"] == "won" else Decimal("0.5"))
    got = {(r[0], str(r[1])[:10]): [Decimal(str(r[2])), Decimal(str(r[3]))] for r in answer.json()["rows"]}
    assert got == dict(expected)
    # a subtotal per industry, with nothing under the month
    per_industry = defaultdict(lambda: [Decimal(0), Decimal(0)])
    for (industry, _), (amount, weighted) in expected.items():
        per_industry[industry][0] += amount
        per_industry[industry][1] += weighted
    subtotals = answer.json()["subtotals"]
    assert all(r[1] is None for r in subtotals)
    assert {r[0]: [Decimal(str(r[2])), Decimal(str(r[3]))] for r in subtotals} == dict(per_industry)
    quarters = run(client, {"object": "deal", "group_by": [{"field": "close_date", "by": "quarter"}],
                            "measures": [{"name": "deals", "function": "count"}]}).json()
    by_quarter = defaultdict(int)
    for row in made:
        month = int(row["close_date"][5:7])
        by_quarter[f"{row['close_date'][:4]}-{(month - 1) // 3 * 3 + 1:02d}-01"] += 1
    assert {str(r[0])[:10]: r[1] for r in quarters["rows"]} == dict(by_quarter)


def test_bad_definitions_name_their_place(deals):
    client, _ = deals
    for definition, path, code in [
        ({"group_by": ["nope"], "measures": [{"name": "n", "function": "count"}]}, "group_by[0]", "unknown_field"),
        ({"measures": [{"name": "s", "function": "sum", "field": "name"}]}, "measures[0].field", "type"),
        ({"group_by": [{"field": "amount", "by": "month"}], "measures": [{"name": "n", "function": "count"}]},
         "group_by[0]", "type"),
        ({"filter": "stagee == 'won'", "measures": [{"name": "n", "function": "count"}]}, "filter", "unknown_name"),
        ({"measures": [{"name": "a", "function": "avg"}]}, "measures[0]", "required"),
    ]:
        answer = run(client, {"object": "deal", **definition})
        assert answer.status_code == 422, (definition, answer.text)
        error = answer.json()["errors"][0]
        assert (error["field"], error["code"]) == (path, code), answer.text
    assert run(client, {"object": "nope", "measures": [{"name": "n", "function": "count"}]}).status_code == 422
    assert run(client, {"object": "deal", "measures": []}).status_code == 422


def test_a_reps_report_counts_only_what_the_rep_may_read(tmp_path):
    url = f"sqlite:///{tmp_path / 'loom.db'}"
    pack_install(url, "crm")
    runtime = Runtime(engine_for(url), refresh_interval=0)
    engine = runtime.engine
    directory.create_department(engine, "east")
    roles = sorted(runtime.roles()[1])
    wang = directory.create_user(engine, "wang", "sales_rep", "wang password", roles=roles, department="east")
    zhao = directory.create_user(engine, "zhao", "sales_rep", "zhao password", roles=roles, department="east")
    for owner, count in ((wang, 3), (zhao, 5)):
        for i in range(count):
            runtime.records.create("lead", {"name": f"{owner.username} {i}", "source": "website", "status": "new",
                                            "email": f"{owner.username}{i}@example.com", "owner": owner.id}, None)
    report = Report.model_validate({"name": "mine", "object": "lead", "group_by": ["status"],
                                    "measures": [{"name": "leads", "function": "count"}]})
    schema = runtime.schema()
    with engine.connect() as conn:
        everyone = run_report(conn, schema, report, runtime.access.of(None))
        mine = run_report(conn, schema, report, runtime.access.of(wang))
    assert everyone["totals"][1] >= 8
    assert mine["totals"] == [None, 3] and mine["rows"] == [["new", 3]]
    engine.dispose()
