"""The service pack installed beside crm: tickets routed to queues and
handed out in turn inside each queue's team, stamped by its workflows,
escalated to the queue's manager by the SLA sweep on a shifted clock;
uninstalled and installed again without touching crm's data; the
support-tickets data set imported into it."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

from loomcrm.platform import directory, systemdb
from loomcrm.platform.db import create_engine
from loomcrm.platform.settings import Settings
from loomcrm.runtime.importer import import_file
from loomcrm.runtime.install import BundleError, install_bundle, uninstall_bundle
from loomcrm.runtime.records import Actor, Invalid
from loomcrm.workflows.engine import Automation

ADMIN = Actor(None, "admin")
TICKETS = Path(__file__).resolve().parents[3] / "shared" / "data" / "support-tickets" / "customer_support_tickets.csv"


class Clock:
    def __init__(self):
        self.at = datetime.now(timezone.utc)

    def __call__(self):
        return self.at


@pytest.fixture
def desk(database_url):
    engine = create_engine(database_url)
    systemdb.upgrade(engine)
    install_bundle(engine, "crm")
    install_bundle(engine, "service")
    roles = ["support_agent", "support_manager"]
    for team in ("support_tech", "support_billing"):
        directory.create_department(engine, team)
    people = {name: directory.create_user(engine, name, role, "a long password", roles=roles, department=team,
                                          email=f"{name}@example.com", locale=locale)
              for name, role, team, locale in (("li", "support_agent", "support_tech", "zh-CN"),
                                               ("wang", "support_agent", "support_tech", "zh-CN"),
                                               ("zhao", "support_agent", "support_billing", "en"),
                                               ("boss", "support_manager", None, "zh-CN"))}
    clock = Clock()
    automation = Automation(engine, Settings(database_url=database_url, timezone="Asia/Shanghai"), clock=clock)
    automation.runtime.refresh_interval = 0
    table = automation.runtime.schema().table("queue")
    with engine.begin() as conn:
        conn.execute(sa.update(table).values(manager=people["boss"].id))
    yield automation, clock, people
    engine.dispose()


def drain(automation):
    for _ in range(20):
        moved = automation.dispatch()[0]
        while automation.execute_next()[0] is not None:
            pass
        if not moved:
            return
    raise AssertionError("automation did not settle")


def _account(runtime, name):
    table = runtime.schema().table("account")
    with runtime.engine.connect() as conn:
        return conn.execute(sa.select(table.c.id).where(table.c.name == name)).scalar_one()


def _queue_names(runtime):
    table = runtime.schema().table("queue")
    with runtime.engine.connect() as conn:
        return dict(conn.execute(sa.select(table.c.id, table.c.name)).all())


def test_tickets_are_routed_handed_out_in_turn_and_stamped(desk):
    automation, clock, people = desk
    runtime = automation.runtime
    records = runtime.records
    yunfan = _account(runtime, "杭州云帆电子商务有限公司")
    made = [records.create("ticket", {"subject": f"Printer {i}", "account": yunfan, "category": category,
                                      "priority": "high", "channel": "phone"}, ADMIN)
            for i, category in enumerate(["technical_issue", "product_inquiry", "technical_issue", "technical_issue",
                                          "refund_request", "billing_inquiry"])]
    drain(automation)
    queues = _queue_names(runtime)
    tickets = [records.get("ticket", t["id"], ADMIN) for t in made]
    assert [queues[t["queue"]] for t in tickets] == ["技术支持"] * 4 + ["账务与退款"] * 2
    ids = {p.id: name for name, p in people.items()}
    # in turn inside each queue's team (runs may finish in any order)
    assert Counter(ids[t["owner"]] for t in tickets[:4]) == {"li": 2, "wang": 2}
    assert [ids[t["owner"]] for t in tickets[4:]] == ["zhao", "zhao"]
    assert tickets[0]["ticket_no"].startswith("TK-")
    assert tickets[0]["first_response_due"] is not None and tickets[0]["region"] == "east"

    # the agent answers: the first response is stamped, its clock stops
    li = people[ids[tickets[0]["owner"]]]         # the agent it went to
    records.update("ticket", made[0]["id"], {"status": "open"}, li)
    drain(automation)
    ticket = records.get("ticket", made[0]["id"], ADMIN)
    assert ticket["first_response_at"] is not None
    # resolving needs a resolution (the stage's entry criterion)
    with pytest.raises(Invalid) as refused:
        records.update("ticket", made[0]["id"], {"status": "resolved"}, li)
    assert refused.value.errors[0]["field"] == "resolution"
    records.update("ticket", made[0]["id"], {"status": "resolved", "resolution": "Replaced the fuser",
                                              "first_contact_resolution": True, "csat": 5, "nps": 9}, li)
    drain(automation)
    ticket = records.get("ticket", made[0]["id"], ADMIN)
    assert ticket["resolved_at"] is not None and ticket["nps_points"] == 100 and ticket["fcr_points"] == 100


def _clock(runtime, ticket_id, sla):
    from loomcrm.runtime.slas import clocks_json

    schema = runtime.schema()
    with runtime.engine.connect() as conn:
        return next(c for c in clocks_json(conn, schema, schema.object("ticket"), ticket_id) if c["sla"] == sla)


def test_a_late_ticket_is_escalated_to_its_queues_manager(desk):
    automation, clock, people = desk
    runtime = automation.runtime
    # Monday 7 December, 02:00 UTC: working time in Shanghai and not yet in UTC, so that the
    # warning and the due time are on the same morning whatever LOOM_TIMEZONE says
    runtime.records.hooks.clock = datetime(2026, 12, 7, 2, 0, tzinfo=timezone.utc)
    ticket = runtime.records.create("ticket", {"subject": "服务器宕机", "category": "technical_issue", "priority": "critical",
                                               "account": _account(runtime, "苏州恒达精密机械有限公司")}, ADMIN)
    drain(automation)
    due = datetime.fromisoformat(runtime.records.get("ticket", ticket["id"], ADMIN)["first_response_due"])
    # (the sample tickets' clocks run too: only this ticket's are looked at)
    clock.at = due - timedelta(minutes=20)
    automation.sla_clocks()
    assert _clock(runtime, ticket["id"], "first_response")["state"] == "running"
    clock.at = due - timedelta(minutes=14)            # 15 working minutes before: the owner is warned
    automation.sla_clocks()
    assert _clock(runtime, ticket["id"], "first_response")["state"] == "warning"
    clock.at = due + timedelta(seconds=1)
    automation.sla_clocks()
    assert _clock(runtime, ticket["id"], "first_response")["state"] == "breached"
    assert runtime.records.get("ticket", ticket["id"], ADMIN)["first_response_breached"] is True
    with runtime.engine.connect() as conn:        # the ticket tracks the flag: the breach is in its history
        assert conn.execute(sa.select(systemdb.history.c.new_value).where(
            systemdb.history.c.record_id == ticket["id"],
            systemdb.history.c.field == "first_response_breached").order_by(systemdb.history.c.id)
        ).scalars().all() == [False, True]      # as created, then breached
    assert automation.sla_clocks() == {"warned": 0, "breached": 0}          # each once
    with runtime.engine.connect() as conn:
        told = conn.execute(sa.select(systemdb.notifications.c.message)
                            .where(systemdb.notifications.c.user_id == people["boss"].id)).scalars().all()
        mail = conn.execute(sa.select(systemdb.mail_outbox.c.address, systemdb.mail_outbox.c.subject)).all()
    mine = [m for m in told if "服务器宕机" in m]
    assert len(mine) == 1 and "首次响应" in mine[0] and "已逾期" in mine[0]
    assert ("boss@example.com", mine[0]) in [(a, s) for a, s in mail]


def test_uninstalling_service_keeps_crm_and_its_data(desk):
    automation, clock, people = desk
    engine = automation.engine
    runtime = automation.runtime
    with pytest.raises(BundleError, match="service requires crm"):
        uninstall_bundle(engine, "crm")
    runtime.records.update("account", _account(runtime, "佛山美家建材有限公司"), {"support_tier": "gold"}, ADMIN)
    with engine.connect() as conn:
        accounts = conn.execute(sa.text("SELECT count(*) FROM o_account")).scalar()
    uninstall_bundle(engine, "service")
    runtime.invalidate()
    schema = runtime.schema()
    assert schema.object("ticket") is None and schema.object("account").field("support_tier") is None
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM o_account")).scalar() == accounts
    assert runtime.records.get("account", _account(runtime, "佛山美家建材有限公司"), ADMIN)["name"] == "佛山美家建材有限公司"
    install_bundle(engine, "service", load_data=False)
    runtime.invalidate()
    assert runtime.schema().object("account").field("support_tier") is not None


def test_the_support_tickets_data_set_imports_into_tickets(desk, tmp_path):
    automation, clock, people = desk
    if automation.engine.dialect.name != "sqlite":
        pytest.skip("one database is enough for 8,469 rows")
    mapping = {"Ticket Subject": "subject", "Ticket Description": "description", "Ticket Type": "category",
               "Ticket Status": "status", "Ticket Priority": "priority", "Ticket Channel": "channel",
               "Product Purchased": "product", "Customer Email": "customer_email", "Resolution": "resolution",
               "First Response Time": "first_response_at", "Customer Satisfaction Rating": "csat"}
    report = import_file(automation.runtime, "ticket", TICKETS, mapping, user=ADMIN,
                         rejected_path=tmp_path / "rejected.csv")
    assert (report.saved, report.rejected) == (8469, 0)
    table = automation.runtime.schema().table("ticket")
    with automation.engine.connect() as conn:
        statuses = Counter(dict(conn.execute(sa.select(table.c.status, sa.func.count()).group_by(table.c.status)).all()))
        rated = conn.execute(sa.select(sa.func.count()).select_from(table).where(table.c.csat.is_not(None))).scalar()
    assert statuses["closed"] >= 2769 and statuses["pending_customer"] >= 2881 and statuses["open"] >= 2819
    assert rated >= 2769
    with automation.engine.connect() as conn:    # history asks nobody and starts no clock
        imported = sa.select(table.c.id).where(table.c.description.is_not(None), table.c.channel != "web")
        assert conn.execute(sa.select(sa.func.count()).select_from(systemdb.sla_clocks)
                            .where(systemdb.sla_clocks.c.record_id.in_(imported))).scalar() == 0
        assert conn.execute(sa.select(sa.func.count()).select_from(systemdb.surveys)).scalar() == 0


def test_an_answer_goes_to_the_knowledge_base_and_is_suggested(desk):
    from loomcrm.runtime import conversion
    from loomcrm.runtime.forms.views import suggestions

    automation, clock, people = desk
    runtime = automation.runtime
    agent = people["li"]
    ticket = runtime.records.create("ticket", {"subject": "投影仪无法连接无线网络", "category": "technical_issue",
                                               "priority": "medium", "owner": agent.id}, ADMIN)
    runtime.records.update("ticket", ticket["id"], {"status": "resolved", "resolution": "重置投影仪网络设置后重新配网。"},
                           agent)
    made = conversion.convert(runtime, "ticket", ticket["id"], {}, agent)
    article = made["article"]
    assert (article["title"], article["body"], article["status"]) == (
        "投影仪无法连接无线网络", "<p>重置投影仪网络设置后重新配网。</p>", "draft")
    assert made["ticket"]["knowledge_article"] == article["id"] and article["source_ticket"] == ticket["id"]

    schema = runtime.schema()
    later = runtime.records.create("ticket", {"subject": "投影仪连不上网络", "category": "technical_issue",
                                              "priority": "low"}, ADMIN)
    obj = schema.object("ticket")
    with runtime.engine.connect() as conn:
        # drafts are not suggested
        assert suggestions(conn, schema, obj, later, runtime.access.of(agent))["rows"] == []
    runtime.records.update("article", article["id"], {"status": "published"}, agent)
    with runtime.engine.connect() as conn:
        offered = suggestions(conn, schema, obj, later, runtime.access.of(agent))
    assert [r["title"] for r in offered["rows"]] == ["投影仪无法连接无线网络"]


def test_a_ticket_shows_its_accounts_region_by_label(desk):
    from loomcrm.runtime.forms.display import Display

    automation, clock, people = desk
    runtime = automation.runtime
    ticket = runtime.records.create("ticket", {"subject": "x", "category": "technical_issue",
                                               "account": _account(runtime, "杭州云帆电子商务有限公司")}, ADMIN)
    schema = runtime.schema()
    obj = schema.object("ticket")
    zh = Display(schema.objects, "zh-CN", None)
    assert ticket["region"] == "east"
    assert zh.text(obj, obj.field("region"), "east") == "华东" and "华东" in str(zh.cell(obj, obj.field("region"), "east"))
    assert zh.text(obj, obj.field("subject"), "east") == "east"
