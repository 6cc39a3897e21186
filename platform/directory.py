"""Departments and the people in them: the tree the record scopes read
(`department`, `subordinates`), users' roles and departments, deactivation.
Every change is written to the audit log in its own transaction.

Used by `loom department create` / `loom user create`, the `_admin` API and
the admin pages. Roles a bundle defines are passed in by the caller (the
platform knows only the built-in `admin` and `user`)."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any, Iterable

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from . import audit, auth, systemdb
from .db import write_transaction

NAME = re.compile(r"^(?!.*__)[a-z][a-z0-9_]{0,62}$")
_departments, _users = systemdb.departments, systemdb.users


class DirectoryError(ValueError):
    """A change that cannot be made; `field` names what is wrong and `code`
    what kind of wrong (the pages say it in the user's language)."""

    def __init__(self, message: str, field: str | None = None, status: int = 422, code: str = "invalid"):
        super().__init__(message)
        self.field = field
        self.status = status
        self.code = code


@dataclass(frozen=True)
class Department:
    id: str
    name: str
    label: str
    parent: str | None       # the parent's name
    manager: str | None      # the manager's user name
    members: int = 0


def departments(engine: Engine) -> list[Department]:
    """Every department, parents before children, then by name."""
    d, parent, manager = _departments, _departments.alias("parent"), _users.alias("manager")
    with engine.connect() as conn:
        counts = dict(conn.execute(sa.select(_users.c.department_id, sa.func.count())
                                   .where(_users.c.department_id.is_not(None)).group_by(_users.c.department_id)).all())
        rows = conn.execute(sa.select(d.c.id, d.c.name, d.c.label, d.c.parent_id, parent.c.name.label("parent"),
                                      manager.c.username.label("manager"))
                            .select_from(d.outerjoin(parent, parent.c.id == d.c.parent_id)
                                         .outerjoin(manager, manager.c.id == d.c.manager_id))).all()
    by_parent: dict[str | None, list] = {}
    for r in rows:
        by_parent.setdefault(r.parent_id, []).append(r)
    ordered, seen = [], set()

    def walk(parent_id):
        for r in sorted(by_parent.get(parent_id, []), key=lambda r: r.name):
            if r.id not in seen:
                seen.add(r.id)
                ordered.append(Department(r.id, r.name, r.label, r.parent, r.manager, counts.get(r.id, 0)))
                walk(r.id)
    walk(None)
    ordered += [Department(r.id, r.name, r.label, r.parent, r.manager, counts.get(r.id, 0)) for r in rows if r.id not in seen]
    return ordered


def department_id(conn: sa.Connection, name: str | None, field: str = "department") -> str | None:
    if not name:
        return None
    found = conn.execute(sa.select(_departments.c.id).where(_departments.c.name == name[:63])).scalar()
    if found is None:
        raise DirectoryError(f"there is no department {name[:63]!r}", field, code="not_found")
    return found


def create_department(engine: Engine, name: str, *, label: str = "", parent: str | None = None,
                      manager: str | None = None, actor=None) -> Department:
    if not name:
        raise DirectoryError("a department needs a name", "name", code="required")
    if not isinstance(name, str) or not NAME.match(name):
        raise DirectoryError("a department's name is lower-case letters, digits and _ (e.g. east_sales)", "name", code="pattern")
    with write_transaction(engine) as conn:
        if conn.execute(sa.select(_departments.c.id).where(_departments.c.name == name)).first() is not None:
            raise DirectoryError(f"department {name!r} already exists", "name", status=409, code="taken")
        parent_id = department_id(conn, parent, "parent")
        manager_id = None
        if manager:
            manager_id = conn.execute(sa.select(_users.c.id).where(_users.c.username == manager)).scalar()
            if manager_id is None:
                raise DirectoryError(f"there is no user {manager[:63]!r}", "manager", code="not_found")
        dept_id = uuid.uuid4().hex
        conn.execute(sa.insert(_departments).values(id=dept_id, name=name, label=(label or name)[:200],
                                                    parent_id=parent_id, manager_id=manager_id))
        audit.record(conn, actor, "department.create", name, {"parent": parent, "manager": manager, "label": label or name})
    return next(d for d in departments(engine) if d.id == dept_id)


def update_department(engine: Engine, name: str, changes: dict[str, Any], *, actor=None) -> Department:
    """Change a department's label, parent (never one of its own
    descendants) or manager (a user name, or empty for none)."""
    unknown = set(changes) - {"label", "parent", "manager"}
    if unknown:
        raise DirectoryError(f"unknown key {sorted(unknown)[0]!r}", sorted(unknown)[0], code="unknown_field")
    with write_transaction(engine) as conn:
        row = conn.execute(sa.select(_departments).where(_departments.c.name == name)).first()
        if row is None:
            raise DirectoryError(f"there is no department {name!r}", None, status=404, code="not_found")
        values: dict[str, Any] = {}
        if "label" in changes:
            values["label"] = str(changes["label"] or name)[:200]
        if "parent" in changes:
            parent_id = department_id(conn, changes["parent"] or None, "parent")
            parents = dict(conn.execute(sa.select(_departments.c.id, _departments.c.parent_id)).all())
            walk = parent_id
            while walk is not None:
                if walk == row.id:
                    raise DirectoryError(f"{changes['parent']!r} is inside {name!r}: a department cannot be its own "
                                         "ancestor", "parent", code="cycle")
                walk = parents.get(walk)
            values["parent_id"] = parent_id
        if "manager" in changes:
            values["manager_id"] = None
            if changes["manager"]:
                values["manager_id"] = conn.execute(sa.select(_users.c.id).where(_users.c.username == changes["manager"])).scalar()
                if values["manager_id"] is None:
                    raise DirectoryError(f"there is no user {str(changes['manager'])[:63]!r}", "manager", code="not_found")
        if values:
            conn.execute(sa.update(_departments).where(_departments.c.id == row.id).values(**values))
        audit.record(conn, actor, "department.update", name, dict(changes))
    return next(d for d in departments(engine) if d.id == row.id)


def check_role(role: str, roles: Iterable[str]) -> None:
    if role not in (*auth.ROLES, *roles):
        known = ", ".join([*auth.ROLES, *sorted(roles)])
        raise DirectoryError(f"role must be one of {known}, not {role!r}", "role", code="invalid_option")


def create_user(engine: Engine, username: str, role: str, password: str, *, roles: Iterable[str] = (),
                department: str | None = None, display_name: str = "", email: str | None = None, locale: str = "en",
                actor=None) -> auth.User:
    check_role(role, roles)
    with engine.connect() as conn:
        dept = department_id(conn, department)
    try:
        user = auth.create_user(engine, username, role, password, display_name=display_name, email=email, locale=locale,
                                roles=roles)
    except auth.AuthError as exc:
        text = str(exc)
        field, code = ("username", "taken") if "exists" in text else ("username", "pattern") if "user name" in text \
            else ("password", "too_short")
        raise DirectoryError(text, field, status=409 if code == "taken" else 422, code=code) from None
    with write_transaction(engine) as conn:
        if dept is not None:
            conn.execute(sa.update(_users).where(_users.c.id == user.id).values(department_id=dept))
        audit.record(conn, actor, "user.create", username, {"role": role, "department": department})
    return user


def update_user(engine: Engine, user_id: str, changes: dict[str, Any], *, roles: Iterable[str] = (), actor=None,
                secret_key: str | None = None) -> None:
    """Change a user's role, department, display name, e-mail, language,
    password or whether they may sign in. Deactivating ends their sessions
    and revokes their API tokens at once."""
    known = {"role", "department", "display_name", "email", "locale", "password", "is_active"}
    unknown = set(changes) - known
    if unknown:
        raise DirectoryError(f"unknown key {sorted(unknown)[0]!r}", sorted(unknown)[0], code="unknown_field")
    values: dict[str, Any] = {}
    with write_transaction(engine) as conn:
        row = conn.execute(sa.select(_users).where(_users.c.id == user_id)).first()
        if row is None or row.password_hash == auth.NO_PASSWORD:
            raise DirectoryError("there is no such user", None, status=404, code="not_found")
        if "role" in changes:
            check_role(changes["role"], roles)
            values["role"] = changes["role"]
        if row.role == "admin" and row.is_active and (values.get("role", "admin") != "admin" or changes.get("is_active") is False):
            others = conn.execute(sa.select(sa.func.count()).select_from(_users).where(
                _users.c.role == "admin", _users.c.is_active.is_(True), _users.c.id != user_id)).scalar()
            if not others:
                raise DirectoryError("this is the last active administrator: make another one first",
                                     "is_active" if changes.get("is_active") is False else "role", status=409, code="last_admin")
        if "department" in changes:
            values["department_id"] = department_id(conn, changes["department"])
        for key in ("display_name", "email", "locale"):
            if key in changes:
                values[key] = changes[key]
        if "password" in changes:
            password = changes["password"]
            if not isinstance(password, str) or len(password.strip()) < auth.MIN_PASSWORD_LENGTH:
                raise DirectoryError(f"a password needs at least {auth.MIN_PASSWORD_LENGTH} characters", "password", code="too_short")
            values["password_hash"] = auth.hash_password(password)
        if "is_active" in changes:
            values["is_active"] = bool(changes["is_active"])
        if values:
            conn.execute(sa.update(_users).where(_users.c.id == user_id).values(**values))
        if changes.get("is_active") is False or "password" in changes:
            auth.end_all_sessions(conn, user_id)
        if changes.get("is_active") is False:
            auth.revoke_all_tokens(conn, user_id)
        audit.record(conn, actor, "user.update", row.username,
                     {k: ("(changed)" if k == "password" else v) for k, v in changes.items()})
