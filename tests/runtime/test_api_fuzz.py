"""schemathesis against /openapi.json with the crm pack installed: no 5xx."""

from __future__ import annotations

import os

import pytest

schemathesis = pytest.importorskip("schemathesis")

from fastapi import FastAPI, Header  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

from loomcrm.runtime.api.openapi import install_openapi  # noqa: E402
from loomcrm.runtime.api.routes import build_api_router  # noqa: E402
from loomcrm.runtime.commands import install_default_packs  # noqa: E402
from loomcrm.runtime.state import Runtime  # noqa: E402

from runtime_helpers import engine_for  # noqa: E402

EXAMPLES = int(os.environ.get("LOOM_FUZZ_EXAMPLES", "10"))


class Admin:
    id = None
    role = "admin"


def admin(authorization: str | None = Header(default=None)):
    return Admin()


def _app(tmp_path_factory):
    engine = engine_for(f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'loom.db'}")
    install_default_packs(engine)
    runtime = Runtime(engine)
    app = FastAPI(title="Loom")
    app.include_router(build_api_router(runtime, user_dependency=admin))
    install_openapi(app, runtime)
    return app


def test_no_server_errors(tmp_path_factory):
    # The pytest plugin of schemathesis does not run on pytest 9: drive its
    # strategies through hypothesis directly, one operation at a time.
    from hypothesis import given

    api = schemathesis.openapi.from_asgi("/openapi.json", _app(tmp_path_factory))
    operations = [result.ok() for result in api.get_all_operations()]
    assert len(operations) > 30
    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def run(case):
            response = case.call()
            assert response.status_code < 500, (case.method, case.formatted_path, response.text[:500])

        run()
