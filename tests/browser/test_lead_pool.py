"""The crm pack's lead pool in Debian's chromium, in Chinese: a rep finds
线索公海 in the navigation, claims a lead, returns it with a reason from
the lead's page, and a colleague's claim of a taken lead is refused."""

import re
import subprocess

from playwright.sync_api import expect

from support import LOOM


def sign_in_zh(page, server, username, password):
    page.goto(f"{server.url}/locale/zh-CN?next=/login")
    page.goto(f"{server.url}/login")
    page.locator("#username").fill(username)
    page.locator("#password").fill(password)
    page.locator("form button[type=submit]").click()
    page.wait_for_url(f"{server.url}/")


def test_claiming_and_returning_a_lead_in_chinese(browser, server, api):
    for name in ("wang", "zhao"):
        subprocess.run([LOOM, "user", "create", name, "--role", "sales_rep", "--password", f"{name}-long-password"],
                       env=server.env, check=True, capture_output=True)
    leads = [r["id"] for r in api.get("/lead", params={"limit": 2}).json()["data"]]
    assert api.post("/_pools/lead_pool/put", json={"ids": leads}).status_code == 200
    wang = browser.new_context(locale="zh-CN").new_page()
    sign_in_zh(wang, server, "wang", "wang-long-password")
    wang.get_by_role("link", name="线索公海").click()
    expect(wang.get_by_role("heading", name="线索公海")).to_be_visible()
    row = wang.locator(f"#row-{leads[0]}")
    row.get_by_role("button", name="领取").click()
    expect(wang.get_by_role("status")).to_contain_text("已领取")
    expect(row).to_have_count(0)

    zhao = browser.new_context(locale="zh-CN").new_page()
    sign_in_zh(zhao, server, "zhao", "zhao-long-password")
    zhao.goto(f"{server.url}/app/_pools/lead_pool")
    assert api.get(f"/lead/{leads[1]}").json()["owner"] is None
    zhao.locator(f"#row-{leads[1]}").get_by_role("button", name="领取").click()
    expect(zhao.get_by_role("status")).to_contain_text("已领取")

    wang.goto(f"{server.url}/app/lead/{leads[0]}")
    wang.get_by_text("退回线索公海").click()
    wang.get_by_label("原因").select_option(label="联系不上")
    wang.get_by_role("button", name="退回", exact=True).click()
    wang.wait_for_url(re.compile(r"/app/_pools/lead_pool\?returned=1"))
    expect(wang.get_by_role("status")).to_contain_text("已退回公海")
    expect(wang.locator(f"#row-{leads[0]}")).to_contain_text("联系不上")
    wang.locator(f"#row-{leads[0]}").get_by_role("button", name="领取").click()
    expect(wang.get_by_role("alert")).to_contain_text("不久前退回")
    assert api.get(f"/lead/{leads[0]}").json()["owner"] is None
