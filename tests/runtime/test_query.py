"""Lists and their cursors on SQLite and PostgreSQL. Paging through a list
returns every matching row once, in the order a plain Python model gives:
each sort key with nulls last in both directions, then the id in the
direction of the last key. Checked on random rows full of nulls and ties
with random sorts, page sizes and filters, and on pages that end right at
the edge of the null group. Cursors of another sort or an older format get
a 400, and a page is one index-backed SELECT however deep it is."""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import os
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings, strategies as st

from loomcrm.runtime.install import bundle_from_json, install_bundle
from loomcrm.runtime.query import BadQuery, list_records, parse_list_params
from loomcrm.runtime.state import Runtime

from runtime_helpers import engine_for
from support import POSTGRES_ADMIN_URL, fresh_postgres_database

EXAMPLES = int(os.environ.get("LOOM_PROPERTY_EXAMPLES", "100"))
BUNDLE = {
    "manifest": {"format": "loom/1", "name": "paging", "version": "1.0.0"},
    "objects": [{"name": "item", "indexes": [["stage", "amount"]], "fields": [
        {"name": "name", "type": "text", "max_length": 20},
        {"name": "amount", "type": "currency"},
        {"name": "stage", "type": "picklist", "indexed": True, "options": [{"value": "open"}, {"value": "won"}]},
        {"name": "day", "type": "date"},
        {"name": "score", "type": "integer"},
        {"name": "done", "type": "boolean"}]}],
}
SORTABLE = ["name", "amount", "day", "score", "done", "created_at", "id"]
BASE = datetime(2024, 1, 1, tzinfo=timezone.utc)

# Small pools, so that ties and nulls are the rule rather than the exception.
VALUES = {
    "name": st.one_of(st.none(), st.sampled_from(["a", "ab", "b", "ba", "z"])),
    "amount": st.one_of(st.none(), st.sampled_from([Decimal("-1.50"), Decimal("0.00"), Decimal("2.25"), Decimal("1000.00")])),
    "stage": st.sampled_from(["open", "won"]),
    "day": st.one_of(st.none(), st.sampled_from([date(2024, 1, 1), date(2024, 6, 30)])),
    "score": st.one_of(st.none(), st.integers(-2, 2)),
    "done": st.one_of(st.none(), st.booleans()),
    "created_at": st.integers(0, 3).map(lambda s: BASE + timedelta(seconds=s)),
}
ROW = st.fixed_dictionaries(VALUES)
SORT = st.lists(st.tuples(st.sampled_from(SORTABLE), st.booleans()), min_size=0, max_size=3,
                unique_by=lambda key: key[0])
FILTER = st.sampled_from([[], [("stage", "open")], [("amount__gte", "0")], [("filter", "score > 0 or day == None")]])


def model_order(rows: list[dict], sort: list[tuple[str, bool]]) -> list[str]:
    """The ids in the order SPEC's lists promise: each key with nulls last
    whatever its direction, then the id in the direction of the last key."""
    keys = sort or [("created_at", True)]
    if all(name != "id" for name, _ in keys):
        keys = keys + [("id", keys[-1][1])]

    def compare(a, b):
        for name, desc in keys:
            x, y = a[name], b[name]
            if x == y:
                continue
            if x is None or y is None:
                return 1 if x is None else -1
            return (1 if x > y else -1) * (-1 if desc else 1)
        return 0

    return [r["id"] for r in sorted(rows, key=functools.cmp_to_key(compare))]


def _matches(row, filters) -> bool:
    for key, value in filters:
        if key == "stage" and row["stage"] != value:
            return False
        if key == "amount__gte" and (row["amount"] is None or row["amount"] < Decimal(value)):
            return False
        if key == "filter" and not ((row["score"] or 0) > 0 or row["day"] is None):
            return False
    return True


@contextlib.contextmanager
def _database(backend, tmp_path_factory):
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('paging') / 'loom.db'}"
    else:
        with fresh_postgres_database(POSTGRES_ADMIN_URL) as url:
            yield url


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def runtime(request, tmp_path_factory):
    with _database(request.param, tmp_path_factory) as url:
        engine = engine_for(url)
        install_bundle(engine, bundle_from_json(json.loads(json.dumps(BUNDLE))))
        yield Runtime(engine, refresh_interval=3600)
        engine.dispose()


