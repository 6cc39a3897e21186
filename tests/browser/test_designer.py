"""The designer in Debian's chromium on a real `loom serve`: an admin who
never sees JSON builds a "project" object with six field types and a
formula, types a rule with a typo and fixes it with completion, publishes;
a user's record is then governed by the rule; the admin renames a field
(values kept), converts text to decimal (the blocking record shown), rolls
back; two admins on one object get a conflict naming the other's change;
the designer speaks Chinese."""

import re

import pytest
from playwright.sync_api import expect

from test_automation import sign_in_as
from test_forms import password, sign_in

LABEL_EN = re.compile(r"^Label \(English\)")


def add_field(page, kind: str, label: str, **settings) -> None:
    """On an object's page: add a field of `kind` labelled `label`."""
    page.get_by_label("Add a field of type").select_option(kind)
    page.get_by_role("button", name="Add field").click()
    page.get_by_label(LABEL_EN).fill(label)
    for name, value in settings.items():
        control = page.locator(f'[name="{name}"]:not([disabled])')
        if control.evaluate("e => e.tagName") == "SELECT":
            control.select_option(value)
        else:
            control.fill(value)
    page.get_by_role("button", name="Save field").click()
    expect(page.get_by_role("status").first).to_contain_text("Saved in the draft.")


def publish(page, server, *, confirm: str | None = None) -> None:
    page.goto(f"{server.url}/designer/plan")
    if confirm:
        for box in page.locator("input[name^=confirm_]").all():
            box.fill(confirm)
    page.get_by_role("button", name="Publish").click()
    expect(page.get_by_role("status").first).to_contain_text("Published")


@pytest.fixture(scope="module")
def project(browser, server, api):
    """The module the admin builds in the browser, published."""
    context = browser.new_context(locale="en-US")
    page = context.new_page()
    sign_in(page, server)
    page.get_by_role("link", name="Designer").click()
    page.get_by_label(LABEL_EN).fill("Project")
    expect(page.get_by_label(re.compile("^Name"))).to_have_value("project")     # made from the label
    page.get_by_label("Label (Chinese)", exact=True).fill("项目")
    page.get_by_role("button", name="Create object").click()
    expect(page.get_by_role("heading", level=2)).to_contain_text("Project")

    add_field(page, "date", "Start date")
    add_field(page, "currency", "Budget", min="0")
    add_field(page, "boolean", "Billable")
    add_field(page, "lookup", "Account", to="account", on_delete="set_null")
    add_field(page, "text", "Estimate")
    # a picklist with two coloured options, the second row added by a button
    page.get_by_label("Add a field of type").select_option("picklist")
    page.get_by_role("button", name="Add field").click()
    page.get_by_label(LABEL_EN).fill("Priority")
    page.get_by_label("Option value").fill("high")
    page.get_by_label("Option label (English)").fill("High")
    page.get_by_role("button", name="Add option").click()
    page.get_by_label("Option value").nth(1).fill("low")
    page.get_by_label("Option label (English)").nth(1).fill("Low")
    page.get_by_role("button", name="Save field").click()
    expect(page.get_by_role("status").first).to_contain_text("Saved in the draft.")

    # a formula typed with completion
    page.get_by_label("Add a field of type").select_option("formula")
    page.get_by_role("button", name="Add field").click()
    page.get_by_label(LABEL_EN).fill("Budget in thousands")
    formula = page.get_by_label("Formula", exact=True)
    formula.press_sequentially("bud")
    suggestions = page.locator("#complete-expression")
    expect(suggestions.get_by_role("option").first).to_contain_text("budget")
    formula.press("Enter")
    formula.press_sequentially(" / 1000")
    expect(formula).to_have_value("budget / 1000")
    expect(page.locator("[data-expr]:has(#in-expression) .expr-type")).to_have_text("→ number")
    page.get_by_role("button", name="Save field").click()
    expect(page.get_by_role("status").first).to_contain_text("Saved in the draft.")

    # a rule with a typo: the problem at its column, then fixed with completion
    page.get_by_role("link", name="New rule").click()
    page.get_by_label(re.compile("^Name")).fill("budget_cap")
    check = page.get_by_label("Check", exact=True)
    check.press_sequentially("billable == True and budgt <= 100000")
    expect(page.locator("#err-check")).to_contain_text("unknown field 'budgt'")
    expect(page.locator("#err-check")).to_contain_text("line 1, column 22")
    expect(page.locator(".expr-echo mark.expr-error").first).to_have_text("b")
    check.fill("billable == True and ")
    check.press("End")
    check.press_sequentially("bud")
    expect(page.locator("#complete-check").get_by_role("option").first).to_contain_text("budget")
    check.press("Enter")
    check.press_sequentially(" <= 100000")
    expect(page.locator("#err-check")).to_have_text("")
    check.fill("billable != True or budget <= 100000")
    page.get_by_label(re.compile(r"^Message \(English\)")).fill("A billable project's budget is at most 100,000.")
    page.get_by_role("button", name="Save rule").click()
    expect(page.get_by_role("status").first).to_contain_text("Saved in the draft.")

    page.get_by_role("link", name="Review and publish").first.click()
    expect(page.locator(".plan-step")).to_contain_text(["Create object Project (project) (fields: 8)"])
    page.get_by_role("button", name="Publish").click()
    expect(page.get_by_role("status").first).to_contain_text("Published")
    context.close()
    return api.get("/_meta/objects/project").json()


