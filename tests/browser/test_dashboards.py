"""Reports and dashboards in Debian's chromium on a real `loom serve` with
the crm pack: the admin's home is the sales dashboard with its charts
drawn, in English and Chinese; a report is built by dragging a field into
the rows, previewed, saved and put on a new dashboard; a bar of its chart
and a row of its table open exactly the records they count."""

import re
from urllib.parse import parse_qs, urlsplit

from playwright.sync_api import expect

from test_forms import sign_in


def test_the_home_page_is_the_sales_dashboard_in_both_languages(page, server):
    sign_in(page, server)
    expect(page.get_by_role("heading", name="Sales overview")).to_be_visible()
    expect(page.locator(".dashboard-grid .widget")).to_have_count(6)
    expect(page.locator(".dashboard-grid .chart svg")).to_have_count(5)
    expect(page.locator(".big-number")).to_contain_text("¥")
    page.goto(f"{server.url}/locale/zh-CN?next=/")
    expect(page.get_by_role("heading", name="销售总览")).to_be_visible()
    expect(page.get_by_role("link", name="按阶段的销售管道")).to_be_visible()
    expect(page.locator(".dashboard-grid .chart svg")).to_have_count(5)
    page.goto(f"{server.url}/locale/en?next=/")


def _bar_point(page, index: int) -> dict:
    """The page position of the middle of bar `index` of the first chart."""
    return page.evaluate("""(index) => {
        const el = document.querySelector('.chart');
        const chart = echarts.getInstanceByDom(el);
        const series = chart.getOption().series[0];
        const [x, y] = chart.convertToPixel({seriesIndex: 0}, [index, series.data[index] / 2]);
        const box = el.getBoundingClientRect();
        return {x: box.left + x, y: box.top + y};
    }""", index)


def test_a_report_is_built_saved_put_on_a_dashboard_and_drilled_into(page, server, api):
    sign_in(page, server)
    page.get_by_role("link", name="Reports", exact=True).click()
    page.get_by_role("link", name="New report").click()
    page.get_by_label("Records", exact=True).select_option(label="Opportunities")
    page.locator('#palette .palette-item[data-path="stage"]').drag_to(page.locator("#rows"))
    expect(page.locator("#rows .zone-item")).to_have_count(1)
    expect(page.locator("#preview .chart svg")).to_be_visible()
    expect(page.locator("#preview .report-table tbody tr").first).to_be_attached()
    page.get_by_label("Title", exact=True).fill("Deals by stage")
    page.get_by_label("Name (for links and the API)").fill("deals_by_stage")
    page.get_by_label("Everyone").check()
    page.get_by_role("button", name="Save report").click()
    page.wait_for_url(re.compile(r"/app/_reports/deals_by_stage$"))
    expect(page.get_by_role("heading", name="Deals by stage", level=1)).to_be_visible()

    # a row of the table opens the records it counts
    counts = {}
    for row in page.locator(".report-table tbody tr").all():
        cells = row.locator("td").all_inner_texts()
        counts[cells[0]] = int(cells[1].replace(",", ""))
    first_label, first_count = next(iter(counts.items()))
    page.locator(".report-table tbody tr").first.get_by_role("link").click()
    page.wait_for_url(re.compile(r"/app/opportunity\?"))
    expect(page.locator("table.records tbody tr")).to_have_count(first_count)

    # onto a new dashboard, where a bar of the chart opens its records
    page.goto(f"{server.url}/app/_reports/deals_by_stage")
    page.get_by_label("Add to dashboard").select_option(label="A new dashboard")
    page.get_by_label("Title of a new dashboard").fill("My board")
    page.get_by_role("button", name="Add", exact=True).click()
    page.wait_for_url(re.compile(r"/app/_dashboards/board_admin_\d+$"))
    expect(page.get_by_role("heading", name="My board")).to_be_visible()
    expect(page.locator(".chart svg")).to_be_visible()
    page.wait_for_function("() => window.echarts && echarts.getInstanceByDom(document.querySelector('.chart'))")
    point = _bar_point(page, 0)
    page.mouse.click(point["x"], point["y"])
    page.wait_for_url(re.compile(r"/app/opportunity\?"))
    expect(page.locator("table.records tbody tr")).to_have_count(first_count)
    # the list says what it shows, in its filter box, and the API agrees
    shown = parse_qs(urlsplit(page.url).query)
    assert "stage ==" in shown["filter"][0]
    expect(page.locator("#list-filter")).to_have_value(shown["filter"][0])
    listed = api.get("/opportunity", params={**{k: v[0] for k, v in shown.items()}, "limit": "500"})
    assert len(listed.json()["data"]) == first_count == counts[first_label]


def test_the_report_builder_filters_with_the_lists_filter_builder(page, server):
    sign_in(page, server)
    page.goto(f"{server.url}/app/_reports/new?object=opportunity")
    page.locator('#palette .palette-item[data-path="stage"] button[data-to="rows"]').click()
    expect(page.locator("#preview .report-table tbody tr").first).to_be_attached()
    page.get_by_text("Build a filter").click()
    row = page.locator(".builder-rows .builder-row").first
    row.get_by_label("Field").select_option(label="Sales stage")
    row.get_by_label("Value").select_option(label="Negotiation")
    page.get_by_role("button", name="Use these conditions").click()
    expect(page.locator("#report-filter")).to_have_value("stage == 'negotiation'")
    expect(page.locator("#preview .report-table tbody tr")).to_have_count(1)
    expect(page.locator("#preview .report-table tbody tr td").first).to_have_text("Negotiation")


def test_the_lists_filter_builder_still_applies_its_conditions(page, server, api):
    sign_in(page, server)
    page.goto(f"{server.url}/app/opportunity")
    page.get_by_text("Build a filter").click()
    row = page.locator(".builder-rows .builder-row").first
    row.get_by_label("Field").select_option(label="Sales stage")
    row.get_by_label("Value").select_option(label="Negotiation")
    page.get_by_role("button", name="Use these conditions").click()
    page.wait_for_url(re.compile(r"filter=stage"))
    expected = len(api.get("/opportunity", params={"stage": "negotiation"}).json()["data"])
    expect(page.locator("table.records tbody tr")).to_have_count(expected)
