"""Every path, for every user of a generated matrix (every read scope ×
every field right × three departments, the built-in roles, shares to a
user and to a department, a sharing rule), returns exactly what a
brute-force reference decides from the same data. Zero leaks, on SQLite
and PostgreSQL."""

from __future__ import annotations

import csv
import io
import re

from world import Person


def ids_in(text: str, pattern: str) -> set[str]:
    return set(re.findall(pattern, text))


def expected(world, person: Person, action: str = "read") -> set[str]:
    return {rid for rid, deal in world.deals.items() if world.reference.may(person, deal, action)}


def test_the_api_reads_exactly_what_the_reference_allows(world):
    for person in world.people.values():
        client = world.as_(person)
        visible = expected(world, person)
        listed = client.get("/api/v1/deal", params={"limit": 500})
        assert listed.status_code == 200, (person.username, listed.text)
        rows = listed.json()["data"]
        assert {r["id"] for r in rows} == visible, person.username
        hidden = world.reference.amount_right(person) == "hidden"
        assert all(("amount" in r) is not hidden for r in rows), person.username
        for rid in world.deals:
            got = client.get(f"/api/v1/deal/{rid}")
            assert got.status_code == (200 if rid in visible else 404), (person.username, rid)
            if got.status_code == 200:
                assert ("amount" in got.json()) is not hidden
        found = client.get("/api/v1/deal", params={"q": "zebra", "limit": 500}).json()["data"]
        assert {r["id"] for r in found} == visible
        # a field the user may not see is as unknown as a made-up one, in filters and sorts alike
        for params in ({"filter": "amount > 0"}, {"sort": "-amount"}, {"amount__gt": "0"}):
            answer = client.get("/api/v1/deal", params=params)
            assert answer.status_code == (400 if hidden else 200), (person.username, params, answer.text)
        if not hidden:
            over = client.get("/api/v1/deal", params={"filter": "amount > 105", "limit": 500}).json()["data"]
            assert {r["id"] for r in over} == {rid for rid in visible if world.deals[rid]["amount"] > 105}


def test_writes_follow_the_scope_as_stored_and_as_it_will_be(world):
    admin = next(p for p in world.people.values() if p.role == "admin")
    outsider = next(p for p in world.people.values() if p.role == "user")
    for person in world.people.values():
        client = world.as_(person)
        for rid, deal in world.deals.items():
            readable = world.reference.may(person, deal, "read")
            changed = client.patch(f"/api/v1/deal/{rid}", json={"stage": deal["stage"] == "open" and "won" or "open"})
            want = 200 if world.reference.may(person, deal, "update") else (403 if readable else 404)
            assert changed.status_code == want, (person.username, rid, changed.text)
            if changed.status_code == 200:
                deal["stage"] = changed.json()["stage"]
                # the record may not leave the user's scope
                moved = client.patch(f"/api/v1/deal/{rid}", json={"owner": outsider.id})
                keeps = world.reference.in_scope(person, world.reference.scope(person, "update"), outsider.id)
                assert moved.status_code == (200 if keeps else 403), (person.username, moved.text)
                if moved.status_code == 200:
                    world.as_(admin).patch(f"/api/v1/deal/{rid}", json={"owner": deal["owner"]})
        # a field the user may only read does not change; one it may not see cannot even be sent
        right = world.reference.amount_right(person)
        for rid, deal in world.deals.items():
            if world.reference.may(person, deal, "update"):
                answer = world.as_(person).patch(f"/api/v1/deal/{rid}", json={"amount": 999})
                assert answer.status_code == (200 if right == "edit" else 422), (person.username, answer.text)
                if right != "edit":
                    assert answer.json()["errors"][0] == {"field": "amount", "code": "read_only",
                                                          "message": "you may not change amount"}
                else:
                    world.as_(admin).patch(f"/api/v1/deal/{rid}", json={"amount": deal["amount"]})
                break


