"""Shared fixtures: fresh databases on SQLite and PostgreSQL.

PostgreSQL tests are marked `postgres`. On a machine without a server they
are skipped and the summary says so; in CI (CI=true) a missing server is a
failure, never a silent skip.
"""

from __future__ import annotations

import email
import socket
from email import policy
from pathlib import Path

import pytest
import sqlalchemy as sa
from aiosmtpd.controller import Controller

from support import IN_CI, POSTGRES_ADMIN_URL, fresh_postgres_database, start_server, stop_server

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"

_postgres_error: str | None = None


def _postgres_available() -> bool:
    global _postgres_error
    try:
        engine = sa.create_engine(POSTGRES_ADMIN_URL, connect_args={"connect_timeout": 3})
        with engine.connect():
            pass
        engine.dispose()
        return True
    except Exception as exc:  # any failure to connect means "no server here"
        _postgres_error = str(exc).splitlines()[0]
        return False


POSTGRES_AVAILABLE = _postgres_available()


def pytest_collection_modifyitems(config, items):
    if POSTGRES_AVAILABLE:
        return
    if IN_CI:
        raise pytest.UsageError(f"CI=true but PostgreSQL is not reachable at {POSTGRES_ADMIN_URL}: {_postgres_error}")
    skip = pytest.mark.skip(reason=f"PostgreSQL not reachable ({_postgres_error})")
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)


def pytest_terminal_summary(terminalreporter):
    if not POSTGRES_AVAILABLE:
        terminalreporter.write_line(f"NOTE: PostgreSQL suites skipped: {_postgres_error}", yellow=True)


@pytest.fixture
def postgres_url():
    """A URL to a new, empty PostgreSQL database, dropped after the test."""
    if not POSTGRES_AVAILABLE:
        pytest.skip("PostgreSQL not reachable")
    with fresh_postgres_database(POSTGRES_ADMIN_URL) as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path):
    """A URL to a new SQLite database file."""
    return f"sqlite:///{tmp_path / 'loom.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request, tmp_path):
    """Runs a test once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'loom.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def live_server(tmp_path):
    """`loom serve` on an empty embedded database, on a free port."""
    server = start_server(tmp_path / "data")
    yield server
    stop_server(server)


# --- a real SMTP server (aiosmtpd) ---------------------------------------------------

class Inbox:
    """An SMTP server's handler: keeps every message; answers 451 to the first `refuse` of them."""

    def __init__(self, refuse: int = 0):
        self.messages: list[email.message.EmailMessage] = []
        self.refuse = refuse

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(email.message_from_bytes(envelope.content, policy=policy.default))
        if self.refuse > 0:
            self.refuse -= 1
            return "451 4.3.0 Try again later"
        return "250 Message accepted"


@pytest.fixture
def smtp():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    inbox.url = f"smtp://127.0.0.1:{port}"
    yield inbox
    controller.stop()
