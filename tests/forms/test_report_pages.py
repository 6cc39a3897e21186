"""The report pages without a browser: the crm pack's dashboards, the
builder's preview and save with broken and hostile input (a precise
message, nothing saved), and who may see and change what."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from loomcrm.platform import directory
from loomcrm.platform.app import create_app
from loomcrm.platform.db import create_engine
from loomcrm.platform.settings import Settings
from loomcrm.runtime.commands import pack_install
from loomcrm.runtime.state import Runtime


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    folder = tmp_path_factory.mktemp("reports")
    url = f"sqlite:///{folder / 'loom.db'}"
    pack_install(url, "crm")
    engine = create_engine(url)
    roles = sorted(Runtime(engine).roles()[1])
    directory.create_department(engine, "east")
    directory.create_user(engine, "boss", "admin", "a long password")
    directory.create_user(engine, "li", "sales_manager", "a long password", roles=roles, department="east")
    directory.create_user(engine, "wang", "sales_rep", "a long password", roles=roles, department="east")
    application = create_app(Settings(data_dir=str(folder), database_url=url), engine)
    yield application
    engine.dispose()


def signed_in(app, username: str) -> TestClient:
    client = TestClient(app)
    page = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    home = client.post("/login", data={"username": username, "password": "a long password", "csrf_token": token,
                                       "next": "/"})
    assert home.status_code == 200
    client.headers["X-CSRF-Token"] = re.search(r"X-CSRF-Token&#34;: &#34;([^&]+)&#34;", home.text).group(1)
    client.home = home.text
    return client


BUILDER = {"object": "opportunity", "row": ["stage"], "row_by": [""], "measure_function": ["count"],
           "measure_field": [""], "chart": "bar"}


def test_each_role_lands_on_its_dashboard(app):
    assert "Sales overview" in signed_in(app, "li").home
    assert "My sales" in signed_in(app, "wang").home
    boss = signed_in(app, "boss")
    assert boss.home.count('class="panel widget"') == 6
    page = boss.get("/app/_dashboards/sales_manager", params={"date_from": "2026-01-01", "date_to": "not a date"})
    assert page.status_code == 200 and 'value="2026-01-01"' in page.text
    assert boss.get("/app/_dashboards/nowhere").status_code == 404
    assert boss.get("/app/_reports/nowhere").status_code == 404


def test_the_preview_names_the_problem_and_nothing_is_saved(app):
    boss = signed_in(app, "boss")
    answer = boss.post("/app/_reports/preview", data=BUILDER | {"filter": "(stage == 'won'\n and amont > 0)"})
    assert answer.status_code == 200 and "amont" in answer.text and "line 2, column 6" in answer.text
    answer = boss.post("/app/_reports/preview", data=BUILDER | {"row": ["amount"], "row_by": ["month"]})
    assert "amount is not a date" in answer.text
    answer = boss.post("/app/_reports/preview", data=BUILDER | {"filter": "x" * 5000})
    assert "filter: String should have at most 4000 characters" in answer.text
    answer = boss.post("/app/_reports/preview", data=BUILDER | {"filter": "__import__('os').system('id')"})
    assert "This report cannot run: filter: only the functions of the expression language can be called" in answer.text
    answer = boss.post("/app/_reports/preview", data=BUILDER | {"object": "<script>"})
    assert "<script>" not in answer.text
    before = boss.get("/api/v1/_reports").json()["data"]
    for data, says in ((BUILDER | {"name": "Bad Name!"}, "lowercase letters, digits and _"),
                       (BUILDER | {"name": "x", "filter": "amont > 1"}, "amont"),
                       (BUILDER | {"name": "x", "measure_function": ["avg"], "measure_field": ["name"]}, "needs a number")):
        answer = boss.post("/app/_reports/save", data=data, headers={"HX-Request": "true"})
        assert answer.status_code == 422 and 'role="alert"' in answer.text and says in answer.text, data
    assert boss.get("/api/v1/_reports").json()["data"] == before


def test_a_rep_cannot_change_what_is_not_theirs(app):
    wang, li = signed_in(app, "wang"), signed_in(app, "li")
    saved = li.post("/app/_reports/save", data=BUILDER | {"name": "li_stages", "share": "everyone"},
                    headers={"HX-Request": "true"})
    assert saved.headers["hx-redirect"] == "/app/_reports/li_stages"
    assert wang.get("/app/_reports/li_stages").status_code == 200
    taken = wang.post("/app/_reports/save", data=BUILDER | {"name": "li_stages"}, headers={"HX-Request": "true"})
    assert taken.status_code == 409 and "belongs to someone else" in taken.text
    pinned = wang.post("/app/_reports/li_stages/pin", data={"dashboard": "sales_manager"}, headers={"HX-Request": "true"})
    assert pinned.status_code == 422
    mine = wang.post("/app/_reports/li_stages/pin", data={"dashboard": "", "title": "Wang's board"},
                     headers={"HX-Request": "true"})
    board = mine.headers["hx-redirect"]
    assert board.startswith("/app/_dashboards/board_wang_")
    assert "Wang&#39;s board" in wang.get(board).text
    assert li.get(board).status_code == 404      # private to wang
    assert "Edit" not in wang.get("/app/_reports/li_stages").text.split("Export Excel")[1].split("New report")[0]


def test_sales_analytics_page(app):
    boss = signed_in(app, "boss")
    page = boss.get("/app/_analytics/opportunity")
    assert page.status_code == 200
    assert "Went on to the next stage" in page.text and "Win rate and cycle length" in page.text
    steps = boss.get("/api/v1/_analytics/opportunity/funnel").json()["steps"]
    for step in steps:
        assert f"<td>{step['label']}</td><td class=\"num\">{step['reached']}</td>" in page.text
    assert boss.get("/app/_analytics/account").status_code == 404       # no stage field
    assert boss.get("/app/_analytics/nothing").status_code == 404
    assert "/app/_analytics/opportunity" in boss.get("/app/_reports").text


def test_targets_are_set_in_the_browser_pages_and_shown_at_home(app):
    boss = signed_in(app, "boss")
    page = boss.get("/app/_targets")
    assert page.status_code == 200 and "Set a target" in page.text
    today = re.search(r'name="on" value="([0-9-]+)"', page.text).group(1)
    answer = boss.post("/app/_targets", data={"report": "new_leads", "holder": "user:wang", "period": "month",
                                              "starts_on": today, "value": "10"})
    assert answer.status_code == 200 and "The target is set." in answer.text
    bad = boss.post("/app/_targets", data={"report": "new_leads", "holder": "user:wang", "period": "month",
                                           "starts_on": today, "value": "ten"})
    assert bad.status_code == 422 and "value: a number" in bad.text
    wang = signed_in(app, "wang")
    assert 'data-report="new_leads"' in wang.home and "/ 10" in wang.home
    assert "Set a target" not in wang.get("/app/_targets").text


def test_win_rates_per_period_on_the_analytics_page(app):
    boss = signed_in(app, "boss")
    page = boss.get("/app/_analytics/opportunity", params={"by": "quarter"})
    assert page.status_code == 200 and '<option value="quarter" selected>' in page.text
    assert "<th scope=\"col\">Period</th>" in page.text
    assert boss.get("/app/_analytics/opportunity", params={"by": "nonsense"}).status_code == 200


def test_two_groups_show_a_subtotal_under_each_block(app):
    boss = signed_in(app, "boss")
    data = BUILDER | {"row": ["stage", "owner"], "row_by": ["", ""], "measure_function": ["count"], "chart": "table"}
    page = boss.post("/app/_reports/preview", data=data).text
    subtotals = re.findall(r'<tr class="subtotal"><td[^>]*><a href="([^"]+)">Subtotal · ([^<]+)</a>', page)
    assert subtotals and all("filter=stage+%3D%3D+" in href for href, _ in subtotals)
    stages = re.findall(r"<tr><td[^>]*><a href=\"[^\"]+\">([^<]+)</a></td><td", page)
    assert {label for _, label in subtotals} == set(stages) - {"Total"}


def test_editing_a_pack_report_keeps_what_the_builder_does_not_show(app):
    boss = signed_in(app, "boss")
    before = next(r for r in boss.get("/api/v1/_reports").json()["data"] if r["name"] == "won_by_owner")
    data = {"object": "opportunity", "name": "won_by_owner", "row": ["owner"], "row_by": [""],
            "measure_function": ["sum", "count"], "measure_field": ["amount", ""], "chart": "bar",
            "filter": before["filter"], "label": "Wins per rep", "share": "everyone", "limit": "10"}
    answer = boss.post("/app/_reports/save", data=data, headers={"HX-Request": "true"})
    assert answer.headers.get("hx-redirect") == "/app/_reports/won_by_owner", answer.text
    after = next(r for r in boss.get("/api/v1/_reports").json()["data"] if r["name"] == "won_by_owner")
    assert [m["name"] for m in after["measures"]] == ["won", "deals"]
    assert after["measures"][0]["label"]["zh-CN"] == "赢单金额"
    assert after["label"] == {"en": "Wins per rep", "zh-CN": "各销售的赢单"}
    assert after["sort"] == ["-won"] and after["chart"]["y"] == "won"


def test_a_field_in_the_columns_makes_a_cross_table(app):
    boss = signed_in(app, "boss")
    data = BUILDER | {"row": ["stage"], "row_by": [""], "column": ["opportunity_type"], "column_by": [""],
                      "measure_function": ["count"], "measure_field": [""]}
    page = boss.post("/app/_reports/preview", data=data).text
    assert 'class="records report-table pivot"' in page
    header = re.search(r"<table class=\"records report-table pivot\">\s*<thead><tr>(.*?)</tr>", page, re.S).group(1)
    assert header.count("<th") >= 3 and "Total" in header
    rows = re.findall(r'<tr><th scope="row">([^<]+)</th>(.*?)</tr>', page, re.S)
    assert rows and rows[-1][0] == "Total"
    counts = sum(int(n) for _, cells in rows[:-1] for n in re.findall(r'<a href="[^"]+">(\d+)</a>', cells))
    assert str(counts) in rows[-1][1]      # the cells add up to the total


def test_saving_names_the_report_from_its_title_and_labels_it_in_both_languages(app):
    boss = signed_in(app, "boss")
    data = BUILDER | {"label": "Deals per Stage!", "measure_function": ["sum"], "measure_field": ["amount"],
                      "share": "everyone"}
    answer = boss.post("/app/_reports/save", data=data, headers={"HX-Request": "true"})
    assert answer.headers["hx-redirect"] == "/app/_reports/deals_per_stage_1"
    saved = next(r for r in boss.get("/api/v1/_reports").json()["data"] if r["name"] == "deals_per_stage_1")
    assert saved["measures"][0]["label"] == {"en": "Sum · Amount", "zh-CN": "求和 · 金额"}
    # on a dashboard once; taken off again; then deleted
    pinned = boss.post("/app/_reports/deals_per_stage_1/pin", data={"dashboard": "", "title": "Board"},
                       headers={"HX-Request": "true"})
    board = pinned.headers["hx-redirect"].rsplit("/", 1)[1]
    again = boss.post("/app/_reports/deals_per_stage_1/pin", data={"dashboard": board}, headers={"HX-Request": "true"})
    assert again.status_code == 422 and "already" in again.text
    assert boss.post("/app/_reports/deals_per_stage_1/delete", headers={"HX-Request": "true"}).status_code == 409
    gone = boss.post(f"/app/_dashboards/{board}/widgets/0/remove", headers={"HX-Request": "true"})
    assert gone.headers["hx-redirect"] == "/app/_reports"          # its last report: the dashboard goes too
    assert boss.get(f"/app/_dashboards/{board}").status_code == 404
    deleted = boss.post("/app/_reports/deals_per_stage_1/delete", headers={"HX-Request": "true"})
    assert deleted.headers["hx-redirect"] == "/app/_reports"
    assert boss.get("/app/_reports/deals_per_stage_1").status_code == 404


def test_a_chinese_page_says_a_reports_problem_in_chinese(app):
    boss = signed_in(app, "boss")
    boss.get("/locale/zh-CN", params={"next": "/"})
    page = boss.post("/app/_reports/preview", data=BUILDER | {"filter": "(stage == 'won'\n and amont > 0)"}).text
    assert "此报表无法运行：第 2 行，第 6 列： 没有这个字段：amont" in page
    page = boss.post("/app/_reports/preview", data=BUILDER | {"row": ["amount"], "row_by": ["month"]}).text
    assert "与字段类型不符" in page
    boss.get("/locale/en", params={"next": "/"})
