"""Lead pools (公海): ownerless records of an object that members claim,
return with a reason, and that take back what their members leave untouched.

A record is in a pool when it has a row in `loom_pool_entries` (and no
owner). Claiming deletes that row first: of two users claiming one record at
once, one deletes it and wins, the other deletes nothing and is told. Every
claim is a row of `loom_pool_claims`, which the caps (claims per day), the
re-claim ban and the protection period read. Owner changes go through the
record service (history, events, rules), written as the user who acts.

Recycling (`recycle`) is one pass per pool, run by the automation pump: the
records its rules find due, 1,000 at a time, each batch a handful of
statements (the owners cleared, the pool rows, the claims ended, history and
events written together), never a round trip per record. It is idempotent:
a record back in the pool has no owner, and owned records are what it looks at.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import sqlalchemy as sa

from loomcrm.metadata.expressions import Scope
from loomcrm.metadata.model import Pool, localized
from loomcrm.platform import audit, i18n, systemdb
from loomcrm.platform.db import stored_utc, write_transaction

from .access import departments, descendants
from .expressions.compiled import compile_expression
from .expressions.sql import JoinResolver, to_sql
from .records import Actor, Origin, RecordError, record_json

ENTRIES, CLAIMS, REMINDERS, USERS = (systemdb.pool_entries, systemdb.pool_claims, systemdb.pool_reminders,
                                     systemdb.users)
BATCH = 1000
RECYCLED = "recycled"
POOL = Origin("automation", workflow="pool")
# what owners are told, in their language
TEXTS = {"reminder": "%(record)s goes back to the pool %(pool)s within %(days)s days unless you follow it up."}


class PoolError(RecordError):
    """A claim or return refused, in words for the user; `code` says why."""

    def __init__(self, code: str, message: str, status: int = 409):
        super().__init__(message, errors=[{"field": None, "code": code, "message": message}], status=status)
        self.code = code


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


# --- who --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Person:
    id: str
    role: str
    department: str | None


def person(conn: sa.Connection, user: Any) -> Person:
    row = conn.execute(sa.select(USERS.c.id, USERS.c.role, USERS.c.department_id)
                       .where(USERS.c.id == getattr(user, "id", None))).first()
    if row is None:
        raise PoolError("no_user", "only a signed-in user works with a pool", 403)
    return Person(row.id, row.role, row.department_id)


def is_admin(pool: Pool, who: Person) -> bool:
    return who.role == "admin" or who.role in pool.admin_roles


def member_departments(conn: sa.Connection, pool: Pool) -> frozenset[str]:
    """The ids of the pool's departments and those below them."""
    if not pool.member_departments:
        return frozenset()
    tree = departments(conn)
    by_name = {d["name"]: d["id"] for d in tree.values()}
    return frozenset().union(*(descendants(tree, by_name.get(name)) for name in pool.member_departments))


def is_member(conn: sa.Connection, pool: Pool, who: Person) -> bool:
    if is_admin(pool, who) or not (pool.member_roles or pool.member_departments):
        return True
    return who.role in pool.member_roles or who.department in member_departments(conn, pool)


def members(conn: sa.Connection, pool: Pool) -> list[dict[str, str]]:
    """The active users who may hold the pool's records (what an admin
    assigns to), by name."""
    query = sa.select(USERS.c.id, USERS.c.display_name, USERS.c.username).where(USERS.c.is_active.is_(True))
    if pool.member_roles or pool.member_departments:
        query = query.where(sa.or_(USERS.c.role.in_([*pool.member_roles, *pool.admin_roles, "admin"]),
                                   USERS.c.department_id.in_(sorted(member_departments(conn, pool)))))
    rows = conn.execute(query.order_by(USERS.c.display_name, USERS.c.username).limit(1000)).fetchall()
    return [{"id": r.id, "name": r.display_name or r.username} for r in rows]


