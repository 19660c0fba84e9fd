"""Delivery of one notification: an email over SMTP (aiosmtplib) or a Slack message through
an incoming webhook (aiohttp), with the failures told apart.

``DeliveryError.transient`` says whether another attempt may succeed: SMTP 4xx replies,
connection errors and timeouts, Slack 429 and 5xx are; SMTP 5xx replies and Slack's other
4xx (a revoked webhook, a bad payload) are not, and are not retried.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from importlib import resources
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

import aiohttp
import aiosmtplib
from jinja2 import Environment, FunctionLoader, StrictUndefined, select_autoescape

from pressroom_approval.escalations.messages import words
from pressroom_approval.settings import ApprovalSettings


class DeliveryError(Exception):
    def __init__(self, message: str, *, transient: bool, code: int | None = None) -> None:
        super().__init__(message)
        self.transient = transient
        self.code = code


@dataclass(frozen=True)
class Notice:
    """What one escalation step is about, shared by all its recipients."""

    escalation_id: UUID
    approval_id: UUID
    post_id: UUID
    brand_name: str
    rule_type: str
    hours: int
    title: str
    excerpt: str
    platforms: tuple[str, ...]
    scheduled_at: datetime | None
    post_url: str

    @property
    def kind(self) -> str:
        return "escalate" if self.rule_type.startswith("escalate") else "reminder"


@dataclass(frozen=True)
class Recipient:
    client_id: str  # the member's user id
    email: str | None
    name: str | None
    language: str
    timezone: ZoneInfo


def _template(name: str) -> str:
    return (resources.files("pressroom_approval.escalations") / "templates" / name).read_text()


TEMPLATES = Environment(
    loader=FunctionLoader(_template),
    autoescape=select_autoescape(enabled_extensions=("html.j2",), default=False),
    undefined=StrictUndefined,
    keep_trailing_newline=True,
)


def message_id(notice: Notice, recipient: Recipient, domain: str) -> str:
    """The same Message-ID for every attempt of one step to one person: a resend after a
    crash between the SMTP 250 and the record is recognisable as the same message."""
    who = hashlib.sha256(recipient.client_id.encode()).hexdigest()[:16]
    return f"<escalation.{notice.escalation_id}.{who}@{domain}>"


def _when(at: datetime | None, tz: ZoneInfo, fallback: str) -> str:
    if at is None:
        return fallback
    return f"{at.astimezone(tz):%Y-%m-%d %H:%M} ({tz.key})"


def render_email(
    notice: Notice,
    recipient: Recipient,
    *,
    mail_from: str,
    unsubscribe_url: str,
    unsubscribe_all_url: str,
    now: datetime,
) -> EmailMessage:
    """The email, with text and HTML parts in the recipient's language and the RFC 8058
    one-click unsubscribe headers (the type-specific link: the step's rule type)."""
    if recipient.email is None:
        raise ValueError("a recipient without an email address gets no email")
    w = words(recipient.language)
    fields = {"post": notice.title, "brand": notice.brand_name, "hours": notice.hours}
    subject = w[f"subject_{notice.kind}"].format(**fields)
    context: dict[str, Any] = {
        "language": recipient.language,
        "subject": subject,
        "greeting": w["greeting"].format(name=recipient.name or recipient.email),
        "body": w[f"body_{notice.kind}"].format(**fields),
        "label_platforms": w["platforms"],
        "platforms": ", ".join(notice.platforms) or "-",
        "label_scheduled": w["scheduled"],
        "scheduled": _when(notice.scheduled_at, recipient.timezone, w["not_scheduled"]),
        "excerpt": notice.excerpt,
        "post_url": notice.post_url,
        "action": w["action"],
        "footer": w["footer"].format(brand=notice.brand_name),
        "unsubscribe": w["unsubscribe"],
        "unsubscribe_all": w["unsubscribe_all"],
        "unsubscribe_url": unsubscribe_url,
        "unsubscribe_all_url": unsubscribe_all_url,
    }
    msg = EmailMessage()
    msg["Subject"] = subject
    msg["From"] = mail_from
    msg["To"] = Address(display_name=recipient.name or "", addr_spec=recipient.email)
    msg["Date"] = format_datetime(now)
    domain = parseaddr(mail_from)[1].rpartition("@")[2] or "pressroom.invalid"
    msg["Message-ID"] = message_id(notice, recipient, domain)
    msg["List-Unsubscribe"] = f"<{unsubscribe_url}>"
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg["Auto-Submitted"] = "auto-generated"
    msg["Content-Language"] = recipient.language
    msg.set_content(TEMPLATES.get_template("escalation.txt.j2").render(context))
    msg.add_alternative(
        TEMPLATES.get_template("escalation.html.j2").render(context), subtype="html"
    )
    return msg


class Mailer:
    """Sends one message per SMTP session (aiosmtplib.send); a session per message keeps a
    failure confined to its message and needs no connection state across replicas."""

    def __init__(self, settings: ApprovalSettings) -> None:
        self.settings = settings

    async def send(self, message: EmailMessage) -> None:
        s = self.settings
        try:
            await aiosmtplib.send(
                message,
                hostname=s.smtp_host,
                port=s.smtp_port,
                username=s.smtp_username,
                password=s.smtp_password.get_secret_value() if s.smtp_password else None,
                start_tls=s.smtp_starttls if s.smtp_starttls else False,
                use_tls=s.smtp_use_tls,
                timeout=s.smtp_timeout_s,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            raise DeliveryError(
                f"recipient refused: {'; '.join(str(r) for r in exc.recipients)}",
                transient=any(400 <= c < 500 for c in codes),
                code=codes[0] if codes else None,
            ) from exc
        except aiosmtplib.SMTPResponseException as exc:
            raise DeliveryError(
                f"SMTP {exc.code}: {exc.message}", transient=exc.code < 500, code=exc.code
            ) from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise DeliveryError(
                f"SMTP unreachable: {type(exc).__name__}: {exc}", transient=True
            ) from exc


def slack_message(notice: Notice, role: str) -> dict[str, Any]:
    """A Block Kit message: what waits (section), since when and for whom (context), and a
    button to the post. ``text`` is the fallback for notifications."""
    w = words("en")
    fields = {"post": notice.title, "brand": notice.brand_name, "hours": notice.hours}
    headline = w[f"subject_{notice.kind}"].format(**fields)
    return {
        "text": headline,
        "blocks": [
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": f"*{_slack_escape(headline)}*\n{_slack_escape(notice.excerpt)}",
                },
            },
            {
                "type": "context",
                "elements": [
                    {
                        "type": "mrkdwn",
                        "text": _slack_escape(
                            f"{notice.rule_type} · to {role}s · "
                            f"{', '.join(notice.platforms) or '-'}"
                        ),
                    }
                ],
            },
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": w["action"]},
                        "url": notice.post_url,
                        "action_id": "open_post",
                    }
                ],
            },
        ],
    }


def _slack_escape(text: str) -> str:
    """Slack's mrkdwn control characters (``&``, ``<``, ``>``) escaped as it documents."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class Slack:
    def __init__(self, session: aiohttp.ClientSession, timeout_s: float) -> None:
        self.session = session
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def post(self, url: str, payload: Mapping[str, Any]) -> None:
        try:
            async with self.session.post(url, json=payload, timeout=self.timeout) as response:
                body = (await response.text())[:200]
                if response.status < 300:
                    return
                raise DeliveryError(
                    f"Slack {response.status}: {body}",
                    transient=response.status == 429 or response.status >= 500,
                    code=response.status,
                )
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise DeliveryError(
                f"Slack unreachable: {type(exc).__name__}: {exc}", transient=True
            ) from exc
