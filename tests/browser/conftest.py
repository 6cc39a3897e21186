"""Playwright driving Debian's chromium (Playwright cannot download its
own browser here). Without chromium the browser suite is skipped, except in
CI, where it must run."""

import shutil
import subprocess

import httpx

import pytest

from support import IN_CI, LOOM, start_server, stop_server

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "tests/browser" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def browser():
    if not shutil.which("chromium"):
        if IN_CI:
            pytest.fail("CI=true but chromium is not installed (make test installs it)")
        pytest.skip("chromium is not installed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(locale="en-US")
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One `loom serve` (crm pack, sample data) per test module."""
    server = start_server(tmp_path_factory.mktemp("browser") / "data")
    yield server
    stop_server(server)


@pytest.fixture(scope="module")
def api(server):
    """The server's REST API with an admin token."""
    token = subprocess.run([LOOM, "token", "create", "admin"], env=server.env, capture_output=True, text=True,
                           check=True).stdout.strip()
    with httpx.Client(base_url=f"{server.url}/api/v1", headers={"Authorization": f"Bearer {token}"}) as client:
        yield client
