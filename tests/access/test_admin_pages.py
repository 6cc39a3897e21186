"""The admin screens and the record page's sharing panel, through the
pages (FastAPI's test client with signed-in sessions) on the crm pack:
what an admin does there happens, is logged, and bad input changes nothing.
Each test makes the people it needs, so the tests run in any order."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from loomcrm.platform import auth, directory, systemdb
from loomcrm.platform.app import create_app
from loomcrm.platform.db import create_engine
from loomcrm.platform.settings import Settings
from loomcrm.runtime.commands import pack_install


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    folder = tmp_path_factory.mktemp("admin")
    url = f"sqlite:///{folder / 'loom.db'}"
    pack_install(url, "crm")
    engine = create_engine(url)
    auth.create_user(engine, "boss", "admin", "boss password")
    directory.create_department(engine, "sales", label="Sales")
    directory.create_department(engine, "east", label="East", parent="sales")
    application = create_app(Settings(data_dir=str(folder), database_url=url), engine)
    yield application
    engine.dispose()


def person(app, username: str, role: str = "sales_rep", department: str | None = "east") -> str:
    """A user made directly; signs in with "<username> password"."""
    roles = sorted(app.state.loom.runtime.roles()[1])
    return directory.create_user(app.state.loom.engine, username, role, f"{username} password", roles=roles,
                                 department=department).id


def signed_in(app, username: str, password: str, locale: str = "en") -> TestClient:
    client = TestClient(app, headers={"Accept-Language": locale})
    page = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    home = client.post("/login", data={"username": username, "password": password, "csrf_token": token, "next": "/"})
    assert home.status_code == 200, home.text[:300]
    client.csrf = re.search(r"X-CSRF-Token&#34;: &#34;([^&]+)&#34;", home.text).group(1)
    return client


def post(client: TestClient, path: str, data: dict, **kwargs):
    return client.post(path, data={**data, "csrf_token": client.csrf}, follow_redirects=False, **kwargs)


@pytest.fixture(scope="module")
def boss(app):
    return signed_in(app, "boss", "boss password")


def users(app) -> dict[str, sa.Row]:
    with app.state.loom.engine.connect() as conn:
        return {r.username: r for r in conn.execute(sa.select(systemdb.users))}


def audited(app, action: str) -> list[sa.Row]:
    with app.state.loom.engine.connect() as conn:
        return conn.execute(sa.select(systemdb.audit).where(systemdb.audit.c.action == action)).all()


def test_an_admin_builds_the_department_tree(app, boss):
    assert post(boss, "/admin/departments", {"name": "north", "label": "North"}).status_code == 303
    assert post(boss, "/admin/departments", {"name": "north_city", "label": "City", "parent": "north"}).status_code == 303
    page = boss.get("/admin/departments")
    assert re.search(r'data-level="2"[^>]*data-department="north_city"', page.text)
    # a taken name, a bad name, an unknown parent: refused in words, nothing made
    for values, field in [({"name": "north"}, "in-name"), ({"name": "Bad Name"}, "in-name"),
                          ({"name": "x" * 5000}, "in-name"), ({"name": "west", "parent": "nowhere"}, "in-parent")]:
        answer = post(boss, "/admin/departments", values)
        assert answer.status_code == 422 and f'id="{field}"' in answer.text and 'aria-invalid="true"' in answer.text
    assert "west" not in boss.get("/admin/departments").text
    # a department never moves below itself
    moved = post(boss, "/admin/departments/north", {"label": "North", "parent": "north_city", "manager": ""})
    assert moved.status_code == 422 and "cannot move inside itself" in moved.text
    zh = signed_in(app, "boss", "boss password", "zh-CN")
    assert "部门不能移到自己之下" in post(zh, "/admin/departments/north", {"label": "North", "parent": "north_city"}).text
    assert post(boss, "/admin/departments/north", {"label": "North", "parent": "", "manager": "boss"}).status_code == 303
    assert re.search(r'data-department="north".*?Manager: boss', boss.get("/admin/departments").text, re.S)
    assert post(boss, "/admin/departments/missing", {"label": "x"}).status_code == 404
    # the parent list of a department never offers itself nor what is inside it
    form = re.search(r'action="/admin/departments/north".*?</form>', boss.get("/admin/departments").text, re.S).group(0)
    assert 'value="north_city"' not in form and 'value="north"' not in form and 'value="sales"' in form
    assert post(boss, "/admin/departments", {"name": ""}).status_code == 422


def test_a_deactivated_manager_survives_an_edit_of_the_label(app, boss):
    person(app, "mia", role="sales_manager", department="sales")
    assert post(boss, "/admin/departments", {"name": "south", "manager": "mia"}).status_code == 303
    assert post(boss, "/admin/users/mia/active", {"active": "0"}).status_code == 303
    form = re.search(r'action="/admin/departments/south".*?</form>', boss.get("/admin/departments").text, re.S).group(0)
    assert re.search(r'<option value="mia" selected>', form)
    assert post(boss, "/admin/departments/south", {"label": "South", "parent": "", "manager": "mia"}).status_code == 303
    assert re.search(r'data-department="south".*?Manager: mia', boss.get("/admin/departments").text, re.S)


def test_an_admin_creates_users_with_role_and_department(app, boss):
    made = post(boss, "/admin/users", {"username": "amy", "display_name": "Ann", "email": "amy@example.com",
                                       "role": "sales_rep", "department": "east", "locale": "zh-CN",
                                       "password": "amy password"})
    assert made.status_code == 303 and made.headers["location"] == "/admin/users/amy?done=created"
    assert users(app)["amy"].role == "sales_rep" and users(app)["amy"].locale == "zh-CN"
    listing = boss.get("/admin/users").text
    assert re.search(r'data-user="amy".*?Sales rep.*?East', listing, re.S)
    before = len(users(app))
    broken = [
        ({"username": "amy", "role": "user", "password": "long enough"}, "This name is already taken."),
        ({"username": "bad name!", "role": "user", "password": "long enough"}, "Use letters, digits"),
        ({"username": "bob", "role": "user", "password": "short"}, "At least 8 characters."),
        ({"username": "bob", "role": "emperor", "password": "long enough"}, "Choose one of the options."),
        ({"username": "bob", "role": "user", "password": "long enough", "email": "not-an-address"}, "Not a valid e-mail"),
        ({"username": "bob", "role": "user", "password": "long enough", "department": "nowhere"}, "There is no such entry"),
        ({"username": "", "role": "user", "password": ""}, "Required."),
        ({"username": "b" * 10_000, "role": "user", "password": "long enough"}, "Use letters, digits"),
    ]
    for values, message in broken:
        answer = post(boss, "/admin/users", values)
        assert answer.status_code == 422 and message in answer.text, (values, answer.text[-2000:])
        assert "The user was not created" in answer.text
    assert len(users(app)) == before
    assert [line.target for line in audited(app, "user.create") if line.target in ("amy", "bob")] == ["amy"]


def test_role_department_password_and_deactivation(app, boss):
    assert post(boss, "/admin/users", {"username": "cai", "role": "user", "password": "cai password"}).status_code == 303
    cai = signed_in(app, "cai", "cai password")
    changed = post(boss, "/admin/users/cai", {"display_name": "Cai", "email": "", "role": "sales_manager",
                                              "department": "sales", "locale": "en"})
    assert changed.status_code == 303
    row = users(app)["cai"]
    assert row.role == "sales_manager" and row.display_name == "Cai"
    # the manager's session sees the new role at once
    assert cai.get("/app/lead").status_code == 200
    page = boss.get("/admin/users/cai")
    assert "Sales manager" in page.text and 'data-session="' in page.text
    # a short password is refused, a good one signs the user out everywhere
    assert post(boss, "/admin/users/cai/password", {"password": "short"}).status_code == 422
    assert cai.get("/", follow_redirects=False).status_code == 200
    assert post(boss, "/admin/users/cai/password", {"password": "new cai password"}).status_code == 303
    assert cai.get("/", follow_redirects=False).status_code == 303
    cai = signed_in(app, "cai", "new cai password")
    assert post(boss, "/admin/users/cai/active", {"active": "0"}).status_code == 303
    assert users(app)["cai"].is_active is False
    assert cai.get("/", follow_redirects=False).status_code == 303
    assert "Deactivated" in boss.get("/admin/users").text
    assert post(boss, "/admin/users/cai/active", {"active": "1"}).status_code == 303
    signed_in(app, "cai", "new cai password")
    # an admin cannot lock themselves out
    refused = post(boss, "/admin/users/boss/active", {"active": "0"})
    assert refused.status_code == 422 and "You cannot deactivate yourself." in refused.text
    assert users(app)["boss"].is_active is True
    demoted = post(boss, "/admin/users/boss", {"display_name": "", "email": "", "role": "user", "department": "", "locale": "en"})
    assert demoted.status_code == 422 and "You cannot take away your own administrator role." in demoted.text
    assert users(app)["boss"].role == "admin"
    assert post(boss, "/admin/users/nobody", {"role": "user"}).status_code == 404


def test_the_last_administrator_stays(app, boss):
    """Through the API too: whoever acts, the last active admin is never
    demoted nor deactivated; a second admin makes it possible."""
    api = {"Authorization": f"Bearer {auth.create_token(app.state.loom.engine, app.state.loom.secret_key, 'boss')}"}
    client = TestClient(app)
    person(app, "deputy", role="admin", department=None)
    deputy = {"Authorization": f"Bearer {auth.create_token(app.state.loom.engine, app.state.loom.secret_key, 'deputy')}"}
    assert client.patch("/api/v1/_admin/users/boss", headers=api, json={"role": "user"}).status_code == 409
    assert client.patch("/api/v1/_admin/users/deputy", headers=api, json={"is_active": False}).status_code == 200
    last = client.patch("/api/v1/_admin/users/boss", headers=deputy, json={"role": "user"})
    assert last.status_code == 401   # the deactivated deputy's token is revoked
    try:   # even a direct change through the directory refuses
        directory.update_user(app.state.loom.engine, users(app)["boss"].id, {"role": "user"})
    except directory.DirectoryError as exc:
        assert exc.code == "last_admin"
    else:
        raise AssertionError("the last admin was demoted")
    assert users(app)["boss"].role == "admin"
    assert client.patch("/api/v1/_admin/users/deputy", headers=api, json={"is_active": True}).status_code == 200


def test_user_names_are_one_spelling_and_passwords_not_blank(app, boss):
    person(app, "fay")
    assert post(boss, "/admin/users", {"username": "FAY", "role": "user", "password": "long enough"}).status_code == 422
    assert post(boss, "/admin/users", {"username": "gil", "role": "user", "password": " " * 12}).status_code == 422
    assert "FAY" not in users(app) and "gil" not in users(app)
    assert post(boss, "/admin/users/fay/password", {"password": "\t" * 10}).status_code == 422


def test_an_admin_ends_one_session(app, boss):
    person(app, "eve")
    phone = signed_in(app, "eve", "eve password")
    laptop = signed_in(app, "eve", "eve password")
    ids = re.findall(r'data-session="([0-9a-f]+)"', boss.get("/admin/users/eve").text)
    assert len(ids) == 2
    assert post(boss, f"/admin/users/eve/sessions/{ids[0]}/end", {}).status_code == 303
    statuses = sorted(c.get("/", follow_redirects=False).status_code for c in (phone, laptop))
    assert statuses == [200, 303]
    assert audited(app, "session.end")


def test_a_leavers_records_go_to_a_colleague_in_one_step(app, boss):
    api = {"Authorization": f"Bearer {auth.create_token(app.state.loom.engine, app.state.loom.secret_key, 'boss')}"}
    client = TestClient(app)
    leaver, colleague = person(app, "hal"), person(app, "ivy")
    for i in range(3):
        assert client.post("/api/v1/lead", headers=api, json={"name": f"Leaver {i}", "source": "trade_show",
                                                                "email": f"leaver{i}@example.com", "owner": leaver}).status_code == 201
    page = boss.get("/admin/users/hal").text
    assert re.search(r'name="objects" value="lead" checked> Leads <span class="count">3</span>', page)
    refused = post(boss, "/admin/users/hal/hand-over", {"objects": ["lead"], "to": ""})
    assert refused.status_code == 422 and "Choose an active colleague" in refused.text
    nothing = post(boss, "/admin/users/hal/hand-over", {"to": "ivy"})
    assert nothing.status_code == 422 and "Tick at least one kind of record" in nothing.text
    assert post(boss, "/admin/users/hal/hand-over", {"objects": ["no_such_object"], "to": "ivy"}).status_code == 422
    done = post(boss, "/admin/users/hal/hand-over", {"objects": ["lead"], "to": "ivy"})
    assert done.status_code == 303   # a reload shows the result, it does not hand over again
    assert "Handed to ivy" in boss.get(done.headers["location"]).text
    leads = client.get("/api/v1/lead", headers=api, params={"filter": "name == 'Leaver 0' or name == 'Leaver 2'"}).json()
    assert {r["owner"] for r in leads["data"]} == {colleague}
    assert audited(app, "records.hand_over")[-1].details["moved"] == {"lead": 3}


def test_roles_and_the_audit_log_are_shown_in_both_languages(app, boss):
    person(app, "jon")
    roles = boss.get("/admin/roles").text
    assert 'data-role="service_agent"' in roles and "Service agent" in roles
    zh = signed_in(app, "boss", "boss password", "zh-CN")
    assert "销售代表" in zh.get("/admin/roles").text
    log = boss.get("/admin/audit").text
    assert 'data-action="user.create"' in log and "User created" in log and 'data-action="metadata.publish"' in log
    assert "创建用户" in zh.get("/admin/audit").text
    assert boss.get("/admin/audit", params={"before": "abc"}).status_code == 200
    assert "只有管理员可以打开系统管理页面" in signed_in(app, "jon", "jon password", "zh-CN").get("/admin/users").text


def test_only_admins_open_the_admin_pages(app):
    person(app, "kay")
    kay = signed_in(app, "kay", "kay password")
    for path in ("/admin/users", "/admin/departments", "/admin/roles", "/admin/audit", "/admin/users/kay"):
        assert kay.get(path).status_code == 403
        assert TestClient(app).get(path, follow_redirects=False).status_code in (303, 401)
    assert post(kay, "/admin/users", {"username": "mallory", "role": "admin", "password": "long enough"}).status_code == 403
    assert "mallory" not in users(app)
    # and every admin form needs the session's CSRF token
    boss = signed_in(app, "boss", "boss password")
    assert boss.post("/admin/users", data={"username": "mallory", "role": "admin", "password": "long enough"}).status_code == 403
    assert "mallory" not in users(app)


def test_sharing_a_record_and_the_admins_why(app, boss):
    person(app, "ann")
    person(app, "dan", department="sales")
    ann = signed_in(app, "ann", "ann password")
    lead = ann.post("/api/v1/lead", json={"name": "Shared", "source": "trade_show", "email": "shared@example.com"},
                    headers={"X-CSRF-Token": ann.csrf})
    assert lead.status_code == 201, lead.text
    rid = lead.json()["id"]
    dan = signed_in(app, "dan", "dan password")
    assert dan.get(f"/app/lead/{rid}").status_code == 404
    assert dan.get(f"/app/lead/{rid}/_sharing").status_code == 404
    panel = ann.get(f"/app/lead/{rid}/_sharing").text
    assert "Share with" in panel and "Why can this user see" not in panel
    shared = ann.post(f"/app/lead/{rid}/_sharing", data={"with": "user:dan", "access": "read"},
                      headers={"X-CSRF-Token": ann.csrf})
    assert shared.status_code == 200 and "Shared." in shared.text
    assert dan.get(f"/app/lead/{rid}").status_code == 200
    assert "Share with" not in dan.get(f"/app/lead/{rid}/_sharing").text   # read access: may not share further
    # sharing again changes the share; an edit share does not pass sharing on either
    again = ann.post(f"/app/lead/{rid}/_sharing", data={"with": "user:dan", "access": "edit"}, headers={"X-CSRF-Token": ann.csrf})
    assert again.text.count("data-share=") == 1 and "· edit" in again.text
    assert "Share with" not in dan.get(f"/app/lead/{rid}/_sharing").text
    assert dan.post(f"/app/lead/{rid}/_sharing", data={"with": "user:boss", "access": "edit"},
                    headers={"X-CSRF-Token": dan.csrf}).status_code == 403
    assert 'value="user:ann"' not in again.text   # the owner sees it anyway
    bad = ann.post(f"/app/lead/{rid}/_sharing", data={"with": "user:nobody", "access": "owner"},
                   headers={"X-CSRF-Token": ann.csrf})
    assert bad.status_code == 422 and "Choose a user or a department" in bad.text
    why = boss.get(f"/app/lead/{rid}/_why", params={"username": "dan"}).text
    assert "The record is shared with the user (edit)." in why and "Read: Yes" in why and "Update: Yes" in why
    assert "Role Sales rep: reads own records, updates own records, deletes own records." in why
    mine = boss.get(f"/app/lead/{rid}/_why", params={"username": "ann"}).text
    assert "the user owns the record" in mine
    zh = signed_in(app, "boss", "boss password", "zh-CN")
    assert "该记录已共享给此用户" in zh.get(f"/app/lead/{rid}/_why", params={"username": "dan"}).text
    assert dan.get(f"/app/lead/{rid}/_why", params={"username": "dan"}).status_code == 403
    share_id = re.search(r'data-share="([0-9a-f]+)"', ann.get(f"/app/lead/{rid}/_sharing").text).group(1)
    assert ann.post(f"/app/lead/{rid}/_sharing/{share_id}/remove", headers={"X-CSRF-Token": ann.csrf}).status_code == 200
    assert dan.get(f"/app/lead/{rid}").status_code == 404
    nothing = boss.get(f"/app/lead/{rid}/_why", params={"username": "dan"}).text
    assert "Nothing gives dan this record" in nothing
