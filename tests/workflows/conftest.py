"""Fixtures of the automation tests, on SQLite and PostgreSQL (see `flows`)."""

from __future__ import annotations

import pytest

from flows import world_for


@pytest.fixture
def world(database_url):
    w = world_for(database_url)
    yield w
    w.engine.dispose()


@pytest.fixture
def alice(world):
    return world.users["alice"]
