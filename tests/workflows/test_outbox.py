"""The outbox as the source of truth: an event committed is dispatched
once, whatever crashes, and several dispatchers never dispatch one event
twice (SQLite and PostgreSQL)."""

from __future__ import annotations

import threading

import sqlalchemy as sa

from loomcrm.platform import systemdb
from loomcrm.platform.db import write_transaction
from loomcrm.runtime.records import Origin
from loomcrm.workflows import outbox
from loomcrm.workflows.engine import Automation

from flows import make_settings

NOTIFY = {"name": "tell_owner", "object": "deal", "trigger": {"on": "create"},
          "actions": [{"type": "notify", "to": "owner", "message": "New deal: {{ record.name }}"}]}


def count(world, table, *where):
    with world.engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table).where(*where)).scalar()


def test_a_dispatcher_that_dies_before_its_commit_leaves_the_event_to_the_next(world, alice):
    world.workflows(NOTIFY)
    world.records.create("deal", {"name": "Survivor"}, alice)

    class Crash(Exception):
        pass

    try:
        with write_transaction(world.engine) as conn:
            outbox.dispatch(conn, world.automation.catalog, lambda c: world.automation.runtime.schema(), world.clock(),
                            field_context=world.automation.runtime.context, timezone="UTC")
            raise Crash   # the process dies before COMMIT
    except Crash:
        pass
    assert count(world, systemdb.automation_runs) == 0
    # a new process (a restart) picks the event up and runs it once
    restarted = Automation(world.engine, world.automation.settings, clock=world.clock)
    while restarted.dispatch()[0]:
        pass
    while restarted.execute_next()[0]:
        pass
    assert count(world, systemdb.notifications) == 1
    assert world.drain() == 0 and count(world, systemdb.notifications) == 1


def test_four_dispatchers_over_20000_events_write_one_run_per_key(world, alice):
    world.workflows(NOTIFY)
    rows = [{"name": f"Deal {i}"} for i in range(20_000)]
    for start in range(0, len(rows), 2000):
        saved = world.records.create_many("deal", rows[start:start + 2000], alice, origin=Origin("import"))
        assert all(isinstance(r, dict) for r in saved)
    dispatchers = [Automation(world.engine, make_settings(str(world.engine.url.render_as_string(hide_password=False))),
                              clock=world.clock) for _ in range(4)]
    dispatched = [0] * 4
    errors: list[BaseException] = []

    def work(i):
        try:
            while True:
                n, _ready = dispatchers[i].dispatch(limit=250)
                if n == 0:
                    return
                dispatched[i] += n
        except BaseException as exc:   # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sum(dispatched) == 20_000
    assert count(world, systemdb.outbox, systemdb.outbox.c.processed_at.is_(None)) == 0
    with world.engine.connect() as conn:
        runs = systemdb.automation_runs
        total, keys, events = conn.execute(sa.select(sa.func.count(), sa.func.count(sa.distinct(runs.c.key)),
                                                     sa.func.count(sa.distinct(runs.c.event_id)))).one()
    assert total == keys == events == 20_000
    if world.engine.dialect.name == "postgresql":
        assert sum(1 for n in dispatched if n) >= 2   # SKIP LOCKED let them work side by side
