import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "runtime"))

from loomcrm.runtime.commands import pack_install  # noqa: E402
from loomcrm.runtime.rules.hooks import Rules  # noqa: E402
from loomcrm.runtime.state import Runtime  # noqa: E402

from runtime_helpers import engine_for  # noqa: E402


@pytest.fixture
def crm(database_url):
    """The crm pack with its sample data, on SQLite and PostgreSQL, the rules on."""
    pack_install(database_url, "crm")
    runtime = Runtime(engine_for(database_url), refresh_interval=0, hooks=Rules())
    yield runtime
    runtime.engine.dispose()
