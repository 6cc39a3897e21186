"""`email`: one message per recipient over SMTP (`LOOM_SMTP_URL`), in the
recipient's language. Delivered at least once: a try that fails after the
server took some messages sends them again, with the same `Message-ID`
(one per run and recipient), which mail systems drop as a repeat.

A 4xx answer (greylisting, "try again later") is tried again later; a 5xx
answer is final. Without a mail server the run is dead with code
`no_mail_server`."""

from __future__ import annotations

import hashlib
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from ..templates import render
from . import Act, Dead, Delivery, Retry
from .notify import recipients, who_may_read

TIMEOUT = 30


def template_record(act: Act) -> dict[str, Any]:
    """The record as templates see it: its fields and system fields."""
    return {k: v for k, v in act.record.items() if not k.startswith("_")}


def addresses(act: Act) -> list[tuple[str, str]]:
    """(address, locale) of each recipient `to` names: e-mail addresses, or
    users (by id or name) with their address and language."""
    value = act.value("to")
    items = value if isinstance(value, (list, tuple)) else str(value or "").replace(";", ",").split(",")
    wanted = [str(v).strip() for v in items if str(v).strip()]
    out = [(item, "en") for item in wanted if "@" in item]
    names = [item for item in wanted if "@" not in item]
    conn = act.evaluate.conn
    for user in who_may_read(act, conn, recipients(conn, names)):   # users hear only of records they may see
        if user["email"]:
            out.append((user["email"], user["locale"] or "en"))
    return out


def send_email(act: Act) -> Delivery:
    settings = act.automation.settings
    if not settings.smtp_url:
        raise Dead("no mail server is set (LOOM_SMTP_URL)", "no_mail_server")
    to = addresses(act)
    if not to:
        raise Dead("'to' gives no e-mail address", "no_recipient")
    record = template_record(act)
    sender = settings.mail_from
    domain = parseaddr(sender)[1].partition("@")[2] or "loom.localhost"
    messages = []
    for address, locale in to:
        msg = EmailMessage()
        msg["From"] = sender
        msg["To"] = address
        msg["Subject"] = " ".join(render(act.action.subject, locale, record).split())[:998]
        msg["Date"] = formatdate(localtime=False)
        msg["Message-ID"] = f"<{act.claim.id}.{hashlib.sha256(address.lower().encode()).hexdigest()[:12]}@{domain}>"
        msg.set_content(render(act.action.body, locale, record))
        messages.append(msg)

    def deliver() -> dict[str, Any]:
        _deliver(settings.smtp_url, messages)
        return {"sent": [m["Message-ID"] for m in messages]}
    return deliver


def _deliver(url: str, messages: list[EmailMessage]) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise Dead(f"LOOM_SMTP_URL must be smtp://host:port or smtps://host:port, not {parts.scheme}://...", "bad_setting")
    options = parse_qs(parts.query)
    try:
        if parts.scheme == "smtps":
            server: smtplib.SMTP = smtplib.SMTP_SSL(parts.hostname, parts.port or 465, timeout=TIMEOUT,
                                                    context=ssl.create_default_context())
        else:
            server = smtplib.SMTP(parts.hostname, parts.port or 25, timeout=TIMEOUT)
        with server:
            if options.get("starttls", ["0"])[0] in ("1", "true", "yes"):
                server.starttls(context=ssl.create_default_context())
            if parts.username:
                server.login(unquote(parts.username), unquote(parts.password or ""))
            for msg in messages:
                server.send_message(msg)
    except smtplib.SMTPRecipientsRefused as exc:
        codes = [code for code, _ in exc.recipients.values()]
        detail = "; ".join(f"{who}: {code} {text.decode(errors='replace') if isinstance(text, bytes) else text}"
                           for who, (code, text) in exc.recipients.items())
        raise (Retry if any(400 <= c < 500 for c in codes) else Dead)(f"the mail server refused: {detail}") from None
    except smtplib.SMTPResponseException as exc:
        text = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
        error = f"the mail server answered {exc.smtp_code} {text}"
        raise (Retry(error) if 400 <= exc.smtp_code < 500 else Dead(error, "mail_refused")) from None
    except (smtplib.SMTPException, OSError) as exc:
        raise Retry(f"the mail server could not be reached: {exc}") from None
