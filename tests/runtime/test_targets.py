"""Targets (目标管理) on SQLite and PostgreSQL with the crm pack: attainment
computed by the report engine over the period and the holder's records,
who may set which target, and broken input refused field by field."""

from __future__ import annotations

from decimal import Decimal

import pytest

from loomcrm.platform import directory
from loomcrm.runtime.install import IMPORT
from loomcrm.runtime.state import Runtime

from test_saved_reports import Crm, opportunities


@pytest.fixture
def crm(database_url):
    world = Crm(database_url)
    directory.update_department(world.engine, "east", {"manager": "li"})
    runtime = Runtime(world.engine, refresh_interval=0)
    boss = world.as_("boss")
    account = boss.get("/api/v1/account?limit=1").json()["data"][0]["id"]
    for record in opportunities(boss):
        runtime.records.delete("opportunity", record["id"], None)
    for owner, amount, close in (("wang", "1000.00", "2026-03-05"), ("wang", "500.00", "2026-04-02"),
                                 ("zhao", "700.00", "2026-03-20")):
        runtime.records.create("opportunity", {"name": f"{owner} {close}", "account": account, "stage": "won",
                                               "amount": amount, "close_date": close, "owner": world.id(owner)},
                               None, origin=IMPORT)
    yield world
    world.engine.dispose()


def targets_of(client, on="2026-03-15"):
    answer = client.get("/api/v1/_targets", params={"on": on})
    assert answer.status_code == 200, answer.text
    return {(t["holder"]["name"], t["period"]): t for t in answer.json()["data"]}


def test_attainment_follows_the_period_and_the_holder(crm):
    boss, li, wang = crm.as_("boss"), crm.as_("li"), crm.as_("wang")
    for who, body in ((li, {"user": "wang", "period": "month", "value": 2000}),
                      (boss, {"department": "east", "period": "quarter", "value": "5000"}),
                      (boss, {"user": "zhao", "period": "month", "value": 700})):
        answer = who.put("/api/v1/_targets", json={"report": "won_amount", "starts_on": "2026-03-10", **body})
        assert answer.status_code == 200, answer.text
    mine = targets_of(wang)
    assert set(mine) == {("wang", "month")}     # the department's progress is for its manager
    assert Decimal(str(mine[("wang", "month")]["achieved"])) == Decimal("1000.00")
    assert mine[("wang", "month")]["attainment"] == 0.5 and mine[("wang", "month")]["starts_on"] == "2026-03-01"
    assert not mine[("wang", "month")]["may_change"]
    team = targets_of(li)
    assert set(team) == {("wang", "month"), ("East", "quarter")}
    assert Decimal(str(team[("East", "quarter")]["achieved"])) == Decimal("1000.00")   # April is the next quarter
    everything = targets_of(boss)
    assert everything[("zhao", "month")]["attainment"] == 1.0
    assert targets_of(boss, "2026-04-15") == {}
    # setting it again replaces it
    li.put("/api/v1/_targets", json={"report": "won_amount", "user": "wang", "period": "month",
                                     "starts_on": "2026-03-31", "value": 1000})
    assert targets_of(wang)[("wang", "month")]["attainment"] == 1.0


def test_who_may_set_and_remove_targets(crm):
    boss, li, wang = crm.as_("boss"), crm.as_("li"), crm.as_("wang")
    base = {"report": "won_amount", "period": "month", "starts_on": "2026-03-01", "value": 100}
    assert li.put("/api/v1/_targets", json=base | {"user": "zhao"}).status_code == 403        # west is not li's
    assert wang.put("/api/v1/_targets", json=base | {"user": "wang"}).status_code == 403
    assert boss.put("/api/v1/_targets", json=base | {"user": "wang"}).status_code == 200
    target = targets_of(boss)[("wang", "month")]["id"]
    assert wang.delete(f"/api/v1/_targets/{target}").status_code == 403
    assert li.delete(f"/api/v1/_targets/{target}").status_code == 204
    assert targets_of(boss) == {}


BROKEN = [
    ({"period": "week"}, "period"), ({"value": -1}, "value"), ({"value": "1.234"}, "value"),
    ({"value": "lots"}, "value"), ({"value": "1e30"}, "value"), ({"starts_on": "March"}, "starts_on"),
    ({"report": "won_by_owner"}, "report"), ({"report": "nothing"}, "report"), ({"user": "nobody"}, "user"),
    ({"department": "east"}, "holder"),
]


def test_broken_targets_are_refused_and_change_nothing(crm):
    boss = crm.as_("boss")
    for change, field in BROKEN:
        body = {"report": "won_amount", "user": "wang", "period": "month", "starts_on": "2026-03-01", "value": 100}
        answer = boss.put("/api/v1/_targets", json=body | change)
        assert answer.status_code == 422, (change, answer.text)
        assert answer.json()["errors"][0]["field"] == field, change
    assert targets_of(boss) == {}
