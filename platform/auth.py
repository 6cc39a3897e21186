"""Users, passwords, browser sessions, CSRF and API tokens.

Passwords are argon2 hashes. Session ids and API tokens are random secrets
handed out once; the database keeps only their HMAC under the secret key,
so a stolen database copy holds nothing that logs anyone in.

A process remembers the user of an API token it has just checked for
`TOKEN_CACHE_SECONDS` (see `TokenCache`), so that a script's requests do
not each pay a database round trip before their real work.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from fastapi import Depends, HTTPException, Request
from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool

from . import systemdb
from .db import stored_utc, write_transaction

ROLES = ("admin", "user")
USERNAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,149}$")
MIN_PASSWORD_LENGTH = 8
NO_PASSWORD = "!"   # the password hash of users who never sign in (automation's own)
SESSION_COOKIE = "loom_session"
SESSION_LIFETIME = timedelta(days=14)
TOKEN_PREFIX = "loom_"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
TOKEN_CACHE_SECONDS = 5.0
TOKEN_CACHE_SIZE = 10_000

_hasher = PasswordHasher()


class AuthError(ValueError):
    """A user-facing problem with a user, a password or a token."""


@dataclass(frozen=True)
class User:
    id: str
    username: str
    role: str
    locale: str = "en"
    display_name: str = ""

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _user_from_row(row) -> User:
    return User(id=row.id, username=row.username, role=row.role, locale=row.locale, display_name=row.display_name)


def keyed_hash(secret_key: str, value: str) -> str:
    return hmac.new(secret_key.encode(), value.encode(), hashlib.sha256).hexdigest()


# --- users -----------------------------------------------------------------------

def create_user(engine: Engine, username: str, role: str, password: str, *, display_name: str = "", locale: str = "en",
                email: str | None = None, roles: tuple[str, ...] | list[str] | set[str] = ()) -> User:
    """A new user. `role` is `admin`, `user` or one of `roles` (those the
    installed bundles define)."""
    if not USERNAME_PATTERN.match(username):
        raise AuthError("a user name is 1 to 150 letters, digits or . _ @ -, starting with a letter or digit")
    if role not in ROLES and role not in roles:
        raise AuthError(f"role must be one of {', '.join([*ROLES, *sorted(roles)])}, not {role!r}")
    if len(password.strip()) < MIN_PASSWORD_LENGTH:
        raise AuthError(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    user = User(id=uuid.uuid4().hex, username=username, role=role, locale=locale, display_name=display_name or username)
    with write_transaction(engine) as conn:
        # one spelling per name: "Admin" would pass for "admin" in every list
        taken = conn.execute(sa.select(systemdb.users.c.id)
                             .where(sa.func.lower(systemdb.users.c.username) == username.lower())).first()
        if taken:
            raise AuthError(f"user {username!r} already exists")
        conn.execute(systemdb.users.insert().values(
            id=user.id, username=username, display_name=user.display_name, password_hash=_hasher.hash(password),
            role=role, locale=locale, is_active=True, email=email,
        ))
    return user


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def end_all_sessions(conn: sa.Connection, user_id: str) -> int:
    """Sign a user out everywhere (their sessions end at once)."""
    return conn.execute(systemdb.sessions.delete().where(systemdb.sessions.c.user_id == user_id)).rowcount


def revoke_all_tokens(conn: sa.Connection, user_id: str) -> int:
    return conn.execute(systemdb.api_tokens.update().where(systemdb.api_tokens.c.user_id == user_id,
                                                           systemdb.api_tokens.c.revoked_at.is_(None))
                        .values(revoked_at=_now())).rowcount


def count_users(engine: Engine) -> int:
    """Users who can sign in (a password is set): built-in service users
    such as automation's do not count."""
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(systemdb.users)
                            .where(systemdb.users.c.password_hash != NO_PASSWORD)).scalar_one()


def find_user(engine: Engine, username: str) -> User | None:
    with engine.connect() as conn:
        row = conn.execute(sa.select(systemdb.users).where(systemdb.users.c.username == username)).first()
    return _user_from_row(row) if row else None


def authenticate(engine: Engine, username: str, password: str) -> User | None:
    with engine.connect() as conn:
        row = conn.execute(sa.select(systemdb.users).where(
            systemdb.users.c.username == username, systemdb.users.c.is_active.is_(True))).first()
    if row is None:
        # Spend the same time as a real check, so that timing does not
        # reveal which user names exist.
        _hasher.hash(password)
        return None
    try:
        _hasher.verify(row.password_hash, password)
    except (VerificationError, InvalidHashError):
        return None
    if _hasher.check_needs_rehash(row.password_hash):
        with write_transaction(engine) as conn:
            conn.execute(systemdb.users.update().where(systemdb.users.c.id == row.id).values(password_hash=_hasher.hash(password)))
    return _user_from_row(row)


