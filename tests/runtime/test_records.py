"""The record service on SQLite and PostgreSQL."""

from __future__ import annotations

from decimal import Decimal

import pytest
import sqlalchemy as sa

from loomcrm.platform import systemdb
from loomcrm.runtime.migrate.execute import publish
from loomcrm.runtime.records import Actor, Conflict, Invalid, NotFound, PreconditionFailed
from loomcrm.runtime.state import Runtime

from runtime_helpers import engine_for, obj, snap

ALICE = Actor(id=None, role="admin")

ACCOUNT = obj("account", {"name": "name", "uid": "a_name", "type": "text", "required": True, "unique": True},
              {"name": "code", "uid": "a_code", "type": "auto_number", "prefix": "ACC-", "digits": 4})
DEAL = obj("deal",
           {"name": "name", "uid": "d_name", "type": "text", "required": True},
           {"name": "amount", "uid": "d_amount", "type": "currency", "min": 0},
           {"name": "stage", "uid": "d_stage", "type": "picklist", "options": [{"value": "open"}, {"value": "won"}], "default": "open"},
           {"name": "account", "uid": "d_account", "type": "lookup", "to": "account", "on_delete": "cascade"},
           track_history=["stage", "amount"])
NOTE = obj("note", {"name": "body", "uid": "n_body", "type": "long_text"},
           {"name": "deal", "uid": "n_deal", "type": "lookup", "to": "deal", "on_delete": "set_null"})
TASK = obj("task", {"name": "subject", "uid": "t_subject", "type": "text"},
           {"name": "account", "uid": "t_account", "type": "lookup", "to": "account", "on_delete": "restrict"})


@pytest.fixture
def rt(database_url):
    engine = engine_for(database_url)
    publish(engine, snap(ACCOUNT, DEAL, NOTE))
    runtime = Runtime(engine, refresh_interval=0)
    yield runtime
    engine.dispose()


def test_create_coerces_defaults_and_numbers(rt):
    acc = rt.records.create("account", {"name": "Acme"}, ALICE)
    assert acc["code"] == "ACC-0001" and acc["version"] == 1
    assert rt.records.create("account", {"name": "Beta"}, ALICE)["code"] == "ACC-0002"
    deal = rt.records.create("deal", {"name": "Big", "amount": "10.50", "account": acc["id"]}, ALICE)
    assert deal["amount"] == Decimal("10.50") and deal["stage"] == "open"
    assert deal["created_at"].endswith("Z")


def test_all_problems_come_back_together(rt):
    with pytest.raises(Invalid) as info:
        rt.records.create("deal", {"amount": "-1", "stage": "lost", "account": "nope", "bogus": 1, "id": "x"}, ALICE)
    codes = {(e["field"], e["code"]) for e in info.value.errors}
    assert codes == {("amount", "min"), ("stage", "invalid_option"), ("account", "not_found"),
                     ("bogus", "unknown_field"), ("id", "read_only"), ("name", "required")}


def test_unique_is_a_conflict_and_deleted_values_stay_reserved(rt):
    acc = rt.records.create("account", {"name": "Acme"}, ALICE)
    with pytest.raises(Conflict) as info:
        rt.records.create("account", {"name": "Acme"}, ALICE)
    assert info.value.errors[0]["code"] == "unique"
    rt.records.delete("account", acc["id"], ALICE)
    with pytest.raises(Conflict):
        rt.records.create("account", {"name": "Acme"}, ALICE)


