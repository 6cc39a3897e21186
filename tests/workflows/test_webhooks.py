"""Webhooks to a real local receiver: signed as Standard Webhooks (checked
with the `standardwebhooks` package), the same webhook-id on every try,
internal addresses refused before any traffic, redirects not followed."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from standardwebhooks import Webhook

from loomcrm.workflows import runs
from loomcrm.workflows.engine import webhook_secret

from flows import world_for


class Receiver:
    """An HTTP server that records each request and answers from a script."""

    def __init__(self):
        self.requests: list[dict] = []
        self.answers: list[tuple[int, dict]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                receiver.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                status, headers = receiver.answers.pop(0) if receiver.answers else (200, {})
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            do_GET = do_POST

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def hook(url: str, **extra) -> dict:
    return {"name": "tell_erp", "object": "deal", "trigger": {"on": "update", "fields": ["stage"]},
            "actions": [{"type": "webhook", "url": url, "values": {"weighted": "amount * stage_probability(stage) / 100"}}], **extra}


def only_run(world):
    with world.engine.connect() as conn:
        (run,) = runs.listing(conn)[0]
    return run


def test_a_signed_webhook_verifies_and_a_503_gets_the_same_id_again(database_url, receiver):
    world = world_for(database_url, webhook_allow="127.0.0.1")
    alice = world.users["alice"]
    world.workflows(hook(f"{receiver.url}/hooks/deals?src=loom"))
    deal = world.records.create("deal", {"name": "Signed", "amount": 1000}, alice)
    receiver.answers = [(503, {})]
    world.records.update("deal", deal["id"], {"stage": "talks"}, alice)
    world.drain()
    run = only_run(world)
    assert run["status"] == "failed" and "503" in run["error"]
    world.clock.advance(hours=2)
    world.drain()
    assert only_run(world)["status"] == "done"
    first, second = receiver.requests
    assert first["headers"]["webhook-id"] == second["headers"]["webhook-id"] == run["id"]
    assert first["path"] == "/hooks/deals?src=loom" and first["headers"]["Host"] == f"127.0.0.1:{receiver.port}"
    secret = webhook_secret(world.engine, world.automation.settings)
    assert secret.startswith("whsec_")
    payload = Webhook(secret).verify(second["body"], {k.lower(): v for k, v in second["headers"].items()})
    assert payload["type"] == "record.updated"
    data = payload["data"]
    assert data["object"] == "deal" and data["id"] == deal["id"] and data["workflow"] == "tell_erp"
    assert data["changes"] == {"stage": ["new", "talks"]} and data["record"]["name"] == "Signed"
    assert data["values"] == {"weighted": 500}
    with pytest.raises(Exception):   # a tampered body does not verify
        Webhook(secret).verify(second["body"].replace(b"Signed", b"Forged"), {k.lower(): v for k, v in second["headers"].items()})
    world.engine.dispose()


@pytest.mark.parametrize("url", [
    "http://localhost:{port}/",              # a name that resolves to loopback
    "http://127.0.0.2:{port}/",
    "http://10.1.2.3/",
    "http://192.168.1.20/",
    "http://169.254.169.254/latest/meta-data/",   # cloud metadata
    "http://100.64.0.1/",                    # shared (CGNAT)
    "http://[::1]:{port}/",
    "http://[fe80::1]/",
    "http://[::ffff:127.0.0.1]:{port}/",
    "http://0.0.0.0:{port}/",
    "http://224.0.0.1/",
    "http://[2002:7f00:1::]/",               # 6to4 around 127.0.0.1
    "http://[2002:a9fe:a9fe::]/",            # 6to4 around the metadata address
    "http://[fec0::1]/",                     # site-local
])
def test_internal_addresses_are_refused_before_any_traffic(sqlite_url, receiver, url):
    world = world_for(sqlite_url)
    alice = world.users["alice"]
    world.workflows(hook(url.format(port=receiver.port)))
    deal = world.records.create("deal", {"name": "Probe"}, alice)
    world.records.update("deal", deal["id"], {"stage": "talks"}, alice)
    world.drain()
    run = only_run(world)
    assert run["status"] == "dead" and run["error"].startswith("refused_address:"), run["error"]
    assert receiver.requests == []
    world.engine.dispose()


def test_an_allowed_host_name_may_be_reached_and_redirects_are_not_followed(sqlite_url, receiver):
    world = world_for(sqlite_url, webhook_allow="localhost")
    alice = world.users["alice"]
    world.workflows(hook(f"http://localhost:{receiver.port}/in"))
    receiver.answers = [(302, {"Location": f"{receiver.url}/elsewhere"})]
    deal = world.records.create("deal", {"name": "Redirected"}, alice)
    world.records.update("deal", deal["id"], {"stage": "talks"}, alice)
    world.drain()
    run = only_run(world)
    assert run["status"] == "dead" and run["error"].startswith("redirect:") and "/elsewhere" in run["error"]
    assert [r["path"] for r in receiver.requests] == ["/in"]
    world.engine.dispose()


def test_a_4xx_is_final_and_a_429_is_retried(sqlite_url, receiver):
    world = world_for(sqlite_url, webhook_allow="127.0.0.0/8")
    alice = world.users["alice"]
    world.workflows(hook(f"{receiver.url}/x"))
    receiver.answers = [(429, {}), (400, {})]
    deal = world.records.create("deal", {"name": "Limits"}, alice)
    world.records.update("deal", deal["id"], {"stage": "talks"}, alice)
    world.drain()
    assert only_run(world)["status"] == "failed"
    world.clock.advance(hours=2)
    world.drain()
    run = only_run(world)
    assert run["status"] == "dead" and run["error"].startswith("http_400:") and len(receiver.requests) == 2
    world.engine.dispose()


def test_the_secret_is_kept_once_for_every_process(sqlite_url):
    world = world_for(sqlite_url)
    first = webhook_secret(world.engine, world.automation.settings)
    assert first == webhook_secret(world.engine, world.automation.settings)
    assert json.dumps(first).startswith('"whsec_')
    world.engine.dispose()
