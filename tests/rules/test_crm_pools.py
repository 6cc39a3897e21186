"""The crm pack's pools out of the box, on SQLite and PostgreSQL: a lead
followed up (an activity logged, through `last_activity_at`) stays with its
rep while a silent one goes back to 线索公海; in 客户公海 a prospect goes
back after 30 days without a follow-up or 180 without a deal won, a
customer never does."""

from __future__ import annotations

from datetime import timedelta

import pytest

from loomcrm.platform import directory
from loomcrm.runtime.pools import in_pool, recycle, utcnow
from loomcrm.runtime.records import Actor

ADMIN = Actor(None, "admin")


@pytest.fixture
def team(crm):
    """The crm pack and a sales rep, wang."""
    wang = directory.create_user(crm.engine, "wang", "sales_rep", "a long password", roles=sorted(crm.roles()[1]))
    return crm, wang


def pooled(runtime, pool_name: str) -> set[str]:
    with runtime.engine.connect() as conn:
        return {r["id"] for r in in_pool(conn, runtime, runtime.schema().pools[pool_name], limit=500)}


def test_a_lead_followed_up_stays_and_a_silent_one_goes_back(team):
    runtime, wang = team
    made = [runtime.records.create("lead", {"name": name, "company": "Co", "source": "website", "status": "contacted",
                                            "phone": phone, "owner": wang.id}, ADMIN)
            for name, phone in (("沉默", "13900000001"), ("跟进", "13900000002"))]
    silent, followed = (r["id"] for r in made)
    runtime.records.create("activity", {"subject": "电话", "activity_type": "call", "notes": "有兴趣",
                                        "related_to": {"object": "lead", "id": followed},
                                        "activity_time": utcnow().isoformat()}, ADMIN)
    assert runtime.records.get("lead", followed)["last_activity_at"] is not None
    now = utcnow()
    table = runtime.schema().table("lead")
    with runtime.engine.begin() as conn:   # both came in ten days ago; one was called today
        conn.execute(table.update().where(table.c.id.in_([silent, followed])).values(created_at=now - timedelta(days=10)))
    assert recycle(runtime, "lead_pool", now=now + timedelta(days=4)) == 0
    assert recycle(runtime, "lead_pool", now=now + timedelta(days=6)) == 1
    assert pooled(runtime, "lead_pool") == {silent}
    assert runtime.records.get("lead", followed)["owner"] == wang.id


def test_prospects_go_back_without_a_follow_up_or_a_win(team):
    runtime, wang = team
    accounts = {name: runtime.records.create("account", {"name": name, "lifecycle": lifecycle, "owner": wang.id},
                                             ADMIN)["id"]
                for name, lifecycle in (("无人跟进", "prospect"), ("常跟进未赢单", "prospect"),
                                        ("刚赢单", "prospect"), ("老客户", "customer"))}
    now = utcnow()
    table = runtime.schema().table("account")
    with runtime.engine.begin() as conn:   # follow-ups and wins as the months go by, as the rollups keep them
        for name, activity, won in (("常跟进未赢单", 170, None), ("刚赢单", 170, 100)):
            conn.execute(table.update().where(table.c.id == accounts[name]).values(
                last_activity_at=now + timedelta(days=activity),
                last_won_date=(now + timedelta(days=won)).date() if won else None))
    assert recycle(runtime, "account_pool", now=now + timedelta(days=20)) == 0
    assert recycle(runtime, "account_pool", now=now + timedelta(days=31)) == 1
    assert pooled(runtime, "account_pool") == {accounts["无人跟进"]}
    assert recycle(runtime, "account_pool", now=now + timedelta(days=181)) == 1
    assert pooled(runtime, "account_pool") == {accounts["无人跟进"], accounts["常跟进未赢单"]}
    assert runtime.records.get("account", accounts["老客户"])["owner"] == wang.id
