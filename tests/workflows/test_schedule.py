"""Schedule triggers: a cron tick in the company's time zone fires once
across processes, for the records its condition selects in the database."""

from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from loomcrm.platform import systemdb
from loomcrm.workflows import runs
from loomcrm.workflows.engine import Automation

WEEKLY = {"name": "monday_review", "object": "deal", "trigger": {"on": "schedule", "cron": "0 9 * * 1"},
          "condition": "stage_category(stage) == 'open' and amount >= 1000",
          "actions": [{"type": "notify", "to": "owner", "message": "Review {{ record.name }}"}]}


def test_a_tick_fires_once_across_processes_for_the_matching_records(world, alice):
    world.workflows(WEEKLY)
    for name, amount, stage in (("Big open", 5000, "new"), ("Small open", 10, "talks"), ("Big won", 9000, "won"),
                                ("Big talks", 1000, "talks")):
        world.records.create("deal", {"name": name, "amount": amount, "stage": stage}, alice)
    world.drain()
    # Monday 9:01 in Shanghai is 01:01 UTC
    world.clock.at = datetime(2031, 3, 10, 9, 1, tzinfo=ZoneInfo("Asia/Shanghai")).astimezone(timezone.utc)
    other = Automation(world.engine, world.automation.settings, clock=world.clock)
    assert len(world.automation.tick()) == 2
    assert other.tick() == [] and world.automation.tick() == []
    world.drain()
    with world.engine.connect() as conn:
        messages = sorted(conn.execute(sa.select(systemdb.notifications.c.message)).scalars())
        log = runs.listing(conn, workflow="monday_review")[0]
    assert messages == ["Review Big open", "Review Big talks"]
    assert {r["event"] for r in log} == {"schedule"} and len(log) == 2
    # long after the tick (a server that was down): it is not fired late
    world.clock.at = datetime(2031, 3, 10, 12, 0, tzinfo=ZoneInfo("Asia/Shanghai")).astimezone(timezone.utc)
    assert Automation(world.engine, world.automation.settings, clock=world.clock).tick() == []


def test_a_condition_the_database_cannot_run_is_a_dead_run(world, alice):
    world.workflows({**WEEKLY, "condition": "matches(name, '^W')"})
    world.records.create("deal", {"name": "Whatever"}, alice)
    world.clock.at = datetime(2031, 3, 10, 1, 0, 30, tzinfo=timezone.utc)
    world.automation.tick()
    with world.engine.connect() as conn:
        (run,) = runs.listing(conn, workflow="monday_review")[0]
    assert run["status"] == "dead" and "database" in run["error"]


def test_a_tick_a_stopped_process_left_half_done_is_finished_later(world, alice):
    from loomcrm.platform.db import write_transaction
    from loomcrm.workflows import schedule

    world.workflows({**WEEKLY, "condition": "amount >= 1000"})
    world.records.create_many("deal", [{"name": f"Big {i}", "amount": 5000} for i in range(schedule.BATCH + 20)], alice)
    world.drain()
    world.clock.at = datetime(2031, 3, 10, 1, 0, 30, tzinfo=timezone.utc)
    with world.engine.connect() as conn:
        flow = world.automation.catalog.current(conn).by_name["monday_review"]
    moment = schedule.last_tick(flow, world.clock(), ZoneInfo("Asia/Shanghai"))
    with write_transaction(world.engine) as conn:   # a process claims the tick, does one batch, and dies
        state = schedule.claim_tick(conn, flow, moment, world.clock(), world.automation.lease)
    with write_transaction(world.engine) as conn:
        finished, _ = schedule.run_batch(conn, flow, world.automation.runtime.schema(), moment, state, world.clock(),
                                         world.automation.lease)
    assert not finished
    world.clock.advance(hours=3)   # far past the grace time, and the dead process's lease
    Automation(world.engine, world.automation.settings, clock=world.clock).tick()
    with world.engine.connect() as conn:
        count = conn.execute(sa.select(sa.func.count()).select_from(runs.runs).where(runs.runs.c.workflow == "monday_review")).scalar()
    assert count == schedule.BATCH + 20
