"""Publishing metadata changes onto databases with data, on SQLite and PostgreSQL."""

from __future__ import annotations

from decimal import Decimal

import pytest
import sqlalchemy as sa

from loomcrm.metadata.model import ObjectDef
from loomcrm.metadata.versions import Snapshot
from loomcrm.runtime.migrate.execute import PublishRefused, plan_for, publish

from runtime_helpers import engine_for, insert_rows, obj, published, schema_shape, select_all, snap

NAME = {"name": "name", "uid": "f_name", "type": "text", "max_length": 100}


@pytest.fixture
def engine(database_url):
    engine = engine_for(database_url)
    yield engine
    engine.dispose()


def lead(*fields, **keys):
    return obj("lead", NAME, *fields, **keys)


def test_create_and_rename_keeps_every_value(engine):
    publish(engine, snap(lead({"name": "score", "uid": "f_score", "type": "text"})))
    ids = insert_rows(engine, "lead", [{"name": f"n{i}", "score": str(i)} for i in range(50)])
    plan = plan_for(engine, snap(lead({"name": "rating", "uid": "f_score", "type": "text"})))
    assert [s.op.kind for s in plan.steps] == ["rename_field"]
    publish(engine, snap(lead({"name": "rating", "uid": "f_score", "type": "text"})))
    rows = select_all(engine, "lead")
    assert sorted(rows) == sorted(ids)
    assert {r["name"]: r["rating"] for r in rows.values()} == {f"n{i}": str(i) for i in range(50)}


def test_rename_object_keeps_rows(engine):
    publish(engine, snap(lead()))
    insert_rows(engine, "lead", [{"name": "a"}, {"name": "b"}])
    publish(engine, snap(obj("prospect", NAME, uid="u_lead")))
    assert sorted(r["name"] for r in select_all(engine, "prospect").values()) == ["a", "b"]


def test_text_to_integer_with_bad_rows_is_refused_with_the_count(engine):
    publish(engine, snap(lead({"name": "size", "uid": "f_size", "type": "text"})))
    insert_rows(engine, "lead", [{"name": "a", "size": "12"}, {"name": "b", "size": "many"},
                                 {"name": "c", "size": "1.5"}, {"name": "d", "size": None}])
    target = snap(lead({"name": "size", "uid": "f_size", "type": "integer"}))
    plan = plan_for(engine, target)
    step = next(s for s in plan.steps if s.op.kind == "change_type")
    assert step.preflight.rows == 2
    with pytest.raises(PublishRefused) as info:
        publish(engine, target)
    assert "2 rows" in str(info.value)
    assert published(engine)[0] == 1
    assert {r["name"]: r["size"] for r in select_all(engine, "lead").values()} == {"a": "12", "b": "many", "c": "1.5", "d": None}
    # the admin decides: clear them (archived first)
    publish(engine, target, confirm={step.key: "clear"})
    assert {r["name"]: r["size"] for r in select_all(engine, "lead").values()} == {"a": 12, "b": None, "c": None, "d": None}
    with engine.connect() as conn:
        archived = conn.execute(sa.text("SELECT table_name, rows FROM loom_archives WHERE kind = 'values'")).one()
        assert archived.rows == 2
        values = {r[0] for r in conn.execute(sa.text(f"SELECT value FROM {archived.table_name}"))}
    assert values == {"many", "1.5"}


def test_integer_to_decimal_and_back_to_text(engine):
    publish(engine, snap(lead({"name": "amount", "uid": "f_amount", "type": "integer"})))
    insert_rows(engine, "lead", [{"name": "a", "amount": 12}, {"name": "b", "amount": -3}])
    publish(engine, snap(lead({"name": "amount", "uid": "f_amount", "type": "currency"})))
    assert {r["name"]: r["amount"] for r in select_all(engine, "lead").values()} == {"a": Decimal("12.00"), "b": Decimal("-3.00")}
    publish(engine, snap(lead({"name": "amount", "uid": "f_amount", "type": "text"})))
    assert {r["name"]: r["amount"] for r in select_all(engine, "lead").values()} == {"a": "12.00", "b": "-3.00"}


