"""Full-text search over an object's `search` fields (a knowledge base's
articles): one document per record in `loom_search_docs`, indexed by FTS5
on SQLite and by a GIN index on PostgreSQL.

Neither database splits Chinese into words, so Loom writes the document's
tokens itself and both index them as they are: lower-cased words of
letters and digits, and for runs of CJK characters every pair of
neighbours (打印机卡纸 -> 打印 印机 机卡 卡纸; a lone character stays one
token). A query is tokenised the same way and every token must match, so
"打印机" finds "打印机卡纸" but not "打印纸"; the last word of a query matches
as a prefix (an unfinished word, a lone character: 发 finds 发票). Ranked by bm25 on SQLite and
ts_rank on PostgreSQL, a word in the first search field (the title)
counting twice.

The rules hooks keep the documents in step with every save; deleted
records keep theirs (a restore needs nothing) and are left out when the
records are read. `reindex` rebuilds an object's documents (after its
`search` fields change, or for records saved before).
"""

from __future__ import annotations

import re
from typing import Any, Iterable

import sqlalchemy as sa

from loomcrm.metadata.model import ObjectDef
from loomcrm.platform import systemdb
from loomcrm.platform.db import chunks

from .fields.text import plain_text

DOCS = systemdb.search_docs
MAX_TOKENS_TEXT = 200_000
MAX_QUERY_TOKENS = 16
_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3040-\u30ff\uac00-\ud7af"
_PIECES = re.compile(rf"[{_CJK}]+|[^\W_{_CJK}]+")
_IS_CJK = re.compile(rf"[{_CJK}]")


def tokens(text: str) -> list[str]:
    """Words and CJK character pairs, lower-cased, in order."""
    out: list[str] = []
    for piece in _PIECES.findall(text.lower()):
        if _IS_CJK.match(piece):
            out += [piece] if len(piece) == 1 else [piece[i:i + 2] for i in range(len(piece) - 1)]
        else:
            out.append(piece)
    return out


def document(obj: ObjectDef, record: dict[str, Any]) -> str:
    """The record's tokens; the first search field (the title) is written
    twice, so that a word in it ranks above the same word in the body."""
    texts = []
    for name in obj.search:
        f, value = obj.field(name), str(record.get(name) or "")
        texts.append(plain_text(value) if f is not None and getattr(f, "format", None) == "html" else value)
    text = " ".join([texts[0], *texts]) if texts else ""
    return " ".join(tokens(text[:MAX_TOKENS_TEXT]))


def index(conn, obj: ObjectDef, records: Iterable[dict[str, Any]]) -> None:
    """(Re)write the documents of saved records."""
    rows = [{"object": obj.name, "record_id": r["id"], "tokens": document(obj, r)} for r in records]
    if not rows:
        return
    ids = [r["record_id"] for r in rows]
    for part in chunks(ids):
        conn.execute(sa.delete(DOCS).where(DOCS.c.object == obj.name, DOCS.c.record_id.in_(part)))
    conn.execute(sa.insert(DOCS), rows)


def reindex(conn, schema, obj: ObjectDef, batch: int = 2000) -> int:
    """Every record's document anew; answers how many."""
    conn.execute(sa.delete(DOCS).where(DOCS.c.object == obj.name))
    if not obj.search:
        return 0
    table = schema.table(obj.name)
    done, last = 0, ""
    while True:
        rows = conn.execute(sa.select(table.c.id, *(table.c[n] for n in obj.search))
                            .where(table.c.id > last).order_by(table.c.id).limit(batch)).fetchall()
        if not rows:
            return done
        conn.execute(sa.insert(DOCS), [{"object": obj.name, "record_id": r.id,
                                        "tokens": document(obj, dict(r._mapping))} for r in rows])
        done += len(rows)
        last = rows[-1].id


def matching(dialect: str, obj: ObjectDef, query: str, limit: int | None = None, *, every: bool = True):
    """A SELECT of the record ids whose documents hold every token of
    `query` (with `every` false: any of them, the more the better), best
    first when `limit` is given; None when the query has no token."""
    words = list(dict.fromkeys(tokens(query)))[:MAX_QUERY_TOKENS]
    if not words:
        return None
    # the last word may be unfinished (typed as one searches): it matches as a prefix
    if dialect == "postgresql":
        vector = sa.literal_column("loom_search_docs.vector")     # stored; see migration 0010
        terms = [f"'{w}'" for w in words[:-1]] + [f"'{words[-1]}':*"]
        wanted = sa.func.to_tsquery(sa.literal_column("'simple'"), (" & " if every else " | ").join(terms))
        select = sa.select(DOCS.c.record_id).where(DOCS.c.object == obj.name, vector.op("@@")(wanted))
        if limit is not None:
            select = select.order_by(sa.func.ts_rank(vector, wanted).desc()).limit(limit)
        return select
    fts = sa.table("loom_search_fts", sa.column("rowid"), sa.column("tokens"))
    phrase = (" " if every else " OR ").join(['"' + w + '"' for w in words[:-1]] + ['"' + words[-1] + '"*'])
    select = (sa.select(DOCS.c.record_id).select_from(fts.join(DOCS, DOCS.c.id == fts.c.rowid))
              .where(sa.literal_column("loom_search_fts").op("MATCH")(phrase), DOCS.c.object == obj.name))
    if limit is not None:
        select = select.order_by(sa.func.bm25(sa.literal_column("loom_search_fts"))).limit(limit)
    return select


def searches(obj: ObjectDef, seen: ObjectDef) -> bool:
    """Whether a list search of `obj` goes through its documents: it has
    `search` fields and the user sees them all (`seen` is the object as the
    user knows it), else the search would find words in hidden fields."""
    return bool(obj.search) and all(seen.field(name) is not None for name in obj.search)


def ranked(conn, schema, obj: ObjectDef, query: str, access=None, limit: int = 20, *,
           every: bool = True) -> list[dict[str, Any]]:
    """The best `limit` live records for `query` the user may read, best
    first; with `every` false, those holding any of its words (suggestions
    from a ticket's subject)."""
    select = matching(conn.dialect.name, obj, query, limit * 3, every=every)
    if select is None:
        return []
    ids = list(conn.execute(select).scalars())
    if not ids:
        return []
    table = schema.table(obj.name)
    query_rows = sa.select(table).where(table.c.id.in_(ids), table.c._deleted_at.is_(None))
    if access is not None:
        clause = access.clause(table, obj.name, "read")
        if clause is not None:
            query_rows = query_rows.where(clause)
    found = {r.id: dict(r._mapping) for r in conn.execute(query_rows)}
    return [found[i] for i in ids if i in found][:limit]
