"""Real local servers for the escalation tests: an SMTP server (aiosmtpd's protocol on this
event loop) that keeps every message and can refuse the next ones with a 4xx, and a Slack
incoming-webhook fake (aiohttp) that records posts and can answer with chosen statuses; plus
helpers to make brand members through the real consumer.
"""

from __future__ import annotations

import asyncio
import email
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from email.policy import default as default_policy
from typing import Any

from aiohttp import web
from aiosmtpd.smtp import SMTP, Envelope, Session
from approval_testkit import FakeClock, Service, approval_service, as_owner, event, eventually
from pressroom_contracts.topics import Topic


@dataclass
class Mailbox:
    """What the SMTP server received; ``refuse`` makes the next N messages get ``451``."""

    messages: list[EmailMessage] = field(default_factory=list)
    envelopes: list[Envelope] = field(default_factory=list)
    refuse: int = 0
    refused: int = 0
    refuse_to: dict[str, int] = field(default_factory=dict)  # address -> how many times
    port: int = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        targeted = [a for a in envelope.rcpt_tos if self.refuse_to.get(a, 0) > 0]
        if self.refuse > 0 or targeted:
            if targeted:
                self.refuse_to[targeted[0]] -= 1
            else:
                self.refuse -= 1
            self.refused += 1
            return "451 4.3.0 try again later"
        raw = envelope.content if isinstance(envelope.content, bytes) else b""
        message = email.message_from_bytes(raw, policy=default_policy)
        assert isinstance(message, EmailMessage)
        self.messages.append(message)
        self.envelopes.append(envelope)
        return "250 OK"

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages if address in str(m["To"])]

    def of(self, brand: uuid.UUID) -> list[EmailMessage]:
        """The messages to ``brand``'s members (``address`` tags them: the session's broker
        also replays earlier tests' events into this database)."""
        return [m for m in self.messages if f"+{brand.hex[:8]}@" in str(m["To"])]


def address(name: str, brand: uuid.UUID) -> str:
    return f"{name}+{brand.hex[:8]}@example.com"


@asynccontextmanager
async def smtp_server() -> AsyncIterator[Mailbox]:
    box = Mailbox()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(box, hostname="mail.test", enable_SMTPUTF8=True), "127.0.0.1", 0
    )
    box.port = server.sockets[0].getsockname()[1]
    try:
        yield box
    finally:
        server.close()
        await server.wait_closed()


@dataclass
class SlackFake:
    posts: list[dict[str, Any]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)  # answered first, then 200
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        if self.statuses:
            return web.Response(status=self.statuses.pop(0), text="unavailable")
        self.posts.append(body)
        return web.Response(text="ok")


@asynccontextmanager
async def slack_server() -> AsyncIterator[SlackFake]:
    fake = SlackFake()
    app = web.Application()
    app.router.add_post("/services/T000/B000/{secret}", fake.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    fake.url = f"http://127.0.0.1:{port}/services/T000/B000/secret-part"
    try:
        yield fake
    finally:
        await runner.cleanup()


async def add_members(svc: Service, brand: uuid.UUID, *members: tuple[str, str]) -> None:
    """``(user_id, role)`` members through ``brand.member_added.v1`` and the consumer, their
    email ``address(user_id, brand)``."""
    await svc.publish(
        Topic.BRANDS.value,
        *(
            event(
                "brand.member_added.v1",
                brand,
                brand,
                brand_id=brand,
                user_id=user,
                email=address(user, brand),
                role=role,
            )
            for user, role in members
        ),
    )

    async def arrived() -> bool:
        rows = await as_owner(
            svc.db, "SELECT count(*) AS n FROM approval_members WHERE brand_id = $1", brand
        )
        return bool(rows[0]["n"] >= len(members))

    await eventually(arrived)


async def history(svc: Service, approval_id: Any) -> list[tuple[str, str | None, str | None]]:
    rows = await as_owner(
        svc.db,
        "SELECT h.step, h.channel, h.recipient FROM escalation_history h "
        "WHERE approval_id = $1 ORDER BY id",
        uuid.UUID(str(approval_id)),
    )
    return [(r["step"], r["channel"], r["recipient"]) for r in rows]


async def drain(svc: Service) -> None:
    """Step the scheduler until nothing is due (on the fake clock)."""
    while await scheduler(svc).step():
        pass


async def events_of(svc: Service, approval_id: Any) -> list[dict[str, Any]]:
    rows = await as_owner(
        svc.db,
        "SELECT * FROM escalation_events WHERE approval_id = $1 ORDER BY due_at",
        uuid.UUID(str(approval_id)),
    )
    return [dict(r) for r in rows]


def text_part(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())  # type: ignore[attr-defined]


def html_part(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("html",))
    assert part is not None
    return str(part.get_content())  # type: ignore[attr-defined]


GATEWAY = "http://gateway.test"


@asynccontextmanager
async def escalation_service(
    db: Any, kafka: str, *, start: datetime, **overrides: Any
) -> AsyncIterator[tuple[Service, Mailbox]]:
    """The approval service on a fake clock at ``start`` sending to a local SMTP server; its
    links start with ``GATEWAY`` (``local`` maps them onto the service)."""
    async with (
        smtp_server() as box,
        approval_service(
            db, kafka, clock=FakeClock(start), smtp_port=box.port, public_url=GATEWAY, **overrides
        ) as svc,
    ):
        yield svc, box


def scheduler(svc: Service) -> Any:
    return svc.app.state.escalation_scheduler


def local(svc: Service, url: str) -> str:
    assert url.startswith(GATEWAY), url
    return svc.base + url[len(GATEWAY) :]


def unsubscribe_url(message: EmailMessage) -> str:
    header = str(message["List-Unsubscribe"])
    assert header.startswith("<") and header.endswith(">"), header
    return header[1:-1]
