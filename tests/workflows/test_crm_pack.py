"""The crm pack's shipped workflows run on its own objects."""

from __future__ import annotations

from datetime import date, datetime, time as dtime, timedelta, timezone
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from loomcrm.platform import auth, systemdb
from loomcrm.platform.db import create_engine
from loomcrm.runtime.commands import pack_install
from loomcrm.workflows import runs
from loomcrm.workflows.engine import Automation

from flows import Clock, make_settings


def test_the_shipped_workflows_follow_up_remind_and_wait_for_real_reps(sqlite_url):
    pack_install(sqlite_url, "crm")
    engine = create_engine(sqlite_url)
    admin = auth.create_user(engine, "admin", "admin", "a long password")
    clock = Clock(datetime.now(timezone.utc))
    automation = Automation(engine, make_settings(sqlite_url), clock=clock)
    records = automation.runtime.records
    while automation.dispatch()[0]:
        pass   # the sample data's own events
    lead = records.create("lead", {"name": "赵雷", "company": "青禾贸易", "email": "zhao.lei@example.com", "source": "website",
                                   "rating": "hot"}, admin)
    records.update("lead", lead["id"], {"status": "qualified"}, admin)
    while automation.dispatch()[0]:
        pass
    while automation.execute_next()[0]:
        pass
    task = automation.runtime.schema().table("task")
    with engine.connect() as conn:
        made = conn.execute(sa.select(task.c.subject, task.c.related_to, task.c.owner, task.c.priority)
                            .where(task.c.related_to == f"lead:{lead['id']}")).all()
        log = runs.listing(conn, record=lead["id"])[0]
    assert [(m.priority, m.owner) for m in made] == [("high", admin.id)]
    assert made[0].subject.startswith("Convert qualified lead 赵雷 (青禾贸易)")
    assert [r["workflow"] for r in log] == ["follow_up_qualified_lead"]   # assign_hot_leads ships inactive
    # an open opportunity gets its reminder a week before its close date, at midnight in LOOM_TIMEZONE
    account = records.create("account", {"name": "提醒测试公司"}, admin)
    close = date.today() + timedelta(days=30)
    deal = records.create("opportunity", {"name": "提醒测试", "account": account["id"], "stage": "initial_contact",
                                          "close_date": close.isoformat()}, admin)
    while automation.dispatch()[0]:
        pass
    with engine.connect() as conn:
        due = conn.execute(sa.select(systemdb.automation_timers.c.due_at)
                           .where(systemdb.automation_timers.c.record_id == deal["id"])).scalar()
    expected = datetime.combine(close - timedelta(days=7), dtime(0), tzinfo=ZoneInfo("Asia/Shanghai"))
    assert due.replace(tzinfo=timezone.utc) == expected
    engine.dispose()
