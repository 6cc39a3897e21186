"""Sales analytics on a hand-made stage history, on SQLite and PostgreSQL:
the funnel's reached counts and conversions, days in each stage and where
open deals stall, win rate and cycle length; through the API too."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from loomcrm.platform import systemdb
from loomcrm.runtime.install import bundle_from_json, install_bundle
from loomcrm.runtime.sales_analytics import funnel, stage_times, win_rates

from runtime_helpers import engine_for
from test_api import make_app

DAY0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
NOW = DAY0 + timedelta(days=10)
BUNDLE = {
    "manifest": {"format": "loom/1", "name": "deals", "version": "1.0.0"},
    "objects": [{"name": "deal", "track_history": ["stage"], "fields": [
        {"name": "name", "type": "text", "required": True},
        {"name": "stage", "type": "stage", "stages": [
            {"value": "lead", "probability": 10}, {"value": "qualify", "probability": 30},
            {"value": "propose", "probability": 60}, {"value": "won", "category": "won", "probability": 100},
            {"value": "lost", "category": "lost", "probability": 0}]}]}],
}
# each deal's path: (stage, day entered); d5 has no history at all
PATHS = {"d1": [("lead", 0), ("qualify", 2), ("propose", 5), ("won", 9)],
         "d2": [("lead", 0), ("qualify", 1), ("lost", 4)],
         "d3": [("lead", 0), ("qualify", 3)],
         "d4": [("lead", 0)],
         "d5": [("propose", 6)]}


@pytest.fixture
def deals(database_url):
    engine = engine_for(database_url)
    install_bundle(engine, bundle_from_json(BUNDLE))
    app, runtime = make_app(engine)
    ids = {}
    for name, path in PATHS.items():
        ids[name] = runtime.records.create("deal", {"name": name, "stage": "lead"}, None)["id"]
    table = runtime.schema().table("deal")
    with engine.begin() as conn:
        conn.execute(sa.delete(systemdb.history))
        for name, path in PATHS.items():
            conn.execute(sa.update(table).where(table.c.id == ids[name]).values(
                stage=path[-1][0], created_at=DAY0 + timedelta(days=path[0][1])))
            if name == "d5":
                continue
            for stage, day in path:
                conn.execute(sa.insert(systemdb.history).values(
                    object="deal", record_id=ids[name], field="stage", new_value=stage,
                    changed_at=DAY0 + timedelta(days=day)))
    yield runtime, TestClient(app, headers={"Authorization": "Bearer admin"})
    engine.dispose()


def test_the_funnel_counts_how_far_each_deal_got(deals):
    runtime, client = deals
    with runtime.engine.connect() as conn:
        steps = funnel(conn, runtime.schema(), "deal", runtime.access.of(None))["steps"]
    assert [(s["stage"], s["reached"], s["conversion"]) for s in steps] == [
        ("lead", 5, 0.8), ("qualify", 4, 0.5), ("propose", 2, 0.5), ("won", 1, None)]
    assert client.get("/api/v1/_analytics/deal/funnel").json()["steps"] == steps


def test_days_in_each_stage_and_where_deals_stall(deals):
    runtime, _ = deals
    with runtime.engine.connect() as conn:
        stages = stage_times(conn, runtime.schema(), "deal", runtime.access.of(None), now=NOW)["stages"]
    assert [(s["stage"], s["passed"], s["avg_days"], s["open"], s["open_avg_days"], s["max_open_days"])
            for s in stages] == [("lead", 3, 2.0, 1, 10.0, 10.0), ("qualify", 2, 3.0, 1, 7.0, 7.0),
                                 ("propose", 1, 4.0, 1, 4.0, 4.0)]


def test_win_rate_and_cycle_length_by_owner(deals):
    runtime, client = deals
    with runtime.engine.connect() as conn:
        owners = win_rates(conn, runtime.schema(), "deal", runtime.access.of(None))["owners"]
    assert owners == [{"owner": None, "period": None, "won": 1, "lost": 1, "win_rate": 0.5, "avg_cycle_days": 9.0}]
    by_month = client.get("/api/v1/_analytics/deal/win_rates", params={"by": "month"}).json()["owners"]
    assert [(o["period"], o["won"], o["lost"]) for o in by_month] == [("2026-01-01", 1, 1)]
    assert client.get("/api/v1/_analytics/deal/win_rates", params={"by": "fortnight"}).status_code == 400
    answer = client.get("/api/v1/_analytics/deal/win_rates", params={"date_from": "2026-01-06"})
    assert answer.json()["owners"][0]["won"] == 1 and answer.json()["owners"][0]["lost"] == 0
    assert client.get("/api/v1/_analytics/deal/nothing").status_code == 404
    assert client.get("/api/v1/_analytics/nothing/funnel").status_code == 404