def page_through(runtime, items: list[tuple[str, str]], limit: int) -> tuple[list[str], int]:
    """Every id of the list, following next_cursor; and the number of pages."""
    schema = runtime.schema()
    obj = schema.object("item")
    ids, cursor, pages = [], None, 0
    while True:
        query = items + [("limit", str(limit))] + ([("cursor", cursor)] if cursor else [])
        with runtime.engine.connect() as conn:
            data, cursor = list_records(conn, schema, obj, parse_list_params(query, obj, runtime.context))
        pages += 1
        assert len(data) <= limit
        assert cursor is None or len(data) == limit, "only the last page may be short"
        ids += [r["id"] for r in data]
        if cursor is None:
            return ids, pages
        assert pages <= 200, "paging does not end"


def fill(runtime, rows: list[dict]) -> None:
    table = runtime.schema().table("item")
    with runtime.engine.begin() as conn:
        conn.execute(table.delete())
        if rows:
            conn.execute(table.insert(), [{**r, "version": 1, "updated_at": BASE} for r in rows])


@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(rows=st.lists(ROW, max_size=30), sort=SORT, filters=FILTER, limit=st.integers(1, 7), data=st.data())
def test_pages_follow_the_model(runtime, rows, sort, filters, limit, data):
    # ids never tie, but their order is random against the insertion order
    ids = data.draw(st.permutations([f"{i:04x}" for i in range(len(rows))]))
    rows = [{**r, "id": i} for r, i in zip(rows, ids)]
    fill(runtime, rows)
    items = list(filters)
    if sort:
        items.append(("sort", ",".join(("-" if desc else "") + name for name, desc in sort)))
    got, pages = page_through(runtime, items, limit)
    expected = model_order([r for r in rows if _matches(r, filters)], sort)
    assert got == expected
    assert pages == max(1, -(-len(expected) // limit))


# --- the edge of the null group ----------------------------------------------------

EDGE_ROWS = [  # three values (with a tie), then three nulls; names tie and are null too
    {"id": "e1", "amount": Decimal("5.00"), "name": "b"}, {"id": "e2", "amount": Decimal("3.00"), "name": "a"},
    {"id": "e3", "amount": Decimal("3.00"), "name": None}, {"id": "e4", "amount": None, "name": "a"},
    {"id": "e5", "amount": None, "name": None}, {"id": "e6", "amount": None, "name": "a"},
]


@pytest.mark.parametrize("sort", ["-amount", "amount", "-amount,name", "amount,-name", "name,-amount", "-name,amount,-id"])
def test_pages_that_end_at_the_edge_of_the_null_group(runtime, sort):
    defaults = {"stage": "open", "day": None, "score": None, "done": None, "created_at": BASE}
    rows = [{**defaults, **r} for r in EDGE_ROWS]
    fill(runtime, rows)
    keys = [(part.lstrip("-"), part.startswith("-")) for part in sort.split(",")]
    expected = model_order(rows, keys)
    for limit in range(1, len(rows) + 2):  # every page boundary, including one on the last value and on the first null
        assert page_through(runtime, [("sort", sort)], limit)[0] == expected, limit


def test_everything_null_or_nothing_null(runtime):
    base = {"stage": "open", "name": None, "day": None, "score": None, "done": None, "created_at": BASE}
    for amounts in ([None] * 5, [Decimal(i) for i in range(5)]):
        rows = [{**base, "id": f"n{i}", "amount": a} for i, a in enumerate(amounts)]
        fill(runtime, rows)
        for sort in ("-amount", "amount"):
            expected = model_order(rows, [("amount", sort.startswith("-"))])
            for limit in (1, 2, 5, 6):
                assert page_through(runtime, [("sort", sort)], limit)[0] == expected


# --- cursors -----------------------------------------------------------------------

def _list(runtime, items):
    schema = runtime.schema()
    obj = schema.object("item")
    with runtime.engine.connect() as conn:
        return list_records(conn, schema, obj, parse_list_params(items, obj, runtime.context))


def _cursor(payload) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


def test_cursors_of_another_sort_or_an_older_format_are_refused(runtime):
    fill(runtime, [{"id": f"c{i}", "stage": "open", "amount": Decimal(i), "created_at": BASE} for i in range(4)])
    _, cursor = _list(runtime, [("sort", "-amount"), ("limit", "2")])
    assert cursor
    older = _cursor({"s": "-amount,-id", "k": [0, {"d": "2.00"}, "c2"]})  # the first format: a null flag per nullable key
    for bad, says in ((older, "older version"), (cursor, "another sort")):
        with pytest.raises(BadQuery, match=says) as info:
            _list(runtime, [("sort", "amount"), ("limit", "2"), ("cursor", bad)] if bad == cursor
                  else [("sort", "-amount"), ("limit", "2"), ("cursor", bad)])
        assert info.value.status == 400


@pytest.mark.parametrize("keys", [
    ["abc", "c1"], [{"d": "2.00"}, "c1"], ["NaN", "c1"], [True, "c1"], ["2.00", None], ["2.00", 7], ["2.00"],
])
def test_tampered_cursors_are_malformed(runtime, keys):
    fill(runtime, [])
    with pytest.raises(BadQuery) as info:
        _list(runtime, [("sort", "-amount"), ("cursor", _cursor({"v": 2, "s": "-amount,-id", "k": keys}))])
    assert info.value.status == 400


@pytest.mark.parametrize("sort,keys", [
    ("score", [True, "c1"]), ("done", [1, "c1"]), ("day", ["2024-01-01T00:00:00+00:00", "c1"]),
    ("created_at", ["2024-01-01T00:00:00", "c1"]), ("created_at", [None, "c1"]),
])
def test_cursor_values_must_fit_their_column(runtime, sort, keys):
    fill(runtime, [])
    with pytest.raises(BadQuery, match="malformed"):
        _list(runtime, [("sort", sort), ("cursor", _cursor({"v": 2, "s": f"{sort},id", "k": keys}))])


def test_a_boolean_sort_pages_through(runtime):
    rows = [{"id": f"b{i}", "stage": "open", "done": [True, False, None][i % 3], "created_at": BASE} for i in range(7)]
    fill(runtime, rows)
    expected = model_order([{"name": None, "amount": None, "day": None, "score": None, **r} for r in rows], [("done", True)])
    assert page_through(runtime, [("sort", "-done")], 2)[0] == expected


# --- statements and plans ----------------------------------------------------------

@contextlib.contextmanager
def _statements(engine):
    seen = []

    def listener(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip("( \n").upper().startswith("SELECT"):  # not the BEGIN SQLite's engine issues
            seen.append((statement, parameters))

    sa.event.listen(engine, "before_cursor_execute", listener)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", listener)


def test_every_page_is_one_statement(runtime):
    rows = [{"id": f"s{i:02d}", "stage": "open", "amount": None if i % 4 == 0 else Decimal(i), "created_at": BASE}
            for i in range(20)]
    fill(runtime, rows)
    for sort in ("-amount", "amount,name", "created_at", "-id"):
        cursor, pages = None, 0
        while True:
            with _statements(runtime.engine) as seen:
                _, cursor = _list(runtime, [("sort", sort), ("limit", "3")] + ([("cursor", cursor)] if cursor else []))
            assert len(seen) == 1, (sort, pages)
            pages += 1
            if cursor is None:
                break
        assert pages == 7


def _plan_nodes(plan: dict) -> list[dict]:
    nodes = [plan]
    for child in plan.get("Plans", []):
        nodes += _plan_nodes(child)
    return nodes


@pytest.mark.postgres
@pytest.mark.parametrize("runtime", ["postgresql"], indirect=True)
@pytest.mark.parametrize("filter_items", [[("stage", "open")], [("filter", "stage == 'open'")]])
def test_postgres_reads_pages_from_the_index(runtime, filter_items):
    """The rows with a value come from a backward scan of the (stage, amount)
    index, on the first page and after a cursor, with no sort of the whole
    set; only the tie on the id is sorted, within each amount."""
    rows = [{"id": f"p{i:04d}", "stage": ["open", "won"][i % 2], "amount": None if i % 10 == 0 else Decimal(i % 97),
             "created_at": BASE} for i in range(2000)]
    fill(runtime, rows)
    with runtime.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("ANALYZE o_item")
    items = filter_items + [("sort", "-amount"), ("limit", "20")]
    with _statements(runtime.engine) as seen:
        _, cursor = _list(runtime, items)
        _list(runtime, items + [("cursor", cursor)])
    with runtime.engine.connect() as conn:
        for setting in ("enable_seqscan", "enable_bitmapscan", "enable_sort"):  # what is left is what the index can do
            conn.exec_driver_sql(f"SET {setting} = off")
        for statement, parameters in seen:
            plan = conn.exec_driver_sql("EXPLAIN (FORMAT JSON) " + statement, parameters).scalar()[0]["Plan"]
            values = next(n for n in _plan_nodes(plan) if n["Node Type"] == "Append")["Plans"][0]
            nodes = _plan_nodes(values)
            assert not any(n["Node Type"] == "Sort" for n in nodes), plan
            scans = [n for n in nodes if n["Node Type"] == "Index Scan"]
            assert scans and scans[0]["Scan Direction"] == "Backward" and "stage" in scans[0]["Index Cond"], plan