# --- browser sessions ------------------------------------------------------------

@dataclass(frozen=True)
class Session:
    token: str  # goes into the cookie; never stored
    csrf_token: str
    user: User


def start_session(engine: Engine, secret_key: str, user: User, *, address: str | None = None,
                  user_agent: str | None = None) -> Session:
    token = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    with write_transaction(engine) as conn:
        conn.execute(systemdb.sessions.delete().where(systemdb.sessions.c.expires_at < _now()))
        conn.execute(systemdb.sessions.insert().values(
            token_hash=keyed_hash(secret_key, token), user_id=user.id, csrf_token=csrf,
            expires_at=_now() + SESSION_LIFETIME, address=(address or None) and address[:45],
            user_agent=(user_agent or None) and user_agent[:300],
        ))
    return Session(token=token, csrf_token=csrf, user=user)


SESSION_ID_LENGTH = 16


def sessions_of(engine: Engine, user_id: str) -> list[dict]:
    """A user's live sessions, newest first. A session's id is the start of
    its token's keyed hash: enough to name it, useless to sign in with."""
    s = systemdb.sessions
    with engine.connect() as conn:
        rows = conn.execute(sa.select(s).where(s.c.user_id == user_id).order_by(s.c.created_at.desc())).all()
    return [{"id": r.token_hash[:SESSION_ID_LENGTH], "created_at": stored_utc(r.created_at).isoformat(),
             "expires_at": stored_utc(r.expires_at).isoformat(), "address": r.address, "user_agent": r.user_agent}
            for r in rows if stored_utc(r.expires_at) >= _now()]


def end_session_by_id(conn: sa.Connection, user_id: str, session_id: str) -> bool:
    """End one of a user's sessions, named as `sessions_of` names it."""
    if len(session_id) != SESSION_ID_LENGTH or not session_id.isalnum():
        return False
    s = systemdb.sessions
    return conn.execute(s.delete().where(s.c.user_id == user_id, s.c.token_hash.startswith(session_id, autoescape=True))).rowcount > 0


def end_session(engine: Engine, secret_key: str, token: str) -> None:
    with write_transaction(engine) as conn:
        conn.execute(systemdb.sessions.delete().where(systemdb.sessions.c.token_hash == keyed_hash(secret_key, token)))


def load_session(engine: Engine, secret_key: str, token: str) -> Session | None:
    s, u = systemdb.sessions, systemdb.users
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(s.c.csrf_token, s.c.expires_at, u)
            .join(u, u.c.id == s.c.user_id)
            .where(s.c.token_hash == keyed_hash(secret_key, token), u.c.is_active.is_(True))
        ).first()
    if row is None or stored_utc(row.expires_at) < _now():
        return None
    return Session(token=token, csrf_token=row.csrf_token, user=_user_from_row(row))


# --- API tokens ------------------------------------------------------------------

def create_token(engine: Engine, secret_key: str, username: str, name: str = "") -> str:
    """A new API token acting as `username`; the only time it is visible."""
    user = find_user(engine, username)
    if user is None:
        raise AuthError(f"no user {username!r}")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with write_transaction(engine) as conn:
        conn.execute(systemdb.api_tokens.insert().values(
            id=uuid.uuid4().hex, user_id=user.id, token_hash=keyed_hash(secret_key, token),
            prefix=token[: len(TOKEN_PREFIX) + 4], name=name,
        ))
    return token


def user_for_token(engine: Engine, secret_key: str, token: str) -> User | None:
    return user_for_token_hash(engine, keyed_hash(secret_key, token))


def user_for_token_hash(engine: Engine, token_hash: str) -> User | None:
    """The active user of a live (not revoked) token, from the database."""
    t, u = systemdb.api_tokens, systemdb.users
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(u).join(t, t.c.user_id == u.c.id)
            .where(t.c.token_hash == token_hash, t.c.revoked_at.is_(None), u.c.is_active.is_(True))
        ).first()
    return _user_from_row(row) if row else None


def revoke_token(engine: Engine, secret_key: str, token: str, cache: TokenCache | None = None) -> bool:
    """Revoke a token; False if it was unknown or already revoked. `cache`
    (this process's) forgets it at once; other processes stop accepting it
    within their cache's lifetime."""
    token_hash = keyed_hash(secret_key, token)
    t = systemdb.api_tokens
    with write_transaction(engine) as conn:
        result = conn.execute(t.update().where(t.c.token_hash == token_hash, t.c.revoked_at.is_(None)).values(revoked_at=_now()))
    if cache is not None:
        cache.forget(token_hash)
    return result.rowcount == 1


