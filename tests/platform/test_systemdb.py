import sqlalchemy as sa

from loomcrm.platform import systemdb
from loomcrm.platform.db import create_engine, normalize_url


# the full-text index, which the portable declaration cannot say (migration 0010):
# FTS5's table and its shadow tables on SQLite, a stored tsvector on PostgreSQL
SEARCH_INDEX_TABLES = {"sqlite": {"loom_search_fts", "loom_search_fts_config", "loom_search_fts_data",
                                  "loom_search_fts_docsize", "loom_search_fts_idx"}, "postgresql": set()}
SEARCH_INDEX_COLUMNS = {"sqlite": {}, "postgresql": {"loom_search_docs": {"vector"}}}


def test_migrations_create_exactly_the_described_tables(database_url):
    engine = create_engine(database_url)
    systemdb.upgrade(engine)
    systemdb.upgrade(engine)  # a second run changes nothing
    inspector = sa.inspect(engine)
    dialect = engine.dialect.name
    assert set(inspector.get_table_names()) == (set(systemdb.meta.tables) | {systemdb.VERSION_TABLE}
                                                 | SEARCH_INDEX_TABLES[dialect])
    for table in systemdb.meta.sorted_tables:
        extra = SEARCH_INDEX_COLUMNS[dialect].get(table.name, set())
        assert {c["name"] for c in inspector.get_columns(table.name)} == set(table.columns.keys()) | extra, table.name
    engine.dispose()


def test_sqlite_runs_with_wal_and_foreign_keys(sqlite_url):
    engine = create_engine(sqlite_url)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_plain_postgresql_urls_get_a_driver():
    assert normalize_url("postgresql://loom@db:5432/crm").drivername == "postgresql+psycopg"
    assert normalize_url("sqlite:///x.db").drivername == "sqlite"
