"""Triggers, conditions, sources and the loop guard, end to end through
the outbox, on SQLite and PostgreSQL."""

from __future__ import annotations

import sqlalchemy as sa

from loomcrm.platform import systemdb
from loomcrm.runtime.records import Origin
from loomcrm.workflows import runs


def run_log(world, **filters):
    with world.engine.connect() as conn:
        return runs.listing(conn, limit=500, **filters)[0]


def tasks(world):
    with world.engine.connect() as conn:
        table = world.automation.runtime.schema().table("task")
        return [dict(r._mapping) for r in conn.execute(sa.select(table).where(table.c._deleted_at.is_(None)).order_by(table.c.created_at))]


CREATE_TASK = {"type": "create", "object": "task", "values": {"subject": "concat('Call about ', name)", "due": "add_days(today(), 2)",
                                                               "deal": "id"}}


def test_a_create_workflow_makes_a_task_once_through_the_rules(world, alice):
    world.workflows({"name": "call_new_deals", "object": "deal", "trigger": {"on": "create"}, "condition": "amount > 1000",
                     "actions": [CREATE_TASK]})
    big = world.records.create("deal", {"name": "Big", "amount": 5000}, alice)
    world.records.create("deal", {"name": "Small", "amount": 10}, alice)
    assert world.drain() == 1
    made = tasks(world)
    assert [(t["subject"], t["deal"], t["owner"]) for t in made] == [("Call about Big", big["id"], alice.id)]
    assert made[0]["created_by"] == world.automation.system_user.id
    statuses = sorted(r["status"] for r in run_log(world))
    assert statuses == ["done", "skipped"]
    # dispatching and running again changes nothing
    assert world.drain() == 0 and len(tasks(world)) == 1


def test_update_triggers_see_the_change_and_fields(world, alice):
    world.workflows({"name": "on_amount", "object": "deal", "trigger": {"on": "update", "fields": ["amount"]},
                     "condition": "is_changed(amount) and prior_value(amount) < amount",
                     "actions": [{"type": "create", "object": "task", "values": {"subject": "concat('Up from ', text(prior_value(amount)))"}}]})
    deal = world.records.create("deal", {"name": "D", "amount": 100}, alice)
    world.records.update("deal", deal["id"], {"note": "no amount change"}, alice)
    world.records.update("deal", deal["id"], {"amount": 50}, alice)    # down: condition false
    world.records.update("deal", deal["id"], {"amount": 300}, alice)   # up
    world.drain()
    assert [t["subject"] for t in tasks(world)] == ["Up from 50.00"]
    assert sorted(r["status"] for r in run_log(world)) == ["done", "skipped"]


def test_stage_change_to_a_stage_and_delete_and_restore(world, alice):
    world.workflows(
        {"name": "won", "object": "deal", "trigger": {"on": "stage_change", "to": "won"},
         "actions": [{"type": "create", "object": "task", "values": {"subject": "concat('Won ', name)"}}]},
        {"name": "gone", "object": "deal", "trigger": {"on": "delete"},
         "actions": [{"type": "create", "object": "task", "values": {"subject": "concat('Deleted ', name)"}}]},
        {"name": "back", "object": "deal", "trigger": {"on": "restore"},
         "actions": [{"type": "create", "object": "task", "values": {"subject": "concat('Restored ', name)"}}]})
    deal = world.records.create("deal", {"name": "S"}, alice)
    world.records.update("deal", deal["id"], {"stage": "talks"}, alice)
    world.records.update("deal", deal["id"], {"stage": "won"}, alice)
    world.records.delete("deal", deal["id"], alice)
    world.records.restore("deal", deal["id"], alice)
    world.drain()
    assert [t["subject"] for t in tasks(world)] == ["Won S", "Deleted S", "Restored S"]
    assert {r["event"] for r in run_log(world)} == {"stage_change", "delete", "restore"}


