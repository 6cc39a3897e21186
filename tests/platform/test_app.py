import re

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from loomcrm.platform import auth, systemdb
from loomcrm.platform.app import create_app
from loomcrm.platform.settings import Settings


@pytest.fixture
def app(tmp_path):
    app = create_app(Settings(data_dir=tmp_path))
    auth.create_user(app.state.loom.engine, "admin", "admin", "admin-password")
    auth.create_user(app.state.loom.engine, "rep", "user", "rep-password")
    return app


def _csrf(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def _login(client, username="admin", password="admin-password", next_="/"):
    form = client.get("/login")
    return client.post("/login", data={"username": username, "password": password, "csrf_token": _csrf(form.text), "next": next_},
                       follow_redirects=False)


def test_healthz(app):
    assert TestClient(app).get("/healthz").json() == {"status": "ok"}


def test_login_sets_an_httponly_session_cookie_and_logout_ends_it(app):
    client = TestClient(app)
    response = _login(client)
    assert response.status_code == 303 and response.headers["location"] == "/"
    cookie = response.headers["set-cookie"]
    assert "loom_session=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie
    home = client.get("/")
    assert "Welcome, Administrator" in home.text or "Welcome, admin" in home.text
    assert client.post("/logout", data={"csrf_token": _csrf(home.text)}, follow_redirects=False).status_code == 303
    assert client.get("/", follow_redirects=False).headers["location"] == "/login"


def test_session_cookie_is_secure_over_https(tmp_path):
    app = create_app(Settings(data_dir=tmp_path))
    auth.create_user(app.state.loom.engine, "admin", "admin", "admin-password")
    client = TestClient(app, base_url="https://crm.example.com")
    assert "Secure" in _login(client).headers["set-cookie"]


def test_wrong_password_is_refused_without_saying_which_part_was_wrong(app):
    client = TestClient(app)
    response = _login(client, password="nope")
    assert response.status_code == 401 and "Wrong user name or password" in response.text
    assert "loom_session" not in response.headers.get("set-cookie", "")
    assert _login(client, username="ghost").status_code == 401


def test_login_form_needs_its_csrf_token(app):
    client = TestClient(app)
    client.get("/login")
    response = client.post("/login", data={"username": "admin", "password": "admin-password", "csrf_token": "forged"})
    assert response.status_code == 400 and "loom_session" not in response.headers.get("set-cookie", "")


def test_logout_needs_the_session_csrf_token(app):
    client = TestClient(app)
    _login(client)
    assert client.post("/logout", data={"csrf_token": "forged"}).status_code == 403
    assert client.get("/", follow_redirects=False).status_code == 200  # still signed in


def test_cookie_authenticated_api_writes_need_the_csrf_header(app):
    client = TestClient(app)
    _login(client)
    assert client.get("/api/v1/me").json()["username"] == "admin"
    assert client.post("/api/v1/me").status_code in (403, 405)


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/", "/\\evil.example", "javascript:alert(1)"])
def test_login_never_redirects_off_site(app, target):
    response = _login(TestClient(app), next_=target)
    assert response.headers["location"] == "/"


def test_api_needs_credentials_and_answers_problems(app):
    client = TestClient(app)
    response = client.get("/api/v1/me")
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["status"] == 401 and response.headers["www-authenticate"] == "Bearer"
    assert client.get("/api/v1/me", headers={"Authorization": "Basic YWRtaW46eA=="}).status_code == 401
    assert client.get("/api/v1/me", headers={"Authorization": "Bearer loom_forged"}).status_code == 401


def test_bearer_tokens_authenticate(app):
    state = app.state.loom
    token = auth.create_token(state.engine, state.secret_key, "rep")
    me = TestClient(app).get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).json()
    assert me["username"] == "rep" and me["role"] == "user"


def test_pages_follow_the_language_switch_and_the_browser(app):
    client = TestClient(app)
    assert "用户名" in client.get("/login", headers={"Accept-Language": "zh-CN,zh;q=0.9"}).text
    assert "User name" in client.get("/login").text
    switched = client.get("/locale/zh-CN?next=/login")
    assert switched.url.path == "/login" and "登录" in switched.text
    assert client.get("/locale/fr", follow_redirects=False).status_code == 404


def test_secret_key_is_generated_once_and_shared(tmp_path):
    first = create_app(Settings(data_dir=tmp_path)).state.loom.secret_key
    second = create_app(Settings(data_dir=tmp_path)).state.loom.secret_key
    assert first == second and len(first) >= 40
    assert create_app(Settings(data_dir=tmp_path, secret_key="configured")).state.loom.secret_key == "configured"


