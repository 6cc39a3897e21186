import re

from playwright.sync_api import expect


def _admin_password(server) -> str:
    return re.search(r"password:\s+(\S+)", server.banner).group(1)


def test_admin_signs_in_switches_to_chinese_and_signs_out(live_server, page):
    page.goto(f"{live_server.url}/")
    expect(page).to_have_url(re.compile(r"/login"))
    page.get_by_label("User name").fill("admin")
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("Wrong user name or password")

    page.get_by_label("Password").fill(_admin_password(live_server))
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Welcome")

    page.get_by_role("link", name="简体中文").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("欢迎")
    page.get_by_role("button", name="退出登录").click()
    expect(page).to_have_url(re.compile(r"/login"))
    expect(page.get_by_role("button", name="登录")).to_be_visible()


def test_login_page_is_usable_on_a_phone(live_server, browser, tmp_path):
    context = browser.new_context(viewport={"width": 375, "height": 740}, locale="zh-CN")
    page = context.new_page()
    page.goto(f"{live_server.url}/login")
    button = page.get_by_role("button", name="登录")
    box = button.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= 375
    page.screenshot(path=str(tmp_path / "login-phone.png"))
    page.get_by_label("用户名").fill("admin")
    page.get_by_label("密码").fill(_admin_password(live_server))
    button.click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("欢迎")
    context.close()