def test_sources_choose_which_writers_fire(world, alice):
    world.workflows({"name": "forms_only", "object": "deal", "trigger": {"on": "create"}, "sources": ["form"],
                     "actions": [CREATE_TASK]})
    world.records.create("deal", {"name": "From the API"}, alice)
    world.records.create("deal", {"name": "From an import"}, alice, origin=Origin("import"))
    world.records.create("deal", {"name": "From a form"}, alice, origin=Origin("form"))
    world.drain()
    assert [t["subject"] for t in tasks(world)] == ["Call about From a form"]
    assert [r["source"] for r in run_log(world)] == ["form"]


def test_a_workflow_never_fires_on_its_own_change_and_chains_stop_at_depth_five(world, alice):
    # touches += 1 on every update would loop on itself: its own events do not fire it
    world.workflows({"name": "self", "object": "deal", "trigger": {"on": "update"},
                     "actions": [{"type": "update", "values": {"touches": "coalesce(touches, 0) + 1"}}]})
    deal = world.records.create("deal", {"name": "Loop"}, alice)
    world.records.update("deal", deal["id"], {"note": "x"}, alice)
    world.drain()
    assert world.records.get("deal", deal["id"])["touches"] == 1
    # two workflows feeding each other stop at depth 5, marked loop
    world.workflows(
        {"name": "ping", "object": "deal", "trigger": {"on": "update", "fields": ["note"]},
         "actions": [{"type": "update", "values": {"touches": "coalesce(touches, 0) + 1"}}]},
        {"name": "pong", "object": "deal", "trigger": {"on": "update", "fields": ["touches"]},
         "actions": [{"type": "update", "values": {"note": "concat('n', text(touches))"}}]})
    world.records.update("deal", deal["id"], {"note": "start"}, alice)
    world.drain()
    log = run_log(world)
    assert [r["status"] for r in log if r["status"] == "loop"] == ["loop"]
    done = [r for r in log if r["status"] == "done" and r["workflow"] in ("ping", "pong")]
    assert len(done) == 5
    with world.engine.connect() as conn:
        depths = conn.execute(sa.select(systemdb.outbox.c.depth).where(systemdb.outbox.c.record_id == deal["id"])
                              .order_by(systemdb.outbox.c.id)).scalars().all()
    assert max(depths) == 5


def test_a_refused_save_is_a_dead_run_with_the_rules_message(world, alice):
    world.workflows({"name": "bad_task", "object": "deal", "trigger": {"on": "create"},
                     "actions": [{"type": "create", "object": "task", "values": {"subject": "concat('secret ', name)"}}]})
    world.records.create("deal", {"name": "X"}, alice)
    world.drain()
    (run,) = run_log(world)
    assert run["status"] == "dead" and "No secrets in subjects" in run["error"] and tasks(world) == []


def test_actions_run_in_order_and_a_failure_holds_the_rest(world, alice):
    world.workflows({"name": "steps", "object": "deal", "trigger": {"on": "create"}, "actions": [
        {"type": "update", "values": {"note": "concat('step one ', name)"}},
        {"type": "create", "object": "task", "values": {"subject": "note"}}]})
    deal = world.records.create("deal", {"name": "A"}, alice)
    world.drain()
    assert [t["subject"] for t in tasks(world)] == ["step one A"]    # the task saw the first action's update
    world.records.create("deal", {"name": "B", "note": "x"}, alice)
    world.workflows({"name": "steps2", "object": "deal", "trigger": {"on": "create"}, "actions": [
        {"type": "update", "values": {"note": "'forbidden'"}},
        {"type": "create", "object": "task", "values": {"subject": "'never'"}}]})
    other = world.records.create("deal", {"name": "C"}, alice)
    world.drain()
    chain = sorted((r["action_index"], r["status"]) for r in run_log(world, record=other["id"]))
    assert chain == [(0, "dead"), (1, "waiting")]
    assert "That note is not allowed" in [r for r in run_log(world, record=other["id"]) if r["action_index"] == 0][0]["error"]
    assert deal["id"]


