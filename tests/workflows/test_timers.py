"""Time triggers: one due timer per record and workflow, moved with its
field, dropped with its record, fired once however many sweepers run, its
condition checked again when due."""

from __future__ import annotations

import threading
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from loomcrm.platform import systemdb
from loomcrm.runtime.records import Origin
from loomcrm.workflows import runs
from loomcrm.workflows.engine import Automation

REMIND = {"name": "remind", "object": "deal", "trigger": {"on": "time", "field": "remind_at", "offset": "-1h"},
          "condition": "stage_category(stage) == 'open'",
          "actions": [{"type": "notify", "to": "owner", "message": "{{ record.name }} is due in an hour"}]}
SHANGHAI = ZoneInfo("Asia/Shanghai")


def timers(world):
    """The timers set now (cleared and fired ones keep a row without a moment)."""
    with world.engine.connect() as conn:
        return {(t.workflow, t.record_id): t.due_at if t.due_at.tzinfo else t.due_at.replace(tzinfo=timezone.utc)
                for t in conn.execute(sa.select(systemdb.automation_timers)
                                      .where(systemdb.automation_timers.c.due_at.is_not(None)))}


def notified(world):
    with world.engine.connect() as conn:
        return conn.execute(sa.select(systemdb.notifications.c.message).order_by(systemdb.notifications.c.created_at)).scalars().all()


def test_a_timer_follows_its_field_and_its_record(world, alice):
    world.workflows(REMIND)
    at = world.clock() + timedelta(days=1)
    deal = world.records.create("deal", {"name": "Timed", "remind_at": at.isoformat()}, alice)
    world.drain()
    assert timers(world) == {("remind", deal["id"]): at - timedelta(hours=1)}
    later = at + timedelta(days=2)
    world.records.update("deal", deal["id"], {"remind_at": later.isoformat()}, alice)
    world.drain()
    assert timers(world) == {("remind", deal["id"]): later - timedelta(hours=1)}
    # the old moment passes: nothing fires; the new one does, once
    world.clock.advance(days=1, hours=1)
    world.drain()
    assert notified(world) == []
    world.clock.advance(days=2)
    world.drain()
    world.clock.advance(minutes=5)
    world.drain()
    assert notified(world) == ["Timed is due in an hour"]
    assert timers(world) == {}
    # cleared: no timer; deleted: its timer goes and never fires
    other = world.records.create("deal", {"name": "Gone", "remind_at": (world.clock() + timedelta(hours=5)).isoformat()}, alice)
    kept = world.records.create("deal", {"name": "Cleared", "remind_at": (world.clock() + timedelta(hours=5)).isoformat()}, alice)
    world.drain()
    world.records.delete("deal", other["id"], alice)
    world.records.update("deal", kept["id"], {"remind_at": None}, alice)
    world.drain()
    assert timers(world) == {}
    world.clock.advance(days=1)
    world.drain()
    assert notified(world) == ["Timed is due in an hour"]


def test_events_handled_out_of_order_never_bring_an_old_moment_back(world, alice):
    """Two dispatchers may handle a record's events in either order: the
    timer ends where the newest event put it, and a delete stays a delete."""
    from loomcrm.workflows import outbox, timers as timer_steps

    world.workflows(REMIND)
    first = world.clock() + timedelta(days=1)
    later = world.clock() + timedelta(days=5)
    deal = world.records.create("deal", {"name": "Racing", "remind_at": first.isoformat()}, alice)
    world.records.update("deal", deal["id"], {"remind_at": later.isoformat()}, alice)
    gone = world.records.create("deal", {"name": "Deleted", "remind_at": first.isoformat()}, alice)
    world.records.delete("deal", gone["id"], alice)
    with world.engine.connect() as conn:
        events = conn.execute(sa.select(systemdb.outbox).order_by(systemdb.outbox.c.id.desc())).fetchall()
    with world.engine.connect() as conn:
        flows = world.automation.catalog.current(conn)
    obj = flows.objects["deal"]
    with world.engine.begin() as conn:
        for event in events:   # newest first: the worst order
            record = outbox.stored(obj, event.payload.get("record"), world.automation.runtime.context)
            timer_steps.follow(conn, flows, event.event, event.id, obj, event.record_id, record, SHANGHAI)
    assert timers(world) == {("remind", deal["id"]): later - timedelta(hours=1)}


def test_the_condition_is_checked_again_when_due(world, alice):
    world.workflows(REMIND)
    deal = world.records.create("deal", {"name": "Closed meanwhile",
                                         "remind_at": (world.clock() + timedelta(hours=3)).isoformat()}, alice)
    world.drain()
    world.records.update("deal", deal["id"], {"stage": "lost"}, alice)
    world.clock.advance(hours=3)
    world.drain()
    assert notified(world) == []
    with world.engine.connect() as conn:
        (run,) = runs.listing(conn, workflow="remind")[0]
    assert run["status"] == "skipped" and run["event"] == "time"


def test_a_date_field_counts_from_midnight_in_the_company_time_zone(world, alice):
    world.workflows({"name": "before_close", "object": "deal", "trigger": {"on": "time", "field": "close_date", "offset": "-7d"},
                     "actions": [{"type": "notify", "to": "owner", "message": "Closing in a week"}]})
    deal = world.records.create("deal", {"name": "Dated", "close_date": "2031-03-10"}, alice)
    world.drain()
    expected = datetime(2031, 3, 3, tzinfo=SHANGHAI)
    assert timers(world)[("before_close", deal["id"])] == expected
    assert date(2031, 3, 10)


def test_50000_past_due_timers_and_two_sweepers_fire_each_once(world, alice):
    at = (world.clock() + timedelta(days=3)).isoformat()
    for start in range(0, 50_000, 5000):
        world.records.create_many("deal", [{"name": f"T{i}", "remind_at": at} for i in range(start, start + 5000)], alice,
                                  origin=Origin("import"))
    while world.automation.dispatch(limit=5000)[0]:
        pass   # nothing listens yet: the events pass through
    world.workflows({**REMIND, "condition": None})
    assert world.automation.sync_timers() == 50_000   # records older than the workflow get their timers
    world.clock.advance(days=4)   # every timer is past due
    sweepers = [Automation(world.engine, world.automation.settings, clock=world.clock) for _ in range(2)]
    fired = [0, 0]

    def sweep(i):
        while True:
            n, _ready = sweepers[i].sweep(limit=1000)
            if n == 0:
                return
            fired[i] += n

    threads = [threading.Thread(target=sweep, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(fired) == 50_000 and timers(world) == {}
    with world.engine.connect() as conn:
        total, keys, records = conn.execute(sa.select(sa.func.count(), sa.func.count(sa.distinct(runs.runs.c.key)),
                                                      sa.func.count(sa.distinct(runs.runs.c.record_id)))
                                            .where(runs.runs.c.workflow == "remind")).one()
    assert total == keys == records == 50_000
