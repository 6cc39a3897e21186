"""Approvals in Debian's chromium, in Chinese: a rep submits an order with a
30 % discount from its page; the sales manager, on a 375 px phone, finds it
under 审批 in the navigation, approves it from the inbox with a comment; the
order is approved and its timeline says who approved and why."""

import re
import subprocess

from playwright.sync_api import expect

from support import LOOM
from test_lead_pool import sign_in_zh


def test_an_order_approved_from_the_inbox_on_a_phone(browser, server, api):
    for name, role in (("wang", "sales_rep"), ("li", "sales_manager")):
        subprocess.run([LOOM, "user", "create", name, "--role", role, "--password", f"{name}-long-password"],
                       env=server.env, check=True, capture_output=True)
    people = {u["username"]: u["id"] for u in api.get("/_admin/users").json()["data"]}
    account = api.post("/account", json={"name": "宁波海联贸易", "lifecycle": "customer", "owner": people["wang"]}).json()
    order = api.post("/order", json={"account": account["id"], "order_date": "2026-12-01", "status": "draft",
                                     "list_amount": 200000, "discount": 30, "owner": people["wang"]}).json()

    rep = browser.new_context(locale="zh-CN").new_page()
    sign_in_zh(rep, server, "wang", "wang-long-password")
    rep.goto(f"{server.url}/app/order/{order['id']}")
    panel = rep.locator("#approval-panel")
    expect(panel).to_contain_text("尚未提交审批")
    panel.get_by_label("审批意见").fill("老客户，年度框架")
    panel.get_by_role("button", name="提交审批").click()
    expect(rep.locator("#approval-panel")).to_contain_text("销售经理审批")
    assert api.get(f"/order/{order['id']}").json()["status"] == "pending_approval"

    phone = browser.new_context(locale="zh-CN", viewport={"width": 375, "height": 740}, is_mobile=True,
                                has_touch=True).new_page()
    sign_in_zh(phone, server, "li", "li-long-password")
    inbox = phone.locator("nav a[href='/app/_approvals']")
    expect(inbox).to_contain_text("1")
    inbox.click()
    expect(phone.get_by_role("heading", level=1)).to_have_text("审批")
    request_id = api.get(f"/order/{order['id']}/_approvals").json()["requests"][0]["id"]
    card = phone.locator(f"#request-{request_id}")
    expect(card).to_contain_text("订单审批")
    box = card.bounding_box()
    assert box["width"] <= 375                       # the card fits the phone's width
    card.get_by_label("审批意见").fill("同意，下不为例")
    card.get_by_role("button", name="同意").click()
    phone.wait_for_url(re.compile(r"/app/_approvals\?box=waiting"))
    expect(phone.get_by_text("暂无内容")).to_be_visible()
    assert api.get(f"/order/{order['id']}").json()["status"] == "approved"

    phone.goto(f"{server.url}/app/_approvals?box=decided")
    expect(phone.locator(".approval-card")).to_contain_text("已通过")
    rep.goto(f"{server.url}/app/order/{order['id']}")
    timeline = rep.locator(".timeline")
    expect(timeline).to_contain_text("同意，下不为例")
    expect(timeline).to_contain_text("提交审批")
