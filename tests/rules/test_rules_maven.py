"""The maven-crm data set (85 accounts, 7 products, 35 agents, 8,800
opportunities) loaded through the record service with rules on: each row
that breaks a rule is refused with its precise reasons, the rest is saved,
and the rollups equal the sums computed straight from the CSV files."""

from __future__ import annotations

import csv
import json
from collections import Counter, defaultdict
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa

from loomcrm.platform.db import write_transaction
from loomcrm.runtime.install import bundle_from_json, install_bundle
from loomcrm.runtime.records import Actor, RecordError
from loomcrm.runtime.rollups import check_drift
from loomcrm.runtime.rules.hooks import Rules
from loomcrm.runtime.state import Runtime

from runtime_helpers import engine_for

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "maven-crm"
PRICE_HEADROOM = Decimal("1.2")

MAVEN = {
    "manifest": {"format": "loom/1", "name": "maven", "version": "1.0.0"},
    "objects": [
        {"name": "account", "title_field": "name", "fields": [
            {"name": "name", "type": "text", "required": True, "unique": True},
            {"name": "sector", "type": "text"},
            {"name": "revenue", "type": "currency"},
            {"name": "employees", "type": "integer"},
            {"name": "office", "type": "text"},
            {"name": "parent", "type": "lookup", "to": "account", "on_delete": "set_null"},
            {"name": "won_value", "type": "rollup", "from": "deal", "via": "account", "function": "sum", "field": "close_value",
             "filter": "stage_category(stage) == 'won'"},
            {"name": "deals", "type": "rollup", "from": "deal", "via": "account", "function": "count"},
            {"name": "open_deals", "type": "rollup", "from": "deal", "via": "account", "function": "count",
             "filter": "stage_category(stage) == 'open'"},
            {"name": "biggest_win", "type": "rollup", "from": "deal", "via": "account", "function": "max", "field": "close_value",
             "filter": "stage == 'won'"}]},
        {"name": "product", "title_field": "name", "fields": [
            {"name": "name", "type": "text", "required": True, "unique": True},
            {"name": "series", "type": "text"},
            {"name": "sales_price", "type": "currency", "required": True},
            {"name": "units_won", "type": "rollup", "from": "deal", "via": "product", "function": "count", "filter": "stage == 'won'"}]},
        {"name": "agent", "title_field": "name", "fields": [
            {"name": "name", "type": "text", "required": True, "unique": True},
            {"name": "manager", "type": "text"},
            {"name": "office", "type": "text"},
            {"name": "won_value", "type": "rollup", "from": "deal", "via": "agent", "function": "sum", "field": "close_value",
             "filter": "stage == 'won'"}]},
        {"name": "deal", "fields": [
            {"name": "code", "type": "text", "required": True, "unique": True},
            {"name": "agent", "type": "lookup", "to": "agent", "required": True},
            {"name": "product", "type": "lookup", "to": "product", "required": True},
            {"name": "account", "type": "lookup", "to": "account", "required_if": "stage != 'prospecting'"},
            {"name": "stage", "type": "stage", "stages": [
                {"value": "prospecting", "probability": 10},
                {"value": "engaging", "probability": 40, "required_fields": ["engage_date"]},
                {"value": "won", "category": "won", "probability": 100, "entry_criteria": [
                    {"name": "won_has_value", "check": "close_value > 0", "field": "close_value",
                     "message": "A won deal needs its value"},
                    {"check": "not is_blank(close_date)", "field": "close_date"}]},
                {"value": "lost", "category": "lost", "probability": 0, "entry_criteria": [
                    {"name": "lost_has_date", "check": "not is_blank(close_date)", "field": "close_date"}]}]},
            {"name": "engage_date", "type": "date"},
            {"name": "close_date", "type": "date"},
            {"name": "close_value", "type": "currency", "min": 0},
            {"name": "expected", "type": "formula", "expression": "round(coalesce(close_value, 0) * stage_probability(stage) / 100, 2)",
             "returns": "currency", "scale": 2},
            {"name": "days_to_close", "type": "formula", "expression": "days_between(engage_date, close_date)", "returns": "integer"}],
         "validation_rules": [
             {"name": "closes_after_engaging", "check": "close_date >= engage_date",
              "when": "not is_blank(close_date) and not is_blank(engage_date)", "field": "close_date",
              "message": "A deal cannot close before it was engaged"},
             {"name": "won_within_price", "check": "close_value <= product.sales_price * 1.2", "when": "stage == 'won'",
              "field": "close_value", "message": "A won deal may exceed the list price by 20 % at most"}]},
    ],
}

STAGES = {"Prospecting": "prospecting", "Engaging": "engaging", "Won": "won", "Lost": "lost"}
ADMIN = Actor(id=None, role="admin")


