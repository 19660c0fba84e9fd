"""Running the approval service in tests: the app on a real port with a fake clock, tokens,
publishing's and the gateway's events injected through the broker and the real inbox
consumer, and helpers for rows and the outbox.

    async with approval_service(fresh_db, kafka_bootstrap) as svc:
        post_id = await svc.submit(brand, author="ann")
        approval = await svc.approval_of(brand, post_id)
        status, body = await svc.call("POST", f"/v1/approvals/{approval['id']}/approve",
                                      brand, sub="bob", json={})

``run_workers=False`` (the default) leaves the expiry worker and the escalation scheduler
to the test: ``await svc.expiry.step()`` on ``svc.clock``.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg
from pressroom_approval.app import create_app
from pressroom_approval.settings import ApprovalSettings
from pressroom_contracts import CloudEvent
from pressroom_contracts.topics import Topic
from pressroom_kit import cloudevents
from pressroom_kit.auth import mint_token
from pressroom_kit.testing.plugin import APP_ROLE, TestDatabase
from pressroom_kit.testing.servers import serve_asgi

SECRET = "approval-test-secret-approval-test-secret"


class FakeClock:
    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def token(
    role: str = "manager",
    brand: uuid.UUID | None = None,
    sub: str | None = None,
    email: str | None = None,
) -> str:
    return mint_token(SECRET, sub=sub or f"user-{role}", role=role, brand_id=brand, email=email)  # type: ignore[arg-type]


def approval_settings(db: TestDatabase, kafka: str, **overrides: Any) -> ApprovalSettings:
    values: dict[str, Any] = {
        "database_url": db.owner_dsn,
        "runtime_role": APP_ROLE,
        "jwt_secret": SECRET,
        "kafka_bootstrap_servers": kafka,
        "consumer_group": f"approval-test-{uuid.uuid4().hex[:8]}",
        "consumer_session_timeout_ms": 2000,
        "smtp_port": 9,  # nothing listens: escalation tests start their own SMTP server
        **overrides,
    }
    return ApprovalSettings.model_validate(values)


def event(type_: str, brand: uuid.UUID, subject: Any, **data: Any) -> CloudEvent:
    return CloudEvent(
        source="/pressroom/test",
        type=type_,
        subject=str(subject),
        brandid=brand,
        data=json.loads(json.dumps(data, default=str)),
    )


async def publish_events(bootstrap: str, topic: str, *events: CloudEvent) -> None:
    """CloudEvents on a topic the way the outbox relay puts them (binary mode)."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        for item in events:
            await producer.send_and_wait(
                topic,
                key=str(item.subject).encode(),
                value=cloudevents.encode_value(item),
                headers=cloudevents.kafka_headers(cloudevents.to_headers(item)),
            )
    finally:
        await producer.stop()


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = 20.0) -> Any:
    """Await ``check()`` until it returns something truthy (events cross Kafka)."""
    async with asyncio.timeout(timeout):
        while True:
            result = await check()
            if result:
                return result
            await asyncio.sleep(0.05)