def test_an_admin_builds_a_module_and_a_user_works_under_its_rule(browser, server, api, project):
    assert [f["type"] for f in project["fields"]] == ["text", "date", "currency", "boolean", "lookup", "text",
                                                     "picklist", "formula"]
    assert project["fields"][-1]["returns"] == "decimal"
    made = api.post("/_admin/users", json={"username": "pm.zhou", "password": "a long password", "role": "user"})
    assert made.status_code == 201, made.text
    context = browser.new_context(locale="en-US")
    page = context.new_page()
    sign_in_as(page, server, "pm.zhou", "a long password")
    page.goto(f"{server.url}/app/project/new")
    page.get_by_role("textbox", name="Name", exact=True).fill("ERP rollout")
    page.locator("#in-budget").fill("250000")
    page.get_by_label("Billable").check()
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_text("A billable project's budget is at most 100,000.").first).to_be_visible()
    page.locator("#in-budget").fill("80000")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("ERP rollout")
    context.close()
    saved = api.get("/project", params={"q": "ERP rollout"}).json()["data"][0]
    assert float(saved["budget_in_thousands"]) == 80


def test_rename_convert_and_roll_back_keep_the_data(browser, server, api, project):
    first = api.post("/project", json={"name": "Warehouse", "estimate": "12.5"}).json()
    second = api.post("/project", json={"name": "Training", "estimate": "about five days"}).json()
    context = browser.new_context(locale="en-US")
    page = context.new_page()
    sign_in(page, server)
    page.goto(f"{server.url}/designer/objects/project/fields/estimate")
    page.get_by_label(re.compile("^Name")).fill("quote")
    page.get_by_label(LABEL_EN).fill("Quote")
    page.get_by_role("button", name="Save field").click()
    page.goto(f"{server.url}/designer/plan")
    expect(page.locator(".plan-step")).to_contain_text(["Rename Estimate (estimate) to Quote (quote) on Project (project): values kept"])
    publish(page, server)
    assert api.get(f"/project/{first['id']}").json()["quote"] == "12.5"

    page.goto(f"{server.url}/designer/objects/project/fields/quote")
    page.get_by_label("Type", exact=True).select_option("decimal")
    page.get_by_label("Decimal places").fill("2")
    page.get_by_role("button", name="Save field").click()
    page.goto(f"{server.url}/designer/plan")
    step = page.locator(".plan-step.destructive")
    expect(step).to_contain_text("from Text to Decimal number")
    expect(step).to_contain_text("1 of")
    expect(step.get_by_role("link", name="Training")).to_be_visible()       # the record that blocks it
    page.get_by_role("button", name="Publish").click()
    expect(page.locator(".plan-step .field-error")).to_contain_text("Type the name exactly")
    assert api.get(f"/project/{second['id']}").json()["quote"] == "about five days"
    publish(page, server, confirm="project")
    assert float(api.get(f"/project/{first['id']}").json()["quote"]) == 12.5

    page.goto(f"{server.url}/designer/history")
    versions = page.locator("li.version")
    expect(versions.first).to_contain_text("Change Quote (quote) of Project (project) from Text to Decimal number")
    versions.nth(1).get_by_role("button", name="Roll back to this version").click()
    expect(page.locator(".plan-step")).to_contain_text(["from Decimal number to Text"])
    publish(page, server, confirm="project")
    assert api.get(f"/project/{first['id']}").json()["quote"] == "12.50"
    context.close()