class TokenCache:
    """The users of recently accepted API tokens, by the token's keyed hash,
    each kept for `ttl` seconds after its database check.

    The price is a staleness window: a token revoked, or a user deactivated
    or demoted, by another process (the CLI, another web worker) still acts
    as before in this process for up to `ttl` seconds. A revoke through
    `revoke_token` with this cache takes effect here at once. Unknown and
    revoked tokens are never cached, so a new token works immediately.
    """

    def __init__(self, ttl: float = TOKEN_CACHE_SECONDS, max_size: int = TOKEN_CACHE_SIZE, clock=time.monotonic):
        self.ttl = ttl
        self.max_size = max_size
        self.clock = clock
        self._entries: dict[str, tuple[float, User]] = {}
        self._lock = threading.Lock()
        # Bumped by every forget: a lookup that began before a revoke must
        # not put back what the revoke just took out.
        self.generation = 0

    def get(self, token_hash: str) -> User | None:
        entry = self._entries.get(token_hash)
        if entry is None:
            return None
        if entry[0] <= self.clock():
            self._entries.pop(token_hash, None)
            return None
        return entry[1]

    def put(self, token_hash: str, user: User, generation: int) -> None:
        """Remember `user`, found by a lookup that began at `generation`."""
        now = self.clock()
        with self._lock:
            if generation != self.generation:
                return
            if len(self._entries) >= self.max_size:
                # Many distinct tokens at once: drop the expired, and if
                # that is not enough, start afresh (bounded memory first).
                self._entries = {k: v for k, v in self._entries.items() if v[0] > now}
                if len(self._entries) >= self.max_size:
                    self._entries = {}
            self._entries[token_hash] = (now + self.ttl, user)

    def forget(self, token_hash: str) -> None:
        with self._lock:
            self.generation += 1
            self._entries.pop(token_hash, None)

    def clear(self) -> None:
        """Forget every token (a user was deactivated or given another role)."""
        with self._lock:
            self.generation += 1
            self._entries = {}


# --- FastAPI dependencies --------------------------------------------------------

def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(status_code=401, detail=detail, headers={"WWW-Authenticate": "Bearer"})


def request_session(request: Request) -> Session | None:
    """The browser session of this request, if any (cached on the request)."""
    if "loom_session" not in request.scope:
        state = request.app.state.loom
        token = request.cookies.get(SESSION_COOKIE)
        request.scope["loom_session"] = load_session(state.engine, state.secret_key, token) if token else None
    return request.scope["loom_session"]


async def current_user(request: Request) -> User:
    """The acting user: from `Authorization: Bearer`, else the session
    cookie. Cookie-authenticated writes must carry the session's CSRF token
    in the `X-CSRF-Token` header (htmx sends it on every request).

    Async so that a token found in the cache costs no trip to the thread
    pool; database lookups still run there."""
    state = request.app.state.loom
    header = request.headers.get("authorization")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _unauthorized("use 'Authorization: Bearer <token>'")
        token_hash = keyed_hash(state.secret_key, token.strip())
        user = state.tokens.get(token_hash)
        if user is None:
            generation = state.tokens.generation
            user = await run_in_threadpool(user_for_token_hash, state.engine, token_hash)
            if user is None:
                raise _unauthorized("the API token is unknown or revoked")
            state.tokens.put(token_hash, user, generation)
        return user
    session = await run_in_threadpool(request_session, request)
    if session is None:
        raise _unauthorized("sign in, or send an API token")
    if request.method in UNSAFE_METHODS:
        check_csrf(session, request.headers.get("x-csrf-token"))
    return session.user


def page_user(request: Request) -> User:
    """The signed-in user of a page (401, then the sign-in page, without one)."""
    session = request_session(request)
    if session is None:
        raise HTTPException(status_code=401, detail="sign in")
    return session.user


async def page_csrf(request: Request) -> None:
    """A page's unsafe request carries the session's CSRF token, in the
    X-CSRF-Token header (htmx) or the form's csrf_token field."""
    session = request_session(request)
    sent = request.headers.get("x-csrf-token")
    if not sent and request.headers.get("content-type", "").startswith(("application/x-www-form-urlencoded", "multipart/")):
        sent = (await request.form()).get("csrf_token")
    if session is None:
        raise HTTPException(status_code=401, detail="sign in")
    check_csrf(session, sent)


def check_csrf(session: Session, sent: str | None) -> None:
    if not sent or not hmac.compare_digest(sent, session.csrf_token):
        raise HTTPException(status_code=403, detail="missing or wrong CSRF token")


async def require_admin(user: User = Depends(current_user)) -> User:
    if not user.is_admin:
        raise HTTPException(status_code=403, detail="only administrators may do this")
    return user