def test_deletes_restores_and_lookups(world):
    admin = next(p for p in world.people.values() if p.role == "admin")
    for person in list(world.people.values())[::3]:
        client = world.as_(person)
        for rid, deal in world.deals.items():
            readable = world.reference.may(person, deal, "read")
            # a lookup to a record one cannot read is not found
            note = client.post("/api/v1/note", json={"body": "x", "deal": rid})
            if person.role in ("admin", "user") or person.role.startswith("r_"):
                assert note.status_code == (201 if readable else 422), (person.username, note.text)
                if note.status_code == 422:
                    assert note.json()["errors"] == [{"field": "deal", "code": "not_found", "message": f"no deal record {rid!r}"}]
            gone = client.delete(f"/api/v1/deal/{rid}")
            want = 204 if world.reference.may(person, deal, "delete") else (403 if readable else 404)
            assert gone.status_code == want, (person.username, rid, gone.text)
            if gone.status_code == 204:
                assert world.as_(admin).post(f"/api/v1/deal/{rid}/restore").status_code == 200


def _sign_in(client, person: Person) -> str:
    client.cookies.clear()
    page = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    home = client.post("/login", data={"username": person.username, "password": "a long password", "csrf_token": token})
    assert home.status_code == 200, person.username
    return re.search(r"X-CSRF-Token&#34;: &#34;([^&]+)&#34;", home.text).group(1)


def test_every_page_shows_exactly_what_the_reference_allows(world):
    client = world.client
    for person in list(world.people.values())[::2]:
        _sign_in(client, person)
        visible = expected(world, person)
        hidden = world.reference.amount_right(person) == "hidden"
        listing = client.get("/app/deal")
        assert listing.status_code == 200, person.username   # every role here may see some deal (or none, by scope)
        if listing.status_code == 200:
            assert ids_in(listing.text, r'id="row-([0-9a-f]{32})"') == visible, person.username
            assert f'id="row-count">{len(visible)}<' in listing.text
            board = client.get("/app/deal/board").text
            assert ids_in(board, r'data-id="([0-9a-f]{32})"') == visible
            assert ("col-sum" in board) is not hidden
            offered = ids_in(client.get("/app/_lookup", params={"object": "deal"}).text, r'data-id="([0-9a-f]{32})"')
            assert offered <= visible and len(offered) == min(8, len(visible))
            found = ids_in(client.get("/app/search", params={"q": "zebra"}).text, r'/app/deal/([0-9a-f]{32})"')
            assert found <= visible and len(found) == min(5, len(visible))
            related = client.get(f"/app/acct/{world.acct}").text
            assert ids_in(related, r'/app/deal/([0-9a-f]{32})"') <= visible
            exported = client.get("/app/deal/export.csv")
            may_export = person.role in ("admin", "user") or world.reference.roles.get(person.role, {}) \
                .get("objects", {}).get("deal", {}).get("export", False)
            assert exported.status_code == (200 if may_export else 403), person.username
            if exported.status_code == 200:
                rows = list(csv.DictReader(io.StringIO(exported.text.lstrip("\ufeff"))))
                assert {r["id"] for r in rows} == visible
                assert all(("amount" in r) is not hidden for r in rows)
        for rid in world.deals:
            page = client.get(f"/app/deal/{rid}")
            assert page.status_code == (200 if rid in visible else 404), (person.username, rid)
            if page.status_code == 200:
                timeline = page.text.split('id="timeline-h"')[1]
                if hidden:
                    assert "Amount" not in timeline and "Amount" not in page.text.split('id="timeline-h"')[0]
    client.cookies.clear()


def test_departments_too_large_to_list_are_asked_of_the_database(world, monkeypatch):
    """Past MAX_LISTED members the scope clause is a subquery on the users
    table and a record's check a query: the same answers."""
    from loomcrm.runtime import access

    monkeypatch.setattr(access, "MAX_LISTED", 0)
    world.app.state.loom.runtime.access.forget()
    try:
        for person in world.people.values():
            client = world.as_(person)
            visible = expected(world, person)
            rows = client.get("/api/v1/deal", params={"limit": 500}).json()["data"]
            assert {r["id"] for r in rows} == visible, person.username
            for rid in world.deals:
                assert client.get(f"/api/v1/deal/{rid}").status_code == (200 if rid in visible else 404)
    finally:
        monkeypatch.undo()
        world.app.state.loom.runtime.access.forget()