def pools_for(runtime, user) -> list[Pool]:
    """The pools `user` may work with, over objects the user may see (every
    page asks, for the navigation: the database is read only for pools
    with departments among their members)."""
    schema, access = runtime.schema(), runtime.access.of(user)
    seen = [p for p in schema.pools.values() if access.may_see_object(p.object)]
    if not seen:
        return []
    with runtime.engine.connect() as conn:
        mine = []
        for pool in seen:
            try:
                _member(conn, pool, user)
            except PoolError:
                continue
            mine.append(pool)
        return mine


def pool_of(runtime, name: str) -> Pool:
    pool = runtime.schema().pools.get(name)
    if pool is None:
        raise PoolError("not_found", f"no pool {name[:63]!r}", 404)
    return pool


# --- claim, return, assign ------------------------------------------------------------------

def claim(runtime, user, pool_name: str, record_id: str, *, now: datetime | None = None) -> dict[str, Any]:
    """The record becomes the user's, if it is still in the pool and the
    user's caps and bans allow; `PoolError` says which one did not."""
    pool = pool_of(runtime, pool_name)
    now = now or utcnow()
    with write_transaction(runtime.engine) as conn:
        who = _member(conn, pool, user)
        # with caps, the user's row is locked (one claim at a time per user,
        # so two at once cannot both pass a cap) by the statement reading them
        _check_caps(conn, runtime, pool, who, record_id, now)
        if not _take(conn, pool, record_id, who.id, now):
            raise PoolError("taken", "someone else claimed this record first, or it left the pool")
        return runtime.records.update(pool.object, record_id, {"owner": who.id}, Actor(who.id, "admin"), conn=conn)


def _member(conn: sa.Connection, pool: Pool, user: Any) -> Person:
    """The user as a member of the pool; read from the database only when
    the pool has departments among its members."""
    role = getattr(user, "role", None)
    if pool.member_departments and not (role == "admin" or role in pool.admin_roles):
        who = person(conn, user)
    elif getattr(user, "id", None) and role:
        who = Person(user.id, role, None)
    else:
        raise PoolError("no_user", "only a signed-in user works with a pool", 403)
    if not is_member(conn, pool, who):
        raise PoolError("not_member", "you are not a member of this pool", 403)
    return who


def _take(conn: sa.Connection, pool: Pool, record_id: str, user_id: str, now: datetime) -> bool:
    """The record out of the pool and the claim kept, if it was still there;
    one statement on PostgreSQL."""
    values = {"id": uuid.uuid4().hex, "pool": pool.name, "object": pool.object, "record_id": record_id,
              "user_id": user_id, "claimed_at": now}
    if conn.dialect.name == "postgresql":
        # (the driver gives no rowcount for it: RETURNING says whether a row went)
        return conn.execute(_TAKE_AND_CLAIM, values).first() is not None
    taken = conn.execute(sa.delete(ENTRIES).where(ENTRIES.c.object == pool.object, ENTRIES.c.record_id == record_id,
                                                  ENTRIES.c.pool == pool.name))
    if taken.rowcount != 1:
        return False
    conn.execute(sa.insert(CLAIMS).values(**values))
    return True


def _take_and_claim() -> sa.Insert:
    taken = sa.delete(ENTRIES).where(ENTRIES.c.object == sa.bindparam("object"),
                                     ENTRIES.c.record_id == sa.bindparam("record_id"),
                                     ENTRIES.c.pool == sa.bindparam("pool")).returning(ENTRIES.c.record_id).cte("taken")
    columns = ["id", "pool", "object", "record_id", "user_id", "claimed_at"]
    return sa.insert(CLAIMS).from_select(columns, sa.select(
        *[taken.c.record_id if c == "record_id" else sa.bindparam(c, type_=CLAIMS.c[c].type).label(c)
          for c in columns])).returning(CLAIMS.c.id)


_TAKE_AND_CLAIM = _take_and_claim()


