"""Saved list views: per user and object, a name for a filter expression,
a sort and a search text."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import sqlalchemy as sa

from loomcrm.platform import systemdb
from loomcrm.platform.db import write_transaction

MAX_VIEWS = 50


@dataclass(frozen=True)
class SavedView:
    id: str
    name: str
    filter: str
    sort: str
    q: str


def list_views(engine, user_id: str, object_name: str) -> list[SavedView]:
    t = systemdb.saved_views
    with engine.connect() as conn:
        rows = conn.execute(sa.select(t).where(t.c.user_id == user_id, t.c.object == object_name)
                            .order_by(t.c.name, t.c.id)).fetchall()
    return [SavedView(r.id, r.name, r.filter, r.sort, r.q) for r in rows]


def get_view(engine, user_id: str, object_name: str, view_id: str) -> SavedView | None:
    return next((v for v in list_views(engine, user_id, object_name) if v.id == view_id), None)


def save_view(engine, user_id: str, object_name: str, name: str, *, filter: str = "", sort: str = "", q: str = "") -> SavedView:
    """Create the view, or replace the user's view of the same name."""
    t = systemdb.saved_views
    name = name.strip()[:100]
    if not name:
        raise ValueError("a view needs a name")
    with write_transaction(engine) as conn:
        existing = conn.execute(sa.select(t.c.id).where(t.c.user_id == user_id, t.c.object == object_name,
                                                        t.c.name == name)).scalar()
        values = {"filter": filter[:4000], "sort": sort[:400], "q": q[:200]}
        if existing:
            conn.execute(t.update().where(t.c.id == existing).values(**values))
            return SavedView(existing, name, **values)
        count = conn.execute(sa.select(sa.func.count()).select_from(t).where(t.c.user_id == user_id,
                                                                             t.c.object == object_name)).scalar()
        if count >= MAX_VIEWS:
            raise ValueError(f"at most {MAX_VIEWS} views per list")
        vid = uuid.uuid4().hex
        conn.execute(t.insert().values(id=vid, user_id=user_id, object=object_name, name=name, **values))
        return SavedView(vid, name, **values)


def delete_view(engine, user_id: str, view_id: str) -> None:
    t = systemdb.saved_views
    with write_transaction(engine) as conn:
        conn.execute(t.delete().where(t.c.id == view_id, t.c.user_id == user_id))