def test_update_versions_history_and_outbox(rt):
    deal = rt.records.create("deal", {"name": "Big", "amount": 10}, ALICE)
    updated = rt.records.update("deal", deal["id"], {"stage": "won", "amount": None}, ALICE, expected_version=1)
    assert updated["version"] == 2 and updated["amount"] is None
    with pytest.raises(PreconditionFailed):
        rt.records.update("deal", deal["id"], {"stage": "open"}, ALICE, expected_version=1)
    with rt.engine.connect() as conn:
        history = conn.execute(sa.select(systemdb.history.c.field, systemdb.history.c.old_value, systemdb.history.c.new_value)
                               .where(systemdb.history.c.record_id == deal["id"]).order_by(systemdb.history.c.id)).fetchall()
        events = conn.execute(sa.select(systemdb.outbox.c.event).where(systemdb.outbox.c.record_id == deal["id"])
                              .order_by(systemdb.outbox.c.id)).scalars().all()
    assert ("stage", "open", "won") in [tuple(h) for h in history]
    assert ("amount", "10.00", None) in [tuple(h) for h in history]
    assert events == ["create", "update"]


def test_soft_delete_cascade_set_null_and_restore(rt):
    acc = rt.records.create("account", {"name": "Acme"}, ALICE)
    deal = rt.records.create("deal", {"name": "Big", "account": acc["id"]}, ALICE)
    note = rt.records.create("note", {"body": "hi", "deal": deal["id"]}, ALICE)
    rt.records.delete("account", acc["id"], ALICE)
    with pytest.raises(NotFound):
        rt.records.get("deal", deal["id"])
    assert rt.records.get("note", note["id"])["deal"] is None
    rt.records.restore("account", acc["id"], ALICE)
    assert rt.records.get("deal", deal["id"])["account"] == acc["id"]


def test_restrict_blocks_delete(database_url):
    engine = engine_for(database_url)
    publish(engine, snap(ACCOUNT, TASK))
    rt = Runtime(engine, refresh_interval=0)
    acc = rt.records.create("account", {"name": "Acme"}, ALICE)
    rt.records.create("task", {"subject": "call", "account": acc["id"]}, ALICE)
    with pytest.raises(Conflict) as info:
        rt.records.delete("account", acc["id"], ALICE)
    assert info.value.errors[0]["code"] == "restricted"
    engine.dispose()


def _at_once(count: int, work) -> list:
    """`work(i)` in `count` threads released together; each result or the exception it raised."""
    import threading

    barrier = threading.Barrier(count)
    results: list = [None] * count

    def run(i):
        barrier.wait()
        try:
            results[i] = work(i)
        except Exception as exc:  # collected: the test looks at each
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


@pytest.mark.postgres
def test_concurrent_first_auto_numbers_never_clash(postgres_url):
    """Eight writers that all find a new auto-number counter missing create
    it once between them, and every create gets its own number."""
    engine = engine_for(postgres_url)
    publish(engine, snap(ACCOUNT))
    runtime = Runtime(engine, refresh_interval=0)
    for round_ in range(6):
        with engine.begin() as conn:
            conn.execute(sa.delete(systemdb.counters))
        results = _at_once(8, lambda i: runtime.records.create("account", {"name": f"Acme {round_}-{i}"}, ALICE))
        assert [r for r in results if isinstance(r, Exception)] == []
        codes = sorted(r["code"] for r in results)
        assert codes == [f"ACC-{n:04d}" for n in range(1, 9)]
    engine.dispose()


@pytest.mark.postgres
def test_a_unique_clash_the_database_catches_names_the_field_not_the_constraint(postgres_url):
    """Writers racing for one unique value: one wins, every other gets the
    contract's 409 `unique` on the field, whether the record service's
    check or the database's constraint caught it."""
    engine = engine_for(postgres_url)
    publish(engine, snap(ACCOUNT))
    runtime = Runtime(engine, refresh_interval=0)
    for round_ in range(5):
        results = _at_once(8, lambda i: runtime.records.create("account", {"name": f"Same {round_}"}, ALICE))
        refused = [r for r in results if isinstance(r, Exception)]
        assert len(refused) == 7 and all(isinstance(r, Conflict) for r in refused), refused
        for r in refused:
            assert [(e["field"], e["code"]) for e in r.errors] == [("name", "unique")]
            text = (r.detail + " ".join(e["message"] for e in r.errors)).lower()
            assert "constraint" not in text and "o_account" not in text and "uq_" not in text
    engine.dispose()

