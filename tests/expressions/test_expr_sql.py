"""The SQL back end selects exactly the rows Python evaluation accepts, on
SQLite and PostgreSQL (property-based), and says what cannot run in SQL."""

from __future__ import annotations

from datetime import date

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings, strategies as st

from loomcrm.metadata.expressions import ExpressionError, Scope
from loomcrm.runtime.expressions import compile_expression
from loomcrm.runtime.expressions.sql import JoinResolver, to_sql

from .crm import OBJECTS
from .helpers import ctx

SCOPE = Scope(OBJECTS, "opportunity", version="sql-tests")
META = sa.MetaData()
ACCOUNTS = sa.Table("account", META, sa.Column("id", sa.String(20), primary_key=True), sa.Column("name", sa.String(50)),
                    sa.Column("industry", sa.String(20)), sa.Column("parent", sa.String(20)), sa.Column("employees", sa.Integer))
OPPS = sa.Table("opportunity", META, sa.Column("id", sa.String(20), primary_key=True), sa.Column("name", sa.String(50)),
                sa.Column("amount", sa.Numeric(18, 2)), sa.Column("account", sa.String(20)), sa.Column("close_date", sa.Date),
                sa.Column("priority", sa.Integer), sa.Column("hot", sa.Boolean), sa.Column("stage", sa.String(20)))
TABLES = {"account": ACCOUNTS, "opportunity": OPPS}

TEXT = st.text(alphabet="aAbB_%\\ \t", max_size=4)
texts = st.one_of(st.none(), TEXT)
amounts = st.one_of(st.none(), st.decimals(min_value=-1000, max_value=1000, places=2, allow_nan=False, allow_infinity=False))
dates = st.one_of(st.none(), st.dates(min_value=date(2023, 11, 1), max_value=date(2024, 3, 31)))
rows = st.lists(st.fixed_dictionaries({
    "name": texts, "amount": amounts, "close_date": dates, "priority": st.one_of(st.none(), st.integers(-3, 3)),
    "hot": st.one_of(st.none(), st.booleans()), "stage": st.sampled_from([None, "qualification", "negotiation", "won", "lost"]),
    "account": st.sampled_from([None, "a1", "a2", "missing"])}), max_size=8)


