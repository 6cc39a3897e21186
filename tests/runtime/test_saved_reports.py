"""Saved reports and dashboards through the whole app, on SQLite and
PostgreSQL, with the crm pack: its reports against a Python reference,
a dashboard's date range and owner, top-N with full totals, departments
and datetime buckets in LOOM_TIMEZONE, drill-down listing exactly the
records counted, CSV and XLSX, and a manager saving a private report."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from datetime import date
from decimal import Decimal

import pytest
from fastapi.testclient import TestClient
from openpyxl import load_workbook

from loomcrm.metadata.model import Report
from loomcrm.metadata.versions import VersionStore
from loomcrm.platform import auth, directory, systemdb
from loomcrm.platform.app import create_app, ensure_secret_key
from loomcrm.platform.db import create_engine
from loomcrm.platform.settings import Settings
from loomcrm.runtime.install import IMPORT, install_bundle
from loomcrm.runtime.forms.report_output import drill_params
from loomcrm.runtime.reports import Narrowing
from loomcrm.runtime.state import Runtime

PROBABILITY = {"initial_contact": 10, "needs_analysis": 20, "demo_quote": 40, "negotiation": 60, "contract": 80,
               "won": 100, "lost": 0}


class Crm:
    def __init__(self, url: str):
        self.engine = create_engine(url)
        systemdb.upgrade(self.engine)
        install_bundle(self.engine, "crm")
        self.app = create_app(Settings(database_url=url, timezone="Asia/Shanghai"), self.engine)
        self.client = TestClient(self.app)
        secret = ensure_secret_key(self.engine, "")
        runtime = Runtime(self.engine, refresh_interval=0)
        roles = sorted(runtime.roles()[1])
        directory.create_department(self.engine, "east", label="East")
        directory.create_department(self.engine, "west", label="West")
        self.users = {}
        for name, role, dept in (("boss", "admin", None), ("li", "sales_manager", "east"),
                                 ("wang", "sales_rep", "east"), ("zhao", "sales_rep", "west")):
            user = directory.create_user(self.engine, name, role, f"{name} long password", roles=roles, department=dept)
            self.users[name] = (user, auth.create_token(self.engine, secret, name))

    def as_(self, name: str):
        token = self.users[name][1]
        client = self.client

        class Acting:
            def __getattr__(self, method):
                return lambda url, **kw: getattr(client, method)(url, headers={"Authorization": f"Bearer {token}"}, **kw)
        return Acting()

    def id(self, name: str) -> str:
        return self.users[name][0].id


@pytest.fixture
def crm(database_url):
    world = Crm(database_url)
    boss = world.as_("boss")
    account = boss.get("/api/v1/account?limit=1").json()["data"][0]["id"]
    runtime = Runtime(world.engine, refresh_interval=0)
    # past close dates and stages far along: written as an import, like sample data
    for record in opportunities(boss):
        runtime.records.delete("opportunity", record["id"], None)
    deals = [("wang", "negotiation", "1000.10", "2026-03-05"), ("wang", "demo_quote", "250.55", "2026-03-31"),
             ("wang", "won", "999.99", "2026-04-01"), ("zhao", "contract", "300.00", "2026-04-15"),
             ("zhao", "won", "1200.00", "2026-05-20"), ("zhao", "lost", "50.00", "2026-05-21"),
             ("wang", "initial_contact", None, "2026-06-01")]
    for i, (owner, stage, amount, close) in enumerate(deals):
        row = {"name": f"Deal {i}", "account": account, "stage": stage, "close_date": close, "owner": world.id(owner)}
        if amount:
            row["amount"] = amount
        if stage == "lost":
            row["lost_reason"] = "price"
        runtime.records.create("opportunity", row, None, origin=IMPORT)
    yield world
    world.engine.dispose()


def opportunities(client) -> list[dict]:
    return client.get("/api/v1/opportunity?limit=500").json()["data"]


def test_the_crm_pack_ships_reports_and_dashboards(crm):
    boss = crm.as_("boss")
    names = {r["name"] for r in boss.get("/api/v1/_reports").json()["data"]}
    assert {"pipeline_by_stage", "forecast_by_month", "won_by_owner", "collected_vs_ordered"} <= names
    dashboards = {d["name"]: d for d in boss.get("/api/v1/_dashboards").json()["data"]}
    assert dashboards["sales_manager"]["home_of"] == ["sales_manager", "admin"]
    answer = boss.get("/api/v1/_reports/pipeline_by_stage")
    assert answer.status_code == 200, answer.text
    result = answer.json()
    expected = defaultdict(lambda: [0, Decimal(0), Decimal(0)])
    for o in opportunities(boss):
        if PROBABILITY[o["stage"]] in (0, 100):
            continue
        amount = Decimal(str(o["amount"])) if o["amount"] is not None else None
        row = expected[o["stage"]]
        row[0] += 1
        if amount is not None:
            row[1] += amount
            row[2] += amount * PROBABILITY[o["stage"]] / 100
    got = {r[0]: [r[1], Decimal(str(r[2] or 0)), Decimal(str(r[3] or 0))] for r in result["rows"]}
    assert got == {k: v for k, v in expected.items()}
    assert [c["name"] for c in result["columns"]] == ["stage", "deals", "amount", "weighted"]


def test_a_dashboards_date_range_and_owner_narrow_every_report(crm):
    boss = crm.as_("boss")
    everything = opportunities(boss)
    answer = boss.get("/api/v1/_reports/forecast_by_month",
                      params={"date_from": "2026-03-01", "date_to": "2026-04-30", "owner": crm.id("wang")}).json()
    expected = defaultdict(Decimal)
    for o in everything:
        if o["owner"] == crm.id("wang") and "2026-03-01" <= o["close_date"] <= "2026-04-30" and o["stage"] != "lost":
            expected[o["close_date"][:7] + "-01"] += Decimal(str(o["amount"] or 0)) * PROBABILITY[o["stage"]] / 100
    assert {r[0]: Decimal(str(r[1])) for r in answer["rows"]} == dict(expected)
    assert boss.get("/api/v1/_reports/forecast_by_month", params={"date_from": "March"}).status_code == 400


def test_top_n_keeps_the_totals_of_every_row(crm):
    boss = crm.as_("boss")
    definition = {"object": "opportunity", "group_by": ["owner"], "sort": ["-deals"], "limit": 1,
                  "measures": [{"name": "deals", "function": "count"}]}
    result = boss.post("/api/v1/_reports/run", json=definition).json()
    mine = [o["owner"] for o in opportunities(boss)]
    assert result["rows"] == [[crm.id("wang"), mine.count(crm.id("wang"))]]
    assert result["totals"] == [None, len(mine)]


def test_departments_and_datetime_buckets_in_the_local_zone(crm):
    boss = crm.as_("boss")
    result = boss.post("/api/v1/_reports/run", json={
        "object": "opportunity", "group_by": ["owner.department"], "measures": [{"name": "deals", "function": "count"}]})
    by_department = {r[0]: r[1] for r in result.json()["rows"]}
    assert sorted(by_department.values()) == [3, 4]
    deal = opportunities(boss)[0]["id"]
    for moment in ("2026-03-31T20:00:00Z", "2026-03-31T15:00:00Z"):   # 04:00 on 1 April / 23:00 on 31 March in Shanghai
        answer = boss.post("/api/v1/activity", json={"subject": f"Call at {moment}", "activity_type": "call",
                                                     "activity_time": moment, "notes": "Called",
                                                     "related_to": {"object": "opportunity", "id": deal}})
        assert answer.status_code == 201, answer.text
    result = boss.post("/api/v1/_reports/run", json={
        "object": "activity", "filter": "starts_with(subject, 'Call at')",
        "group_by": [{"field": "activity_time", "by": "month"}], "measures": [{"name": "calls", "function": "count"}]})
    assert result.json()["rows"] == [["2026-03-01", 1], ["2026-04-01", 1]]


def test_drill_down_lists_exactly_the_records_counted(crm):
    boss = crm.as_("boss")
    runtime = Runtime(crm.engine, refresh_interval=0)
    schema = runtime.schema()
    narrowings = [Narrowing(), Narrowing(date_from=date(2026, 3, 1), date_to=date(2026, 4, 30), owner=crm.id("wang"))]
    for name in ("pipeline_by_stage", "forecast_by_month", "won_by_owner"):
        report = schema.reports[name]
        for narrowing in narrowings:
            params = {"date_from": narrowing.date_from, "date_to": narrowing.date_to, "owner": narrowing.owner}
            result = boss.get(f"/api/v1/_reports/{name}", params={k: str(v) for k, v in params.items() if v}).json()
            count = next(i for i, c in enumerate(result["columns"]) if c["name"] == "deals") \
                if any(c["name"] == "deals" for c in result["columns"]) else None
            groups = len(report.group_by)
            for row in result["rows"]:
                listed = boss.get("/api/v1/opportunity", params=drill_params(report, schema, row[:groups], narrowing)
                                  + [("limit", "500")])
                assert listed.status_code == 200, listed.text
                if count is not None:
                    assert len(listed.json()["data"]) == row[count], (name, row)
            total = boss.get("/api/v1/opportunity", params=drill_params(report, schema, None, narrowing) + [("limit", "500")])
            if count is not None:
                assert len(total.json()["data"]) == result["totals"][count]
    crm_schema_rows = sum(1 for _ in opportunities(boss))
    assert crm_schema_rows >= 7


def test_reports_download_as_csv_and_xlsx_with_labels(crm):
    boss = crm.as_("boss")
    answer = boss.get("/api/v1/_reports/pipeline_by_stage", params={"format": "csv"})
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(answer.content.decode("utf-8-sig"))))
    assert rows[0] == ["Sales stage", "Deals", "Amount", "Weighted amount"]
    assert "Negotiation" in [r[0] for r in rows[1:]] and rows[-1][0] == "Total"
    answer = boss.get("/api/v1/_reports/pipeline_by_stage", params={"format": "xlsx"})
    sheet = load_workbook(io.BytesIO(answer.content)).active
    values = [[c.value for c in row] for row in sheet.iter_rows()]
    assert values[0] == rows[0] and values[-1][0] == "Total"
    assert Decimal(str(values[-1][2])) == Decimal(rows[-1][2])
    assert boss.get("/api/v1/_reports/pipeline_by_stage", params={"format": "pdf"}).status_code == 400


def test_a_manager_saves_a_private_report_and_the_admins_draft_follows(crm):
    li, wang, boss = crm.as_("li"), crm.as_("wang"), crm.as_("boss")
    store = VersionStore()
    # an admin's draft in progress, on the version before
    draft_object = boss.get("/api/v1/_meta/objects/task").json()
    assert boss.put("/api/v1/_meta/objects/task", json=draft_object | {"label": "To-do"}).status_code == 200
    definition = {"label": "My team's leads", "object": "lead", "group_by": ["status"], "shared_with": [],
                  "measures": [{"name": "leads", "function": "count"}]}
    answer = li.put("/api/v1/_reports/team_leads", json=definition)
    assert answer.status_code == 200, answer.text
    assert answer.json()["created_by"] == "li"
    assert li.get("/api/v1/_reports/team_leads").status_code == 200
    assert wang.get("/api/v1/_reports/team_leads").status_code == 404
    assert wang.put("/api/v1/_reports/team_leads", json=definition).status_code == 409
    with crm.engine.connect() as conn:
        version, published = store.published(conn)
        base, draft, exists = store.draft(conn)
    assert exists and base == version and draft.report("team_leads") is not None
    assert draft.object("task").label == "To-do" and published.report("team_leads") is not None
    bad = li.put("/api/v1/_reports/broken", json=definition | {"group_by": ["sttus"]})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "group_by[0]"
    board = li.put("/api/v1/_dashboards/team", json={"widgets": [{"report": "team_leads"}], "shared_with": []})
    assert board.status_code == 200 and board.json()["created_by"] == "li"
    assert li.delete("/api/v1/_reports/team_leads").status_code == 409       # on li's dashboard
    assert wang.delete("/api/v1/_dashboards/team").status_code == 404
    assert boss.delete("/api/v1/_dashboards/sales_rep").status_code == 204
    assert li.delete("/api/v1/_dashboards/team").status_code == 204
    assert li.delete("/api/v1/_reports/team_leads").status_code == 204
    assert li.get("/api/v1/_reports/team_leads").status_code == 404
    assert Report.model_validate(definition | {"name": "x"}).shared_with == []
