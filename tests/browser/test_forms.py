"""The generated end-user pages in Debian's chromium, on a real `loom serve`
with the crm pack and its sample data."""

import re
import subprocess
from datetime import date, timedelta

import pytest
from playwright.sync_api import expect

from support import LOOM


def password(server) -> str:
    return re.search(r"password:\s+(\S+)", server.banner).group(1)


def sign_in(page, server):
    page.goto(f"{server.url}/login")
    page.get_by_label("User name").fill("admin")
    page.get_by_label("Password").fill(password(server))
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Welcome")


@pytest.fixture
def signed_in(page, server):
    sign_in(page, server)
    return page


def one(api, object_name, **filters):
    rows = api.get(f"/{object_name}", params=filters).json()["data"]
    assert rows, (object_name, filters)
    return rows[0]


def test_navigation_lists_every_object_and_search_finds_records(signed_in, server):
    page = signed_in
    nav = page.get_by_role("navigation", name="Main")
    for label in ("Accounts", "Contacts", "Leads", "Opportunities", "Recycle bin"):
        expect(nav.get_by_role("link", name=label, exact=True)).to_be_visible()
    page.get_by_role("searchbox", name="Search all records").fill("恒达")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Accounts")).to_be_visible()
    expect(page.get_by_role("link", name="苏州恒达精密机械有限公司").first).to_be_visible()


def test_create_a_lead_with_an_inline_error_then_fixed(signed_in, server, api):
    page = signed_in
    page.goto(f"{server.url}/app/lead/new")
    expect(page.get_by_role("heading", level=1)).to_have_text("New Lead")
    email = page.get_by_label("Email")
    email.fill("not-an-address")
    page.get_by_label("Company").click()  # leaving the field checks it on the server
    expect(page.locator("#err-email")).to_have_text(re.compile(r"\S"))
    page.get_by_role("button", name="Save").click()
    # every problem of the save, next to its field
    expect(page.locator("#err-name")).to_contain_text("required")
    expect(page.locator("#err-email")).not_to_be_empty()
    expect(page).to_have_url(re.compile(r"/app/lead/new$"))

    page.get_by_role("textbox", name="Name", exact=True).fill("王芳")
    page.get_by_label("Email").fill("wang.fang@example.com")
    page.get_by_label("Company").fill("青禾贸易")
    page.get_by_label("Lead source").select_option("website")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("王芳")
    expect(page).to_have_url(re.compile(r"/app/lead/[0-9a-f]{32}$"))
    assert one(api, "lead", q="wang.fang@example.com")["company"] == "青禾贸易"


def test_visible_if_is_evaluated_live_on_the_server(signed_in, server):
    page = signed_in
    page.goto(f"{server.url}/app/lead/new")
    reason = page.locator('[data-field="disqualify_reason"]')
    expect(reason).to_be_hidden()
    page.locator('[data-field="status"]').get_by_role("radio", name="Disqualified").check()
    expect(reason).to_be_visible()
    page.locator('[data-field="status"]').get_by_role("radio", name="New", exact=True).check()
    expect(reason).to_be_hidden()


def test_a_dependent_picklist_offers_only_the_options_of_its_parent(signed_in, server, api):
    page = signed_in
    page.goto(f"{server.url}/app/account/new")
    region, province = page.locator("#in-region"), page.locator("#in-province")
    region.select_option("south")
    expect(province.locator('option[value="guangdong"]')).to_be_enabled()
    expect(province.locator('option[value="jiangsu"]')).to_be_disabled()
    province.select_option("guangdong")
    region.select_option("east")            # Guangdong is not in the east: the choice is cleared
    expect(province).to_have_value("")
    province.select_option("zhejiang")
    page.get_by_label("Account name").fill("宁波港务")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("宁波港务")
    assert one(api, "account", name="宁波港务")["province"] == "zhejiang"