def test_accepted_tokens_are_cached_for_a_few_seconds_and_revoked_at_once_in_this_process(app):
    state = app.state.loom
    clock = [0.0]
    state.tokens = auth.TokenCache(ttl=auth.TOKEN_CACHE_SECONDS, clock=lambda: clock[0])
    token = auth.create_token(state.engine, state.secret_key, "rep")
    client = TestClient(app, headers={"Authorization": f"Bearer {token}"})
    assert client.get("/api/v1/me").status_code == 200

    # Revoked elsewhere (another process writes the database): this process
    # accepts the token until its cache entry is TOKEN_CACHE_SECONDS old.
    with state.engine.begin() as conn:
        conn.execute(systemdb.api_tokens.update().values(revoked_at=sa.func.current_timestamp()))
    assert client.get("/api/v1/me").status_code == 200
    clock[0] += auth.TOKEN_CACHE_SECONDS
    assert client.get("/api/v1/me").status_code == 401

    # Revoked through this process: refused at once.
    second = auth.create_token(state.engine, state.secret_key, "rep")
    client.headers["Authorization"] = f"Bearer {second}"
    assert client.get("/api/v1/me").status_code == 200
    assert auth.revoke_token(state.engine, state.secret_key, second, cache=state.tokens)
    assert client.get("/api/v1/me").status_code == 401


def test_failed_sign_ins_lock_the_user_name_for_a_while(app):
    from loomcrm.platform import lockout

    client = TestClient(app)
    for _ in range(lockout.USER_LIMIT):
        assert _login(client, "rep", "not the password").status_code == 401
    locked = _login(client, "rep", "rep-password")
    assert locked.status_code == 429 and "Too many failed sign-ins" in locked.text and "15 minutes" in locked.text
    assert _login(TestClient(app), "admin").status_code == 303   # another user name is not locked out
    zh = TestClient(app, headers={"Accept-Language": "zh-CN"})
    assert "登录失败次数过多" in _login(zh, "rep", "rep-password").text
    # the lock ends by itself
    with app.state.loom.engine.begin() as conn:
        conn.execute(systemdb.login_failures.update().values(locked_until=sa.func.current_timestamp()))
    assert _login(client, "rep", "rep-password").status_code == 303
    for _ in range(lockout.USER_LIMIT - 1):   # a success cleared the count
        assert _login(TestClient(app), "rep", "not the password").status_code == 401
    assert _login(TestClient(app), "rep", "rep-password").status_code == 303


def test_deactivating_a_user_ends_their_sessions_and_tokens(app):
    engine = app.state.loom.engine
    rep_client, admin_client = TestClient(app), TestClient(app)
    assert _login(rep_client, "rep", "rep-password").status_code == 303
    token = auth.create_token(engine, app.state.loom.secret_key, "rep")
    assert admin_client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    admin_token = auth.create_token(engine, app.state.loom.secret_key, "admin")
    answer = admin_client.patch("/api/v1/_admin/users/rep", json={"is_active": False},
                                headers={"Authorization": f"Bearer {admin_token}"})
    assert answer.status_code == 200 and answer.json()["is_active"] is False
    assert admin_client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    assert rep_client.get("/", follow_redirects=False).status_code == 303   # signed out: back to /login
    with engine.connect() as conn:
        logged = conn.execute(sa.select(systemdb.audit.c.action, systemdb.audit.c.target)).all()
    assert ("user.update", "rep") in logged


def test_the_audit_log_names_who_published_which_metadata(app):
    engine = app.state.loom.engine
    admin = {"Authorization": f"Bearer {auth.create_token(engine, app.state.loom.secret_key, 'admin')}"}
    client = TestClient(app)
    put = client.put("/api/v1/_meta/objects/visit", headers=admin,
                     json={"label": "Visit", "fields": [{"name": "title", "type": "text", "required": True}]})
    assert put.status_code == 200, put.text
    assert client.post("/api/v1/_meta/publish", headers=admin, json={"comment": "visits"}).status_code == 200
    logged = client.get("/api/v1/_admin/audit", headers=admin).json()["data"]
    publish = next(line for line in logged if line["action"] == "metadata.publish")
    assert publish["actor"] == "admin" and publish["details"]["comment"] == "visits"
    assert publish["details"]["objects"] == ["visit"] and publish["details"]["steps"]


def test_an_admin_lists_a_users_sessions_and_ends_one(app):
    engine = app.state.loom.engine
    admin = {"Authorization": f"Bearer {auth.create_token(engine, app.state.loom.secret_key, 'admin')}"}
    laptop, phone = TestClient(app, headers={"User-Agent": "Laptop/1"}), TestClient(app, headers={"User-Agent": "Phone/2"})
    for client in (laptop, phone):
        assert _login(client, "rep", "rep-password").status_code == 303
    api = TestClient(app)
    listed = api.get("/api/v1/_admin/users/rep/sessions", headers=admin).json()["data"]
    assert sorted(s["user_agent"] for s in listed) == ["Laptop/1", "Phone/2"] and all(s["address"] for s in listed)
    phone_session = next(s["id"] for s in listed if s["user_agent"] == "Phone/2")
    assert api.delete(f"/api/v1/_admin/users/rep/sessions/{phone_session}", headers=admin).status_code == 204
    assert phone.get("/", follow_redirects=False).status_code == 303        # signed out there
    assert laptop.get("/", follow_redirects=False).status_code == 200       # and only there
    assert api.delete(f"/api/v1/_admin/users/rep/sessions/{phone_session}", headers=admin).status_code == 404
    assert api.delete("/api/v1/_admin/users/rep/sessions/%25", headers=admin).status_code == 404
    assert api.get("/api/v1/_admin/users/rep/sessions",
                   headers={"Authorization": f"Bearer {auth.create_token(engine, app.state.loom.secret_key, 'rep')}"}).status_code == 403