def test_a_stale_form_names_the_other_admins_change(browser, server, api, project):
    made = api.post("/_admin/users", json={"username": "ops.two", "password": "a long password", "role": "admin"})
    assert made.status_code == 201, made.text
    first, second = browser.new_context(locale="en-US"), browser.new_context(locale="en-US")
    mine, theirs = first.new_page(), second.new_page()
    sign_in(mine, server)
    sign_in_as(theirs, server, "ops.two", "a long password")
    mine.goto(f"{server.url}/designer/objects/project/fields/new?type=email")
    theirs.goto(f"{server.url}/designer/objects/project")
    add_field(theirs, "phone", "Site phone")
    mine.get_by_label(LABEL_EN).fill("Contact email")
    mine.get_by_role("button", name="Save field").click()
    alert = mine.get_by_role("alert")
    expect(alert).to_contain_text("ops.two changed this since you opened it")
    expect(alert).to_contain_text("add field project.site_phone (phone)")
    expect(mine.get_by_label(LABEL_EN)).to_have_value("Contact email")             # the entries kept
    mine.get_by_role("button", name="Save field").click()                          # saved over their version
    expect(mine.get_by_role("status").first).to_contain_text("Saved in the draft.")
    names = [f["name"] for f in api.get("/_meta/draft").json()["snapshot"]["objects"][-1]["fields"]]
    assert "site_phone" in names and "contact_email" in names
    first.close()
    second.close()


def test_the_designer_in_chinese(browser, server, project):
    context = browser.new_context(locale="zh-CN")
    page = context.new_page()
    sign_in_as(page, server, "admin", password(server),
               label_user="用户名", label_password="密码", button="登录")
    page.get_by_role("link", name="设计器").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("设计器")
    page.locator("#main").get_by_role("link", name="项目").click()
    expect(page.get_by_role("heading", name="字段")).to_be_visible()
    expect(page.get_by_role("heading", name="校验规则")).to_be_visible()
    page.get_by_role("link", name="新规则").click()
    check = page.get_by_label("检查条件", exact=True)
    check.press_sequentially("budgt > 0")
    expect(page.locator("#err-check")).to_contain_text("第 1 行，第 1 列")
    expect(page.locator("#err-check")).to_contain_text("没有这个字段或名称")
    context.close()


def test_stages_are_edited_with_a_live_path_preview(browser, server, api):
    context = browser.new_context(locale="en-US")
    page = context.new_page()
    sign_in(page, server)
    page.goto(f"{server.url}/designer/objects/opportunity/fields/stage")
    preview = page.locator("[data-path-preview] li")
    count = preview.count()
    assert count >= 5
    page.get_by_role("button", name="Add stage").click()
    expect(preview).to_have_count(count + 1)
    new = page.locator("[data-stage]").last
    new.get_by_label("Value").fill("legal_review")
    new.get_by_label("Stage label (English)").fill("Legal review")
    expect(preview.last).to_have_text("Legal review")
    new.get_by_label("Stage label (English)").press("Tab")
    new.locator("details.stage-more").evaluate("d => { d.open = true; }")
    new.get_by_role("button", name="Add a criterion").first.click()
    check = new.locator("textarea[name$='-exit-0-check']")
    check.press_sequentially("amout > 0")
    expect(new.locator(".expr-problem").first).to_contain_text("unknown field 'amout'")
    check.fill("amount > 0")
    expect(new.locator(".expr-problem").first).to_have_text("")
    up = new.get_by_role("button", name="Move up").element_handle()  # keyboard-usable ordering: before won and lost
    up.click()
    up.click()
    expect(preview.nth(count - 2)).to_have_text("Legal review")
    page.get_by_role("button", name="Save field").click()
    expect(page.get_by_role("status").first).to_contain_text("Saved in the draft.")
    stages = next(f for f in api.get("/_meta/draft").json()["snapshot"]["objects"] if f["name"] == "opportunity")
    stage = next(f for f in stages["fields"] if f["name"] == "stage")
    values = [s["value"] for s in stage["stages"]]
    assert values.index("legal_review") == count - 2
    assert stage["stages"][count - 2]["exit_criteria"] == [{"check": "amount > 0"}]
    page.goto(f"{server.url}/designer/plan")
    page.get_by_role("button", name="Discard the draft").click()
    context.close()