def test_dropped_field_is_restored_with_its_data(engine):
    score = {"name": "score", "uid": "f_score", "type": "integer", "indexed": True}
    publish(engine, snap(lead(score)))
    insert_rows(engine, "lead", [{"name": f"n{i}", "score": i} for i in range(20)])
    publish(engine, snap(lead()))
    assert "score" not in next(iter(select_all(engine, "lead").values()))
    insert_rows(engine, "lead", [{"name": "new"}])
    plan = plan_for(engine, snap(lead(score)))
    assert [s.op.kind for s in plan.steps] == ["restore_field", "add_index"]
    publish(engine, snap(lead(score)))
    values = {r["name"]: r["score"] for r in select_all(engine, "lead").values()}
    assert values == {**{f"n{i}": i for i in range(20)}, "new": None}


def test_dropped_object_is_restored_with_its_records(engine):
    account = obj("account", NAME)
    publish(engine, snap(lead(), account))
    insert_rows(engine, "account", [{"name": "acme"}])
    publish(engine, snap(lead()))
    assert "o_account" not in sa.inspect(engine).get_table_names()
    publish(engine, snap(lead(), account))
    assert [r["name"] for r in select_all(engine, "account").values()] == ["acme"]


def test_unique_with_duplicates_is_refused(engine):
    publish(engine, snap(lead({"name": "email", "uid": "f_email", "type": "email"})))
    insert_rows(engine, "lead", [{"name": "a", "email": "x@example.com"}, {"name": "b", "email": "x@example.com"}])
    target = snap(lead({"name": "email", "uid": "f_email", "type": "email", "unique": True}))
    with pytest.raises(PublishRefused) as info:
        publish(engine, target, confirm={"add_unique:u_lead:f_email": "clear"})
    assert "2 rows" in str(info.value)
    insert_rows  # the duplicate goes away, then the constraint is added
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE o_lead SET email = 'y@example.com' WHERE name = 'b'"))
    publish(engine, target)
    with pytest.raises(sa.exc.IntegrityError):
        insert_rows(engine, "lead", [{"name": "c", "email": "x@example.com"}])
    publish(engine, snap(lead({"name": "email", "uid": "f_email", "type": "email"})))
    insert_rows(engine, "lead", [{"name": "c", "email": "x@example.com"}])


def test_shrinking_max_length_never_truncates(engine):
    publish(engine, snap(lead({"name": "code", "uid": "f_code", "type": "text", "max_length": 50})))
    insert_rows(engine, "lead", [{"name": "a", "code": "x" * 30}])
    with pytest.raises(PublishRefused):
        publish(engine, snap(lead({"name": "code", "uid": "f_code", "type": "text", "max_length": 10})),
                confirm={"change_max_length:u_lead:f_code": "clear"})
    publish(engine, snap(lead({"name": "code", "uid": "f_code", "type": "text", "max_length": 40})))
    publish(engine, snap(lead({"name": "code", "uid": "f_code", "type": "text", "max_length": 400})))
    assert [r["code"] for r in select_all(engine, "lead").values()] == ["x" * 30]


def test_change_lookup_target(engine):
    account, org = obj("account", NAME), obj("org", NAME)
    publish(engine, snap(account, org, lead({"name": "parent", "uid": "f_parent", "type": "lookup", "to": "account"})))
    [acc] = insert_rows(engine, "account", [{"name": "acme"}])
    [o] = insert_rows(engine, "org", [{"name": "org"}])
    insert_rows(engine, "lead", [{"name": "a", "parent": acc}])
    target = snap(account, org, lead({"name": "parent", "uid": "f_parent", "type": "lookup", "to": "org"}))
    plan = plan_for(engine, target)
    step = next(s for s in plan.steps if s.op.kind == "change_lookup_target")
    assert step.preflight.rows == 1
    with pytest.raises(PublishRefused):
        publish(engine, target)
    publish(engine, target, confirm={step.key: "clear"})
    assert [r["parent"] for r in select_all(engine, "lead").values()] == [None]
    insert_rows(engine, "lead", [{"name": "b", "parent": o}])
    with pytest.raises(sa.exc.IntegrityError):
        insert_rows(engine, "lead", [{"name": "c", "parent": acc}])


