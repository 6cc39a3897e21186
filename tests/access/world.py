"""A world to test record access in, and a reference that decides from
the same data in plain Python, by brute force: roles for every read scope
and field right, a department tree, users in every department with every
role, records owned all over it, shares and a sharing rule.

    world = AccessWorld.build(database_url)
    world.reference.may(user, deal, "read")     # what Loom must answer
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import sqlalchemy as sa
from fastapi.testclient import TestClient

from loomcrm.platform import auth, directory, systemdb
from loomcrm.platform.app import create_app, ensure_secret_key
from loomcrm.platform.db import create_engine, write_transaction
from loomcrm.platform.settings import Settings
from loomcrm.runtime.install import bundle_from_json, install_bundle

SCOPES = ("none", "own", "department", "subordinates", "all")
FIELD_RIGHTS = ("edit", "read", "hidden")
# the tree: company > sales > (east, west); company > service
TREE = {"company": None, "sales": "company", "east": "sales", "west": "sales", "service": "company"}


def role_name(scope: str, right: str) -> str:
    return f"r_{scope}_{right}"


def bundle() -> dict:
    roles = []
    for scope, right in itertools.product(SCOPES, FIELD_RIGHTS):
        narrower = SCOPES[:SCOPES.index(scope) + 1]
        roles.append({"name": role_name(scope, right),
                      "objects": {"deal": {"create": True, "read": scope, "update": narrower[max(0, len(narrower) - 2)],
                                           "delete": "own" if scope != "none" else "none", "export": scope != "none"},
                                  "acct": {"read": "all", "create": True},
                                  "note": {"read": "own", "create": True}},
                      "fields": {"deal.amount": right}})
    # a role that reads nothing itself but west's deals through a sharing rule
    roles.append({"name": "r_rule", "objects": {"acct": {"read": "all"}, "note": {"read": "own", "create": True}},
                  "sharing": [{"object": "deal", "owned_in": "west", "access": "read"}]})
    return {
        "manifest": {"format": "loom/1", "name": "access_world", "version": "1.0.0"},
        "objects": [
            {"name": "acct", "title_field": "name", "fields": [{"name": "name", "type": "text", "required": True}]},
            {"name": "deal", "title_field": "name", "track_history": ["amount", "stage"],
             "layouts": {"kanban": {"group_by": "stage", "card": ["name"], "sum": "amount"}},
             "fields": [
                 {"name": "name", "type": "text", "required": True},
                 {"name": "amount", "type": "currency"},
                 {"name": "stage", "type": "picklist", "options": [{"value": "open"}, {"value": "won"}]},
                 {"name": "acct", "type": "lookup", "to": "acct", "on_delete": "set_null"}]},
            {"name": "note", "fields": [{"name": "body", "type": "text"},
                                        {"name": "deal", "type": "lookup", "to": "deal", "on_delete": "cascade"}]},
        ],
        "roles": roles,
    }


@dataclass
class Person:
    username: str
    id: str
    role: str
    department: str | None
    token: str = ""


@dataclass
class Reference:
    """Decides from the world's data alone."""

    roles: dict[str, dict]
    departments: dict[str, str | None]          # name -> parent name
    people: dict[str, Person]                   # by id
    shares: list[dict] = field(default_factory=list)   # {"record", "user" (id) or "department" (name), "access"}

    def below(self, dept: str | None) -> set[str]:
        if dept is None:
            return set()
        out = {dept}
        changed = True
        while changed:
            changed = False
            for name, parent in self.departments.items():
                if parent in out and name not in out:
                    out.add(name)
                    changed = True
        return out

    def above(self, dept: str | None) -> set[str]:
        out, current = set(), dept
        while current is not None and current not in out:
            out.add(current)
            current = self.departments.get(current)
        return out

    def scope(self, person: Person, action: str) -> str:
        if person.role in ("admin", "user"):
            return "all"
        rights = self.roles.get(person.role, {}).get("objects", {}).get("deal", {})
        return rights.get(action, "none")

    def in_scope(self, person: Person, scope: str, owner: str | None) -> bool:
        owner_dept = self.people[owner].department if owner in self.people else None
        return (scope == "all" or (scope == "own" and owner == person.id)
                or (scope == "department" and person.department is not None and owner_dept == person.department)
                or (scope == "subordinates" and owner_dept is not None and owner_dept in self.below(person.department)))

    def may(self, person: Person, deal: dict, action: str) -> bool:
        if person.role in ("admin", "user"):
            return True
        if self.in_scope(person, self.scope(person, action), deal["owner"]):
            return True
        if action == "delete":
            return False
        for share in self.shares:
            if share["record"] != deal["id"] or (action == "update" and share["access"] != "edit"):
                continue
            if share.get("user") == person.id or share.get("department") in self.above(person.department):
                return True
        for rule in self.roles.get(person.role, {}).get("sharing", []):
            owner_dept = self.people[deal["owner"]].department if deal["owner"] in self.people else None
            if rule["object"] == "deal" and (action == "read" or rule["access"] == "edit") \
                    and owner_dept in self.below(rule["owned_in"]):
                return True
        return False

    def amount_right(self, person: Person) -> str:
        if person.role in ("admin", "user"):
            return "edit"
        return self.roles.get(person.role, {}).get("fields", {}).get("deal.amount", "edit")