def test_an_account_shows_its_related_opportunities_and_timeline(signed_in, server):
    page = signed_in
    page.goto(f"{server.url}/app/account")
    page.get_by_role("link", name="苏州恒达精密机械有限公司").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("苏州恒达精密机械有限公司")
    related = page.locator("section.related").filter(has=page.get_by_role("heading", name=re.compile("^Opportunities")))
    expect(related.get_by_role("link", name="恒达精密 进销存与批次管理")).to_be_visible()
    contacts = page.locator("section.related").filter(has=page.get_by_role("heading", name=re.compile("^Contacts")))
    expect(contacts.locator("li").first).to_be_visible()
    expect(page.get_by_role("heading", name="Timeline")).to_be_visible()


def _new_opportunity(api, name, **values):
    account = one(api, "account", q="恒达")
    body = {"name": name, "account": account["id"], "stage": "initial_contact", "amount": 1000,
            "close_date": (date.today() + timedelta(days=60)).isoformat(), **values}
    response = api.post("/opportunity", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def _column(page, stage):
    return page.locator(f'.column[data-value="{stage}"]')


def _drag(page, card, column):
    target = column.locator(".cards")
    card.hover()
    page.mouse.down()
    box = target.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + 10, steps=12)
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + 20, steps=6)
    page.mouse.up()


def test_a_board_move_that_fails_the_exit_criteria_snaps_back(signed_in, server, api):
    page = signed_in
    deal = _new_opportunity(api, "看板测试 无需求")
    page.goto(f"{server.url}/app/opportunity/board")
    card = _column(page, "initial_contact").locator(f'[data-id="{deal["id"]}"]')
    _drag(page, card, _column(page, "needs_analysis"))
    errors = page.locator("#board-errors")
    expect(errors).to_contain_text("Describe the customer's needs")
    expect(errors.get_by_role("link", name="Fix it").first).to_have_attribute("href", re.compile(rf"/app/opportunity/{deal['id']}/edit#field-"))
    expect(_column(page, "initial_contact").locator(f'[data-id="{deal["id"]}"]')).to_be_visible()
    assert api.get(f"/opportunity/{deal['id']}").json()["stage"] == "initial_contact"
    assert api.get(f"/opportunity/{deal['id']}").json()["version"] == deal["version"]


def test_a_board_move_that_may_go_updates_the_sums(signed_in, server, api):
    contact = one(api, "contact", q="周")
    deal = _new_opportunity(api, "看板测试 可推进", amount=1234.5, contact=contact["id"], requirements="扫码出入库")
    page = signed_in
    page.goto(f"{server.url}/app/opportunity/board")
    target = _column(page, "needs_analysis")
    count_before = int(target.locator(".col-count").inner_text())
    sum_before = target.locator(".col-sum").inner_text()
    _drag(page, _column(page, "initial_contact").locator(f'[data-id="{deal["id"]}"]'), target)
    expect(target.locator(".col-count")).to_have_text(str(count_before + 1))
    expect(target.locator(".col-sum")).not_to_have_text(sum_before)
    expect(page.locator("#board-errors")).to_be_empty()
    assert api.get(f"/opportunity/{deal['id']}").json()["stage"] == "needs_analysis"
    before = _money(sum_before)
    expect(target.locator(".col-sum")).to_have_text(re.compile(re.escape(f"{before + 1234.5:,.2f}")))


def _money(text: str) -> float:
    return float(re.sub(r"[^\d.]", "", text) or 0)


def test_switching_to_chinese_changes_labels_dates_and_money(signed_in, server):
    page = signed_in
    page.goto(f"{server.url}/app/opportunity")
    expect(page.get_by_role("heading", level=1)).to_contain_text("Opportunities")
    expect(page.locator("table.records")).to_contain_text(re.compile(r"[A-Z][a-z]{2} \d{1,2}, 20\d\d"))
    page.get_by_role("link", name="简体中文").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("商机")
    expect(page.get_by_role("columnheader", name="预计成交日期")).to_be_visible()
    table = page.locator("table.records")
    expect(table).to_contain_text(re.compile(r"20\d\d-\d\d-\d\d"))
    expect(table).to_contain_text(re.compile(r"¥\d{1,3}(,\d{3})*\.\d\d"))
    expect(page.get_by_role("navigation", name="主导航").get_by_role("link", name="回收站")).to_be_visible()
    expect(page.get_by_role("button", name="导出 CSV")).to_be_visible()