class Boom(RuntimeError):
    pass


def test_failure_in_the_middle_of_a_publish_leaves_everything_as_it_was(engine):
    publish(engine, snap(lead({"name": "size", "uid": "f_size", "type": "text"}), obj("account", NAME)))
    insert_rows(engine, "lead", [{"name": "a", "size": "12"}])
    before = schema_shape(engine), select_all(engine, "lead"), published(engine)
    target = snap(lead({"name": "headcount", "uid": "f_size", "type": "integer"},
                       {"name": "note", "uid": "f_note", "type": "long_text"}), obj("contact", NAME))

    def explode(index, step):
        if index == 3:
            raise Boom(step.op.describe())

    with pytest.raises(Boom):
        publish(engine, target, on_step=explode)
    assert (schema_shape(engine), select_all(engine, "lead"), published(engine)) == before
    publish(engine, target)
    assert [r["headcount"] for r in select_all(engine, "lead").values()] == [12]


def test_publish_writes_versions(engine):
    assert publish(engine, snap(lead()), comment="first").version == 1
    assert publish(engine, snap(lead({"name": "x", "uid": "f_x", "type": "boolean"}))).version == 2
    version, snapshot = published(engine)
    assert version == 2 and snapshot.object("lead").field("x") is not None


@pytest.mark.postgres
def test_adding_a_field_on_postgres_does_not_rewrite_the_table(postgres_url):
    engine = engine_for(postgres_url)
    publish(engine, snap(lead()))
    insert_rows(engine, "lead", [{"name": f"n{i}"} for i in range(100)])
    node = "SELECT relfilenode FROM pg_class WHERE relname = 'o_lead'"
    with engine.connect() as conn:
        before = conn.execute(sa.text(node)).scalar()
    publish(engine, snap(lead({"name": "score", "uid": "f_s", "type": "integer"}, {"name": "flag", "uid": "f_f", "type": "boolean", "required": True})))
    with engine.connect() as conn:
        assert conn.execute(sa.text(node)).scalar() == before
    engine.dispose()


@pytest.mark.postgres
def test_an_index_on_a_big_postgresql_table_is_built_concurrently_after_the_publish(postgres_url, monkeypatch):
    from loomcrm.runtime.migrate import execute

    engine = engine_for(postgres_url)
    deal = {"name": "deal", "uid": "u_deal", "fields": [{"name": "title", "uid": "u_title", "type": "text"},
                                                      {"name": "score", "uid": "u_score", "type": "integer"}]}
    execute.publish(engine, Snapshot(objects=[ObjectDef.model_validate(deal)]))
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO o_deal (id, version, created_at, updated_at, title, score) "
                             "SELECT md5(i::text), 1, now(), now(), 'd' || i, i % 97 FROM generate_series(1, 3000) i"))
        conn.execute(sa.text("ANALYZE o_deal"))
    monkeypatch.setattr(execute, "CONCURRENT_INDEX_ROWS", 1000)
    statements = []
    listener = lambda conn, cursor, statement, *rest: statements.append(statement)  # noqa: E731
    sa.event.listen(engine, "before_cursor_execute", listener)
    result = execute.publish(engine, Snapshot(objects=[ObjectDef.model_validate({**deal, "indexes": [["score", "title"]]})]))
    sa.event.remove(engine, "before_cursor_execute", listener)
    assert result.index_failures == []
    # PostgreSQL refuses CONCURRENTLY inside a transaction: that it ran proves the publish had committed.
    creates = [s for s in statements if "CREATE INDEX" in s and "score" in s]
    assert len(creates) == 1 and "CONCURRENTLY" in creates[0], creates
    with engine.connect() as conn:
        indexes = conn.execute(sa.text("SELECT i.indisvalid, pg_get_indexdef(i.indexrelid) FROM pg_index i "
                                       "JOIN pg_class c ON c.oid = i.indrelid WHERE c.relname = 'o_deal'")).all()
    assert any("(score, title)" in definition and valid for valid, definition in indexes), indexes
    engine.dispose()
