"""Titles of the records and users that a page's values point at, read in
one query per target object (never one per row)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Iterable

import sqlalchemy as sa

from loomcrm.metadata.model import ObjectDef
from loomcrm.platform import systemdb

from ..records import record_title, title_column

__all__ = ["USER_FIELDS", "Refs", "record_title", "title_column"]

USER_FIELDS = ("owner", "created_by", "updated_by")


class Refs:
    """With `access`, a linked record the user may not read has no title
    (`title` answers None): its name never shows."""

    def __init__(self, schema, conn: sa.Connection, access=None):
        self.schema = schema
        self.conn = conn
        self.access = access
        self.titles: dict[tuple[str, str], str] = {}
        self.users: dict[str, str] = {}

    def collect(self, obj: ObjectDef, records: Iterable[dict[str, Any]]) -> "Refs":
        wanted: dict[str, set[str]] = defaultdict(set)
        users: set[str] = set()
        records = list(records)
        for f in obj.fields:
            if f.type == "lookup":
                wanted[f.to].update(r[f.name] for r in records if r.get(f.name))
            elif f.type == "related_to":
                for r in records:
                    value = r.get(f.name)
                    if value:
                        wanted[value["object"]].add(value["id"])
            elif f.type == "user":
                users.update(r[f.name] for r in records if r.get(f.name))
        for name in USER_FIELDS:
            users.update(r[name] for r in records if r.get(name))
        self.load(wanted, users)
        return self

    def load(self, wanted: dict[str, set[str]], users: set[str] = frozenset()) -> None:
        for target, ids in wanted.items():
            ids = {i for i in ids if (target, i) not in self.titles}
            target_obj = self.schema.object(target)
            if not ids or target_obj is None:
                continue
            table = self.schema.table(target)
            column = title_column(target_obj)
            columns = [table.c.id] + ([table.c[column]] if column else [])
            query = sa.select(*columns).where(table.c.id.in_(sorted(ids)))
            clause = self.access.clause(table, target, "read") if self.access is not None else None
            if clause is not None:
                query = query.where(clause)
            for row in self.conn.execute(query):
                title = row[1] if column and row[1] not in (None, "") else row[0]
                self.titles[(target, row[0])] = str(title)
            if clause is not None:
                for rid in ids:
                    self.titles.setdefault((target, rid), None)
        users = {u for u in users if u not in self.users}
        if users:
            table = systemdb.users
            for row in self.conn.execute(sa.select(table.c.id, table.c.display_name, table.c.username)
                                         .where(table.c.id.in_(sorted(users)))):
                self.users[row.id] = row.display_name or row.username

    def title(self, target: str, rid: str) -> str | None:
        """The linked record's title; None when the user may not read it."""
        return self.titles.get((target, rid), rid)

    def user(self, uid: str) -> str:
        return self.users.get(uid, uid)
