"""Full-text search: the words of each searchable record, indexed by FTS5
on SQLite and on PostgreSQL by a GIN index over a stored
to_tsvector('simple', tokens) column.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "loom_search_docs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("object", sa.String(63), nullable=False),
        sa.Column("record_id", sa.String(32), nullable=False),
        sa.Column("tokens", sa.Text, nullable=False),
        sa.UniqueConstraint("object", "record_id", name="uq_loom_search_docs_record"),
    )
    if op.get_bind().dialect.name == "postgresql":
        # stored, so that ranking reads it rather than parsing every match again
        op.execute("ALTER TABLE loom_search_docs ADD COLUMN vector tsvector "
                   "GENERATED ALWAYS AS (to_tsvector('simple', tokens)) STORED")
        op.execute("CREATE INDEX ix_loom_search_docs_vector ON loom_search_docs USING gin (vector)")
        return
    # SQLite: an external-content FTS5 index, kept in step by triggers
    op.execute("CREATE VIRTUAL TABLE loom_search_fts USING fts5(tokens, content='loom_search_docs', "
               "content_rowid='id', tokenize='unicode61')")
    op.execute("CREATE TRIGGER loom_search_docs_ai AFTER INSERT ON loom_search_docs BEGIN "
               "INSERT INTO loom_search_fts(rowid, tokens) VALUES (new.id, new.tokens); END")
    op.execute("CREATE TRIGGER loom_search_docs_ad AFTER DELETE ON loom_search_docs BEGIN "
               "INSERT INTO loom_search_fts(loom_search_fts, rowid, tokens) VALUES ('delete', old.id, old.tokens); END")
    op.execute("CREATE TRIGGER loom_search_docs_au AFTER UPDATE ON loom_search_docs BEGIN "
               "INSERT INTO loom_search_fts(loom_search_fts, rowid, tokens) VALUES ('delete', old.id, old.tokens); "
               "INSERT INTO loom_search_fts(rowid, tokens) VALUES (new.id, new.tokens); END")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        op.execute("DROP TABLE IF EXISTS loom_search_fts")
    op.drop_table("loom_search_docs")