def _check_caps(conn: sa.Connection, runtime, pool: Pool, who: Person, record_id: str, now: datetime) -> None:
    """The re-claim ban, the claims of today and the records held from the
    pool (its claims still open), read in one statement."""
    checks = {}
    if pool.reclaim_ban_days:
        checks["returned"] = sa.select(sa.func.max(CLAIMS.c.ended_at)).where(
            CLAIMS.c.object == pool.object, CLAIMS.c.record_id == record_id, CLAIMS.c.user_id == who.id,
            CLAIMS.c.ended_by == "returned").scalar_subquery()
    if pool.claims_per_day:
        zone = runtime.context.timezone
        day = datetime.combine(now.astimezone(zone).date(), datetime.min.time(), zone)
        checks["today"] = sa.select(sa.func.count()).where(
            CLAIMS.c.user_id == who.id, CLAIMS.c.pool == pool.name, CLAIMS.c.claimed_at >= day).scalar_subquery()
    if pool.max_held:
        checks["held"] = sa.select(sa.func.count()).where(
            CLAIMS.c.user_id == who.id, CLAIMS.c.pool == pool.name, CLAIMS.c.ended_at.is_(None)).scalar_subquery()
    if not checks:
        return
    query = sa.select(*[q.label(k) for k, q in checks.items()])
    if conn.dialect.name == "postgresql":   # SQLite's writers take turns anyway
        query = query.select_from(USERS).where(USERS.c.id == who.id).with_for_update(of=USERS)
    found = conn.execute(query).one()._mapping
    returned = found.get("returned")
    if returned is not None and stored_utc(returned) > now - timedelta(days=pool.reclaim_ban_days):
        until = stored_utc(returned) + timedelta(days=pool.reclaim_ban_days)
        raise PoolError("reclaim_ban", f"you returned this record: you may claim it again from "
                                       f"{until.astimezone(runtime.context.timezone):%Y-%m-%d %H:%M}")
    if found.get("today") is not None and found["today"] >= pool.claims_per_day:
        raise PoolError("daily_cap", f"you have claimed {found['today']} records from this pool today, the most a day")
    if found.get("held") is not None and found["held"] >= pool.max_held:
        raise PoolError("held_cap", f"you hold {found['held']} records from this pool, the most one may: "
                                    "return some first")


def return_to_pool(runtime, user, pool_name: str, record_id: str, reason: str | None = None, *,
                   now: datetime | None = None) -> None:
    """The record leaves its owner for the pool, with one of the pool's
    reasons; only its owner or a pool admin returns it."""
    pool = pool_of(runtime, pool_name)
    if pool.return_reasons and reason not in {r.value for r in pool.return_reasons}:
        raise PoolError("reason", "choose one of the pool's reasons", 422)
    now = now or utcnow()
    with write_transaction(runtime.engine) as conn:
        who = person(conn, user)
        old = runtime.records.get(pool.object, record_id, Actor(who.id, "admin"), conn=conn)
        if old.get("owner") != who.id and not is_admin(pool, who):
            raise PoolError("not_owner", "only the record's owner or a pool admin returns it to the pool", 403)
        runtime.records.update(pool.object, record_id, {"owner": None}, Actor(who.id, "admin"), conn=conn)
        conn.execute(sa.insert(ENTRIES).values(object=pool.object, record_id=record_id, pool=pool.name, entered_at=now,
                                               previous_owner=old.get("owner"), reason=reason))
        conn.execute(sa.update(CLAIMS).where(CLAIMS.c.object == pool.object, CLAIMS.c.record_id == record_id,
                                             CLAIMS.c.ended_at.is_(None))
                     .values(ended_at=now, ended_by="returned"))
        audit.record(conn, who.id, "pool.return", f"{pool.object} {record_id}", {"pool": pool.name, "reason": reason})