def test_the_form_is_usable_on_a_375px_phone(browser, server, api):
    context = browser.new_context(viewport={"width": 375, "height": 740}, locale="zh-CN", has_touch=True)
    page = context.new_page()
    page.goto(f"{server.url}/login")
    page.get_by_label("用户名").fill("admin")
    page.get_by_label("密码").fill(password(server))
    page.get_by_role("button", name="登录").click()
    page.goto(f"{server.url}/app/lead/new")
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    name = page.get_by_role("textbox", name="姓名", exact=True)
    box = name.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= 375 and box["height"] >= 40
    name.fill("李雷")
    page.get_by_label("手机").fill("138 0013 8111")
    page.get_by_label("线索来源").select_option("referral")
    save = page.get_by_role("button", name="保存")
    save_box = save.bounding_box()
    assert save_box["x"] >= 0 and save_box["x"] + save_box["width"] <= 375
    save.tap()
    expect(page.get_by_role("heading", level=1)).to_have_text("李雷")
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    assert one(api, "lead", q="李雷")["phone"] == "+8613800138111"
    context.close()


def test_the_recycle_bin_restores_a_deleted_record(signed_in, server, api):
    deal = _new_opportunity(api, "回收站测试")
    page = signed_in
    page.goto(f"{server.url}/app/opportunity/{deal['id']}")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete").click()
    expect(page).to_have_url(re.compile(r"/app/opportunity$"))
    assert api.get(f"/opportunity/{deal['id']}").status_code == 404
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Recycle bin").click()
    row = page.locator("tr").filter(has_text="回收站测试")
    row.get_by_role("button", name="Restore").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("回收站测试")
    assert api.get(f"/opportunity/{deal['id']}").status_code == 200


def test_an_import_past_the_rules_shows_on_the_timeline(signed_in, server, api, tmp_path):
    file = tmp_path / "old-deals.csv"
    file.write_text("name,account,stage,close_date\n恒达 旧系统迁移,苏州恒达精密机械有限公司,initial_contact,2019-05-01\n", "utf-8")
    imported = subprocess.run([LOOM, "import", "opportunity", str(file), "--user", "admin", "--skip-rules", "旧 CRM 迁移"],
                              env=server.env, capture_output=True, text=True, timeout=120)
    assert imported.returncode == 0 and "Imported 1 of 1 rows" in imported.stdout, imported.stdout + imported.stderr
    deal = one(api, "opportunity", q="旧系统迁移")
    page = signed_in
    page.goto(f"{server.url}/app/opportunity/{deal['id']}")
    entry = page.locator(".timeline li.t-rules_skipped")
    expect(entry).to_contain_text("Saved past its rules: 旧 CRM 迁移")
    expect(entry).to_contain_text("The expected close date cannot be in the past")


def test_the_api_docs_work_offline(signed_in, server):
    page = signed_in
    outside = []

    def only_local(route):
        if route.request.url.startswith(server.url):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", only_local)
    page.goto(f"{server.url}/api/docs")
    # every object has its tag of operations, folded until opened
    opportunity = page.locator(".swagger-ui .opblock-tag", has_text="opportunity")
    expect(opportunity).to_be_visible(timeout=15000)
    expect(page.locator(".swagger-ui .opblock-tag", has_text="ticket")).to_be_visible()
    opportunity.click()
    expect(page.locator(".swagger-ui")).to_contain_text("/api/v1/opportunity/{id}")
    assert outside == []
