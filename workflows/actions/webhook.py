"""`webhook`: POST the event to a URL, signed as Standard Webhooks do.

Headers `webhook-id` (the run's id: the same on every try, so receivers
drop repeats), `webhook-timestamp` and `webhook-signature` (`v1,` and the
base64 HMAC-SHA256 of `{id}.{timestamp}.{body}` under the secret). The
host is checked and pinned before connecting (see `addresses`); redirects
are not followed; connect and read time out; at most `MAX_RESPONSE` bytes
of the answer are read.

2xx is done. 408, 429, 5xx, time-outs and broken connections are tried
again later; any other answer, a redirect or a refused address is final.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from ..runs import _iso
from .addresses import Allow, Refused, resolve
from . import Act, Dead, Delivery, Retry

TIMEOUT = httpx.Timeout(10.0, connect=5.0)
TOTAL_SECONDS = 30   # the whole request, however slowly an answer trickles in
MAX_RESPONSE = 64 * 1024
TYPES = {"create": "record.created", "update": "record.updated", "delete": "record.deleted",
         "restore": "record.restored", "stage_change": "record.stage_changed", "time": "record.due",
         "schedule": "record.scheduled"}


def _json(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value) if value != value.to_integral_value() else int(value)
    if isinstance(value, datetime):
        return _iso(value)
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")


def sign(secret: str, msg_id: str, timestamp: str, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def body_of(act: Act) -> bytes:
    from loomcrm.runtime.records import record_json

    payload = act.run["payload"] or {}
    record = payload.get("record")
    if record is None and not act.deleted:
        record = json.loads(json.dumps(record_json(act.flow.obj, act.record), default=_json))
    old = payload.get("old") or {}
    changes = {name: [old.get(name), (record or {}).get(name)] for name in payload.get("changed") or []}
    values = {key: act.value(f"values.{key}") for key in act.action.values}
    event = {"type": TYPES.get(act.run["event"], "record.updated"), "timestamp": payload.get("at") or _iso(act.run["created_at"]),
             "data": {"object": act.flow.obj.name, "id": act.run["record_id"], "workflow": act.flow.name,
                      "record": record, "changes": changes, "values": values}}
    return json.dumps(event, default=_json, ensure_ascii=False, separators=(",", ":")).encode()


def call_webhook(act: Act) -> Delivery:
    url = urlsplit(act.action.url)
    host = url.hostname or ""
    port = url.port or (443 if url.scheme == "https" else 80)
    allow = Allow.parse(act.automation.settings.webhook_allow)
    try:
        address = resolve(host, port, allow)
    except Refused as exc:
        raise Dead(str(exc), "refused_address") from None
    body = body_of(act)
    secret = act.automation.webhook_secret()
    msg_id, method, shown = act.claim.id, act.action.method, _shown(act.action.url)
    pinned = f"[{address}]" if address.version == 6 else str(address)
    target = urlunsplit((url.scheme, f"{pinned}:{port}", url.path or "/", url.query, ""))

    def deliver() -> dict[str, Any]:
        timestamp = str(int(time.time()))
        headers = {"Host": url.netloc.rpartition("@")[2], "Content-Type": "application/json",
                   "User-Agent": "Loom-Webhooks/1", "webhook-id": msg_id, "webhook-timestamp": timestamp,
                   "webhook-signature": sign(secret, msg_id, timestamp, body)}
        deadline = time.monotonic() + TOTAL_SECONDS
        try:
            with httpx.Client(timeout=TIMEOUT, follow_redirects=False, trust_env=False) as client:
                with client.stream(method, target, content=body, headers=headers,
                                   extensions={"sni_hostname": host}) as response:
                    answer = _read_capped(response, deadline)
        except httpx.TimeoutException:
            raise Retry(f"{method} {shown} timed out") from None
        except httpx.HTTPError as exc:
            raise Retry(f"{method} {shown} failed: {exc}") from None
        status = response.status_code
        result = {"status": status, "webhook_id": msg_id}
        if 200 <= status < 300:
            return result
        said = f"{method} {shown} answered {status}" + (f": {answer[:300]}" if answer else "")
        if status in (408, 429) or status >= 500:
            raise Retry(said)
        if 300 <= status < 400:
            raise Dead(f"{said} (a redirect to {response.headers.get('location', '?')}; redirects are not followed)", "redirect")
        raise Dead(said, f"http_{status}")
    return deliver


def _read_capped(response: httpx.Response, deadline: float) -> str:
    """At most MAX_RESPONSE bytes of the answer as sent (not decompressed),
    within the request's whole time."""
    data = b""
    for chunk in response.iter_raw():
        data += chunk
        if len(data) >= MAX_RESPONSE:
            break
        if time.monotonic() > deadline:
            raise Retry(f"the answer took longer than {TOTAL_SECONDS} s") from None
    return data[:MAX_RESPONSE].decode("utf-8", errors="replace").strip()


def _shown(url: str) -> str:
    """A URL without its user info or query (which may hold secrets)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))
