import pytest
import sqlalchemy as sa

from loomcrm.platform import auth, systemdb
from loomcrm.platform.db import create_engine


@pytest.fixture
def engine(database_url):
    engine = create_engine(database_url)
    systemdb.upgrade(engine)
    yield engine
    engine.dispose()


def test_passwords_are_stored_as_argon2_hashes(engine):
    auth.create_user(engine, "wangfang", "user", "correct horse")
    with engine.connect() as conn:
        stored = conn.execute(sa.select(systemdb.users.c.password_hash)).scalar_one()
    assert stored.startswith("$argon2") and "correct horse" not in stored
    assert auth.authenticate(engine, "wangfang", "correct horse").username == "wangfang"
    assert auth.authenticate(engine, "wangfang", "wrong horse") is None
    assert auth.authenticate(engine, "nobody", "correct horse") is None


@pytest.mark.parametrize("username, role, password, message", [
    ("", "user", "long enough", "user name"),
    ("bad name", "user", "long enough", "user name"),
    ("x" * 151, "user", "long enough", "user name"),
    ("ok", "root", "long enough", "role"),
    ("ok", "user", "short", "at least 8"),
])
def test_bad_users_are_refused_with_a_reason(engine, username, role, password, message):
    with pytest.raises(auth.AuthError, match=message):
        auth.create_user(engine, username, role, password)
    assert auth.count_users(engine) == 0


def test_user_names_are_unique(engine):
    auth.create_user(engine, "li", "user", "password1")
    with pytest.raises(auth.AuthError, match="already exists"):
        auth.create_user(engine, "li", "admin", "password2")


def test_api_tokens_are_stored_hashed_and_act_as_their_user(engine):
    auth.create_user(engine, "zhang", "admin", "password1")
    token = auth.create_token(engine, "secret", "zhang", "import script")
    assert token.startswith("loom_") and len(token) > 40
    with engine.connect() as conn:
        row = conn.execute(sa.select(systemdb.api_tokens)).one()
    assert token not in (row.token_hash, row.prefix) and row.name == "import script"
    assert auth.user_for_token(engine, "secret", token).username == "zhang"
    assert auth.user_for_token(engine, "other-secret", token) is None
    assert auth.user_for_token(engine, "secret", token + "x") is None
    with pytest.raises(auth.AuthError, match="no user"):
        auth.create_token(engine, "secret", "ghost")


def test_sessions_end_and_expire(engine):
    user = auth.create_user(engine, "zhao", "user", "password1")
    session = auth.start_session(engine, "secret", user)
    assert auth.load_session(engine, "secret", session.token).user == user
    auth.end_session(engine, "secret", session.token)
    assert auth.load_session(engine, "secret", session.token) is None

    old = auth.start_session(engine, "secret", user)
    with engine.begin() as conn:
        conn.execute(systemdb.sessions.update().values(expires_at=sa.func.current_timestamp()))
    assert auth.load_session(engine, "secret", old.token) is None


def test_revoked_tokens_stop_working(engine):
    auth.create_user(engine, "qian", "user", "password1")
    token = auth.create_token(engine, "secret", "qian")
    other = auth.create_token(engine, "secret", "qian")
    assert auth.revoke_token(engine, "secret", token) is True
    assert auth.user_for_token(engine, "secret", token) is None
    assert auth.revoke_token(engine, "secret", token) is False
    assert auth.revoke_token(engine, "secret", token + "x") is False
    assert auth.user_for_token(engine, "secret", other).username == "qian"


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_token_cache_keeps_users_for_its_lifetime_only():
    clock = FakeClock()
    cache = auth.TokenCache(ttl=5, clock=clock)
    user = auth.User(id="u1", username="sun", role="user")
    assert cache.get("h1") is None
    cache.put("h1", user, cache.generation)
    clock.now += 4.9
    assert cache.get("h1") == user
    clock.now += 0.1
    assert cache.get("h1") is None
    cache.put("h1", user, cache.generation)
    cache.forget("h1")
    assert cache.get("h1") is None


def test_a_lookup_that_began_before_a_revoke_is_not_cached():
    cache = auth.TokenCache(ttl=5, clock=FakeClock())
    user = auth.User(id="u1", username="sun", role="user")
    began = cache.generation
    cache.forget("h1")  # the token is revoked while the lookup runs
    cache.put("h1", user, began)
    assert cache.get("h1") is None


def test_token_cache_stays_bounded():
    clock = FakeClock()
    cache = auth.TokenCache(ttl=5, max_size=3, clock=clock)
    user = auth.User(id="u1", username="sun", role="user")
    cache.put("old", user, 0)
    clock.now += 10
    for key in ("a", "b"):
        cache.put(key, user, 0)
    cache.put("c", user, 0)  # full: the expired entry goes first
    assert [cache.get(k) for k in ("old", "a", "b", "c")] == [None, user, user, user]
    cache.put("d", user, 0)  # full of live entries: starts afresh
    assert [cache.get(k) for k in ("a", "b", "c", "d")] == [None, None, None, user]