def test_the_exported_bundle_passes_pack_validate(browser, server, tmp_path):
    import subprocess
    import zipfile

    from support import LOOM

    context = browser.new_context(locale="en-US", accept_downloads=True)
    page = context.new_page()
    sign_in(page, server)
    page.goto(f"{server.url}/designer/bundles")
    with page.expect_download() as download:
        page.get_by_role("link", name="Download with my changes (zip)").first.click()
    path = tmp_path / "crm.zip"
    download.value.save_as(path)
    with zipfile.ZipFile(path) as archive:
        archive.extractall(tmp_path / "out")
    checked = subprocess.run([LOOM, "pack", "validate", str(tmp_path / "out" / "crm")], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    context.close()


def test_layouts_by_drag_and_by_keyboard_with_a_preview(browser, server, api):
    context = browser.new_context(locale="en-US", viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    sign_in(page, server)
    page.goto(f"{server.url}/designer/objects/opportunity")
    page.get_by_role("link", name="Layouts").click()
    columns = page.locator('[data-area="list"] .layout-items')
    pool = page.locator('[data-area="list-pool"] .layout-items')
    before = columns.locator(".layout-item").count()
    # by keyboard: the Notes field leaves the form, Budget goes up one
    notes = page.locator('[data-area^="form:"] .layout-item[data-field="description"]')
    notes.get_by_role("button", name="Move Notes to the other list").click()
    expect(page.locator('[data-area="form-pool"] .layout-item[data-field="description"]')).to_have_count(1)
    # by drag: a pool field into the list's columns
    dragged = pool.locator(".layout-item").first
    name = dragged.get_attribute("data-field")
    dragged.locator(".drag-handle").drag_to(columns.locator(".layout-item").first)
    expect(columns.locator(".layout-item")).to_have_count(before + 1)
    page.get_by_role("button", name="Save layout").click()
    expect(page.get_by_role("status").first).to_contain_text("Saved in the draft.")
    opportunity = next(o for o in api.get("/_meta/draft").json()["snapshot"]["objects"] if o["name"] == "opportunity")
    assert all("description" not in s["fields"] for s in opportunity["layouts"]["form"])
    assert name in opportunity["layouts"]["list"]["columns"]
    expect(page.frame_locator("iframe.desktop").locator("h1")).not_to_be_empty()
    expect(page.frame_locator("iframe.phone").locator("dt", has_text="Notes")).to_have_count(0)
    page.goto(f"{server.url}/designer/plan")
    page.get_by_role("button", name="Discard the draft").click()
    context.close()


def test_a_workflow_is_built_in_the_browser(browser, server, api):
    context = browser.new_context(locale="en-US")
    page = context.new_page()
    sign_in(page, server)
    page.goto(f"{server.url}/designer/workflows")
    page.get_by_label("New workflow on").select_option("opportunity")
    page.get_by_role("button", name="New workflow").click()
    page.get_by_label(LABEL_EN).fill("Big deal review")
    expect(page.get_by_label(re.compile("^Name"))).to_have_value("big_deal_review")
    page.get_by_label("Trigger").select_option("update")
    expect(page.get_by_label("Only when one of these fields changes")).to_be_visible()
    page.get_by_label("Only when one of these fields changes").select_option(["amount"])
    condition = page.get_by_label("Only if (optional)")
    condition.press_sequentially("amout > 100000")
    expect(page.locator("#err-condition")).to_contain_text("unknown field 'amout'")
    condition.fill("amount > 100000")
    expect(page.locator("#err-condition")).to_have_text("")
    page.get_by_label("Message (English)").fill("A big deal needs a review.")
    page.get_by_label("Add an action").select_option("create")
    page.get_by_role("button", name="Add", exact=True).click()
    block = page.locator("[data-action]").last
    block.get_by_label("Object").select_option("task")
    block.get_by_role("button", name="Add a value").click()
    block.get_by_label("Field").fill("subject")
    block.get_by_label("Value (expression)").fill("concat('Review ', name)")
    block.get_by_role("button", name="Move up").click()
    page.get_by_label("Active").check()
    page.get_by_role("button", name="Save workflow").click()
    # the check names what is missing, by its place in the workflow
    expect(page.get_by_role("alert")).to_contain_text("actions[0].values: the required field 'due_date' of 'task' gets no value")
    block = page.locator("[data-action]").first
    block.get_by_role("button", name="Add a value").click()
    block.get_by_label("Field").last.fill("due_date")
    block.get_by_label("Value (expression)").last.fill("add_days(today(), 1)")
    page.get_by_label("Active").check()
    page.get_by_role("button", name="Save workflow").click()
    expect(page.get_by_role("status").first).to_contain_text("Saved in the draft.")
    flow = next(w for w in api.get("/_meta/draft").json()["snapshot"]["workflows"] if w["name"] == "big_deal_review")
    assert flow["trigger"] == {"on": "update", "fields": ["amount"]} and flow["condition"] == "amount > 100000"
    assert [a["type"] for a in flow["actions"]] == ["create", "notify"]
    assert flow["actions"][0]["values"] == {"subject": "concat('Review ', name)", "due_date": "add_days(today(), 1)"}
    page.goto(f"{server.url}/designer/plan")
    page.get_by_role("button", name="Discard the draft").click()
    context.close()
