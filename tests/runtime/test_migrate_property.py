"""Random sequences of metadata edits applied to a populated database end
in the same schema as generating the final metadata from scratch, and no
row is lost."""

from __future__ import annotations

import contextlib
import os
import uuid
from datetime import date
from decimal import Decimal

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings, strategies as st

from loomcrm.metadata.model import ObjectDef
from loomcrm.metadata.versions import Snapshot
from loomcrm.runtime.migrate.execute import PublishRefused, plan_for, publish

from runtime_helpers import engine_for, insert_rows, schema_shape, select_all
from support import POSTGRES_ADMIN_URL, fresh_postgres_database

EXAMPLES = int(os.environ.get("LOOM_PROPERTY_EXAMPLES", "15"))
TYPES = ["text", "long_text", "integer", "decimal", "boolean", "date", "email"]
SAMPLE = {"text": "12", "long_text": "hello", "integer": 7, "decimal": Decimal("3.25"), "boolean": True,
          "date": date(2024, 5, 1), "email": "a@example.com"}


def _field(name, ftype, **keys):
    return {"name": name, "uid": uuid.uuid4().hex[:10], "type": ftype, **keys}


def _objects(state):
    return [ObjectDef.model_validate({"name": name, "uid": f"u_{name}", "fields": fields}) for name, fields in state.items()]


def _apply(engine, state) -> bool:
    """Publish the state, deciding `clear` for every value that does not convert."""
    snapshot = Snapshot(objects=_objects(state))
    plan = plan_for(engine, snapshot)
    confirm = {s.key: "clear" for s in plan.steps if s.preflight and s.preflight.options}
    try:
        publish(engine, snapshot, confirm=confirm)
        return True
    except PublishRefused:
        return False


def _edit(data, state):
    name = data.draw(st.sampled_from(sorted(state)))
    fields = state[name]
    kind = data.draw(st.sampled_from(["add", "drop", "rename", "retype", "index", "unique", "length", "lookup"]))
    names = [f["name"] for f in fields]
    if kind == "add" or len(fields) < 2:
        new = f"f{len(names)}_{data.draw(st.integers(0, 999))}"
        if new not in names:
            fields.append(_field(new, data.draw(st.sampled_from(TYPES))))
        return
    target = data.draw(st.sampled_from(fields[1:]))  # the first field stays
    if kind == "drop":
        fields.remove(target)
    elif kind == "rename":
        new = target["name"] + "_r"
        if new not in names and len(new) < 60:
            target["name"] = new
    elif kind == "retype" and target["type"] != "lookup":
        target["type"] = data.draw(st.sampled_from(TYPES))
        target.pop("max_length", None)
    elif kind == "index":
        target["indexed"] = not target.get("indexed", False)
    elif kind == "unique" and target["type"] != "lookup":
        target["unique"] = not target.get("unique", False)
    elif kind == "length" and target["type"] == "text":
        target["max_length"] = data.draw(st.sampled_from([20, 100, 255, 400]))
    elif kind == "lookup":
        other = "parent" if name == "child" else None
        if other and not any(f["type"] == "lookup" for f in fields):
            fields.append(_field("link", "lookup", to=other))


@contextlib.contextmanager
def _databases(backend, tmp_path_factory):
    """Two new databases: one to migrate step by step, one built fresh."""
    if backend == "sqlite":
        folder = tmp_path_factory.mktemp("prop")
        yield f"sqlite:///{folder / 'migrated.db'}", f"sqlite:///{folder / 'fresh.db'}"
        return
    with fresh_postgres_database(POSTGRES_ADMIN_URL) as migrated, fresh_postgres_database(POSTGRES_ADMIN_URL) as fresh:
        yield migrated, fresh


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_random_edits_match_a_fresh_build(backend, tmp_path_factory, data):
    with _databases(backend, tmp_path_factory) as (migrated_url, fresh_url):
        _random_edits_match_a_fresh_build(migrated_url, fresh_url, data)


def _random_edits_match_a_fresh_build(migrated_url, fresh_url, data):
    engine = engine_for(migrated_url)
    state = {"parent": [_field("name", "text")], "child": [_field("title", "text"), _field("size", "integer")]}
    assert _apply(engine, state)
    parents = insert_rows(engine, "parent", [{"name": f"p{i}"} for i in range(5)])
    children = insert_rows(engine, "child", [{"title": f"c{i}", "size": i} for i in range(8)])
    for _ in range(data.draw(st.integers(1, 6))):
        before = {k: [dict(f) for f in v] for k, v in state.items()}
        _edit(data, state)
        if not _apply(engine, state):
            state = before
        # a new field gets a value in every row, so later edits move real data
        for name, fields in state.items():
            extra = [f for f in fields if f["type"] in SAMPLE and not f.get("unique")]
            if extra:
                with engine.begin() as conn:
                    table = sa.Table(f"o_{name}", sa.MetaData(), autoload_with=conn)  # typed binds on both databases
                    for f in extra[-1:]:
                        column = table.c[f["name"]]
                        conn.execute(table.update().where(column.is_(None)).values({column: SAMPLE[f["type"]]}))
    fresh = engine_for(fresh_url)
    publish(fresh, Snapshot(objects=_objects(state)))
    assert schema_shape(engine) == schema_shape(fresh)
    assert sorted(select_all(engine, "parent")) == sorted(parents)
    assert sorted(select_all(engine, "child")) == sorted(children)
    engine.dispose()
    fresh.dispose()