class AccessWorld:
    def __init__(self, url: str):
        self.url = url
        self.engine = create_engine(url)
        systemdb.upgrade(self.engine)
        install_bundle(self.engine, bundle_from_json(bundle()))
        self.app = create_app(Settings(database_url=url), self.engine)
        self.client = TestClient(self.app)
        self.secret = ensure_secret_key(self.engine, "")
        self.people: dict[str, Person] = {}
        self.deals: dict[str, dict] = {}
        self.reference: Reference | None = None

    @classmethod
    def build(cls, url: str) -> "AccessWorld":
        world = cls(url)
        for name, parent in TREE.items():
            directory.create_department(world.engine, name, parent=parent)
        roles = [r["name"] for r in bundle()["roles"]]
        cheap = auth.hash_password("a long password")
        everyone = [("admin", None), ("user", "service")] + [(r, d) for r in roles for d in ("east", "sales", "west")]
        with write_transaction(world.engine) as conn:
            dept_ids = dict(conn.execute(sa.select(systemdb.departments.c.name, systemdb.departments.c.id)).all())
            for n, (role, dept) in enumerate(everyone):
                uid = f"{n:032x}"
                username = f"u{n}_{role}_{dept or 'none'}"
                conn.execute(sa.insert(systemdb.users).values(
                    id=uid, username=username, display_name=username, password_hash=cheap, role=role, locale="en",
                    is_active=True, department_id=dept_ids.get(dept)))
                world.people[uid] = Person(username, uid, role, dept)
        for person in world.people.values():
            person.token = auth.create_token(world.engine, world.secret, person.username)
        world.reference = Reference({r["name"]: r for r in bundle()["roles"]}, dict(TREE), world.people)
        admin = next(p for p in world.people.values() if p.role == "admin")
        acct = world.as_(admin).post("/api/v1/acct", json={"name": "Shared account"}).json()
        world.acct = acct["id"]
        owners = [p.id for p in world.people.values() if p.role.startswith("r_") and p.role.endswith("_edit")]
        for i, owner in enumerate(owners[:: max(1, len(owners) // 12)][:12] + [admin.id]):
            deal = world.as_(admin).post("/api/v1/deal", json={"name": f"Deal {i} zebra", "amount": 100 + i, "owner": owner,
                                                               "stage": ("open", "won")[i % 2], "acct": acct["id"]}).json()
            world.deals[deal["id"]] = deal
        ids = list(world.deals)
        some_user = next(p for p in world.people.values() if p.role == role_name("own", "edit") and p.department == "east")
        world.share(admin, ids[0], {"user": some_user.username, "access": "read"})
        world.share(admin, ids[1], {"department": "sales", "access": "edit"})
        return world

    def share(self, by: Person, rid: str, body: dict) -> None:
        made = self.as_(by).post(f"/api/v1/deal/{rid}/_shares", json=body)
        assert made.status_code == 201, made.text
        entry = {"record": rid, "access": body["access"]}
        if "user" in body:
            entry["user"] = next(p.id for p in self.people.values() if p.username == body["user"])
        else:
            entry["department"] = body["department"]
        self.reference.shares.append(entry)

    def as_(self, person: Person) -> "Acting":
        return Acting(self.client, {"Authorization": f"Bearer {person.token}"})

    def close(self) -> None:
        self.client.close()
        self.engine.dispose()


@dataclass
class Acting:
    """The API client acting as one person (its own headers on every request)."""

    client: TestClient
    headers: dict

    def get(self, url, **kw):
        return self.client.get(url, headers=self.headers, **kw)

    def post(self, url, **kw):
        return self.client.post(url, headers=self.headers, **kw)

    def patch(self, url, **kw):
        return self.client.patch(url, headers=self.headers, **kw)

    def delete(self, url, **kw):
        return self.client.delete(url, headers=self.headers, **kw)
