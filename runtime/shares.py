"""Sharing a record beyond its owner's scope, with a user or a department
(read or edit), and the admins' "why can this user see this record?".

Who may share: whoever's role may update the record (its owner, those
whose scope reaches the owner, admins); a share, even to edit, does not
pass sharing on. A share with a department reaches its members and the
members of the departments below it; sharing again with the same user or
department changes the access of the share already there. Shares are
read by `access.Access.clause` like every other right; here they are only
made, listed and removed.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa

from loomcrm.platform import audit, systemdb
from loomcrm.platform.db import write_transaction

from .records import Forbidden, Invalid, NotFound, RecordError

_shares, _users, _departments = systemdb.shares, systemdb.users, systemdb.departments


def _record(runtime, conn, object_name: str, rid: str, user, action: str):
    """(schema, object, stored row) of a record `user` may `action`."""
    schema = runtime.schema()
    obj = runtime.records.object_of(schema, object_name)
    row = runtime.records._load(conn, schema, obj, rid)
    runtime.records._may(conn, schema, obj, runtime.access.of(user), row, action)
    return schema, obj, row


def _sharer(runtime, conn, object_name: str, rid: str, user):
    """(schema, object, row) of a record `user` may share, else 404 / 403."""
    schema, obj, row = _record(runtime, conn, object_name, rid, user, "read")
    if not runtime.access.of(user).may_share(conn, schema.table(obj.name), obj.name, row):
        raise Forbidden(f"you may not share this {obj.name}")
    return schema, obj, row


def may_share(runtime, object_name: str, rid: str, user) -> bool:
    with runtime.engine.connect() as conn:
        try:
            _sharer(runtime, conn, object_name, rid, user)
        except Forbidden:
            return False
    return True


def listing(runtime, object_name: str, rid: str, user) -> list[dict[str, Any]]:
    with runtime.engine.connect() as conn:
        _record(runtime, conn, object_name, rid, user, "read")
        rows = conn.execute(sa.select(_shares, _users.c.username, _departments.c.name.label("department"))
                            .select_from(_shares.outerjoin(_users, _users.c.id == _shares.c.user_id)
                                         .outerjoin(_departments, _departments.c.id == _shares.c.department_id))
                            .where(_shares.c.object == object_name, _shares.c.record_id == rid)
                            .order_by(_shares.c.created_at)).all()
    return [{"id": r.id, "user": r.username, "department": r.department, "access": r.access,
             "created_at": r.created_at.isoformat() if r.created_at else None} for r in rows]


def share(runtime, object_name: str, rid: str, body: Any, user) -> dict[str, Any]:
    if not isinstance(body, dict) or set(body) - {"user", "department", "access"} or \
            (("user" in body) == ("department" in body)):
        raise RecordError('the body is {"user": NAME, "access": "read" | "edit"} or {"department": NAME, "access": ...}')
    level = body.get("access", "read")
    if level not in ("read", "edit"):
        raise Invalid("access is read or edit", [{"field": "access", "code": "invalid_option", "message": "read or edit"}])
    with write_transaction(runtime.engine) as conn:
        _sharer(runtime, conn, object_name, rid, user)
        if "user" in body:
            target = conn.execute(sa.select(_users.c.id).where(_users.c.username == str(body["user"])[:150],
                                                              _users.c.is_active.is_(True))).scalar()
            column = "user_id"
        else:
            target = conn.execute(sa.select(_departments.c.id).where(_departments.c.name == str(body["department"])[:63])).scalar()
            column = "department_id"
        if target is None:
            key = "user" if column == "user_id" else "department"
            raise Invalid(f"no {key} {str(body[key])[:63]!r}", [{"field": key, "code": "not_found", "message": f"no such {key}"}])
        existing = conn.execute(sa.select(_shares.c.id).where(
            _shares.c.object == object_name, _shares.c.record_id == rid, _shares.c[column] == target)).scalar()
        share_id = existing or uuid.uuid4().hex
        if existing:
            conn.execute(sa.update(_shares).where(_shares.c.id == existing).values(access=level))
        else:
            conn.execute(sa.insert(_shares).values(id=share_id, object=object_name, record_id=rid, access=level,
                                                   created_by=getattr(user, "id", None), created_at=datetime.now(timezone.utc),
                                                   **{column: target}))
        audit.record(conn, user, "share", f"{object_name}/{rid}", {column.removesuffix("_id"): target, "access": level})
    runtime.access.forget()
    return {"id": share_id, "access": level, **{k: body[k] for k in ("user", "department") if k in body}}


def unshare(runtime, object_name: str, rid: str, share_id: str, user) -> None:
    with write_transaction(runtime.engine) as conn:
        _sharer(runtime, conn, object_name, rid, user)
        gone = conn.execute(sa.delete(_shares).where(_shares.c.id == share_id[:32], _shares.c.object == object_name,
                                                     _shares.c.record_id == rid)).rowcount
        if not gone:
            raise NotFound(f"no share {share_id[:32]!r} of this record")
        audit.record(conn, user, "unshare", f"{object_name}/{rid}", {"share": share_id[:32]})
    runtime.access.forget()


def explain(runtime, object_name: str, rid: str, username: str) -> dict[str, Any]:
    """`GET /{object}/{id}/_access?user=NAME`: whether NAME may read,
    update and delete the record, and why."""
    from loomcrm.platform import auth

    if not username:
        raise RecordError("name the user: ?user=NAME")
    with runtime.engine.connect() as conn:
        row = conn.execute(sa.select(_users).where(_users.c.username == username[:150])).first()
        if row is None:
            raise NotFound(f"no user {username[:63]!r}")
        who = auth.User(id=row.id, username=row.username, role=row.role, locale=row.locale, display_name=row.display_name)
        schema = runtime.schema()
        obj = runtime.records.object_of(schema, object_name)
        record = runtime.records._load(conn, schema, obj, rid)
        answer = runtime.access.of(who).explain(conn, schema.table(obj.name), obj.name, record)
    if not row.is_active:
        answer = {**answer, "read": False, "update": False, "delete": False,
                  "reasons": [{"via": "user", "code": "deactivated", "args": {"user": username},
                               "fact": f"{username} is deactivated: they cannot sign in"}] + answer["reasons"]}
    return {"user": username, "object": object_name, "id": rid, **answer}