def put_in_pool(runtime, actor, pool_name: str, record_ids: list[str], *, now: datetime | None = None,
                reason: str | None = None) -> int:
    """Records (a leaver's, a new import) into the pool, their owners cleared."""
    pool = pool_of(runtime, pool_name)
    now = now or utcnow()
    moved = 0
    with write_transaction(runtime.engine) as conn:
        for rid in record_ids:
            if conn.execute(sa.select(ENTRIES.c.pool).where(ENTRIES.c.object == pool.object,
                                                            ENTRIES.c.record_id == rid)).first():
                continue   # in a pool already
            old = runtime.records.get(pool.object, rid, Actor(getattr(actor, "id", None), "admin"), conn=conn)
            runtime.records.update(pool.object, rid, {"owner": None}, Actor(getattr(actor, "id", None), "admin"),
                                   conn=conn)
            conn.execute(sa.insert(ENTRIES).values(object=pool.object, record_id=rid, pool=pool.name, entered_at=now,
                                                   previous_owner=old.get("owner"), reason=reason))
            conn.execute(sa.update(CLAIMS).where(CLAIMS.c.object == pool.object, CLAIMS.c.record_id == rid,
                                                 CLAIMS.c.ended_at.is_(None)).values(ended_at=now, ended_by="moved"))
            moved += 1
    return moved


def assign(runtime, user, pool_name: str, record_id: str, to_user_id: str, *, now: datetime | None = None) -> None:
    """A pool admin gives a record of the pool to a member (no caps)."""
    pool = pool_of(runtime, pool_name)
    now = now or utcnow()
    with write_transaction(runtime.engine) as conn:
        who = person(conn, user)
        if not is_admin(pool, who):
            raise PoolError("not_admin", "only a pool admin assigns its records", 403)
        target = person(conn, Actor(to_user_id))
        if not is_member(conn, pool, target):
            raise PoolError("assignee_not_member", "that user is not a member of this pool", 422)
        taken = conn.execute(sa.delete(ENTRIES).where(ENTRIES.c.object == pool.object, ENTRIES.c.record_id == record_id,
                                                      ENTRIES.c.pool == pool.name))
        if taken.rowcount != 1:
            raise PoolError("taken", "the record is no longer in the pool")
        runtime.records.update(pool.object, record_id, {"owner": target.id}, Actor(who.id, "admin"), conn=conn)
        conn.execute(sa.insert(CLAIMS).values(id=uuid.uuid4().hex, pool=pool.name, object=pool.object,
                                              record_id=record_id, user_id=target.id, claimed_at=now))


def assign_to(runtime, user, pool_name: str, record_id: str, username: str) -> None:
    with runtime.engine.connect() as conn:
        target = conn.execute(sa.select(USERS.c.id).where(USERS.c.username == username,
                                                          USERS.c.is_active.is_(True))).scalar()
    if target is None:
        raise PoolError("not_found", f"no active user {username[:150]!r}", 422)
    assign(runtime, user, pool_name, record_id, target)


def put_in(runtime, user, pool_name: str, record_ids: list[str]) -> int:
    """A pool admin puts records in."""
    pool = pool_of(runtime, pool_name)
    with runtime.engine.connect() as conn:
        if not is_admin(pool, person(conn, user)):
            raise PoolError("not_admin", "only a pool admin puts records in the pool", 403)
    return put_in_pool(runtime, user, pool_name, record_ids)


def in_pool(conn: sa.Connection, runtime, pool: Pool, *, limit: int = 50, after: str | None = None) -> list[dict]:
    """The pool's records, oldest in the pool first, without its private fields."""
    schema = runtime.schema()
    obj, table = schema.object(pool.object), schema.table(pool.object)
    query = sa.select(table, ENTRIES.c.entered_at.label("_entered_at"), ENTRIES.c.reason.label("_reason")) \
        .select_from(table.join(ENTRIES, sa.and_(ENTRIES.c.record_id == table.c.id, ENTRIES.c.object == pool.object))) \
        .where(ENTRIES.c.pool == pool.name, table.c._deleted_at.is_(None)) \
        .order_by(ENTRIES.c.entered_at, table.c.id).limit(limit)
    if after:
        query = query.where(table.c.id > after)
    hidden = set(pool.private_fields)
    rows = []
    for row in conn.execute(query):
        data = dict(row._mapping)
        record = {k: v for k, v in record_json(obj, data).items() if k not in hidden}
        rows.append(record | {"_entered_at": data["_entered_at"], "_reason": data["_reason"]})
    return rows


