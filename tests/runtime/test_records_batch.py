"""`RecordService.create_many` (imports) against `create` row by row, on
SQLite and PostgreSQL: the same records, refusals and side effects, with a
number of statements that does not grow with the batch; and saves that
answer exactly what they stored."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
import sqlalchemy as sa

from loomcrm.platform import systemdb
from loomcrm.platform.db import write_transaction
from loomcrm.runtime.migrate.execute import publish
from loomcrm.runtime.records import Actor, Conflict, Invalid, RecordError, RuleHooks
from loomcrm.runtime.rules.hooks import Rules
from loomcrm.runtime.state import Runtime

from runtime_helpers import engine_for, insert_rows, obj, select_all, snap

ADMIN = Actor(id=None, role="admin")

ACCOUNT = obj(
    "account",
    {"name": "name", "uid": "a_name", "type": "text", "required": True, "unique": True},
    {"name": "code", "uid": "a_code", "type": "auto_number", "prefix": "ACC-", "digits": 4},
    {"name": "email", "uid": "a_email", "type": "email", "unique": True},
    {"name": "tier", "uid": "a_tier", "type": "picklist", "options": [{"value": "gold"}, {"value": "silver"}], "default": "silver"},
    {"name": "tags", "uid": "a_tags", "type": "multi_picklist", "options": [{"value": "a"}, {"value": "b"}]},
    {"name": "revenue", "uid": "a_revenue", "type": "currency"},
    {"name": "founded", "uid": "a_founded", "type": "date"},
    {"name": "seen_at", "uid": "a_seen", "type": "datetime"},
    {"name": "parent", "uid": "a_parent", "type": "lookup", "to": "account", "on_delete": "set_null"},
    {"name": "city", "uid": "a_city", "type": "text"},
    {"name": "label", "uid": "a_label", "type": "formula", "expression": "concat(name, ' (', tier, ')')", "returns": "text"},
    duplicate_rules=[{"name": "same_name_and_city", "fields": ["name", "city"], "action": "block"},
                     {"name": "same_city", "fields": ["city"], "action": "warn"}],
    track_history=["tier", "revenue"])

CUSTOMER = obj(
    "customer",
    {"name": "name", "uid": "c_name", "type": "text", "required": True},
    {"name": "orders", "uid": "c_orders", "type": "rollup", "from": "order", "via": "customer", "function": "count"})
ORDER = obj(
    "order",
    {"name": "ref", "uid": "o_ref", "type": "text", "required": True},
    {"name": "customer", "uid": "o_customer", "type": "lookup", "to": "customer", "on_delete": "cascade"},
    validation_rules=[{"name": "two_orders_at_most", "check": "customer.orders < 2", "when": "not is_blank(customer)",
                       "field": "customer", "message": "a customer has two orders at most"}])


def runtime_for(url, *objects, hooks=None) -> Runtime:
    engine = engine_for(url)
    publish(engine, snap(*objects))
    return Runtime(engine, refresh_interval=0, hooks=hooks if hooks is not None else Rules(budget_ms=1000))


@pytest.fixture
def rt(database_url):
    runtime = runtime_for(database_url, ACCOUNT)
    yield runtime
    runtime.engine.dispose()


def one_by_one(rt, name, rows) -> list:
    """What `create` answers row by row (a savepoint each), then undone."""
    with rt.engine.connect() as conn:
        conn.info["write"] = True
        tx = conn.begin()
        out = []
        for data in rows:
            try:
                with conn.begin_nested():
                    out.append(rt.records.create(name, data, ADMIN, conn=conn))
            except RecordError as exc:
                out.append(exc)
        tx.rollback()
    return out


def comparable(outcomes) -> list:
    """Outcomes without what differs between two runs: ids (matches name the
    row position instead) and times."""
    positions = {o["id"]: i for i, o in enumerate(outcomes) if isinstance(o, dict)}

    def clean(value):
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items() if k not in ("id", "created_at", "updated_at")}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return f"row {positions[value]}" if isinstance(value, str) and value in positions else value

    return [(type(o).__name__, o.status, o.detail, clean(o.errors)) if isinstance(o, RecordError) else clean(o)
            for o in outcomes]


def count_rows(rt, table) -> int:
    with rt.engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar()


ROWS = [
    {"name": "Acme", "city": "Hangzhou", "revenue": "10.50", "tags": ["b", "a"], "founded": "2001-02-03",
     "seen_at": "2024-05-06T07:08:09+08:00"},
    {"name": "Acme", "email": "x@acme.example"},                 # the name is taken by the row above
    {"name": "Beta", "tier": "bronze"},                           # refused: no such option
    {"name": "Beta", "email": "x@beta.example", "tier": "gold"},  # saved: the row above never was
    {"name": "Gamma", "email": "x@BETA.example"},                 # the e-mail is taken (domains are lowercased)
    {"name": "Reserved"},                                         # taken by a deleted record
    {"name": "Delta", "parent": "0" * 32, "owner": "nobody"},     # no such parent, no such user
    "not an object",
    {"name": "  acme  ", "city": "HANGZHOU"},                     # a duplicate of row 0 (block rule)
    {"name": "Epsilon", "city": "hangzhou "},                     # same city as row 0 (warn rule): saved
    {"name": "Zeta", "code": "ACC-9999", "bogus": 1},             # read only and unknown
    {},                                                           # name is required
]


def test_create_many_answers_what_create_answers_row_by_row(rt):
    reserved = rt.records.create("account", {"name": "Reserved"}, ADMIN)
    rt.records.delete("account", reserved["id"], ADMIN)
    expected = one_by_one(rt, "account", ROWS)
    got = rt.records.create_many("account", ROWS, ADMIN)
    assert comparable(got) == comparable(expected)

    saved = [o for o in got if isinstance(o, dict)]
    assert [o["name"] for o in saved] == ["Acme", "Beta", "Epsilon"]
    # Numbers go to saved rows only, in order, after the one the deleted record took.
    assert [o["code"] for o in saved] == ["ACC-0002", "ACC-0003", "ACC-0004"]
    assert saved[0]["label"] == "Acme (silver)" and saved[1]["tier"] == "gold"
    assert saved[2]["_warnings"][0]["rule"] == "same_city" and saved[2]["_warnings"][0]["matches"] == [saved[0]["id"]]
    assert isinstance(got[1], Conflict) and got[1].errors[0]["code"] == "unique"
    assert isinstance(got[4], Conflict) and got[4].errors[0]["field"] == "email"
    assert isinstance(got[5], Conflict)
    assert isinstance(got[8], Conflict) and got[8].errors[0]["code"] == "duplicate" and got[8].errors[0]["matches"] == [saved[0]["id"]]
    assert isinstance(got[6], Invalid) and {(e["field"], e["code"]) for e in got[6].errors} == {("parent", "not_found"), ("owner", "not_found")}
    assert got[7].detail == "the body must be a JSON object"

    # What came back is what is stored, and refused rows left nothing behind.
    for record in saved:
        assert rt.records.get("account", record["id"]) == {k: v for k, v in record.items() if k != "_warnings"}
    assert len(select_all(rt.engine, "account")) == 4
    with rt.engine.connect() as conn:
        events = conn.execute(sa.select(systemdb.outbox.c.record_id, systemdb.outbox.c.event)
                              .where(systemdb.outbox.c.event == "create").order_by(systemdb.outbox.c.id)).all()
        history = conn.execute(sa.select(systemdb.history.c.record_id, systemdb.history.c.field, systemdb.history.c.new_value)
                               .where(systemdb.history.c.record_id.in_([r["id"] for r in saved]))).all()
    assert [e.record_id for e in events] == [reserved["id"]] + [r["id"] for r in saved]
    # Each event carries the record as answered, in JSON (exact decimals as text).
    with rt.engine.connect() as conn:
        payloads = dict(conn.execute(sa.select(systemdb.outbox.c.record_id, systemdb.outbox.c.payload)
                                     .where(systemdb.outbox.c.event == "create")).all())
    for record in saved:
        storable = {k: str(v) if isinstance(v, Decimal) else v for k, v in record.items() if k != "_warnings"}
        assert payloads[record["id"]]["record"] == storable
        assert payloads[record["id"]]["changed"] == sorted(payloads[record["id"]]["changed"])
    updated = rt.records.update("account", saved[0]["id"], {"revenue": "11", "tier": "gold"}, ADMIN)
    with rt.engine.connect() as conn:
        [payload] = conn.execute(sa.select(systemdb.outbox.c.payload).where(systemdb.outbox.c.event == "update")).scalars()
    assert payload["record"] == {k: str(v) if isinstance(v, Decimal) else v for k, v in updated.items()}
    assert payload["old"] == {"revenue": "10.50", "tier": "silver", "label": "Acme (silver)"}
    assert sorted((h.record_id, h.field, h.new_value) for h in history) == sorted(
        [(r["id"], "tier", r["tier"]) for r in saved] + [(r["id"], "revenue", None if r["revenue"] is None else str(r["revenue"]))
                                                        for r in saved])
    # The order of the batch is the order of creation.
    stored = sorted(select_all(rt.engine, "account").values(), key=lambda r: (r["created_at"], r["id"]))
    assert [r["name"] for r in stored] == ["Reserved", "Acme", "Beta", "Epsilon"]


def test_values_come_back_as_stored(rt):
    parent = rt.records.create("account", {"name": "Parent"}, ADMIN)
    [made] = rt.records.create_many("account", [{"name": "Kid", "parent": parent["id"], "revenue": 7, "tags": ["b"],
                                                 "seen_at": "2024-01-02T03:04:05Z"}], ADMIN)
    assert made["revenue"] == Decimal("7.00") and made["tags"] == ["b"] and made["seen_at"] == "2024-01-02T03:04:05Z"
    assert rt.records.get("account", made["id"]) == made
    updated = rt.records.update("account", made["id"], {"revenue": "8.25", "founded": date(1999, 1, 1), "parent": None,
                                                        "name": "Kid 2"}, ADMIN, expected_version=1)
    assert updated["version"] == 2 and updated["label"] == "Kid 2 (silver)"
    assert rt.records.get("account", made["id"]) == updated
    # A unique value and a missing link in one save: both are reported.
    with pytest.raises(Invalid) as info:
        rt.records.update("account", made["id"], {"name": "Parent", "parent": "f" * 32}, ADMIN)
    assert {(e["field"], e["code"]) for e in info.value.errors} == {("parent", "not_found"), ("name", "unique")}
    again = rt.records.update("account", made["id"], {"name": "Kid 2"}, ADMIN)
    assert again["version"] == 3 and rt.records.get("account", made["id"]) == again


def test_statements_do_not_grow_with_the_batch(rt):
    parent = rt.records.create("account", {"name": "Parent"}, ADMIN)
    statements = []
    sa.event.listen(rt.engine, "before_cursor_execute", lambda *args: statements.append(args[2]))

    def run(names):
        statements.clear()
        with write_transaction(rt.engine) as conn:
            results = rt.records.create_many("account", [{"name": n, "parent": parent["id"], "email": f"{n}@x.example"}
                                                         for n in names], ADMIN, conn=conn)
        return len(statements), [isinstance(r, dict) for r in results]

    ten, hundred = run([f"a{i}" for i in range(10)]), run([f"b{i}" for i in range(100)])
    assert ten[0] == hundred[0] <= 12 and all(ten[1] + hundred[1])
    # A value repeated within the batch is refused before the write: no second try row by row.
    assert run(["c0", "c1", "c0", "c2"]) == (ten[0], [True, True, False, True])


def test_rows_whose_rules_read_what_earlier_rows_change_are_saved_in_turn(database_url):
    """The order rule reads the customer's rollup over orders: the third
    order of a customer is refused, as it would be saved one at a time."""
    rt = runtime_for(database_url, CUSTOMER, ORDER)
    ann = rt.records.create("customer", {"name": "Ann"}, ADMIN)
    bob = rt.records.create("customer", {"name": "Bob"}, ADMIN)
    rows = [{"ref": "1", "customer": ann["id"]}, {"ref": "2", "customer": bob["id"]}, {"ref": "3", "customer": ann["id"]},
            {"ref": "4", "customer": ann["id"]}, {"ref": "5"}]
    expected = one_by_one(rt, "order", rows)
    got = rt.records.create_many("order", rows, ADMIN)
    assert comparable(got) == comparable(expected)
    assert [isinstance(r, dict) for r in got] == [True, True, True, False, True]
    assert got[3].errors[0]["rule"] == "two_orders_at_most"
    assert rt.records.get("customer", ann["id"])["orders"] == 2 and rt.records.get("customer", bob["id"])["orders"] == 1
    rt.engine.dispose()


class FailsAfterWriting(RuleHooks):
    """Refuses a record after its row was written (as a failing rollup would)."""

    def after_write(self, ctx):
        if ctx.values["name"] == "boom":
            raise RecordError("the rollups of boom failed")


def test_a_refusal_after_the_write_undoes_only_that_row(database_url):
    rt = runtime_for(database_url, ACCOUNT, hooks=FailsAfterWriting())
    got = rt.records.create_many("account", [{"name": "one"}, {"name": "boom"}, {"name": "two"}], ADMIN)
    assert got[1].detail == "the rollups of boom failed"
    assert [r["code"] for r in (got[0], got[2])] == ["ACC-0001", "ACC-0002"]
    assert sorted(r["name"] for r in select_all(rt.engine, "account").values()) == ["one", "two"]
    assert count_rows(rt, systemdb.outbox) == 2 and count_rows(rt, systemdb.history) == 4
    rt.engine.dispose()


@pytest.mark.postgres
def test_a_unique_value_taken_meanwhile_by_another_writer(postgres_url):
    """Another transaction commits a name after the batch checked its names:
    the database refuses the batch's write, and the batch is saved again
    row by row to find the row that clashes."""
    engine_done = []

    class Racing(RuleHooks):
        def validate(self, ctx):
            if not engine_done:
                engine_done.append(True)
                insert_rows(rt.engine, "account", [{"name": "Late"}])

    rt = runtime_for(postgres_url, ACCOUNT, hooks=Racing())
    got = rt.records.create_many("account", [{"name": "Early"}, {"name": "Late"}, {"name": "Later"}], ADMIN)
    assert isinstance(got[1], Conflict) and got[1].errors[0]["code"] == "unique"
    assert [got[0]["name"], got[2]["name"]] == ["Early", "Later"]
    assert sorted(r["name"] for r in select_all(rt.engine, "account").values()) == ["Early", "Late", "Later"]
    assert count_rows(rt, systemdb.outbox) == 2
    rt.engine.dispose()


def test_create_many_in_the_callers_transaction_rolls_back_with_it(rt):
    with pytest.raises(RuntimeError):
        with write_transaction(rt.engine) as conn:
            assert isinstance(rt.records.create_many("account", [{"name": "Gone"}], ADMIN, conn=conn)[0], dict)
            raise RuntimeError("the caller fails later")
    assert select_all(rt.engine, "account") == {} and count_rows(rt, systemdb.outbox) == 0
    assert rt.records.create_many("account", [], ADMIN) == []
    assert rt.records.create("account", {"name": "First"}, ADMIN)["code"] == "ACC-0001"


def test_which_objects_are_saved_row_by_row():
    """Row by row only when a rollup summarises the object and its rules
    read a rollup or formula through a lookup."""
    from loomcrm.runtime.records import _independent
    from loomcrm.runtime.tables import build_schema

    region = obj("region", {"name": "name", "type": "text"},
                 {"name": "sales", "type": "rollup", "from": "customer", "via": "region", "function": "sum", "field": "orders"})
    customer = obj("customer", {"name": "name", "type": "text"},
                   {"name": "region", "type": "lookup", "to": "region", "on_delete": "set_null"},
                   {"name": "orders", "type": "rollup", "from": "order", "via": "customer", "function": "count"},
                   {"name": "loud", "type": "formula", "expression": "upper(name)", "returns": "text"})

    def order(check):
        return obj("order", {"name": "ref", "type": "text"},
                   {"name": "customer", "type": "lookup", "to": "customer", "on_delete": "cascade"},
                   validation_rules=[{"name": "r", "check": check, "field": "ref", "message": "no"}])

    def independent(check):
        schema = build_schema([region, customer, order(check)])
        return _independent(schema, schema.object("order"))

    assert independent("ref != 'x'") and independent("customer.name != 'x'")
    assert not independent("customer.orders < 3") and not independent("customer.loud != 'X'")
    assert not independent("customer.region.sales < 3")
    assert independent("customer.region.name != 'x'")
    schema = build_schema([region, customer, order("customer.orders < 3")])
    assert _independent(schema, schema.object("region"))   # nothing summarises it
