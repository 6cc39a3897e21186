"""Converting a lead and merging duplicates in Debian's chromium, in
Chinese: 转化 from the lead's page (a refusal first, then the records
made), 合并所选 from the accounts list, and 合并它们 from a contact's
duplicate notice."""

import re

from playwright.sync_api import expect

from test_forms import password
from test_lead_pool import sign_in_zh


def test_converting_a_lead_in_chinese(browser, server, api):
    lead = api.post("/lead", json={"name": "周杰", "company": "无锡华通电子", "source": "website", "status": "qualified",
                                   "phone": "13812345678"}).json()
    api.post("/activity", json={"subject": "电话沟通需求", "activity_type": "call", "notes": "要报价",
                                "related_to": {"object": "lead", "id": lead["id"]},
                                "activity_time": "2026-11-20T02:00:00Z"})
    page = browser.new_context(locale="zh-CN").new_page()
    sign_in_zh(page, server, "admin", password(server))
    page.goto(f"{server.url}/app/lead/{lead['id']}")
    page.get_by_role("link", name="转化", exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("转化：周杰")
    expect(page.locator('[id="in-account.name"]')).to_have_value("无锡华通电子")
    expect(page.locator('[id="in-contact.name"]')).to_have_value("周杰")
    page.get_by_label("创建商机").check()
    page.get_by_role("button", name="转化").click()
    expect(page.get_by_role("alert")).to_contain_text("无法完成转化")       # the deal needs its close date
    expect(page.get_by_role("alert")).to_contain_text("商机")
    assert api.get(f"/lead/{lead['id']}").json()["status"] == "qualified"

    page.locator('[id="in-opportunity.close_date"]').fill("2027-02-28")
    page.locator('[id="in-opportunity.name"]').fill("无锡华通电子-产线改造")
    page.get_by_role("button", name="转化").click()
    page.wait_for_url(re.compile(r"/app/account/\w+$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("无锡华通电子")
    expect(page.locator(".timeline")).to_contain_text("电话沟通需求")          # the follow-up moved along
    converted = api.get(f"/lead/{lead['id']}").json()
    assert converted["status"] == "converted"
    deal = api.get(f"/opportunity/{converted['converted_opportunity']}").json()
    assert (deal["name"], deal["account"], deal["lead"]) == ("无锡华通电子-产线改造", converted["converted_account"],
                                                             lead["id"])
    page.goto(f"{server.url}/app/lead/{lead['id']}")
    expect(page.locator(".timeline")).to_contain_text("已转化")
    expect(page.get_by_role("link", name="转化", exact=True)).to_have_count(0)


def test_merging_duplicates_in_chinese(browser, server, api):
    first = api.post("/account", json={"name": "杭州云栖科技", "lifecycle": "customer", "employees": 30}).json()
    second = api.post("/account", json={"name": "杭州云栖科技有限公司", "lifecycle": "customer", "employees": 45,
                                        "website": "https://yunqi.example.cn"}).json()
    contact = api.post("/contact", json={"name": "陈晨", "account": second["id"], "phone": "13712345678"}).json()
    page = browser.new_context(locale="zh-CN").new_page()
    sign_in_zh(page, server, "admin", password(server))
    page.goto(f"{server.url}/app/account?q=杭州云栖")
    for record in (first, second):
        page.locator(f"#row-{record['id']} .row-check").check()
    page.get_by_role("button", name="合并所选").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("合并重复记录")
    page.locator('tr[data-field="employees"] input[value="%s"]' % second["id"]).check()
    page.get_by_role("button", name="合并", exact=True).click()
    page.wait_for_url(re.compile(rf"/app/account/{first['id']}\?merged=1"))
    expect(page.get_by_role("status").first).to_contain_text("已合并")
    kept = api.get(f"/account/{first['id']}").json()
    assert (kept["name"], kept["employees"], kept["website"]) == ("杭州云栖科技", 45, second["website"])
    assert api.get(f"/contact/{contact['id']}").json()["account"] == first["id"]
    assert api.get(f"/account/{second['id']}").status_code == 404

    # a contact saved past its duplicate warning is offered for merging on its page
    twin = api.post("/contact", json={"name": "陈晨（采购）", "account": first["id"], "phone": "13712345678"}).json()
    page.goto(f"{server.url}/app/contact/{twin['id']}")
    expect(page.locator(".duplicates")).to_contain_text("陈晨")
    page.get_by_role("link", name="合并它们").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("合并重复记录")
    page.get_by_role("button", name="合并", exact=True).click()
    page.wait_for_url(re.compile(rf"/app/contact/{twin['id']}\?merged=1"))
    assert api.get(f"/contact/{contact['id']}").status_code == 404