# --- recycling ------------------------------------------------------------------------------

def due(conn: sa.Connection, runtime, pool: Pool, *moments: datetime) -> tuple[sa.FromClause, list]:
    """The rows to select from, and for each moment the condition of the
    owned records of the pool's members due back then (None: the pool
    recycles nothing). The open claims are one grouped join, not a
    subquery per row."""
    schema = runtime.schema()
    obj, table = schema.object(pool.object), schema.table(pool.object)
    zone = runtime.context.timezone
    claims = sa.select(CLAIMS.c.record_id, sa.func.max(CLAIMS.c.claimed_at).label("claimed_at")) \
        .where(CLAIMS.c.object == pool.object, CLAIMS.c.ended_at.is_(None)).group_by(CLAIMS.c.record_id) \
        .subquery("open_claims")
    claimed = claims.c.claimed_at
    held_since = sa.func.coalesce(claimed, table.c.created_at)
    resolver = JoinResolver(schema.objects, obj.name, schema.tables)
    scope = Scope(objects=schema.objects, object_name=obj.name, version=schema.version)
    filters = [to_sql(compile_expression(rule.filter, scope, expect="boolean"), resolver) if rule.filter else None
               for rule in pool.recycle]
    members = None
    if pool.member_roles or pool.member_departments:
        members = sa.select(USERS.c.id).where(sa.or_(USERS.c.role.in_(pool.member_roles),
                                                     USERS.c.department_id.in_(sorted(member_departments(conn, pool)))))
    conditions = []
    for moment in moments:
        reasons = []
        for rule, where in zip(pool.recycle, filters):
            column = table.c[rule.field]
            limit = moment - timedelta(days=rule.after_days)
            # a date (a date field, or a rollup of dates) compares with the day in the company's zone
            bound = limit.astimezone(zone).date() if isinstance(column.type, sa.Date) else limit
            stale = sa.or_(column < bound, sa.and_(column.is_(None), held_since < limit))
            reasons.append(stale if where is None else sa.and_(stale, where))
        if pool.max_hold_days:
            reasons.append(claimed < moment - timedelta(days=pool.max_hold_days))
        if not reasons:
            conditions.append(None)
            continue
        clause = [table.c.owner.is_not(None), table.c._deleted_at.is_(None), sa.or_(*reasons)]
        if pool.protect_days:
            clause.append(sa.or_(claimed.is_(None), claimed < moment - timedelta(days=pool.protect_days)))
        if members is not None:
            clause.append(table.c.owner.in_(members))
        conditions.append(sa.and_(*clause))
    source = resolver.from_clause.outerjoin(claims, claims.c.record_id == table.c.id)
    return source, conditions


def recycle(runtime, pool_name: str, *, now: datetime | None = None, batch: int = BATCH) -> int:
    """Every due record of the pool back in it; how many went."""
    pool = pool_of(runtime, pool_name)
    now = now or utcnow()
    moved, after = 0, None
    while True:
        with write_transaction(runtime.engine) as conn:
            count, after = _recycle_batch(conn, runtime, pool, now, batch, after)
        moved += count
        if count < batch:
            return moved


