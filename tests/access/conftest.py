"""Access tests: one world per database kind and test module (building it
takes a few seconds)."""

from __future__ import annotations

import pytest

from support import POSTGRES_ADMIN_URL, fresh_postgres_database
from world import AccessWorld


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def world(request, tmp_path_factory):
    if request.param == "sqlite":
        built = AccessWorld.build(f"sqlite:///{tmp_path_factory.mktemp('access') / 'loom.db'}")
        yield built
        built.close()
        return
    with fresh_postgres_database(POSTGRES_ADMIN_URL) as url:
        built = AccessWorld.build(url)
        yield built
        built.close()
