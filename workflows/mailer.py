"""Delivering the mail outbox (`loom_mail_outbox`): e-mails other parts of
Loom wrote in the transaction of what they tell (an approval waiting for
someone), so a change rolled back never sends one. The automation pump
calls `deliver` every few seconds; a row is taken with its lock (skipped by
other processes on PostgreSQL), sent, and marked sent, retried later on a
temporary refusal (4xx, an unreachable server) or given up on for good."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import formatdate, parseaddr

import sqlalchemy as sa

from loomcrm.platform import systemdb
from loomcrm.platform.db import write_transaction

from .actions import Dead, Retry
from .actions.email import _deliver

MAIL = systemdb.mail_outbox
BATCH = 50
MAX_ATTEMPTS = 8


def deliver(engine, settings, now: datetime, *, batch: int = BATCH) -> int:
    """Send what is due; how many went out. Without a mail server set, nothing."""
    if not settings.smtp_url:
        return 0
    sent = 0
    with write_transaction(engine) as conn:
        query = (sa.select(MAIL).where(MAIL.c.sent_at.is_(None), MAIL.c.failed_at.is_(None), MAIL.c.next_at <= now)
                 .order_by(MAIL.c.next_at, MAIL.c.id).limit(batch))
        if conn.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        for row in conn.execute(query).fetchall():
            try:
                _deliver(settings.smtp_url, [_message(settings, row)])
            except Retry as exc:
                attempts = row.attempts + 1
                gone = attempts >= MAX_ATTEMPTS
                conn.execute(sa.update(MAIL).where(MAIL.c.id == row.id).values(
                    attempts=attempts, error=str(exc)[:2000], failed_at=now if gone else None,
                    next_at=now + timedelta(minutes=2 ** attempts)))
                continue
            except Dead as exc:
                conn.execute(sa.update(MAIL).where(MAIL.c.id == row.id).values(
                    attempts=row.attempts + 1, error=str(exc)[:2000], failed_at=now))
                continue
            conn.execute(sa.update(MAIL).where(MAIL.c.id == row.id).values(sent_at=now, attempts=row.attempts + 1,
                                                                            error=None))
            sent += 1
    return sent


def _message(settings, row) -> EmailMessage:
    sender = settings.mail_from
    domain = parseaddr(sender)[1].partition("@")[2] or "loom.localhost"
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = row.address
    msg["Subject"] = " ".join(row.subject.split())[:998]
    msg["Date"] = formatdate(localtime=False)
    # the same id on every try: a server that took it once drops a repeat
    msg["Message-ID"] = f"<{row.id}.{hashlib.sha256(row.address.lower().encode()).hexdigest()[:12]}@{domain}>"
    msg.set_content(row.body)
    return msg