def _recycle_batch(conn: sa.Connection, runtime, pool: Pool, now: datetime, batch: int,
                   after: str | None) -> tuple[int, str | None]:
    """One batch, in id order from `after` (a pass never reads a row twice)."""
    from .records import RecordService

    schema = runtime.schema()
    obj, table = schema.object(pool.object), schema.table(pool.object)
    source, (condition,) = due(conn, runtime, pool, now)
    if condition is None:
        return 0, after
    query = sa.select(table).select_from(source).where(condition).order_by(table.c.id).limit(batch)
    if after is not None:
        query = query.where(table.c.id > after)
    rows = [dict(r._mapping) for r in conn.execute(query)]
    if not rows:
        return 0, after
    ids = [r["id"] for r in rows]
    conn.execute(sa.update(table).where(table.c.id.in_(ids), table.c.owner.is_not(None))
                 .values(owner=None, version=table.c.version + 1, updated_at=now, updated_by=None))
    conn.execute(sa.insert(ENTRIES), [{"object": pool.object, "record_id": r["id"], "pool": pool.name, "entered_at": now,
                                       "previous_owner": r["owner"], "reason": RECYCLED} for r in rows])
    conn.execute(sa.update(CLAIMS).where(CLAIMS.c.object == pool.object, CLAIMS.c.record_id.in_(ids),
                                         CLAIMS.c.ended_at.is_(None)).values(ended_at=now, ended_by=RECYCLED))
    conn.execute(sa.delete(REMINDERS).where(REMINDERS.c.object == pool.object, REMINDERS.c.record_id.in_(ids)))
    conn.execute(sa.insert(systemdb.history), [
        {"object": obj.name, "record_id": r["id"], "field": "owner", "old_value": r["owner"], "new_value": None,
         "changed_by": None, "changed_at": now, "note": f"recycled to pool {pool.name}"} for r in rows])
    events = []
    for old in rows:
        new = {**old, "owner": None, "version": old["version"] + 1, "updated_at": now, "updated_by": None}
        events.append(RecordService._event_row(schema, obj, old["id"], "update", new, old, {"owner"}, None, now, POOL))
    conn.execute(sa.insert(systemdb.outbox), events)
    return len(rows), ids[-1]


def remind(runtime, pool_name: str, *, now: datetime | None = None) -> int:
    """Tell owners of records due back within `remind_days_before` days
    (once in that many days per record); how many were told."""
    pool = pool_of(runtime, pool_name)
    if not pool.remind_days_before:
        return 0
    now = now or utcnow()
    schema = runtime.schema()
    obj, table = schema.object(pool.object), schema.table(pool.object)
    with write_transaction(runtime.engine) as conn:
        source, (soon, already) = due(conn, runtime, pool, now + timedelta(days=pool.remind_days_before), now)
        if soon is None:
            return 0
        told = sa.select(REMINDERS.c.record_id).where(
            REMINDERS.c.object == pool.object, REMINDERS.c.reminded_at > now - timedelta(days=pool.remind_days_before))
        title = _title_column(obj, table)
        rows = conn.execute(sa.select(table.c.id, table.c.owner, title, USERS.c.locale)
                            .select_from(source.join(USERS, USERS.c.id == table.c.owner))
                            # not due yet (NULL, from a missing date, counts as not due)
                            .where(soon, ~sa.func.coalesce(already, sa.false()), table.c.id.not_in(told))
                            .limit(BATCH)).all()
        if not rows:
            return 0
        label = localized(pool.label, "en", pool.name)
        notes = []
        for row in rows:
            text = i18n.gettext(row.locale, TEXTS["reminder"])
            notes.append({"id": uuid.uuid4().hex, "user_id": row.owner, "object": obj.name, "record_id": row.id,
                          "created_at": now, "message": text.replace("%(record)s", str(row[2] or row.id))
                          .replace("%(pool)s", localized(pool.label, row.locale, label))
                          .replace("%(days)s", str(pool.remind_days_before))})
        conn.execute(sa.insert(systemdb.notifications), notes)
        conn.execute(sa.delete(REMINDERS).where(REMINDERS.c.object == pool.object,
                                                REMINDERS.c.record_id.in_([r.id for r in rows])))
        conn.execute(sa.insert(REMINDERS), [{"object": pool.object, "record_id": r.id, "reminded_at": now} for r in rows])
    return len(rows)


def _title_column(obj, table):
    name = obj.title_field or next((f.name for f in obj.fields if f.type == "text"), None)
    return table.c[name] if name else table.c.id


def run_pools(runtime, *, now: datetime | None = None) -> dict[str, int]:
    """One pass of every pool: reminders, then recycling (the automation
    pump runs it every few seconds; it costs one query per pool when
    nothing is due)."""
    done = {}
    for name in runtime.schema().pools:
        done[name] = remind(runtime, name, now=now) + recycle(runtime, name, now=now)
    return done