def read(name):
    with open(DATA / name, newline="", encoding="utf-8-sig") as handle:
        return list(csv.DictReader(handle))


def product_key(name: str) -> str:
    return name.replace(" ", "").lower()   # the pipeline writes GTXPro for GTX Pro


def expected_rejections(deals, prices):
    """Each row's reasons, from the CSV alone."""
    out = {}
    for row in deals:
        reasons = set()
        stage = STAGES[row["deal_stage"]]
        if not row["account"] and stage != "prospecting":
            reasons.add(("account", "required", "required_if", None))
        if stage == "won" and Decimal(row["close_value"]) > prices[product_key(row["product"])] * PRICE_HEADROOM:
            reasons.add(("close_value", "rule", "won_within_price", None))
        if reasons:
            out[row["opportunity_id"]] = reasons
    return out


def save_all(runtime, object_name, rows, batch=500):
    """Rows through the record service, a transaction per batch and a
    savepoint per row; {key: record id} and {key: problems}."""
    saved, refused = {}, {}
    schema = runtime.schema()
    for start in range(0, len(rows), batch):
        with write_transaction(runtime.engine) as conn:
            for key, values in rows[start:start + batch]:
                savepoint = conn.begin_nested()
                try:
                    saved[key] = runtime.records.create(object_name, values, ADMIN, conn=conn, schema=schema)["id"]
                    savepoint.commit()
                except RecordError as exc:
                    savepoint.rollback()
                    refused[key] = exc.errors
    return saved, refused


@pytest.mark.slow
def test_maven_crm_loads_through_the_rules(database_url):
    engine = engine_for(database_url)
    install_bundle(engine, bundle_from_json(json.loads(json.dumps(MAVEN))))
    runtime = Runtime(engine, refresh_interval=0, hooks=Rules(budget_ms=1000))

    accounts = read("accounts.csv")
    ids, refused = save_all(runtime, "account", [(a["account"], {
        "name": a["account"], "sector": a["sector"], "revenue": a["revenue"], "employees": int(a["employees"]),
        "office": a["office_location"]}) for a in accounts])
    assert refused == {} and len(ids) == 85
    for a in accounts:
        if a["subsidiary_of"]:
            runtime.records.update("account", ids[a["account"]], {"parent": ids[a["subsidiary_of"]]}, ADMIN)
    products = read("products.csv")
    product_ids, refused = save_all(runtime, "product", [(product_key(p["product"]), {
        "name": p["product"], "series": p["series"], "sales_price": p["sales_price"]}) for p in products])
    assert refused == {}
    agents, refused = save_all(runtime, "agent", [(t["sales_agent"], {
        "name": t["sales_agent"], "manager": t["manager"], "office": t["regional_office"]}) for t in read("sales_teams.csv")])
    assert refused == {}

    deals = read("sales_pipeline.csv")
    rows = []
    for d in deals:
        values = {"code": d["opportunity_id"], "agent": agents[d["sales_agent"]], "product": product_ids[product_key(d["product"])],
                  "stage": STAGES[d["deal_stage"]], "account": ids.get(d["account"]) if d["account"] else None}
        for column in ("engage_date", "close_date", "close_value"):
            if d[column]:
                values[column] = d[column]
        rows.append((d["opportunity_id"], values))
    saved, refused = save_all(runtime, "deal", rows)

    prices = {product_key(p["product"]): Decimal(p["sales_price"]) for p in products}
    expected = expected_rejections(deals, prices)
    got = {key: {(e.get("field"), e["code"], e.get("rule"), e.get("stage")) for e in errors} for key, errors in refused.items()}
    assert got == expected
    assert Counter(r for reasons in got.values() for r in reasons) == {
        ("account", "required", "required_if", None): 1088, ("close_value", "rule", "won_within_price", None): 80}
    assert len(saved) == 8800 - len(expected)

    # rollups against sums straight from the CSV
    kept = [d for d in deals if d["opportunity_id"] not in expected]
    won, count, open_, biggest = defaultdict(Decimal), Counter(), Counter(), {}
    agent_won, units = defaultdict(Decimal), Counter()
    for d in kept:
        if d["deal_stage"] == "Won":
            agent_won[d["sales_agent"]] += Decimal(d["close_value"])
            units[product_key(d["product"])] += 1
        if not d["account"]:
            continue
        count[d["account"]] += 1
        if d["deal_stage"] == "Won":
            won[d["account"]] += Decimal(d["close_value"])
            biggest[d["account"]] = max(biggest.get(d["account"], Decimal(0)), Decimal(d["close_value"]))
        if d["deal_stage"] in ("Prospecting", "Engaging"):
            open_[d["account"]] += 1
    schema = runtime.schema()
    with engine.connect() as conn:
        table = schema.table("account")
        stored = {r.name: r for r in conn.execute(sa.select(table))}
        for a in accounts:
            row = stored[a["account"]]
            assert (row.won_value, row.deals, row.open_deals) == (won[a["account"]], count[a["account"]], open_[a["account"]]), a["account"]
            assert row.biggest_win == biggest.get(a["account"])
        agent_rows = {r.name: r.won_value for r in conn.execute(sa.select(schema.table("agent")))}
        assert agent_rows == {name: agent_won[name] for name in agents}
        product_rows = {product_key(r.name): r.units_won for r in conn.execute(sa.select(schema.table("product")))}
        assert product_rows == {key: units[key] for key in product_ids}
        assert sum(agent_rows.values()) == sum(Decimal(d["close_value"]) for d in kept if d["deal_stage"] == "Won")
        assert check_drift(conn, schema) == []
        deal = conn.execute(sa.select(schema.table("deal")).where(schema.table("deal").c.code == "1C1I7A6R")).one()
        assert deal.expected == Decimal("1054.00") and deal.days_to_close == (date(2017, 3, 1) - date(2016, 10, 20)).days
        check_reports(conn, schema, runtime, kept)
    engine.dispose()