def _lit(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


CMP = st.sampled_from(["==", "!=", "<", "<=", ">", ">="])
atoms = st.one_of(
    st.builds(lambda op, v: f"amount {op} {v}", CMP, st.decimals(-500, 500, places=1, allow_nan=False, allow_infinity=False)),
    st.builds(lambda op, v: f"priority {op} {v}", CMP, st.integers(-3, 3)),
    st.builds(lambda op, v: f"name {op} {_lit(v)}", CMP, TEXT),
    st.builds(lambda op, v: f"account.industry {op} {_lit(v)}", CMP, st.sampled_from(["retail", "tech", "x"])),
    st.builds(lambda op, m, d: f"close_date {op} date(2024, {m}, {d})", CMP, st.integers(1, 3), st.integers(1, 28)),
    st.builds(lambda f, v: f"{f}(name, {_lit(v)})", st.sampled_from(["contains", "starts_with", "ends_with"]), TEXT),
    st.sampled_from(["is_blank(name)", "is_blank(amount)", "is_blank(account.industry)", "hot", "hot == None",
                     "stage in ('won', 'lost')", "stage not in ('won', None)", "name in ('a', 'A', None)",
                     "year(close_date) == 2024", "month(close_date) >= 2", "weekday(close_date) > 5",
                     "days_between(close_date, date(2024, 1, 15)) > 10", "add_days(close_date, 7) < date(2024, 2, 1)",
                     "stage_probability(stage) >= 60", "stage_category(stage) == 'open'", "amount == None",
                     "coalesce(amount, 0) > 0", "len(name) >= 2", "close_date < today()", "priority == amount",
                     "1 < priority <= 3", "(amount if hot else 0) > 100", "account.parent.name == 'Holding'",
                     "stage_category(stage) != 'won'", "40 < stage_probability(stage)",
                     "stage_probability(stage) == None", "stage_category(stage) == None", "amount * 2 > 100", "amount + priority > 10", "amount - 1.5 < 0", "-amount > 5",
                     "priority * stage_probability(stage) / 100 >= 1", "amount / 4 > 50", "amount * 0.5 <= 25"]),
)
conditions = st.recursive(atoms, lambda inner: st.one_of(
    st.builds(lambda a, b: f"({a}) and ({b})", inner, inner),
    st.builds(lambda a, b: f"({a}) or ({b})", inner, inner),
    st.builds(lambda a: f"not ({a})", inner)), max_leaves=6)


def _setup(url):
    engine = sa.create_engine(url)
    META.create_all(engine)
    with engine.begin() as conn:
        conn.execute(ACCOUNTS.insert(), [
            {"id": "a1", "name": "Acme", "industry": "retail", "parent": "a2", "employees": 5},
            {"id": "a2", "name": "Holding", "industry": None, "parent": None, "employees": None}])
    return engine


def _python_record(row):
    accounts = {"a1": {"industry": "retail", "parent": "a2"}, "a2": {"industry": None, "parent": None}}
    acc = accounts.get(row["account"], {})
    parent = accounts.get(acc.get("parent"), {}) if acc else {}
    return dict(row, **{"account.industry": acc.get("industry"), "account.parent.name": "Holding" if parent else None})


@pytest.mark.parametrize("dialect_url", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_sql_matches_python(dialect_url, request, tmp_path):
    url = f"sqlite:///{tmp_path / 'x.db'}" if dialect_url == "sqlite" else request.getfixturevalue("postgres_url")
    engine = _setup(url)
    context = ctx()

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(rows, conditions)
    def check(data, source):
        records = [dict(r, id=f"o{i}") for i, r in enumerate(data)]
        compiled = compile_expression(source, SCOPE, "boolean")
        expected = {r["id"] for r in records if compiled.evaluate(_python_record(r), context=context)}
        resolver = JoinResolver(OBJECTS, "opportunity", TABLES)
        where = to_sql(compiled, resolver, context=context)
        with engine.begin() as conn:
            conn.execute(OPPS.delete())
            if records:
                conn.execute(OPPS.insert(), records)
            got = {row[0] for row in conn.execute(sa.select(OPPS.c.id).select_from(resolver.from_clause).where(where))}
        assert got == expected, source

    try:
        check()
    finally:
        engine.dispose()


@pytest.mark.parametrize("source, part", [
    ("amount % 2 == 1", "arithmetic"),
    ("amount / priority > 10", "division"),
    ("amount / 0 > 10", "division"),
    ("lower(name) == 'x'", "lower()"),
    ("matches(name, 'a')", "matches()"),
    ("is_changed(amount)", "is_changed()"),
    ("includes(tags, 'vip')", "includes()"),
    ("add_months(close_date, 1) > today()", "add_months()"),
    ("year(closed_at) == 2024", "datetime"),
    ("is_blank(tags)", "multi-picklist"),
])
def test_outside_the_subset_says_which_part(source, part):
    resolver = JoinResolver(OBJECTS, "opportunity", TABLES)
    with pytest.raises(ExpressionError) as info:
        to_sql(compile_expression(source, SCOPE), resolver, context=ctx())
    assert info.value.code == "not_sql"
    assert part in info.value.error.message and "cannot run in the database" in info.value.error.message


def test_lookup_paths_become_outer_joins():
    resolver = JoinResolver(OBJECTS, "opportunity", TABLES)
    to_sql(compile_expression("account.industry == 'retail' and account.parent.name == 'x' and account.name != ''", SCOPE), resolver)
    sql = str(sa.select(OPPS.c.id).select_from(resolver.from_clause))
    assert sql.count("LEFT OUTER JOIN") == 2


def test_like_wildcards_are_escaped_on_postgresql():
    from sqlalchemy.dialects import postgresql
    resolver = JoinResolver(OBJECTS, "opportunity", TABLES)
    clause = to_sql(compile_expression("starts_with(name, '50%_off')", SCOPE), resolver)
    text = str(clause.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}))
    assert "LIKE '50\\%" in text and "\\_off" in text and "ESCAPE" in text
