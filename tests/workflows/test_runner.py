"""The embedded runner (`loom serve` without a broker) in this process, on
SQLite (it looks at the outbox) and PostgreSQL (it LISTENs for the
outbox's NOTIFY): saves become done actions with nobody calling anything."""

from __future__ import annotations

import time

import sqlalchemy as sa

from loomcrm.platform import systemdb
from loomcrm.workflows.runner import Runner
from loomcrm.workflows.runs import utcnow


def wait_for(check, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("nothing happened in time")


def test_the_embedded_runner_turns_saves_into_done_actions(world, alice):
    world.workflows({"name": "tell", "object": "deal", "trigger": {"on": "create"},
                     "actions": [{"type": "assign", "strategy": "round_robin", "users": ["bob", "carol"]},
                                 {"type": "notify", "to": "owner", "message": "Yours: {{ record.name }}"}]})
    world.automation.clock = utcnow   # the real clock: the runner's threads keep time themselves
    runner = Runner(world.automation).start()
    try:
        for i in range(10):
            world.records.create("deal", {"name": f"Live {i}"}, alice)

        def notified():
            with world.engine.connect() as conn:
                rows = conn.execute(sa.select(systemdb.notifications.c.user_id, systemdb.notifications.c.message)).all()
            return rows if len(rows) == 10 else None

        rows = wait_for(notified)
    finally:
        runner.stop()
    owners = {user for user, _message in rows}
    assert owners == {world.users["bob"].id, world.users["carol"].id}   # the notice went to the new owner
    assert sorted(m for _u, m in rows) == sorted(f"Yours: Live {i}" for i in range(10))
