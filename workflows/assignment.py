"""`assign`: hand the record to a user, through the record service (so the
owner change is a save with its rules, history and event).

- `round_robin`: the members in turn. The turn is a counter moved by one
  atomic increment in the run's transaction (never read-then-write), so
  concurrent assignments hand out exactly in turn, and a run that rolls
  back gives its turn back.
- `load_balanced`: to the member with the fewest records matching
  `load_filter` (default: every record of the object they own), counted
  under a lock per rule so two assignments never both pick the same
  least-loaded member from the same count.
- `by_field`: `mapping` from the record's value of `field` to a user
  name; a value it does not map goes round robin over `users`.

`team` adds the active users of a department named by an expression over
the record (a ticket's `queue.team`): each department has its own turns.
"""

from __future__ import annotations

import hashlib
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from loomcrm.platform import systemdb
from loomcrm.runtime.query import BadQuery, compile_filter
from loomcrm.runtime.records import RecordError

from .actions import Act, Dead
from .actions.records import _refused

_BUMP = (sa.update(systemdb.counters).where(systemdb.counters.c.key == sa.bindparam("counter"))
         .values(value=systemdb.counters.c.value + 1).returning(systemdb.counters.c.value))


def assign(act: Act) -> dict[str, Any]:
    if act.deleted:
        raise Dead("the record was deleted before it could be assigned", "deleted")
    action, conn = act.action, act.conn
    members = user_ids(conn, action.users)
    key = f"assign:{act.flow.name}:{act.index}"
    if action.team:
        team = act.value("team")
        if team:
            team = str(team)
            key = f"{key}:{team if len(team) <= 100 else hashlib.sha256(team.encode()).hexdigest()}"
            members += [m for m in team_members(conn, team) if m not in members]
        if not members:
            raise Dead(f"the team {team[:63]!r} has no active users to assign to" if team else
                       "the record names no team to assign to", "no_user")
    if action.strategy == "by_field":
        value = act.record.get(action.field)
        name = action.mapping.get(str(value)) if value is not None else None
        if name is not None:
            chosen = user_ids(conn, [name])[0]
        elif members:
            chosen = members[(next_turn(conn, key) - 1) % len(members)]
        else:
            raise Dead(f"no user is mapped to {action.field} = {value!r} and the rule has no fallback users", "no_user")
    elif action.strategy == "round_robin":
        chosen = members[(next_turn(conn, key) - 1) % len(members)]
    else:
        chosen = least_loaded(act, members, key)
    if act.record.get("owner") == chosen:
        return {"assigned": chosen, "unchanged": True}
    try:
        act.automation.runtime.records.update(act.flow.obj.name, act.record["id"], {"owner": chosen}, act.user,
                                              conn=conn, origin=act.origin)
    except RecordError as exc:
        raise _refused(exc, f"assigning {act.flow.obj.name} {act.record['id']}") from None
    return {"assigned": chosen}


_ACTIVE = sa.select(systemdb.users.c.username, systemdb.users.c.id).where(
    systemdb.users.c.username.in_(sa.bindparam("names", expanding=True)), systemdb.users.c.is_active.is_(True))


def user_ids(conn: sa.Connection, names: list[str]) -> list[str]:
    """The ids of active users, by user name, in the order given; a name
    that is no (active) user is an error the admin must fix."""
    if not names:
        return []
    found = dict(conn.execute(_ACTIVE, {"names": list(names)}).all())
    missing = [n for n in names if n not in found]
    if missing:
        raise Dead(f"no active user named {', '.join(repr(n) for n in missing)}: give the rule your users' names", "no_user")
    return [found[n] for n in names]


_TEAM = (sa.select(systemdb.users.c.id).join(systemdb.departments,
                                               systemdb.departments.c.id == systemdb.users.c.department_id)
         .where(systemdb.departments.c.name == sa.bindparam("team"), systemdb.users.c.is_active.is_(True))
         .order_by(systemdb.users.c.username))


def team_members(conn: sa.Connection, team: str) -> list[str]:
    """The active users of the department named `team`, by user name."""
    return list(conn.execute(_TEAM, {"team": team}).scalars())


def next_turn(conn: sa.Connection, key: str) -> int:
    """Move the rule's counter by one and answer it (1, 2, 3, ...)."""
    turn = conn.execute(_BUMP, {"counter": key}).scalar()
    if turn is None:
        dialect = {"postgresql": postgresql, "sqlite": sqlite}[conn.dialect.name]
        conn.execute(dialect.insert(systemdb.counters).values(key=key, value=0).on_conflict_do_nothing())
        turn = conn.execute(_BUMP, {"counter": key}).scalar()
    return turn


def least_loaded(act: Act, members: list[str], key: str) -> str:
    conn, obj = act.conn, act.schema.object(act.flow.obj.name)
    table = act.schema.table(obj.name)
    if conn.dialect.name == "postgresql":
        lock = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big", signed=True)
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": lock})
    query = (sa.select(table.c.owner, sa.func.count()).where(table.c.owner.in_(members), table.c._deleted_at.is_(None))
             .group_by(table.c.owner))
    if act.action.load_filter:
        try:
            clause, joined = compile_filter(act.schema, obj, act.action.load_filter)
        except BadQuery as exc:
            raise Dead(f"load_filter cannot run in the database: {exc.detail}", "not_sql") from None
        query = query.select_from(joined).where(clause)
    load = dict(conn.execute(query).all())
    return min(members, key=lambda uid: (load.get(uid, 0), members.index(uid)))
