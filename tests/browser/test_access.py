"""Who sees what, in Debian's chromium on a real `loom serve`: the admin
builds departments and users in the browser with the crm pack's roles; a
rep then sees only their own leads in the list, on the board and in
search, their manager sees the team's, a service agent sees no contract
value anywhere, and the admin reads why a user sees a record."""

import re

import pytest
from playwright.sync_api import expect

from test_automation import sign_in_as
from test_forms import sign_in

AMOUNT = 7654321          # a deal value no page may show the agent
SHOWN_AMOUNT = "7,654,321"


@pytest.fixture(scope="module")
def company(browser, server, api):
    """Departments and people made by the admin in the browser; leads and a
    deal owned by them, made through the API."""
    context = browser.new_context(locale="en-US")
    page = context.new_page()
    sign_in(page, server)
    page.get_by_role("link", name="Administration").click()
    page.get_by_role("link", name="Departments").click()
    form = page.locator("section.admin-create")
    for name, label, parent in [("sales", "Sales", ""), ("east", "East", "Sales")]:
        form.get_by_label("Name").fill(name)
        form.get_by_label("Label").fill(label)
        if parent:
            form.get_by_label("Parent department").select_option(label=parent)
        form.get_by_role("button", name="Create department").click()
        expect(page.get_by_role("status")).to_have_text("Created.")
    expect(page.locator('[data-department="east"][data-level="2"]')).to_be_visible()

    page.get_by_role("link", name="Users").click()
    for username, name, role, department in [("wang", "Wang Fang", "Sales rep", "east"), ("zhao", "Zhao Lei", "Sales rep", "east"),
                                             ("chen", "Chen Jie", "Sales manager", "sales"), ("liu", "Liu Yang", "Service agent", "")]:
        page.get_by_text("New user").click()
        page.get_by_label("User name").fill(username)
        page.get_by_label("Display name").fill(name)
        page.get_by_label("Role").select_option(label=role)
        if department:
            page.get_by_label("Department").select_option(value=department)
        page.get_by_label("Password").fill(f"{username} password")
        page.get_by_role("button", name="Create user").click()
        expect(page.get_by_role("status")).to_have_text("Created.")
        expect(page.get_by_role("heading", level=2)).to_contain_text(name)
        page.get_by_role("link", name="Users", exact=True).first.click()
    expect(page.locator("tr[data-user]")).to_have_count(5)
    context.close()

    people = {u["username"]: u for u in api.get("/_admin/users").json()["data"]}
    assert people["chen"]["department"] == "sales" and people["wang"]["role"] == "sales_rep"
    for owner in ("wang", "zhao"):
        for i in range(2):
            made = api.post("/lead", json={"name": f"{owner.title()} lead {i}", "source": "trade_show", "status": "new",
                                           "email": f"{owner}{i}@example.com", "owner": people[owner]["id"]})
            assert made.status_code == 201, made.text
    account = api.get("/account", params={"limit": 1}).json()["data"][0]
    deal = api.post("/opportunity", json={"name": "Wang big deal", "account": account["id"], "stage": "initial_contact",
                                          "close_date": "2027-03-31", "amount": AMOUNT, "owner": people["wang"]["id"]})
    assert deal.status_code == 201, deal.text
    zhao_lead = api.get("/lead", params={"filter": "name == 'Zhao lead 0'"}).json()["data"][0]["id"]
    return {"people": people, "deal": deal.json(), "zhao_lead": zhao_lead}


def as_user(browser, server, username):
    context = browser.new_context(locale="en-US")
    page = context.new_page()
    sign_in_as(page, server, username, f"{username} password")
    expect(page.get_by_role("heading", level=1)).to_contain_text("Welcome")
    return context, page


def test_a_rep_sees_only_their_own_leads_everywhere(browser, server, company):
    context, page = as_user(browser, server, "wang")
    page.goto(f"{server.url}/app/lead")
    rows = page.locator("table.records tbody tr")
    expect(rows).to_have_count(2)
    expect(page.locator("table.records")).to_contain_text("Wang lead 0")
    expect(page.locator("table.records")).not_to_contain_text("Zhao lead")
    page.goto(f"{server.url}/app/lead/board")
    expect(page.locator(".card-item")).to_have_count(2)
    expect(page.locator(".board")).not_to_contain_text("Zhao lead")
    page.get_by_label("Search all records").fill("lead")
    page.get_by_label("Search all records").press("Enter")
    expect(page.locator("main")).to_contain_text("Wang lead 1")
    expect(page.locator("main")).not_to_contain_text("Zhao lead")
    # a colleague's lead, typed into the address bar, does not exist for them
    page.goto(f"{server.url}/app/lead/{company['zhao_lead']}")
    expect(page.locator("main")).to_contain_text("does not exist")
    expect(page.locator("main")).not_to_contain_text("Zhao lead")
    context.close()


def test_a_manager_sees_the_teams_leads(browser, server, company):
    context, page = as_user(browser, server, "chen")
    page.goto(f"{server.url}/app/lead")
    table = page.locator("table.records")
    for name in ("Wang lead 0", "Wang lead 1", "Zhao lead 0", "Zhao lead 1"):
        expect(table).to_contain_text(name)
    expect(page.locator("table.records tbody tr")).to_have_count(4)
    context.close()


def test_a_service_agent_sees_no_contract_value_anywhere(browser, server, company):
    context, page = as_user(browser, server, "liu")
    deal = company["deal"]
    pages = ["/app/opportunity", "/app/opportunity/board", f"/app/opportunity/{deal['id']}",
             f"/app/account/{deal['account']}", "/app/order", "/app/search?q=Wang+big+deal"]
    for path in pages:
        page.goto(f"{server.url}{path}")
        expect(page.locator("main")).to_be_visible()
        text = page.locator("main").inner_text()
        assert SHOWN_AMOUNT not in text and "7654321" not in text, path
    page.goto(f"{server.url}/app/opportunity/{deal['id']}")
    expect(page.get_by_role("heading", level=1)).to_have_text("Wang big deal")
    expect(page.locator(".record-main")).not_to_contain_text("Amount")
    page.goto(f"{server.url}/app/opportunity")
    expect(page.get_by_role("columnheader", name="Amount")).to_have_count(0)
    # a filter on the hidden field is an unknown field, as for a field that does not exist
    page.goto(f"{server.url}/app/opportunity?filter=amount+%3E+1")
    expect(page.locator("main")).to_contain_text("amount")
    assert SHOWN_AMOUNT not in page.locator("main").inner_text()
    context.close()


def test_the_admin_reads_why_a_user_sees_a_record(browser, server, company):
    context = browser.new_context(locale="en-US")
    page = context.new_page()
    sign_in(page, server)
    page.goto(f"{server.url}/app/opportunity/{company['deal']['id']}")
    page.get_by_text("Why can this user see this record?").click()
    page.get_by_label("User", exact=True).select_option(label="Chen Jie")
    page.get_by_role("button", name="Explain").click()
    answer = page.locator("#why-answer")
    expect(answer).to_contain_text("Read: Yes")
    expect(answer).to_contain_text("its owner wang is in East, below the user's department Sales")
    expect(answer).to_contain_text("Role Sales manager: reads the department's records and those below it")
    page.get_by_label("User", exact=True).select_option(label="Zhao Lei")
    page.get_by_role("button", name="Explain").click()
    expect(answer).to_contain_text("Read: No")
    expect(answer).to_contain_text("Nothing gives zhao this record")
    context.close()
