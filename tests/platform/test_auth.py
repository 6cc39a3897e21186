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
