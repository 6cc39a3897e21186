"""The crm pack's lead pool (线索公海) without a browser: a rep sees it in
the navigation, its leads without their private fields, claims one, and
returns it with a reason from the lead's page; a second claim is refused in
the rep's language; the pool's admin assigns a lead to a member."""

from __future__ import annotations

import re

import pytest

from loomcrm.platform import directory
from loomcrm.platform.app import create_app
from loomcrm.platform.db import create_engine
from loomcrm.platform.settings import Settings
from loomcrm.runtime.commands import pack_install
from loomcrm.runtime.pools import put_in_pool
from loomcrm.runtime.query import ListParams, list_records
from loomcrm.runtime.records import Actor
from loomcrm.runtime.state import Runtime

from test_report_pages import signed_in


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pools")
    url = f"sqlite:///{folder / 'loom.db'}"
    pack_install(url, "crm")
    engine = create_engine(url)
    runtime = Runtime(engine)
    roles = sorted(runtime.roles()[1])
    for name in ("wang", "zhao"):
        directory.create_user(engine, name, "sales_rep", "a long password", roles=roles)
    directory.create_user(engine, "boss", "sales_manager", "a long password", roles=roles)
    ops = directory.create_user(engine, "ops", "marketing", "a long password", roles=roles)
    schema = runtime.schema()
    with engine.connect() as conn:
        rows, _ = list_records(conn, schema, schema.object("lead"), ListParams(limit=3))
    leads = [r["id"] for r in rows]
    put_in_pool(runtime, Actor(None, "admin"), "lead_pool", leads)
    application = create_app(Settings(data_dir=str(folder), database_url=url), engine)
    application.state.leads = leads
    application.state.outsider = ops.id
    yield application
    engine.dispose()


def test_a_rep_claims_from_the_pool_and_returns_with_a_reason(app):
    wang, zhao = signed_in(app, "wang"), signed_in(app, "zhao")
    assert 'href="/app/_pools/lead_pool"' in wang.home
    page = wang.get("/app/_pools/lead_pool").text
    lead = app.state.leads[0]
    assert f'hx-post="/app/_pools/lead_pool/claim/{lead}"' in page
    assert "WeChat" not in page and "微信" not in page          # a private field
    claimed = wang.post(f"/app/_pools/lead_pool/claim/{lead}")
    assert "It is yours now." in claimed.text and f"/app/lead/{lead}" in claimed.text
    zhao.get("/locale/zh-CN", params={"next": "/"})
    again = zhao.post(f"/app/_pools/lead_pool/claim/{lead}")
    assert again.status_code == 409 and "已被他人领取" in again.text
    record = wang.get(f"/app/lead/{lead}").text
    assert f'hx-post="/app/_pools/lead_pool/return/{lead}"' in record and 'value="unreachable"' in record
    back = wang.post(f"/app/_pools/lead_pool/return/{lead}", data={"reason": "unreachable"},
                     headers={"HX-Request": "true"})
    assert back.headers["hx-redirect"] == "/app/_pools/lead_pool?returned=1"
    assert "Cannot reach" in wang.get("/app/_pools/lead_pool").text
    banned = wang.post(f"/app/_pools/lead_pool/claim/{lead}")
    assert banned.status_code == 409 and "you may claim it again from" in banned.text


def test_the_pool_admin_assigns_a_lead_to_a_member(app):
    boss, wang = signed_in(app, "boss"), signed_in(app, "wang")
    lead = app.state.leads[2]
    assert 'hx-post="/app/_pools/lead_pool/assign/' not in wang.get("/app/_pools/lead_pool").text
    page = boss.get("/app/_pools/lead_pool").text
    assert f'hx-post="/app/_pools/lead_pool/assign/{lead}"' in page
    users = dict(re.findall(r'<option value="(\w+)">(\w+)</option>', page))
    assert "ops" not in users.values() and {"wang", "zhao"} <= set(users.values())   # members only
    wang_id = next(i for i, name in users.items() if name == "wang")
    assert wang.post(f"/app/_pools/lead_pool/assign/{lead}", data={"user": wang_id}).status_code == 403
    outsider = boss.post(f"/app/_pools/lead_pool/assign/{lead}", data={"user": app.state.outsider})
    assert outsider.status_code == 422 and "not a member of this pool" in outsider.text
    done = boss.post(f"/app/_pools/lead_pool/assign/{lead}", data={"user": wang_id})
    assert done.status_code == 200 and "Assigned." in done.text
    assert wang.get(f"/app/lead/{lead}").status_code == 200          # wang's now
    again = boss.post(f"/app/_pools/lead_pool/assign/{lead}", data={"user": wang_id})
    assert again.status_code == 409
