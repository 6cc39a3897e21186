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
