"""A hypothesis state machine over the access world: users move between
departments, records change owners, records are shared and unshared, a
role's read scope changes (a new metadata version). After every step,
every user's list of deals is exactly the reference's, through the API."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from loomcrm.metadata.model import Role
from loomcrm.metadata.versions import VersionStore
from loomcrm.runtime.migrate.execute import publish

from world import SCOPES, TREE

EXAMPLES = int(os.environ.get("LOOM_PROPERTY_EXAMPLES", "8"))


def test_every_step_keeps_every_list_exact(world):
    people = list(world.people.values())
    admin = next(p for p in people if p.role == "admin")
    deals = list(world.deals)
    roles = sorted(world.reference.roles)

    class Access(RuleBasedStateMachine):
        @rule(person=st.sampled_from(people), department=st.sampled_from([*TREE, None]))
        def move_user(self, person, department):
            if person.role == "admin":
                return
            answer = world.as_(admin).patch(f"/api/v1/_admin/users/{person.username}", json={"department": department})
            assert answer.status_code == 200, answer.text
            person.department = department

        @rule(rid=st.sampled_from(deals), owner=st.sampled_from(people))
        def change_owner(self, rid, owner):
            answer = world.as_(admin).patch(f"/api/v1/deal/{rid}", json={"owner": owner.id})
            assert answer.status_code == 200, answer.text
            world.deals[rid]["owner"] = owner.id

        @rule(rid=st.sampled_from(deals), person=st.sampled_from(people), department=st.sampled_from(list(TREE)),
              to_department=st.booleans(), level=st.sampled_from(["read", "edit"]))
        def share(self, rid, person, department, to_department, level):
            body = {"department": department} if to_department else {"user": person.username}
            world.share(admin, rid, {**body, "access": level})

        @rule(rid=st.sampled_from(deals))
        def unshare_all(self, rid):
            for entry in world.as_(admin).get(f"/api/v1/deal/{rid}/_shares").json()["data"]:
                assert world.as_(admin).delete(f"/api/v1/deal/{rid}/_shares/{entry['id']}").status_code == 204
            world.reference.shares = [s for s in world.reference.shares if s["record"] != rid]

        @rule(role=st.sampled_from(roles), scope=st.sampled_from(SCOPES))
        def change_scope(self, role, scope):
            definition = world.reference.roles[role]
            if "deal" not in definition["objects"]:
                return
            rights = dict(definition["objects"]["deal"])
            rights["read"] = scope
            order = list(SCOPES)
            for action in ("update", "delete"):   # never wider than read
                if order.index(rights[action]) > order.index(scope):
                    rights[action] = scope
            changed = {**definition, "objects": {**definition["objects"], "deal": rights}}
            with world.engine.connect() as conn:
                _version, snapshot = VersionStore().published(conn)
            new_roles = [Role.model_validate(changed) if r.name == role else r for r in snapshot.roles]
            publish(world.engine, snapshot.model_copy(update={"roles": new_roles}))
            world.app.state.loom.runtime.invalidate()
            world.reference.roles[role] = changed

        @invariant()
        def every_list_is_exact(self):
            for person in people[::5]:
                rows = world.as_(person).get("/api/v1/deal", params={"limit": 500}).json()["data"]
                visible = {rid for rid, deal in world.deals.items() if world.reference.may(person, deal, "read")}
                assert {r["id"] for r in rows} == visible, person.username

    Access.TestCase.settings = settings(max_examples=EXAMPLES, stateful_step_count=12, deadline=None,
                                        suppress_health_check=list(HealthCheck))
    Access.TestCase().runTest()