def check_reports(conn, schema, runtime, kept):
    """Reports (SPEC 3.7) over the loaded deals against the same figures
    computed from the CSV rows: every measure, every date bucket, a lookup
    group and a weighted sum, exact to the cent."""
    from loomcrm.metadata.model import Report
    from loomcrm.runtime.reports import run_report

    access = runtime.access.of(None)
    managers = {t["sales_agent"]: t["manager"] for t in read("sales_teams.csv")}
    won = [d for d in kept if d["deal_stage"] == "Won"]
    report = Report.model_validate({
        "name": "wins", "object": "deal", "filter": "stage == 'won'",
        "group_by": ["agent.manager", {"field": "close_date", "by": "quarter"}],
        "measures": [{"name": "deals", "function": "count"},
                     {"name": "value", "function": "sum", "field": "close_value"},
                     {"name": "average", "function": "avg", "field": "close_value"},
                     {"name": "smallest", "function": "min", "field": "close_value"},
                     {"name": "largest", "function": "max", "field": "close_value"},
                     {"name": "accounts", "function": "count_distinct", "field": "account"}]})
    result = run_report(conn, schema, report, access)
    expected = defaultdict(list)
    for d in won:
        day = date.fromisoformat(d["close_date"])
        expected[(managers[d["sales_agent"]], date(day.year, (day.month - 1) // 3 * 3 + 1, 1).isoformat())].append(d)
    got = {(r[0], str(r[1])[:10]): r[2:] for r in result["rows"]}
    assert set(got) == set(expected)
    for key, deals in expected.items():
        values = [Decimal(d["close_value"]) for d in deals]
        deals_, value, average, smallest, largest, accounts = got[key]
        assert (deals_, Decimal(str(value)), Decimal(str(smallest)), Decimal(str(largest))) == \
            (len(deals), sum(values), min(values), max(values)), key
        assert round(Decimal(str(average)), 2) == round(sum(values) / len(values), 2), key
        assert accounts == len({d["account"] for d in deals}), key
    assert result["totals"][2] == len(won)
    assert Decimal(str(result["totals"][3])) == sum(Decimal(d["close_value"]) for d in won)
    for by, bucket in (("day", lambda d: d), ("week", lambda d: d - timedelta(days=d.weekday())),
                       ("month", lambda d: d.replace(day=1)), ("year", lambda d: date(d.year, 1, 1))):
        counted = run_report(conn, schema, Report.model_validate({
            "name": "by", "object": "deal", "filter": "not is_blank(close_date)",
            "group_by": [{"field": "close_date", "by": by}], "measures": [{"name": "n", "function": "count"}]}),
            access)
        reference = Counter(bucket(date.fromisoformat(d["close_date"])).isoformat() for d in kept if d["close_date"])
        assert {str(r[0])[:10]: r[1] for r in counted["rows"]} == dict(reference), by
    weighted = run_report(conn, schema, Report.model_validate({
        "name": "weighted", "object": "deal", "measures": [
            {"name": "expected", "function": "sum", "field": "close_value", "weight": "stage_probability(stage) / 100"}]}),
        access)
    probability = {"Prospecting": 10, "Engaging": 40, "Won": 100, "Lost": 0}
    assert Decimal(str(weighted["totals"][0])) == sum(
        Decimal(d["close_value"]) * probability[d["deal_stage"]] / 100 for d in kept if d["close_value"])