async def as_owner(db: TestDatabase, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(db.owner_dsn)
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


async def owner_execute(db: TestDatabase, sql: str) -> None:
    """SQL (several statements allowed) as the tables' owner: faults, fixtures."""
    conn = await asyncpg.connect(db.owner_dsn)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def outbox(db: TestDatabase) -> list[tuple[str, dict[str, Any]]]:
    """The public events written, oldest first: (type, data)."""
    rows = await as_owner(db, "SELECT headers->>'ce_type' AS type, payload FROM outbox ORDER BY id")
    return [(r["type"], json.loads(r["payload"])) for r in rows]


def submitted_event(
    brand: uuid.UUID,
    post_id: uuid.UUID,
    *,
    submission: int = 1,
    version: int = 2,
    author: str = "author-1",
    scheduled_at: datetime | None = None,
    platforms: tuple[str, ...] = ("sandbox",),
    text: str = "Hello from the test",
    media: dict[str, list[uuid.UUID]] | None = None,
) -> CloudEvent:
    """A ``publishing.post.submitted.v1`` as publishing sends it."""
    return event(
        "publishing.post.submitted.v1",
        brand,
        post_id,
        post_id=post_id,
        brand_id=brand,
        platforms=list(platforms),
        text=text,
        media_ids=[m for ids in (media or {}).values() for m in ids],
        scheduled_at=scheduled_at,
        author=author,
        submitted_by=author,
        submission=submission,
        version=version,
        texts={p: f"{text} ({p})" for p in platforms},
        media_by_platform=media or {p: [] for p in platforms},
    )


@dataclass
class Service:
    base: str
    app: Any
    clock: FakeClock
    http: aiohttp.ClientSession
    db: TestDatabase
    kafka: str

    @property
    def pool(self) -> asyncpg.Pool:
        return self.app.state.pool  # type: ignore[no-any-return]

    @property
    def expiry(self) -> Any:
        return self.app.state.approval_expiry

    async def call(
        self,
        method: str,
        path: str,
        brand: uuid.UUID,
        role: str = "manager",
        sub: str | None = None,
        email: str | None = None,
        **kwargs: Any,
    ) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token(role, brand, sub, email)}"}
        headers.update(kwargs.pop("headers", {}))
        async with self.http.request(method, self.base + path, headers=headers, **kwargs) as answer:
            raw = await answer.read()
            try:
                return answer.status, (json.loads(raw) if raw else None)
            except ValueError:
                return answer.status, raw.decode(errors="replace")

    async def publish(self, topic: str, *events: CloudEvent) -> None:
        await publish_events(self.kafka, topic, *events)

    async def row(self, brand: uuid.UUID, post_id: uuid.UUID) -> asyncpg.Record | None:
        rows = await as_owner(
            self.db,
            "SELECT * FROM post_approvals WHERE brand_id = $1 AND post_id = $2",
            brand,
            post_id,
        )
        return rows[0] if rows else None

    async def wait_row(
        self,
        brand: uuid.UUID,
        post_id: uuid.UUID,
        check: Callable[[asyncpg.Record], bool] = lambda r: True,
    ) -> asyncpg.Record:
        async def ready() -> asyncpg.Record | None:
            row = await self.row(brand, post_id)
            return row if row is not None and check(row) else None

        return await eventually(ready)  # type: ignore[no-any-return]

    async def submit(
        self, brand: uuid.UUID, post_id: uuid.UUID | None = None, **options: Any
    ) -> uuid.UUID:
        """Publish a ``publishing.post.submitted.v1`` and wait until the approval is open
        for it (its ``submission`` and ``post_version`` are the event's)."""
        post_id = post_id or uuid.uuid4()
        options.setdefault("submission", 1)
        options.setdefault("version", 2)
        await self.publish(Topic.PUBLISHING.value, submitted_event(brand, post_id, **options))
        await self.wait_row(
            brand,
            post_id,
            lambda r: (
                r["submission"] == options["submission"]
                and r["post_version"] == options["version"]
                and r["status"] == "pending"
            ),
        )
        return post_id

    async def approval_of(self, brand: uuid.UUID, post_id: uuid.UUID) -> dict[str, Any]:
        row = await self.row(brand, post_id)
        assert row is not None, "no approval for this post"
        status, body = await self.call("GET", f"/v1/approvals/{row['id']}", brand, role="viewer")
        assert status == 200, body
        return body  # type: ignore[no-any-return]

    async def brand(self, name: str = "Brand", timezone: str = "UTC") -> uuid.UUID:
        """A brand the service knows (``brand.created.v1`` through the broker)."""
        brand = uuid.uuid4()
        await self.publish(
            Topic.BRANDS.value,
            event(
                "brand.created.v1",
                brand,
                brand,
                brand_id=brand,
                name=name,
                timezone=timezone,
                settings={"approval_required": True},
                created_by="founder",
            ),
        )

        async def known() -> list[asyncpg.Record]:
            return await as_owner(
                self.db, "SELECT 1 FROM approval_brands WHERE brand_id = $1", brand
            )

        await eventually(known)
        return brand


@asynccontextmanager
async def approval_service(
    db: TestDatabase,
    kafka: str,
    *,
    clock: FakeClock | None = None,
    run_workers: bool = False,
    **overrides: Any,
) -> AsyncIterator[Service]:
    """The service on a real port with its consumer running; the expiry worker and the
    escalation scheduler are stepped by the test unless ``run_workers``."""
    clock = clock or FakeClock()
    app = create_app(
        approval_settings(db, kafka, **overrides), clock=clock, run_workers=run_workers
    )
    async with serve_asgi(app) as base, aiohttp.ClientSession() as http:
        yield Service(base, app, clock, http, db, kafka)


def code(problem: dict[str, Any]) -> str:
    """The stable code of a problem+json body (the last part of its ``type``)."""
    return str(problem["type"]).rsplit("/", 1)[-1]