def test_a_rolled_back_save_leaves_no_event_and_no_run(world, alice):
    world.workflows({"name": "call", "object": "deal", "trigger": {"on": "create"}, "actions": [CREATE_TASK]})
    from loomcrm.platform.db import write_transaction

    class Boom(Exception):
        pass

    try:
        with write_transaction(world.engine) as conn:
            world.records.create("deal", {"name": "Ghost"}, alice, conn=conn)
            raise Boom
    except Boom:
        pass
    assert world.drain() == 0
    assert run_log(world) == [] and tasks(world) == []
    with world.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(systemdb.outbox)).scalar() == 0


def test_an_event_no_workflow_can_handle_holds_nothing_back(world, alice):
    """A moment past the year 9999 and a workflow whose user was
    deactivated: those workflows are dead for the event, the others run."""
    from loomcrm.platform import auth

    world.workflows(
        {"name": "far", "object": "deal", "trigger": {"on": "time", "field": "close_date", "offset": "1w"},
         "actions": [CREATE_TASK]},
        {"name": "as_dave", "object": "deal", "trigger": {"on": "create"}, "run_as": "dave", "condition": "amount > 0",
         "actions": [CREATE_TASK]},
        {"name": "plain", "object": "deal", "trigger": {"on": "create"},
         "actions": [{"type": "create", "object": "task", "values": {"subject": "concat('Plain ', name)"}}]})
    with world.engine.begin() as conn:
        conn.execute(systemdb.users.update().where(systemdb.users.c.username == "dave").values(is_active=False))
    world.records.create("deal", {"name": "Far away", "amount": 5, "close_date": "9999-12-31"}, alice)
    world.drain()
    assert [t["subject"] for t in tasks(world)] == ["Plain Far away"]
    (dave,) = run_log(world, workflow="as_dave")
    assert dave["status"] == "dead" and "'dave'" in dave["error"]
    with world.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(systemdb.outbox)
                            .where(systemdb.outbox.c.processed_at.is_(None))).scalar() == 0
    assert auth


def test_replays_keep_a_workflows_order_and_its_condition(world, alice):
    from loomcrm.workflows.engine import Automation

    world.workflows({"name": "two_steps", "object": "deal", "trigger": {"on": "create"}, "actions": [
        {"type": "update", "values": {"note": "'forbidden'"}},
        {"type": "create", "object": "task", "values": {"subject": "'after'"}}]},
        {"name": "bad_condition", "object": "deal", "trigger": {"on": "create"}, "condition": "number(note) > 1",
         "actions": [CREATE_TASK]})
    deal = world.records.create("deal", {"name": "Ordered", "note": "abc"}, alice)
    world.drain()
    log = {(r["workflow"], r["action_index"]): r for r in run_log(world, record=deal["id"])}
    first, second = log[("two_steps", 0)], log[("two_steps", 1)]
    assert (first["status"], second["status"]) == ("dead", "waiting")
    automation = Automation(world.engine, world.automation.settings, clock=world.clock)
    assert "only dead runs" in automation.replay(second["id"])   # it waits for the first
    condition = log[("bad_condition", 0)]
    assert condition["status"] == "dead" and "condition" in condition["error"]
    assert "condition could not be evaluated" in automation.replay(condition["id"])
    # fixed, the first replays under the new definition and lets the second go
    world.workflows({"name": "two_steps", "object": "deal", "trigger": {"on": "create"}, "actions": [
        {"type": "update", "values": {"note": "'fine'"}},
        {"type": "create", "object": "task", "values": {"subject": "'after'"}}]})
    assert automation.replay(first["id"]) is None
    world.clock.advance(seconds=1)
    world.drain()
    statuses = {r["action_index"]: r["status"] for r in run_log(world, record=deal["id"]) if r["workflow"] == "two_steps"}
    assert statuses == {0: "done", 1: "done"} and "after" in [t["subject"] for t in tasks(world)]
