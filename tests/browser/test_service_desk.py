"""An agent's day on the service pack, in Debian's chromium: customers file
tickets through the public web form, the queues route them to the agents,
who see their service-level clocks and suggested articles, move tickets
along, add an answer to the knowledge base; the customer answers the
satisfaction survey from the e-mailed link. Li works in Chinese, Sam in
English."""

import re
import sqlite3
import subprocess
import time
from pathlib import Path

from playwright.sync_api import expect

from support import LOOM


def _loom(server, *args):
    subprocess.run([LOOM, *args], env=server.env, check=True, capture_output=True)


def _sign_in(page, server, username, password, locale):
    page.goto(f"{server.url}/locale/{locale}?next=/login")
    page.locator("#username").fill(username)
    page.locator("#password").fill(password)
    page.locator("form button[type=submit]").click()
    page.wait_for_url(f"{server.url}/")


def _owned(api, subject, timeout=30):
    """The ticket once automation routed and assigned it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = api.get("/ticket", params={"subject": subject}).json()["data"]
        if rows and rows[0]["owner"] and rows[0]["queue"]:
            return rows[0]
        time.sleep(0.3)
    raise AssertionError(f"{subject!r} was not routed in {timeout}s")


def _survey_link(server, ticket_id, timeout=30):
    """The survey link of the e-mail the pump queued (no mail server is set here)."""
    db = Path(server.env["LOOM_DATA_DIR"]) / "loom.db"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with sqlite3.connect(db) as conn:
            for (body,) in conn.execute("SELECT body FROM loom_mail_outbox"):
                found = re.search(r"https?://\S+/s/(\S+)", body)
                if found and conn.execute("SELECT 1 FROM loom_surveys WHERE id = ? AND record_id = ?",
                                          (found.group(1).split(".")[0], ticket_id)).fetchone():
                    return f"{server.url}/s/{found.group(1)}"
        time.sleep(0.3)
    raise AssertionError("no survey e-mail was queued")


def test_an_agents_day_in_chinese_and_english(browser, server, api):
    _loom(server, "department", "create", "support_tech", "--label", "技术支持组")
    _loom(server, "department", "create", "support_billing", "--label", "Billing team")
    _loom(server, "user", "create", "li", "--role", "support_agent", "--department", "support_tech",
          "--password", "li-long-password")
    _loom(server, "user", "create", "sam", "--role", "support_agent", "--department", "support_billing",
          "--password", "sam-long-password")

    # a customer files a ticket on the company's site (the form needs no account)
    customer = browser.new_context(locale="zh-CN").new_page()
    customer.goto(f"{server.url}/locale/zh-CN?next=/f/web_to_case")
    expect(customer.get_by_role("heading", name="提交服务请求")).to_be_visible()
    customer.get_by_label("主题").fill("扫码枪无法识别新条码")
    customer.get_by_label("客户邮箱").fill("liu.yang@example.com")
    customer.get_by_label("类别").select_option(label="技术故障")
    customer.get_by_label("问题描述").fill("新换的条码标签，扫码枪读不出来。")
    customer.get_by_role("button", name="提交").click()
    expect(customer.get_by_role("status")).to_contain_text("已收到您的请求")
    ticket = _owned(api, "扫码枪无法识别新条码")
    assert ticket["channel"] == "web" and ticket["status"] == "new"

    # Li's day, in Chinese: the ticket is hers, with its clocks and a suggested article
    li = browser.new_context(locale="zh-CN").new_page()
    _sign_in(li, server, "li", "li-long-password", "zh-CN")
    li.get_by_role("navigation", name="主导航").get_by_role("link", name="工单").click()
    expect(li.locator("main")).to_contain_text("扫码枪无法识别新条码")
    li.get_by_role("link", name=ticket["ticket_no"]).click()
    clocks = li.locator("section.clocks")
    expect(clocks).to_contain_text("首次响应")
    expect(clocks).to_contain_text("计时中")
    expect(li.locator("section.suggested")).to_contain_text("扫码枪读不出条码")
    li.locator(".pathbar").get_by_role("button", name="处理中").click()
    expect(li.locator(".pathbar li.current")).to_contain_text("处理中")
    expect(clocks.locator("li", has_text="首次响应")).to_contain_text("已完成")
    # automation stamps the first response a moment later: the page shows it once reloaded
    deadline = time.monotonic() + 30
    while api.get(f"/ticket/{ticket['id']}").json()["first_response_at"] is None and time.monotonic() < deadline:
        time.sleep(0.3)
    li.reload()
    expect(li.get_by_text("首次响应时间", exact=True)).to_be_visible()
    # resolving needs the resolution first
    li.locator(".pathbar").get_by_role("button", name="已解决").click()
    expect(li.locator(".move-errors")).to_contain_text("请先填写解决方案")
    li.get_by_role("link", name="编辑").first.click()
    li.get_by_label("解决方案").fill("标签打印机分辨率改为 203dpi 后重新打印。")
    li.get_by_role("button", name="保存").click()
    li.locator(".pathbar").get_by_role("button", name="已解决").click()
    expect(li.locator(".pathbar li.current")).to_contain_text("已解决")
    # and the answer goes to the knowledge base as a draft
    li.get_by_role("link", name="添加到知识库").click()
    li.get_by_role("button", name="添加到知识库").click()
    expect(li.get_by_role("heading", name="扫码枪无法识别新条码")).to_be_visible()
    assert "/app/article/" in li.url

    # the customer answers the survey from the e-mail, once
    link = _survey_link(server, ticket["id"])
    customer.goto(link)
    expect(customer.get_by_role("heading", name="服务满意度调查")).to_be_visible()
    customer.locator("label.score", has_text="5").first.click()
    customer.locator(".scale-nps label.score", has_text="10").click()
    customer.get_by_role("button", name="提交").click()
    expect(customer.get_by_role("status")).to_contain_text("感谢您的反馈")
    customer.goto(link)
    expect(customer.get_by_role("status")).to_contain_text("已经填写过了")
    assert api.get(f"/ticket/{ticket['id']}").json()["csat"] == 5

    # Sam's day, in English: a refund request lands in the billing queue
    visitor = browser.new_context(locale="en-US").new_page()
    visitor.goto(f"{server.url}/locale/en?next=/f/web_to_case")
    visitor.get_by_label("Subject").fill("Charged twice this quarter")
    visitor.get_by_label("Category").select_option(label="Refund request")
    visitor.get_by_label("Customer e-mail").fill("ops@example.com")
    visitor.get_by_role("button", name="Send").click()
    expect(visitor.get_by_role("status")).to_contain_text("We have your request")
    refund = _owned(api, "Charged twice this quarter")
    sam = browser.new_context(locale="en-US").new_page()
    _sign_in(sam, server, "sam", "sam-long-password", "en")
    sam.goto(f"{server.url}/app/ticket/{refund['id']}")
    expect(sam.locator("section.clocks")).to_contain_text("First response")
    sam.locator(".pathbar").get_by_role("button", name="Pending customer response").click()
    expect(sam.locator("section.clocks li", has_text="Resolution")).to_contain_text("Paused")
    # Li reads Sam's ticket (every ticket is readable) but cannot move it
    li.goto(f"{server.url}/app/ticket/{refund['id']}")
    expect(li.get_by_role("heading", name="Charged twice this quarter")).to_be_visible()
    li.locator(".pathbar").get_by_role("button", name="处理中").click()
    expect(li.locator(".move-errors")).not_to_be_empty()
    assert api.get(f"/ticket/{refund['id']}").json()["status"] == "pending_customer"
