"""E-mail actions against a real SMTP server (aiosmtpd): delivered in the
recipient's language, retried on a 4xx with the same Message-ID, and a
record's values never run as template code."""

from __future__ import annotations

from loomcrm.workflows import runs

from flows import world_for

# `smtp` (tests/conftest.py): an aiosmtpd server keeping every message

MAIL = {"name": "mail_owner", "object": "deal", "trigger": {"on": "create"},
        "actions": [{"type": "email", "to": "concat(owner, ',', coalesce(contact_email, ''))",
                     "subject": {"en": "New deal: {{ record.name }}", "zh-CN": "新商机：{{ record.name }}"},
                     "body": {"en": "Amount {{ record.amount }}. Note: {{ record.note }}", "zh-CN": "金额 {{ record.amount }}。备注：{{ record.note }}"}}]}


def delivered(inbox):
    return [m for m in inbox.messages]


def test_mail_reaches_each_recipient_in_their_language_and_values_stay_text(database_url, smtp):
    world = world_for(database_url, smtp_url=smtp.url, mail_from="Loom CRM <crm@example.com>")
    alice, bob = world.users["alice"], world.users["bob"]
    world.workflows(MAIL)
    deal = world.records.create("deal", {"name": "Acme {{ 7*7 }}", "amount": 1200, "note": "{% for x in range(3) %}loop{% endfor %}",
                                         "contact_email": "buyer@example.org"}, alice)
    world.records.update("deal", deal["id"], {"owner": bob.id}, alice)   # bob reads Chinese
    world.drain()
    # the owner when the action ran is bob
    by_to = {m["To"]: m for m in smtp.messages}
    assert set(by_to) == {"bob@example.com", "buyer@example.org"}
    zh, en = by_to["bob@example.com"], by_to["buyer@example.org"]
    assert zh["Subject"] == "新商机：Acme {{ 7*7 }}" and en["Subject"] == "New deal: Acme {{ 7*7 }}"
    assert "{% for x in range(3) %}loop{% endfor %}" in en.get_content() and "49" not in en["Subject"]
    assert en["From"] == "Loom CRM <crm@example.com>" and en["Message-ID"].endswith("@example.com>")
    world.engine.dispose()


def test_a_451_is_tried_again_with_the_same_message_id(database_url, smtp):
    smtp.refuse = 1
    world = world_for(database_url, smtp_url=smtp.url)
    alice = world.users["alice"]
    world.workflows({**MAIL, "actions": [{**MAIL["actions"][0], "to": "contact_email"}]})
    world.records.create("deal", {"name": "Greylisted", "contact_email": "buyer@example.org"}, alice)
    world.drain()
    with world.engine.connect() as conn:
        (run,) = runs.listing(conn)[0]
    assert run["status"] == "failed" and "451" in run["error"] and run["attempts"] == 1
    world.clock.advance(hours=2)
    world.drain()
    with world.engine.connect() as conn:
        (run,) = runs.listing(conn)[0]
    assert run["status"] == "done" and run["attempts"] == 2
    first, second = smtp.messages
    assert first["Message-ID"] == second["Message-ID"]
    world.engine.dispose()


def test_without_a_mail_server_the_run_is_dead_with_its_code(world, alice):
    world.workflows({**MAIL, "actions": [{**MAIL["actions"][0], "to": "contact_email"}]})
    world.records.create("deal", {"name": "Nowhere", "contact_email": "buyer@example.org"}, alice)
    world.drain()
    with world.engine.connect() as conn:
        (run,) = runs.listing(conn)[0]
    assert run["status"] == "dead" and run["error"].startswith("no_mail_server:")
