"""Regenerate the README's screenshots of the generated pages:

    .venv/bin/python tests/browser/screenshots.py [OUT-DIR]   (default docs/screenshots)

Starts `loom serve` on an empty database (the crm and service packs and their sample data),
signs in as the admin and captures the list, a record page, the board, a
phone form, a service ticket, the home dashboard, the report builder and
the designer (a rule being typed, the plan of a change) in Debian's
chromium."""

import re
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from playwright.sync_api import sync_playwright  # noqa: E402

from browser.conftest import CHROMIUM, CHROMIUM_FLAGS  # noqa: E402
from support import start_server, stop_server  # noqa: E402


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        server = start_server(Path(tmp) / "data")
        try:
            password = re.search(r"password:\s+(\S+)", server.banner).group(1)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
                page = browser.new_page(viewport={"width": 1360, "height": 860}, locale="en-US")
                page.goto(f"{server.url}/login")
                page.get_by_label("User name").fill("admin")
                page.get_by_label("Password").fill(password)
                page.get_by_role("button", name="Sign in").click()
                page.wait_for_url(f"{server.url}/")
                page.goto(f"{server.url}/app/opportunity")
                page.screenshot(path=str(out / "opportunities-list.png"))
                page.get_by_role("link", name="云帆电商 自营仓扫码出入库升级").click()
                page.wait_for_load_state("networkidle")
                page.screenshot(path=str(out / "opportunity-record.png"))
                page.goto(f"{server.url}/app/account")
                page.get_by_role("link", name="苏州恒达精密机械有限公司").first.click()
                page.wait_for_load_state("networkidle")
                page.screenshot(path=str(out / "account-360.png"))
                page.goto(f"{server.url}/locale/zh-CN?next=/app/opportunity/board")
                page.wait_for_load_state("networkidle")
                page.screenshot(path=str(out / "pipeline-board-zh.png"))
                phone = browser.new_page(viewport={"width": 375, "height": 740}, locale="zh-CN")
                phone.context.add_cookies(page.context.cookies())
                phone.goto(f"{server.url}/app/lead/new")
                phone.screenshot(path=str(out / "lead-form-phone-zh.png"))
                page.request.post(f"{server.url}/f/web_to_case", form={
                    "subject": "天猫订单同步失败，今天的订单没有进 ERP", "customer_email": "chen.lei@example.com",
                    "category": "technical_issue", "product": "云帆 ERP 标准版",
                    "description": "从上午 10 点起天猫新订单没有同步，仓库无法发货。"})
                page.goto(f"{server.url}/locale/zh-CN?next=/app/ticket")
                page.get_by_role("row", name=re.compile("今天的订单没有进 ERP")).get_by_role("link").first.click()
                page.wait_for_load_state("networkidle")
                page.screenshot(path=str(out / "ticket-record-zh.png"))
                page.goto(f"{server.url}/locale/zh-CN?next=/")
                reports(page, server.url, out)
                page.goto(f"{server.url}/locale/en?next=/designer")
                designer(page, server.url, out)
                browser.close()
        finally:
            stop_server(server)


def reports(page, url: str, out: Path) -> None:
    """The home dashboard in Chinese, and the report builder in English
    with a field dragged into the rows."""
    page.set_viewport_size({"width": 1360, "height": 1100})
    page.goto(f"{url}/")
    page.wait_for_selector(".chart svg")
    page.wait_for_timeout(800)   # the charts' entry animation
    page.screenshot(path=str(out / "dashboard-zh.png"))
    page.goto(f"{url}/locale/en?next=/app/_reports/new?object=opportunity")
    page.locator('#palette .palette-item[data-path="stage"]').drag_to(page.locator("#rows"))
    page.locator('#palette .palette-item[data-path="close_date"]').drag_to(page.locator("#columns"))
    page.locator('#columns select').select_option("quarter")
    page.wait_for_selector("#preview .chart svg")
    page.wait_for_timeout(800)
    page.screenshot(path=str(out / "report-builder.png"), full_page=True)


def designer(page, url: str, out: Path) -> None:
    """The designer: a rule typed with a typo and the suggestions, and the
    plan of a rename and a conversion."""
    page.set_viewport_size({"width": 1360, "height": 1000})
    page.goto(f"{url}/designer/objects/opportunity/rules/new")
    page.get_by_label("Name", exact=False).first.fill("close_date_set")
    check = page.get_by_label("Check", exact=True)
    check.press_sequentially("amount > 0 and clos")
    page.wait_for_selector("#complete-check li")
    page.wait_for_timeout(300)
    page.screenshot(path=str(out / "designer-rule.png"))
    for field, changes in (("competitor", {"name": "competitors"}), ("next_step", {"type": "decimal"})):
        page.goto(f"{url}/designer/objects/opportunity/fields/{field}")
        for name, value in changes.items():
            control = page.locator(f'[name="{name}"]')
            if name == "type":
                control.select_option(value)
            else:
                control.fill(value)
        page.get_by_role("button", name="Save field").click()
        page.wait_for_load_state("networkidle")
    page.goto(f"{url}/designer/plan")
    page.screenshot(path=str(out / "designer-plan.png"), full_page=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE.parent.parent / "docs" / "screenshots")
