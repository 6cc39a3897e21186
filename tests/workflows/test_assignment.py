"""Handing records out: round robin exactly in turn under concurrency,
load balanced, by field with a fallback."""

from __future__ import annotations

import threading
from collections import Counter

import sqlalchemy as sa

from loomcrm.platform import systemdb
from loomcrm.runtime.records import Origin
from loomcrm.workflows import runs
from loomcrm.workflows.engine import Automation


def owners(world):
    table = world.automation.runtime.schema().table("deal")
    with world.engine.connect() as conn:
        return dict(conn.execute(sa.select(table.c.name, table.c.owner)).all())


def test_eight_threads_hand_out_4000_deals_exactly_in_turn(world, alice):
    world.workflows({"name": "round", "object": "deal", "trigger": {"on": "create"},
                     "actions": [{"type": "assign", "strategy": "round_robin", "users": ["bob", "carol", "dave"]}]})
    for start in range(0, 4000, 1000):
        world.records.create_many("deal", [{"name": f"D{i}"} for i in range(start, start + 1000)], alice, origin=Origin("import"))
    while world.automation.dispatch(limit=1000)[0]:
        pass
    workers = [Automation(world.engine, world.automation.settings, clock=world.clock) for _ in range(8)]
    done = [0] * 8
    errors: list[BaseException] = []

    def work(i):
        try:
            while True:
                run_id, _ = workers[i].execute_next()
                if run_id is None:
                    return
                done[i] += 1
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and sum(done) == 4000
    with world.engine.connect() as conn:
        assert runs.counts(conn)["done"] == 4000
        cursor = conn.execute(sa.select(systemdb.counters.c.value).where(systemdb.counters.c.key == "assign:round:0")).scalar()
    assert cursor == 4000
    handed = Counter(owners(world).values())
    ids = {world.users[n].id for n in ("bob", "carol", "dave")}
    assert set(handed) == ids
    assert max(handed.values()) - min(handed.values()) <= 1
    if world.engine.dialect.name == "postgresql":
        assert sum(1 for n in done if n) >= 2


def test_load_balanced_picks_the_least_loaded_and_by_field_maps_with_a_fallback(world, alice):
    bob, carol = world.users["bob"], world.users["carol"]
    for i in range(3):
        world.records.update("deal", world.records.create("deal", {"name": f"Bob's hot {i}", "hot": True}, alice)["id"],
                             {"owner": bob.id}, alice)
    world.records.update("deal", world.records.create("deal", {"name": "Carol's cold", "hot": False}, alice)["id"],
                         {"owner": carol.id}, alice)
    world.drain()
    world.workflows(
        {"name": "balance", "object": "deal", "trigger": {"on": "create"}, "condition": "region == None",
         "actions": [{"type": "assign", "strategy": "load_balanced", "users": ["bob", "carol"], "load_filter": "hot == True"}]},
        {"name": "by_region", "object": "deal", "trigger": {"on": "create"}, "condition": "region != None",
         "actions": [{"type": "assign", "strategy": "by_field", "field": "region", "mapping": {"north": "bob", "south": "carol"},
                      "users": ["dave"]}]})
    world.records.create("deal", {"name": "Balanced"}, alice)            # bob has 3 hot, carol 0 hot: carol
    world.records.create("deal", {"name": "North", "region": "north"}, alice)
    world.records.create("deal", {"name": "South", "region": "south"}, alice)
    world.records.create("deal", {"name": "East", "region": "east"}, alice)   # not mapped: the fallback
    world.drain()
    got = owners(world)
    assert got["Balanced"] == carol.id
    assert (got["North"], got["South"], got["East"]) == (bob.id, carol.id, world.users["dave"].id)


def test_an_unknown_user_in_a_rule_is_a_dead_run_that_names_it(world, alice):
    world.workflows({"name": "typo", "object": "deal", "trigger": {"on": "create"},
                     "actions": [{"type": "assign", "strategy": "round_robin", "users": ["bob", "wangfang"]}]})
    deal = world.records.create("deal", {"name": "Nobody"}, alice)
    world.drain()
    with world.engine.connect() as conn:
        (run,) = runs.listing(conn, record=deal["id"])[0]
    assert run["status"] == "dead" and "'wangfang'" in run["error"]
    assert owners(world)["Nobody"] == alice.id
