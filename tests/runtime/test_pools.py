"""Lead pools (公海) on SQLite and PostgreSQL: claiming and returning, the
caps and the re-claim ban, recycling over a shifted clock with protection
periods that follow-ups extend up to a maximum, reminders, the pool's list
without its private fields, and eight users claiming one lead at once."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
import sqlalchemy as sa

from loomcrm.platform import directory, systemdb
from loomcrm.runtime.install import bundle_from_json, install_bundle
from loomcrm.runtime.pools import PoolError, claim, in_pool, put_in_pool, recycle, remind, return_to_pool, utcnow
from loomcrm.runtime.records import Actor
from loomcrm.runtime.state import Runtime

from runtime_helpers import engine_for

BUNDLE = {
    "manifest": {"format": "loom/1", "name": "pooled", "version": "1.0.0"},
    "objects": [{"name": "lead", "title_field": "name", "track_history": ["owner"], "fields": [
        {"name": "name", "type": "text", "required": True},
        {"name": "status", "type": "picklist", "options": [{"value": "open"}, {"value": "converted"}]},
        {"name": "last_follow_up", "type": "date"},
        {"name": "notes", "type": "text"}]},
        {"name": "deal", "fields": [{"name": "name", "type": "text"}, {"name": "stage", "type": "stage", "stages": [
            {"value": "talk"}, {"value": "won", "category": "won"}]}]}],
    "roles": [{"name": "rep", "objects": {"lead": {"create": True, "read": "own", "update": "own"}}},
              {"name": "boss", "objects": {"lead": {"create": True, "read": "all", "update": "all"}}},
              {"name": "outsider", "objects": {"lead": {"read": "own"}}}],
    "pools": [{"name": "sea", "label": {"en": "Lead pool", "zh-CN": "线索公海"}, "object": "lead",
               "member_roles": ["rep"], "admin_roles": ["boss"], "claims_per_day": 3, "max_held": 4,
               "reclaim_ban_days": 7, "protect_days": 3, "max_hold_days": 30,
               "recycle": [{"field": "last_follow_up", "after_days": 15, "filter": "status != 'converted'"}],
               "remind_days_before": 3, "return_reasons": [{"value": "no_need"}, {"value": "unreachable"}],
               "private_fields": ["notes"]}],
}


@pytest.fixture
def world(database_url):
    engine = engine_for(database_url)
    install_bundle(engine, bundle_from_json(BUNDLE))
    runtime = Runtime(engine, refresh_interval=0)
    roles = sorted(runtime.roles()[1])
    people = {name: directory.create_user(engine, name, role, f"{name} long password", roles=roles)
              for name, role in (("wang", "rep"), ("zhao", "rep"), ("boss", "boss"), ("nobody", "outsider"))}
    people |= {f"rep{i}": directory.create_user(engine, f"rep{i}", "rep", "a long password", roles=roles)
               for i in range(8)}
    admin = Actor(None, "admin")
    leads = [runtime.records.create("lead", {"name": f"Lead {i}", "status": "open", "notes": "private"}, admin)["id"]
             for i in range(8)]
    put_in_pool(runtime, admin, "sea", leads)
    yield runtime, people, leads
    engine.dispose()


def owner(runtime, rid):
    return runtime.records.get("lead", rid)["owner"]


def test_claim_return_and_the_reclaim_ban(world):
    runtime, people, leads = world
    wang, zhao = people["wang"], people["zhao"]
    assert claim(runtime, wang, "sea", leads[0])["owner"] == wang.id
    with pytest.raises(PoolError) as taken:
        claim(runtime, zhao, "sea", leads[0])
    assert taken.value.code == "taken" and owner(runtime, leads[0]) == wang.id
    with pytest.raises(PoolError) as outsider:
        claim(runtime, people["nobody"], "sea", leads[1])
    assert outsider.value.code == "not_member"
    with pytest.raises(PoolError) as not_mine:
        return_to_pool(runtime, zhao, "sea", leads[0], "no_need")
    assert not_mine.value.code == "not_owner"
    with pytest.raises(PoolError) as bad_reason:
        return_to_pool(runtime, wang, "sea", leads[0], "bored")
    assert bad_reason.value.code == "reason"
    return_to_pool(runtime, wang, "sea", leads[0], "no_need")
    assert owner(runtime, leads[0]) is None
    with pytest.raises(PoolError) as ban:
        claim(runtime, wang, "sea", leads[0])
    assert ban.value.code == "reclaim_ban"
    claim(runtime, wang, "sea", leads[0], now=utcnow() + timedelta(days=8))      # the ban is over
    history = runtime.records.get("lead", leads[0])
    assert history["owner"] == wang.id


def test_daily_and_holding_caps(world):
    runtime, people, leads = world
    wang = people["wang"]
    for rid in leads[:3]:
        claim(runtime, wang, "sea", rid)
    with pytest.raises(PoolError) as daily:
        claim(runtime, wang, "sea", leads[3])
    assert daily.value.code == "daily_cap"
    tomorrow = utcnow() + timedelta(days=1)
    claim(runtime, wang, "sea", leads[3], now=tomorrow)
    with pytest.raises(PoolError) as held:
        claim(runtime, wang, "sea", leads[4], now=tomorrow)
    assert held.value.code == "held_cap"


def test_recycling_with_protection_extended_by_follow_ups_up_to_a_maximum(world):
    runtime, people, leads = world
    wang, zhao = people["wang"], people["zhao"]
    t0 = utcnow()
    silent, followed, converted = leads[0], leads[1], leads[2]
    for rid, who in ((silent, wang), (followed, wang), (converted, zhao)):
        claim(runtime, who, "sea", rid, now=t0)
    admin = Actor(None, "admin")
    runtime.records.update("lead", converted, {"status": "converted"}, admin)
    assert recycle(runtime, "sea", now=t0 + timedelta(days=10)) == 0
    # a follow-up on day 12 extends the lead's time to day 27
    day12 = (t0 + timedelta(days=12)).astimezone(runtime.context.timezone).date()
    runtime.records.update("lead", followed, {"last_follow_up": day12.isoformat()}, admin)
    assert recycle(runtime, "sea", now=t0 + timedelta(days=16)) == 1
    assert owner(runtime, silent) is None and owner(runtime, followed) == wang.id
    assert recycle(runtime, "sea", now=t0 + timedelta(days=16)) == 0         # idempotent
    # a fresh claim is protected for 3 days, whatever its follow-ups
    claim(runtime, zhao, "sea", silent, now=t0 + timedelta(days=16))
    assert recycle(runtime, "sea", now=t0 + timedelta(days=18)) == 0
    assert recycle(runtime, "sea", now=t0 + timedelta(days=28)) == 1          # followed: day 12 + 15
    assert owner(runtime, followed) is None
    # the maximum: 30 days after its claim, follow-ups or not (converted ones stay)
    day30 = (t0 + timedelta(days=30)).astimezone(runtime.context.timezone).date()
    runtime.records.update("lead", silent, {"last_follow_up": day30.isoformat()}, admin)
    assert recycle(runtime, "sea", now=t0 + timedelta(days=47)) == 2          # silent (claimed day 16) and converted
    assert owner(runtime, silent) is None
    with runtime.engine.connect() as conn:
        rows = conn.execute(sa.select(systemdb.history.c.note).where(
            systemdb.history.c.record_id == silent, systemdb.history.c.field == "owner")).scalars().all()
        events = conn.execute(sa.select(sa.func.count()).select_from(systemdb.outbox).where(
            systemdb.outbox.c.record_id == silent)).scalar()
    assert rows.count("recycled to pool sea") == 2 and events >= 5


def test_owners_are_reminded_once_before_a_lead_goes_back(world):
    runtime, people, leads = world
    wang = people["wang"]
    t0 = utcnow()
    claim(runtime, wang, "sea", leads[0], now=t0)
    assert remind(runtime, "sea", now=t0 + timedelta(days=11)) == 0           # due on day 15: not yet
    assert remind(runtime, "sea", now=t0 + timedelta(days=13)) == 1
    assert remind(runtime, "sea", now=t0 + timedelta(days=14)) == 0           # told already
    with runtime.engine.connect() as conn:
        message = conn.execute(sa.select(systemdb.notifications.c.message).where(
            systemdb.notifications.c.user_id == wang.id)).scalar()
    assert "Lead 0" in message and "Lead pool" in message


def test_the_pools_list_hides_the_private_fields(world):
    runtime, people, leads = world
    with runtime.engine.connect() as conn:
        rows = in_pool(conn, runtime, runtime.schema().pools["sea"])
    assert {r["id"] for r in rows} == set(leads)
    assert all("notes" not in r and r["name"].startswith("Lead") for r in rows)


def test_eight_users_claiming_one_lead_at_once(world):
    runtime, people, leads = world
    rid = leads[5]
    start = threading.Barrier(8)
    won, lost, other = [], [], []

    def go(i):
        start.wait()
        try:
            claim(runtime, people[f"rep{i}"], "sea", rid)
            won.append(i)
        except PoolError as exc:
            (lost if exc.code == "taken" else other).append(exc.code)
        except Exception as exc:   # noqa: BLE001 - any other failure fails the test below
            other.append(repr(exc))

    threads = [threading.Thread(target=go, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1 and len(lost) == 7 and other == []
    assert owner(runtime, rid) == people[f"rep{won[0]}"].id
    with runtime.engine.connect() as conn:
        claims = conn.execute(sa.select(sa.func.count()).select_from(systemdb.pool_claims).where(
            systemdb.pool_claims.c.record_id == rid)).scalar()
    assert claims == 1


def test_hand_over_to_the_pool_or_to_a_colleague_of_the_open_records(world):
    from loomcrm.runtime.handover import hand_over

    runtime, people, leads = world
    wang, zhao = people["wang"], people["zhao"]
    admin = Actor(None, "admin")
    for rid in leads[:2]:
        claim(runtime, wang, "sea", rid)
    deals = [runtime.records.create("deal", {"name": f"Deal {stage}", "stage": stage, "owner": wang.id}, admin)["id"]
             for stage in ("talk", "won")]
    assert hand_over(runtime, "wang", "pool:sea", None, admin) == {"lead": 2}
    assert owner(runtime, leads[0]) is None                                  # a pool takes its object only
    assert runtime.records.get("deal", deals[0])["owner"] == wang.id
    with runtime.engine.connect() as conn:
        reasons = conn.execute(sa.select(systemdb.pool_entries.c.reason).where(
            systemdb.pool_entries.c.record_id.in_(leads[:2]))).scalars().all()
    assert reasons == ["handed_over", "handed_over"]
    assert hand_over(runtime, "wang", "zhao", ["deal"], admin, open_only=True) == {"deal": 1}
    assert runtime.records.get("deal", deals[0])["owner"] == zhao.id
    assert runtime.records.get("deal", deals[1])["owner"] == wang.id                  # won: stays
    with runtime.engine.connect() as conn:
        told = conn.execute(sa.select(systemdb.notifications.c.message).where(
            systemdb.notifications.c.user_id == zhao.id)).scalars().all()
    assert told == ["wang's records were handed to you: deal 1."]
