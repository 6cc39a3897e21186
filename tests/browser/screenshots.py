"""Regenerate the README's screenshots of the generated pages:

    .venv/bin/python tests/browser/screenshots.py [OUT-DIR]   (default docs/screenshots)

Starts `loom serve` on an empty database (the crm pack and its sample data),
signs in as the admin and captures the list, a record page and the board
in Debian's chromium."""

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
                page.screenshot(path=str(out / "list.png"))
                page.get_by_role("link", name="云帆电商 自营仓扫码出入库升级").click()
                page.wait_for_load_state("networkidle")
                page.screenshot(path=str(out / "record.png"))
                page.goto(f"{server.url}/app/account")
                page.get_by_role("link", name="苏州恒达精密机械有限公司").first.click()
                page.wait_for_load_state("networkidle")
                page.screenshot(path=str(out / "account.png"))
                page.goto(f"{server.url}/locale/zh-CN?next=/app/opportunity/board")
                page.wait_for_load_state("networkidle")
                page.screenshot(path=str(out / "board-zh.png"))
                phone = browser.new_page(viewport={"width": 375, "height": 740}, locale="zh-CN")
                phone.context.add_cookies(page.context.cookies())
                phone.goto(f"{server.url}/app/lead/new")
                phone.screenshot(path=str(out / "form-phone-zh.png"))
                browser.close()
        finally:
            stop_server(server)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE.parent.parent / "docs" / "screenshots")
