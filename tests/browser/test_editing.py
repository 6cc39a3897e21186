"""Editing records in Debian's chromium as a new user would: lookups in
every form, two people saving one record, failed saves on a phone."""

import re

import pytest
from playwright.sync_api import expect

from test_forms import one, password, sign_in


@pytest.fixture
def signed_in(page, server):
    sign_in(page, server)
    return page


def _objects_with_links(api):
    objects = api.get("/_meta/objects").json()["data"]
    return [o for o in objects if any(f["type"] in ("lookup", "related_to") for f in o["fields"])]


def test_every_lookup_in_every_form_offers_and_takes_a_record(signed_in, server, api):
    page = signed_in
    walked = 0
    for obj in _objects_with_links(api):
        page.goto(f"{server.url}/app/{obj['name']}/new")
        boxes = page.locator("#record-form .lookup")
        for i in range(boxes.count()):
            box = boxes.nth(i)
            if not box.is_visible():
                continue
            search = box.locator(".lookup-search")
            search.click()
            option = box.locator(".lookup-option").first
            expect(option).to_be_visible()
            label = option.get_attribute("data-label")
            option.click()
            expect(search).to_have_value(label)
            page.wait_for_timeout(300)   # the focus back on the box searches no more: the list stays shut
            expect(box.locator(".lookup-option")).to_have_count(0)
            hidden = box.locator('input[type="hidden"]')
            pattern = r"^[a-z_]+:[0-9a-f]{32}$" if box.get_attribute("data-kind") == "related" else r"^[0-9a-f]{32}$"
            assert re.match(pattern, hidden.input_value()), (obj["name"], hidden.get_attribute("name"))
            walked += 1
    assert walked >= 8


def test_a_lookup_picked_by_typing_is_saved(signed_in, server, api):
    page = signed_in
    page.goto(f"{server.url}/app/contact/new")
    page.get_by_role("textbox", name="Name", exact=True).fill("林晓")
    account = page.get_by_role("combobox", name="Account")
    account.fill("恒达")
    page.get_by_role("option", name=re.compile("苏州恒达精密机械有限公司")).click()
    page.get_by_label("Email").fill("lin.xiao@example.com")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("林晓")
    saved = one(api, "contact", q="林晓")
    assert saved["account"] == one(api, "account", q="苏州恒达精密机械有限公司")["id"]


def test_two_tabs_editing_one_deal_lose_nothing(browser, server, api):
    from test_forms import _new_opportunity

    deal = _new_opportunity(api, "两个标签页的商机")
    context = browser.new_context(locale="en-US")
    tab1, tab2 = context.new_page(), context.new_page()
    sign_in(tab1, server)
    edit = f"{server.url}/app/opportunity/{deal['id']}/edit"

    # different fields: both changes are kept, no question asked
    tab1.goto(edit)
    tab2.goto(edit)
    tab1.get_by_label("Competitors").fill("Rival A")
    tab1.get_by_role("button", name="Save").click()
    expect(tab1.get_by_role("heading", level=1)).to_have_text("两个标签页的商机")
    tab2.get_by_label("Next step").fill("Call the CFO")
    tab2.get_by_role("button", name="Save").click()
    expect(tab2.get_by_role("heading", level=1)).to_have_text("两个标签页的商机")
    saved = api.get(f"/opportunity/{deal['id']}").json()
    assert (saved["competitor"], saved["next_step"]) == ("Rival A", "Call the CFO")

    # the same field: the form shows just that field, and saving again keeps the other's change elsewhere
    tab1.goto(edit)
    tab2.goto(edit)
    tab1.get_by_label("Competitors").fill("Rival B")
    tab1.get_by_label("Next step").fill("Send the quote")
    tab1.get_by_role("button", name="Save").click()
    expect(tab1.get_by_role("heading", level=1)).to_have_text("两个标签页的商机")
    tab2.get_by_label("Next step").fill("Book a demo")
    tab2.get_by_role("button", name="Save").click()
    notice = tab2.get_by_role("alert").filter(has_text="Someone else saved this record")
    expect(notice).to_be_visible()
    rows = notice.locator("table.diff tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Next step")
    expect(rows.first).to_contain_text("Send the quote")
    expect(tab2.get_by_label("Competitors")).to_have_value("Rival B")
    tab2.get_by_role("button", name="Save").click()
    expect(tab2.get_by_role("heading", level=1)).to_have_text("两个标签页的商机")
    saved = api.get(f"/opportunity/{deal['id']}").json()
    assert (saved["competitor"], saved["next_step"]) == ("Rival B", "Book a demo")
    context.close()


