"""The pages visitors open without signing in: web-to-case and web-to-lead
forms (honeypot, rate limit, rules) and the satisfaction survey e-mailed
when a ticket is resolved (signed one-time links: expired, reused, forged)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from loomcrm.platform import systemdb
from loomcrm.platform.app import create_app, ensure_secret_key
from loomcrm.platform.db import create_engine
from loomcrm.platform.settings import Settings
from loomcrm.runtime import surveys
from loomcrm.runtime.commands import pack_install
from loomcrm.runtime.records import Actor
from loomcrm.workflows import mailer

ADMIN = Actor(None, "admin")


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    folder = tmp_path_factory.mktemp("public")
    url = f"sqlite:///{folder / 'loom.db'}"
    pack_install(url, "crm")
    pack_install(url, "service")
    engine = create_engine(url)
    application = create_app(Settings(data_dir=str(folder), database_url=url, base_url="https://crm.example.com"),
                             engine)
    yield application
    engine.dispose()


def _records(app, object_name, **where):
    runtime = app.state.loom.runtime
    table = runtime.schema().table(object_name)
    with runtime.engine.connect() as conn:
        query = sa.select(table)
        for key, value in where.items():
            query = query.where(table.c[key] == value)
        return [dict(r._mapping) for r in conn.execute(query)]


def test_web_to_case_saves_a_ticket_and_keeps_bots_out(app):
    visitor = TestClient(app)
    page = visitor.get("/f/web_to_case")
    assert page.status_code == 200 and 'name="subject"' in page.text and 'name="website_url"' in page.text
    assert "Sign out" not in page.text
    sent = visitor.post("/f/web_to_case", data={"subject": "Cannot log in", "customer_email": "amy@example.com",
                                                "category": "Technical issue", "description": "Since this morning"})
    assert sent.status_code == 200 and "We have your request" in sent.text
    [ticket] = _records(app, "ticket", subject="Cannot log in")
    assert (ticket["channel"], ticket["priority"], ticket["category"]) == ("web", "medium", "technical_issue")
    with app.state.loom.runtime.engine.connect() as conn:
        source = conn.execute(sa.select(systemdb.outbox.c.source).where(systemdb.outbox.c.record_id == ticket["id"])
                              ).scalar()
    assert source == "form"
    # a bot fills the honeypot: thanked, nothing saved
    bot = visitor.post("/f/web_to_case", data={"subject": "Cheap pills", "category": "product_inquiry",
                                               "website_url": "http://spam.example"})
    assert bot.status_code == 200 and _records(app, "ticket", subject="Cheap pills") == []
    # broken and hostile input: the fields named, nothing saved
    bad = visitor.post("/f/web_to_case", data={"subject": "x" * 300, "customer_email": "not an address",
                                               "category": "nonsense"})
    assert bad.status_code == 422 and 'class="field has-error"' in bad.text
    assert _records(app, "ticket", customer_email="not an address") == []
    assert visitor.get("/f/nothing_here").status_code == 404


def test_web_forms_are_rate_limited_per_address(app):
    visitor = TestClient(app)
    made = 0
    for i in range(11):
        answer = visitor.post("/f/web_to_lead", data={"name": f"Visitor {i}", "company": "Acme",
                                                      "phone": f"1391234{5000 + i}"})
        made += answer.status_code == 200
    assert made == 10 and answer.status_code == 429
    assert "try again in an hour" in answer.text
    leads = _records(app, "lead", company="Acme")
    assert len(leads) == 10 and {lead["source"] for lead in leads} == {"website"}


def _invite_link(app, ticket_id):
    runtime = app.state.loom.runtime
    secret = ensure_secret_key(runtime.engine, "")
    assert surveys.mail_invitations(runtime, secret, "https://crm.example.com") >= 1
    with runtime.engine.connect() as conn:
        invite = conn.execute(sa.select(systemdb.surveys).where(systemdb.surveys.c.record_id == ticket_id)).one()
        letter = conn.execute(sa.select(systemdb.mail_outbox).where(systemdb.mail_outbox.c.address == invite.address)
                              ).fetchall()[-1]
    link = f"https://crm.example.com/s/{surveys.link_token(secret, invite.id)}"
    assert link in letter.body and "请为本次服务打分" in letter.subject
    return link.removeprefix("https://crm.example.com"), invite


def test_a_resolved_ticket_sends_a_survey_answered_once(app):
    runtime = app.state.loom.runtime
    ticket = runtime.records.create("ticket", {"subject": "Printer offline", "category": "technical_issue",
                                               "customer_email": "bo@example.com"}, ADMIN)
    assert _records(app, "ticket", id=ticket["id"])[0]["csat"] is None
    with runtime.engine.connect() as conn:
        assert conn.execute(sa.select(systemdb.surveys).where(systemdb.surveys.c.record_id == ticket["id"])).first() is None
    runtime.records.update("ticket", ticket["id"], {"status": "resolved", "resolution": "Restarted the spooler"}, ADMIN)
    path, invite = _invite_link(app, ticket["id"])

    customer = TestClient(app)
    page = customer.get(path)
    assert page.status_code == 200 and "Printer offline" in page.text and 'name="csat"' in page.text
    out_of_range = customer.post(path, data={"csat": "9", "nps": "10"})
    assert out_of_range.status_code == 422 and _records(app, "ticket", id=ticket["id"])[0]["csat"] is None
    done = customer.post(path, data={"csat": "4", "nps": "9", "survey_comment": "Quick, thanks"})
    assert done.status_code == 200 and "Thank you for your feedback!" in done.text
    saved = _records(app, "ticket", id=ticket["id"])[0]
    assert (saved["csat"], saved["nps"], saved["survey_comment"], saved["nps_points"]) == (4, 9, "Quick, thanks", 100)
    # once only
    again = customer.post(path, data={"csat": "1", "nps": "0"})
    assert again.status_code == 409 and "answered already" in again.text
    assert _records(app, "ticket", id=ticket["id"])[0]["csat"] == 4
    # an edit of a resolved ticket asks nobody again, nor does an imported closed ticket when edited
    runtime.records.update("ticket", ticket["id"], {"product": "Printer X"}, ADMIN)
    from loomcrm.runtime.records import Origin

    old = runtime.records.create("ticket", {"subject": "Closed long ago", "category": "technical_issue",
                                            "customer_email": "old@example.com", "status": "closed"}, ADMIN,
                                 origin=Origin("import"))
    runtime.records.update("ticket", old["id"], {"product": "Printer Y"}, ADMIN)
    with runtime.engine.connect() as conn:
        assert conn.execute(sa.select(systemdb.surveys).where(systemdb.surveys.c.record_id == old["id"])).first() is None
    # reopened and resolved again: no second survey
    runtime.records.update("ticket", ticket["id"], {"status": "open"}, ADMIN)
    runtime.records.update("ticket", ticket["id"], {"status": "closed"}, ADMIN)
    with runtime.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(systemdb.surveys)
                            .where(systemdb.surveys.c.record_id == ticket["id"])).scalar() == 1


def test_forged_and_expired_survey_links_are_refused(app):
    runtime = app.state.loom.runtime
    ticket = runtime.records.create("ticket", {"subject": "Refund please", "category": "refund_request",
                                               "customer_email": "cy@example.com"}, ADMIN)
    runtime.records.update("ticket", ticket["id"], {"status": "resolved", "resolution": "Refunded"}, ADMIN)
    path, invite = _invite_link(app, ticket["id"])
    customer = TestClient(app)
    invite_id, signature = path.removeprefix("/s/").split(".")
    for forged in (f"/s/{invite_id}.{'0' * 32}", f"/s/{'a' * 32}.{signature}", f"/s/{invite_id}", "/s/%27%3Bdrop",
                   f"/s/{invite_id}.{signature}x", f"/s/{invite_id}.%C3%A9{signature[2:]}", f"/s/{invite_id.upper()}.{signature}"):
        answer = customer.post(forged, data={"csat": "1", "nps": "0"})
        assert answer.status_code == 404 and "not valid" in answer.text
    with runtime.engine.begin() as conn:
        conn.execute(sa.update(systemdb.surveys).where(systemdb.surveys.c.id == invite.id)
                     .values(expires_at=datetime.now(timezone.utc) - timedelta(minutes=1)))
    expired = customer.post(path, data={"csat": "5", "nps": "10"})
    assert expired.status_code == 410 and "expired" in expired.text
    customer.get("/locale/zh-CN", params={"next": "/"})
    assert "这份调查已过期" in customer.get(path).text
    assert _records(app, "ticket", id=ticket["id"])[0]["csat"] is None
    # a ticket in the recycle bin has no survey to answer
    with runtime.engine.begin() as conn:
        conn.execute(sa.update(systemdb.surveys).where(systemdb.surveys.c.id == invite.id)
                     .values(expires_at=datetime.now(timezone.utc) + timedelta(days=1)))
    runtime.records.delete("ticket", ticket["id"], ADMIN)
    gone = customer.get(path)
    assert gone.status_code == 404 and "调查链接无效" in gone.text


def test_the_pump_delivers_survey_mail(app, smtp):
    runtime = app.state.loom.runtime
    ticket = runtime.records.create("ticket", {"subject": "Slow VPN", "category": "technical_issue",
                                               "customer_email": "dee@example.com"}, ADMIN)
    runtime.records.update("ticket", ticket["id"], {"status": "resolved", "resolution": "New profile"}, ADMIN)
    _invite_link(app, ticket["id"])
    settings = Settings(database_url=str(runtime.engine.url), smtp_url=smtp.url)
    mailer.deliver(runtime.engine, settings, datetime.now(timezone.utc))
    assert any(m["To"] == "dee@example.com" and "/s/" in m.get_body().get_content() for m in smtp.messages)


def test_a_stage_move_ignores_changes_to_other_fields_but_not_to_the_stage(app):
    from loomcrm.platform import directory

    from test_report_pages import signed_in

    runtime = app.state.loom.runtime
    directory.create_user(runtime.engine, "ana", "admin", "a long password")
    ana = signed_in(app, "ana")
    ticket = runtime.records.create("ticket", {"subject": "Moves", "category": "technical_issue"}, ADMIN)
    # automation stamps a field after the page was drawn: the move still goes
    runtime.records.update("ticket", ticket["id"], {"first_response_at": "2026-12-07T02:00:00+00:00"}, ADMIN)
    moved = ana.patch(f"/app/ticket/{ticket['id']}/move", json={"field": "status", "value": "open", "from": "new"})
    assert moved.status_code == 200, moved.text
    # someone else moved it meanwhile: refused, nothing changed
    stale = ana.patch(f"/app/ticket/{ticket['id']}/move", json={"field": "status", "value": "pending_customer",
                                                                "from": "new"})
    assert stale.status_code == 412 and _records(app, "ticket", id=ticket["id"])[0]["status"] == "open"
    # without `from`, the version decides as before
    old_version = ana.patch(f"/app/ticket/{ticket['id']}/move", json={"field": "status", "value": "pending_customer",
                                                                      "version": 1})
    assert old_version.status_code == 412


def test_a_web_form_never_tells_a_visitor_what_the_crm_holds(app):
    visitor = TestClient(app, client=("198.51.100.7", 50000))
    first = visitor.post("/f/web_to_lead", data={"name": "Returning", "email": "again@example.com", "company": "Z"})
    again = visitor.post("/f/web_to_lead", data={"name": "Returning", "email": "again@example.com", "company": "Z"})
    assert first.status_code == again.status_code == 200 and "within one working day" in again.text
    leads = _records(app, "lead", email="again@example.com")
    assert len(leads) == 2                     # kept, and the skipped duplicate rule is in the history
    with app.state.loom.runtime.engine.connect() as conn:
        notes = conn.execute(sa.select(systemdb.history.c.note).where(systemdb.history.c.record_id == leads[1]["id"],
                                                                     systemdb.history.c.note.like("rules skipped%"))
                             ).scalars().all()
    assert notes and "web form web_to_lead" in notes[0]


def test_refused_posts_count_towards_the_limit(app):
    visitor = TestClient(app, client=("2001:db8::1", 50000))
    neighbour = TestClient(app, client=("2001:db8::2", 50000))     # the same /64
    for _ in range(10):
        assert visitor.post("/f/web_to_lead", data={"name": "", "company": "Q"}).status_code == 422
    assert neighbour.post("/f/web_to_lead", data={"name": "N", "company": "Q"}).status_code == 429
    assert TestClient(app, client=("2001:db9::1", 50000)).post(
        "/f/web_to_lead", data={"name": "Elsewhere", "company": "Q", "email": "e@example.com"}).status_code == 200
