"""Several `loom serve` processes on one PostgreSQL database (SPEC: every
process sees the same metadata without a restart)."""

import subprocess
import threading
import time

import httpx
import pytest

from support import LOOM, start_server, stop_server

pytestmark = pytest.mark.postgres


def _token(env) -> str:
    subprocess.run([LOOM, "user", "create", "ops", "--role", "admin", "--password", "ops-password"], env=env, check=True,
                   capture_output=True)
    return subprocess.run([LOOM, "token", "create", "ops"], env=env, check=True, capture_output=True, text=True).stdout.strip()


def test_a_publish_on_one_process_reaches_the_other_within_two_seconds(tmp_path, postgres_url):
    first = start_server(tmp_path / "one", database_url=postgres_url)
    second = start_server(tmp_path / "two", database_url=postgres_url)
    try:
        headers = {"Authorization": f"Bearer {_token(first.env)}"}
        lead = httpx.get(f"{second.url}/api/v1/lead", headers=headers).json()["data"][0]
        assert "wechat_group" not in lead

        definition = httpx.get(f"{first.url}/api/v1/_meta/objects/lead", headers=headers).json()
        definition["fields"].append({"name": "wechat_group", "type": "text", "label": {"en": "WeChat group", "zh-CN": "微信群"}})
        assert httpx.put(f"{first.url}/api/v1/_meta/objects/lead", headers=headers, json=definition).status_code == 200
        published = httpx.post(f"{first.url}/api/v1/_meta/publish", headers=headers, json={})
        assert published.status_code == 200, published.text
        done = time.monotonic()

        while True:
            record = httpx.get(f"{second.url}/api/v1/lead/{lead['id']}", headers=headers).json()
            if "wechat_group" in record:
                break
            assert time.monotonic() - done < 2.0, "the second process still serves the old metadata"
            time.sleep(0.05)
        updated = httpx.patch(f"{second.url}/api/v1/lead/{lead['id']}", headers=headers, json={"wechat_group": "华东客户群"})
        assert updated.status_code == 200 and updated.json()["wechat_group"] == "华东客户群"
    finally:
        stop_server(first)
        stop_server(second)


def test_concurrent_publishes_take_turns_and_publish_once(tmp_path, postgres_url):
    server = start_server(tmp_path / "one", database_url=postgres_url)
    try:
        headers = {"Authorization": f"Bearer {_token(server.env)}"}
        definition = httpx.get(f"{server.url}/api/v1/_meta/objects/product", headers=headers).json()
        definition["fields"].append({"name": "warranty_months", "type": "integer"})
        assert httpx.put(f"{server.url}/api/v1/_meta/objects/product", headers=headers, json=definition).status_code == 200
        answers = []

        def publish():
            answers.append(httpx.post(f"{server.url}/api/v1/_meta/publish", headers=headers, json={}, timeout=60))

        threads = [threading.Thread(target=publish) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert [a.status_code for a in answers] == [200, 200, 200], [a.text for a in answers]
        # The first applies the draft; the others find nothing left to do.
        assert len({a.json()["version"] for a in answers}) == 1
        assert sorted(len(a.json()["plan"]["steps"]) for a in answers) == [0, 0, 1]
    finally:
        stop_server(server)