def test_a_failed_save_on_a_phone_shows_the_summary_and_focuses_the_first_problem(browser, server):
    context = browser.new_context(viewport={"width": 375, "height": 740}, locale="zh-CN", has_touch=True)
    page = context.new_page()
    page.goto(f"{server.url}/login")
    page.get_by_label("用户名").fill("admin")
    page.get_by_label("密码").fill(password(server))
    page.get_by_role("button", name="登录").click()
    page.goto(f"{server.url}/app/opportunity/new")
    page.get_by_role("button", name="保存").tap()
    summary = page.locator("#error-summary")
    expect(summary).to_be_visible()
    expect(summary).to_contain_text("请修改标出的字段")
    expect(summary).to_contain_text("商机名称：此项为必填项。")
    focused = page.locator(":focus")
    expect(focused).to_have_attribute("id", "in-name")
    box = focused.bounding_box()
    assert 0 <= box["y"] and box["y"] + box["height"] <= 740 and box["x"] + box["width"] <= 375
    expect(page.locator("#err-name")).to_be_in_viewport()
    # the summary's links go to each field
    summary.get_by_role("link").nth(1).tap()
    second = page.locator(":focus")
    expect(second).to_be_in_viewport()
    assert second.get_attribute("id") != "in-name"
    context.close()


def test_typing_fast_over_a_slow_connection_logs_no_errors(signed_in, server):
    import time

    page = signed_in
    problems = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))

    def slow(route):
        time.sleep(0.4)
        route.continue_()

    page.route(re.compile(r".*/app/(_lookup|lead/form/check).*"), slow)
    page.goto(f"{server.url}/app/lead/new")
    page.get_by_role("textbox", name="Name", exact=True).press_sequentially("王小明同学", delay=120)
    page.get_by_label("Company").press_sequentially("青禾贸易有限公司", delay=120)
    page.get_by_label("Email").fill("fast.typist@example.com")
    page.get_by_label("Lead source").select_option("website")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("王小明同学")
    page.unroute_all(behavior="ignoreErrors")
    assert problems == []


def test_reopening_a_won_deal_from_the_board_asks_first(signed_in, server, api):
    won = one(api, "opportunity", stage="won")
    page = signed_in
    page.goto(f"{server.url}/app/opportunity/board")
    card = page.locator(f'.column[data-value="won"] [data-id="{won["id"]}"]')
    asked = []

    def decline(dialog):
        asked.append(dialog.message)
        dialog.dismiss()

    page.once("dialog", decline)
    card.focus()
    page.keyboard.press("ArrowLeft")
    expect(page.locator(f'.column[data-value="won"] [data-id="{won["id"]}"]')).to_be_visible()
    assert asked == ["This record is closed (won or lost). Reopen it?"]
    assert api.get(f"/opportunity/{won['id']}").json()["version"] == won["version"]
    # accepted, the move is sent (and judged by the stage's rules as any reopen is)
    page.once("dialog", lambda dialog: dialog.accept())
    with page.expect_request(re.compile(rf"/app/opportunity/{won['id']}/move")):
        page.locator(f'[data-id="{won["id"]}"]').focus()
        page.keyboard.press("ArrowLeft")


def test_bulk_delete_says_what_it_did(signed_in, server, api):
    from test_forms import _new_opportunity

    deals = [_new_opportunity(api, f"批量删除测试 {i}") for i in range(2)]
    page = signed_in
    page.goto(f"{server.url}/app/opportunity?q=批量删除测试")
    page.get_by_role("checkbox", name="Select all rows").check()
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete selected").click()
    notice = page.locator("#bulk-notice")
    expect(notice).to_contain_text("2 records moved to the recycle bin.")
    expect(notice.get_by_role("link", name="Open the recycle bin")).to_have_attribute("href", "/app/bin")
    for deal in deals:
        expect(page.locator(f"#row-{deal['id']}")).to_have_count(0)
        assert api.get(f"/opportunity/{deal['id']}").status_code == 404
