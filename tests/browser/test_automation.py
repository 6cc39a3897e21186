"""Automation in Debian's chromium on a real `loom serve` (embedded mode):
a shipped workflow's notification arrives in a rep's bell, and an admin
follows it in the run log and on the record's timeline."""

import re
import subprocess
import time
from datetime import date, datetime, timedelta, timezone

import httpx
from playwright.sync_api import expect

from support import LOOM
from test_forms import password, sign_in


def sign_in_as(page, server, username, secret, *, label_user="User name", label_password="Password", button="Sign in"):
    page.goto(f"{server.url}/login")
    page.get_by_label(label_user).fill(username)
    page.get_by_label(label_password).fill(secret)
    page.get_by_role("button", name=button).click()


def test_a_reminder_reaches_a_reps_bell_and_the_admin_sees_the_run(browser, server, api):
    made = api.post("/_admin/users", json={"username": "rep.li", "password": "a long password", "role": "user",
                                           "display_name": "李娜", "locale": "zh-CN"})
    assert made.status_code == 201, made.text
    rep = made.json()
    task = api.post("/task", json={"subject": "回访恒达采购经理", "due_date": date.today().isoformat(), "priority": "high",
                                   "status": "not_started", "owner": rep["id"],
                                   "reminder_at": (datetime.now(timezone.utc) + timedelta(seconds=3)).isoformat()})
    assert task.status_code == 201, task.text
    task = task.json()
    token = subprocess.run([LOOM, "token", "create", "rep.li"], env=server.env, capture_output=True, text=True,
                           check=True).stdout.strip()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        mine = httpx.get(f"{server.url}/api/v1/_me/notifications", headers={"Authorization": f"Bearer {token}"}).json()["data"]
        if mine:
            break
        time.sleep(0.3)
    assert [n["message"] for n in mine] == ["提醒：您有一项任务即将到期。"]

    # the rep, in Chinese, on a phone: the bell says 1, the list shows it, reading it clears the bell
    context = browser.new_context(viewport={"width": 375, "height": 740}, locale="zh-CN")
    page = context.new_page()
    sign_in_as(page, server, "rep.li", "a long password", label_user="用户名", label_password="密码", button="登录")
    bell = page.get_by_role("link", name=re.compile("^通知"))
    expect(bell).to_have_accessible_name("通知: 1 条未读")
    expect(bell.locator(".badge")).to_have_text("1")
    bell.click()
    expect(page.get_by_role("heading", level=1)).to_have_text("通知")
    item = page.locator(".notifications li.unread")
    expect(item).to_contain_text("提醒：您有一项任务即将到期。")
    item.get_by_role("link", name=re.compile("打开")).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("回访恒达采购经理")
    page.go_back()
    page.get_by_role("button", name="标为已读", exact=True).click()
    expect(page.locator(".notifications li.unread")).to_have_count(0)
    expect(page.get_by_role("link", name="通知")).to_be_visible()
    expect(page.locator(".bell .badge")).to_have_count(0)
    context.close()

    # the admin: the run log, and the run on the task's timeline
    page = browser.new_context(locale="en-US").new_page()
    sign_in(page, server)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Automation").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Automation run log")
    row = page.locator(f'tr[data-run]').filter(has_text="task_reminder").first
    expect(row).to_contain_text("Done")
    expect(row).to_contain_text("a notification")
    page.goto(f"{server.url}/app/task/{task['id']}")
    entry = page.locator(".timeline li.t-automation").first
    expect(entry).to_contain_text("task_reminder")
    expect(entry).to_contain_text("sent a notification")
    assert password(server)
