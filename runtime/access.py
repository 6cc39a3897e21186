"""Who sees and changes what (SPEC §3.6): the one place that decides.

A user is expanded once (`AccessResolver.of`, cached a moment per user)
into an `Access`: its role's rights per object, its field rights, its
department with the departments below it (and above it, for shares made to
a department), the sharing rules of its role and the objects shared with
it. Every read builds its WHERE clause from that (`Access.clause`), every
write checks the record as stored (the same clause, on the row) and as it
will be (`Access.may_own`). Nothing else decides; a rule that cannot be
resolved (a role no bundle defines any more, a department that does not
exist) gives nothing.

The built-in `admin` may do everything and manage metadata, users and
roles; the built-in `user` has `all` on every object and edits every field;
`None` (the command line, the system itself) acts as an admin.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from loomcrm.metadata.model import ObjectDef, ObjectRights, Role
from loomcrm.platform import systemdb

SCOPES = ("none", "own", "department", "subordinates", "all")
ACTIONS = ("read", "update", "delete")
TTL = 2.0   # seconds a user's expansion is reused (another process's change shows within it)
MAX_LISTED = 2000   # department members listed in a clause; more are looked up by the database
_NOTHING = ObjectRights()
_users, _shares, _departments = systemdb.users, systemdb.shares, systemdb.departments


@dataclass(frozen=True)
class Access:
    """What one user may see and change."""

    user_id: str | None
    role: str
    everything: bool                                   # admin, the built-in user, the system
    rights: Mapping[str, ObjectRights] = field(default_factory=dict)
    fields: Mapping[tuple[str, str], str] = field(default_factory=dict)
    department: str | None = None
    below: frozenset[str] = frozenset()                # its department and every one below it
    above: frozenset[str] = frozenset()                # its department and every one above it
    sharing: tuple[tuple[str, frozenset[str], str], ...] = ()   # (object, owners' departments, read/edit)
    shared: frozenset[str] = frozenset()               # objects with records shared with the user
    known_role: bool = True
    # the users in its department, and in it and below it (None: too many
    # to list, so the clause asks the database); listed, the clause is a
    # plain `owner IN (...)` the planner filters an ordered index scan with
    colleagues: frozenset[str] | None = None
    team: frozenset[str] | None = None

    # -- object and field rights ----------------------------------------------------------
    def scope(self, obj: str, action: str) -> str:
        if self.everything:
            return "all"
        return getattr(self.rights.get(obj, _NOTHING), action)

    def may_create(self, obj: str) -> bool:
        return self.everything or self.rights.get(obj, _NOTHING).create

    def may_export(self, obj: str) -> bool:
        return self.everything or self.rights.get(obj, _NOTHING).export

    def may_see_object(self, obj: str) -> bool:
        """Whether any record of `obj` could be visible (its role's scope, a share, a sharing rule)."""
        return self.everything or self.scope(obj, "read") != "none" or obj in self.shared \
            or any(rule[0] == obj for rule in self.sharing)

    def field_right(self, obj: str, name: str) -> str:
        return "edit" if self.everything else self.fields.get((obj, name), "edit")

    def hidden(self, obj: str) -> frozenset[str]:
        if self.everything:
            return frozenset()
        return frozenset(name for (o, name), right in self.fields.items() if o == obj and right == "hidden")

    def view(self, obj: ObjectDef) -> ObjectDef:
        """`obj` as this user knows it: without its hidden fields."""
        hidden = self.hidden(obj.name)
        if not hidden:
            return obj
        return obj.model_copy(update={"fields": [f for f in obj.fields if f.name not in hidden]})

    def objects(self, objects: Mapping[str, ObjectDef]) -> dict[str, ObjectDef]:
        """The objects as this user knows them (for expression scopes): those
        it may see records of, without their hidden fields."""
        if self.everything:
            return dict(objects)
        return {name: self.view(obj) for name, obj in objects.items() if self.may_see_object(name)}

    # -- records ------------------------------------------------------------------------------
    def clause(self, table: sa.FromClause, obj: str, action: str = "read") -> ColumnElement | None:
        """The rows of `table` (object `obj`) the user may `action`; None: all of them."""
        scope = self.scope(obj, action)
        if scope == "all":
            return None
        parts = [self._scope(table, scope)]
        if obj in self.shared and action != "delete":
            levels = ("read", "edit") if action == "read" else ("edit",)
            parts.append(table.c.id.in_(sa.select(_shares.c.record_id).where(
                _shares.c.object == obj, _shares.c.access.in_(levels),
                sa.or_(_shares.c.user_id == self.user_id, _shares.c.department_id.in_(sorted(self.above))))))
        for rule_obj, departments, level in self.sharing:
            if rule_obj == obj and action != "delete" and (action == "read" or level == "edit") and departments:
                parts.append(table.c.owner.in_(sa.select(_users.c.id).where(_users.c.department_id.in_(sorted(departments)))))
        parts = [p for p in parts if p is not None]
        if not parts:
            return sa.false()
        return parts[0] if len(parts) == 1 else sa.or_(*parts)

    def _scope(self, table: sa.FromClause, scope: str) -> ColumnElement | None:
        if scope == "all":
            return sa.true()
        if scope == "own" and self.user_id:
            return table.c.owner == self.user_id
        if scope == "department" and self.department:
            if self.colleagues is not None:
                return table.c.owner.in_(sorted(self.colleagues))
            return table.c.owner.in_(sa.select(_users.c.id).where(_users.c.department_id == self.department))
        if scope == "subordinates" and self.below:
            if self.team is not None:
                return table.c.owner.in_(sorted(self.team))
            return table.c.owner.in_(sa.select(_users.c.id).where(_users.c.department_id.in_(sorted(self.below))))
        return None

    def allows(self, conn: sa.Connection, table: sa.Table, obj: str, rid: str, action: str, *,
               owner: Any = ...) -> bool:
        """Whether the user may `action` the stored record `rid`. Given the
        record's stored `owner`, the role's scope alone decides when it
        grants (no query); shares and sharing rules are asked of the database."""
        if owner is not ... and self._scope_grants(self.scope(obj, action), owner):
            return True
        clause = self.clause(table, obj, action)
        if clause is None:
            return True
        return conn.execute(sa.select(table.c.id).where(table.c.id == rid, clause)).first() is not None

    def may_share(self, conn: sa.Connection, table: sa.Table, obj: str, row: Mapping[str, Any]) -> bool:
        """Whether the user may share the stored record (and remove its
        shares): its role's update scope reaches the record's owner. A share,
        even to edit, or a sharing rule does not pass sharing on."""
        scope = self.scope(obj, "update")
        if self.everything or self._scope_grants(scope, row.get("owner")):
            return True
        clause = self._scope(table, scope)
        return clause is not None and conn.execute(
            sa.select(table.c.id).where(table.c.id == row["id"], clause)).first() is not None

    def _scope_grants(self, scope: str, owner: str | None) -> bool:
        if scope == "all":
            return True
        if owner is None:
            return False
        if scope == "own":
            return owner == self.user_id
        if scope == "department":
            return self.colleagues is not None and owner in self.colleagues
        if scope == "subordinates":
            return self.team is not None and owner in self.team
        return False

    def may_own(self, conn: sa.Connection, obj: str, owner: str | None, action: str = "update") -> bool:
        """Whether a record of `obj` owned by `owner` is within the user's
        `action` scope: a write may not move a record out of it."""
        scope = self.scope(obj, action)
        if scope == "all":
            return True
        if owner is None or scope == "none":
            return False
        if scope == "own":
            return owner == self.user_id
        department = conn.execute(sa.select(_users.c.department_id).where(_users.c.id == owner)).scalar()
        if scope == "department":
            return department is not None and department == self.department
        return department in self.below


    # -- why ------------------------------------------------------------------------------------
    def explain(self, conn: sa.Connection, table: sa.Table, obj: str, row: Mapping[str, Any]) -> dict[str, Any]:
        """Whether the user may read, update and delete the stored record
        `row`, and why: each reason names the role, the scope and the fact
        that matched (owner, department), or the share or sharing rule."""
        answer: dict[str, Any] = {action: self.allows(conn, table, obj, row["id"], action) for action in ACTIONS}
        answer["role"] = self.role
        answer["scopes"] = {action: self.scope(obj, action) for action in ACTIONS}
        reasons: list[dict[str, Any]] = []
        if self.everything:
            reasons.append({"via": "role", "role": self.role, "scope": "all", "code": "everything", "args": {"role": self.role},
                            "fact": f"the built-in {self.role!r} role may do everything with every record"})
            return {**answer, "reasons": reasons}
        if not self.known_role:
            reasons.append({"via": "role", "role": self.role, "scope": "none", "code": "unknown_role", "args": {"role": self.role},
                            "fact": f"no installed bundle defines the role {self.role!r}: it gives nothing"})
        tree = departments(conn)
        owner = row.get("owner")
        owner_row = conn.execute(sa.select(_users.c.username, _users.c.department_id).where(_users.c.id == owner)).first() \
            if owner else None
        facts = {"owner": owner_row.username if owner_row else None,
                 "department": tree.get(owner_row.department_id, {}).get("name") if owner_row else None,
                 "user_department": tree.get(self.department, {}).get("name")}
        owner_dept = owner_row.department_id if owner_row else None
        for action in ACTIONS:
            scope = self.scope(obj, action)
            code = self._scope_code(scope, owner, owner_dept)
            if code:
                reasons.append({"via": "role", "role": self.role, "action": action, "scope": scope, "code": code,
                                "args": {**facts, "role": self.role, "action": action},
                                "fact": SCOPE_FACTS[code].format(**facts)})
        if obj in self.shared:
            for share in conn.execute(sa.select(_shares).where(_shares.c.object == obj, _shares.c.record_id == row["id"],
                                                               sa.or_(_shares.c.user_id == self.user_id,
                                                                      _shares.c.department_id.in_(sorted(self.above))))):
                if share.user_id == self.user_id:
                    code, args = "share_user", {"access": share.access}
                    fact = f"the record is shared with the user ({share.access})"
                else:
                    name = tree.get(share.department_id, {}).get("name", share.department_id)
                    code, args = "share_department", {"access": share.access, "department": name}
                    fact = f"the record is shared with department {name!r} ({share.access})"
                reasons.append({"via": "share", "access": share.access, "share": share.id, "code": code, "args": args,
                                "fact": fact})
        for rule_obj, depts, level in self.sharing:
            if rule_obj == obj and owner_dept in depts:
                name = tree[owner_dept]["name"]
                reasons.append({"via": "sharing_rule", "role": self.role, "access": level, "code": "sharing_rule",
                                "args": {"role": self.role, "access": level, "object": obj, "department": name},
                                "fact": f"the role's sharing rule gives {level} access to {obj} records owned in {name!r}"})
        return {**answer, "reasons": reasons}

    def _scope_code(self, scope: str, owner, owner_dept) -> str | None:
        """Which fact about the record lets `scope` reach it, if any."""
        if scope == "all":
            return "scope_all"
        if scope == "own" and owner and owner == self.user_id:
            return "scope_own"
        if scope == "department" and owner_dept is not None and owner_dept == self.department:
            return "scope_department"
        if scope == "subordinates" and owner_dept in self.below:
            return "scope_subordinates_same" if owner_dept == self.department else "scope_subordinates_below"
        return None


# The API's English sentences for the scope reasons; the pages translate by `code`.
SCOPE_FACTS = {
    "scope_all": "the role's scope is every record",
    "scope_own": "the user owns the record",
    "scope_department": "its owner {owner!r} is in department {department!r}, the user's department",
    "scope_subordinates_same": "its owner {owner!r} is in department {department!r}, which is the user's department",
    "scope_subordinates_below": "its owner {owner!r} is in department {department!r}, below the user's department "
                                "{user_department!r}",
}


class AccessResolver:
    """Users expanded into `Access`, each kept `TTL` seconds (a change made
    in this process is seen at once: `forget`)."""

    def __init__(self, engine, roles_of_version):
        self.engine = engine
        self.roles_of_version = roles_of_version   # () -> (metadata version, {role name: Role})
        self._cache: dict[tuple, tuple[float, Access]] = {}
        self._lock = threading.Lock()
        self.generation = 0

    def forget(self) -> None:
        with self._lock:
            self._cache.clear()
            self.generation += 1

    def of(self, user: Any) -> Access:
        if user is None:
            return Access(None, "admin", everything=True)
        role = getattr(user, "role", None)
        if role in ("admin", "user"):
            return Access(getattr(user, "id", None), role, everything=True)
        version, roles = self.roles_of_version()
        key = (getattr(user, "id", None), role, version)
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None and now - hit[0] < TTL:
            return hit[1]
        access = self._expand(user, roles.get(role))
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[key] = (now, access)
        return access

    def _expand(self, user: Any, role: Role | None) -> Access:
        uid = getattr(user, "id", None)
        with self.engine.connect() as conn:
            department = conn.execute(sa.select(_users.c.department_id).where(_users.c.id == uid)).scalar() if uid else None
            tree = departments(conn)
            names = {row["name"]: row["id"] for row in tree.values()}
            above = ancestors(tree, department)
            shared = frozenset(conn.execute(sa.select(_shares.c.object).where(sa.or_(
                _shares.c.user_id == uid, _shares.c.department_id.in_(sorted(above)))).distinct()).scalars()) if uid else frozenset()
            below = descendants(tree, department)
            members = conn.execute(sa.select(_users.c.id, _users.c.department_id).where(
                _users.c.department_id.in_(sorted(below))).limit(MAX_LISTED + 1)).all() if below else []
        listed = len(members) <= MAX_LISTED
        colleagues = frozenset(m.id for m in members if m.department_id == department) if listed else None
        team = frozenset(m.id for m in members) if listed else None
        if role is None:   # a role nobody defines any more: nothing (shares still count)
            return Access(uid, getattr(user, "role", ""), everything=False, department=department,
                          below=below, above=above, shared=shared, known_role=False, colleagues=colleagues, team=team)
        sharing = tuple((rule.object, descendants(tree, names.get(rule.owned_in)), rule.access) for rule in role.sharing)
        fields = {tuple(path.split(".", 1)): right for path, right in role.fields.items()}
        return Access(uid, role.name, everything=False, rights=dict(role.objects), fields=fields, department=department,
                      below=below, above=above, sharing=sharing, shared=shared, colleagues=colleagues, team=team)


def departments(conn: sa.Connection) -> dict[str, dict]:
    """Every department by id: {"id", "name", "label", "parent_id", "manager_id"}."""
    return {row.id: dict(row._mapping) for row in conn.execute(sa.select(_departments))}


def descendants(tree: Mapping[str, dict], root: str | None) -> frozenset[str]:
    """`root` and every department below it (none for an unknown root)."""
    if root is None or root not in tree:
        return frozenset()
    children: dict[str | None, list[str]] = {}
    for dept in tree.values():
        children.setdefault(dept["parent_id"], []).append(dept["id"])
    found, todo = set(), [root]
    while todo:
        current = todo.pop()
        if current in found:
            continue   # a cycle: never loop
        found.add(current)
        todo.extend(children.get(current, ()))
    return frozenset(found)


def ancestors(tree: Mapping[str, dict], start: str | None) -> frozenset[str]:
    """`start` and every department above it."""
    found: set[str] = set()
    current = start
    while current is not None and current in tree and current not in found:
        found.add(current)
        current = tree[current]["parent_id"]
    return frozenset(found)


def strip(record: dict[str, Any], hidden: Iterable[str]) -> dict[str, Any]:
    """A record's JSON without the fields the user may not see."""
    hidden = set(hidden)
    return {k: v for k, v in record.items() if k not in hidden} if hidden else record
