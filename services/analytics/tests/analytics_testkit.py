"""Running the analytics service in tests: a fake clock, tokens, events injected through the
real consumer (published on Kafka as the outbox relay would, then awaited in the inbox),
publishing's answers to a sync, and synthetic history written straight into the tables.

Typical use::

    async with analytics_service(fresh_db, kafka_bootstrap) as svc:
        await svc.inject(brand_created(brand, "Europe/Madrid"), connected(brand, "sandbox"))
        status, body = await svc.call("POST", "/v1/analytics/sync", brand, json={})
        request = await svc.sync_request(body["sync_log_id"])
        await svc.inject(answer(request, "sandbox", account=days(request, "sandbox")))
"""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg
from aiokafka import AIOKafkaProducer
from pressroom_analytics.app import create_app
from pressroom_analytics.settings import AnalyticsSettings
from pressroom_contracts import CloudEvent, Topic
from pressroom_contracts.events.analytics import SyncRequested
from pressroom_contracts.events.brands import BrandCreated, BrandUpdated
from pressroom_contracts.events.publishing import (
    AccountDay,
    ConnectionConnected,
    ConnectionExpired,
    ConnectionRevoked,
    MetricsCollected,
    PostDay,
    PostPublished,
)
from pressroom_contracts.topics import topic_for_type
from pressroom_kit import cloudevents
from pressroom_kit.auth import mint_token
from pressroom_kit.db import set_all_brands
from pressroom_kit.testing.plugin import APP_ROLE, TestDatabase
from pressroom_kit.testing.servers import serve_asgi

CONSUMED = (Topic.PUBLISHING.value, Topic.BRANDS.value)
SECRET = "analytics-test-secret-analytics-test-secret"
PUBLISHING = "/pressroom/publishing"


class FakeClock:
    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2027, 3, 10, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def token(role: str = "manager", brand: uuid.UUID | None = None, sub: str | None = None) -> str:
    return mint_token(SECRET, sub=sub or f"user-{role}", role=role, brand_id=brand)  # type: ignore[arg-type]


# --- events ----------------------------------------------------------------------------------


def event(type_: str, brand: uuid.UUID, subject: Any, data: Any, **attrs: Any) -> CloudEvent:
    """A CloudEvent as another service's relay would publish it; ``data`` is a payload model
    or a dict."""
    if hasattr(data, "model_dump"):
        data = data.model_dump(mode="json", by_alias=True)
    return CloudEvent(
        source=attrs.pop("source", PUBLISHING),
        type=type_,
        subject=str(subject),
        brandid=brand,
        data=json.loads(json.dumps(data, default=str)),
        **attrs,
    )


def brand_created(brand: uuid.UUID, timezone: str = "UTC", name: str = "Brand") -> CloudEvent:
    payload = BrandCreated(brand_id=brand, name=name, timezone=timezone, created_by="user-admin")
    return event(BrandCreated.event_type, brand, brand, payload, source="/pressroom/gateway")


def brand_updated(brand: uuid.UUID, timezone: str, name: str = "Brand") -> CloudEvent:
    payload = BrandUpdated(brand_id=brand, name=name, timezone=timezone, changed=["timezone"])
    return event(BrandUpdated.event_type, brand, brand, payload, source="/pressroom/gateway")


def connected(brand: uuid.UUID, platform: str, **attrs: Any) -> CloudEvent:
    connection = uuid.uuid4()
    payload = ConnectionConnected(
        connection_id=connection, brand_id=brand, platform=platform, account_id="acct-1"
    )
    return event(ConnectionConnected.event_type, brand, connection, payload, **attrs)


def disconnected(brand: uuid.UUID, platform: str, how: str = "revoked", **attrs: Any) -> CloudEvent:
    kind = ConnectionRevoked if how == "revoked" else ConnectionExpired
    payload = kind(connection_id=uuid.uuid4(), brand_id=brand, platform=platform, reason=how)
    return event(kind.event_type, brand, payload.connection_id, payload, **attrs)


def published(
    brand: uuid.UUID,
    platform: str,
    platform_post_id: str,
    *,
    post_id: uuid.UUID | None = None,
    published_at: datetime | None = None,
    plan_id: uuid.UUID | None = None,
) -> CloudEvent:
    payload = PostPublished(
        post_id=post_id or uuid.uuid4(),
        brand_id=brand,
        platform=platform,
        platform_post_id=platform_post_id,
        published_at=published_at or datetime(2027, 3, 1, 9, tzinfo=UTC),
        plan_id=plan_id,
    )
    return event(PostPublished.event_type, brand, payload.post_id, payload)


def day_numbers(platform: str, day: date, *, scale: int = 1) -> AccountDay:
    """Deterministic numbers of an account day (the same platform and day, the same numbers;
    ``scale`` makes a later, different answer)."""
    rng = random.Random(f"{platform}:{day.isoformat()}")
    reach = rng.randint(500, 5000) * scale
    return AccountDay(
        date=day,
        reach=reach,
        impressions=reach + rng.randint(0, 3000),
        engagement=rng.randint(0, reach // 10),
        followers=10_000 + (day - date(2026, 1, 1)).days * 7 + rng.randint(0, 5),
    )


def dates(since: date, until: date) -> list[date]:
    return [since + timedelta(days=i) for i in range((until - since).days + 1)]


def days(request: SyncRequested, platform: str, *, scale: int = 1) -> list[AccountDay]:
    return [day_numbers(platform, d, scale=scale) for d in dates(request.since, request.until)]


def answer(
    request: SyncRequested,
    platform: str,
    *,
    account: Sequence[AccountDay] = (),
    posts: Sequence[PostDay] = (),
    status: str = "ok",
    error: str | None = None,
    collected_at: datetime | None = None,
    event_id: uuid.UUID | None = None,
) -> CloudEvent:
    """``publishing.metrics.collected.v1`` for one platform of ``request``, as publishing
    sends it (a fresh event id unless ``event_id``: publishing may resend)."""
    payload = MetricsCollected(
        sync_id=request.sync_id,
        brand_id=request.brand_id,
        platform=platform,
        status=status,  # type: ignore[arg-type]
        since=request.since,
        until=request.until,
        account=list(account),
        posts=list(posts),
        error=error,
        collected_at=collected_at or datetime.now(UTC),
    )
    extra = {"id": event_id} if event_id else {}
    return event(MetricsCollected.event_type, request.brand_id, request.sync_id, payload, **extra)


async def publish_events(bootstrap: str, *events: CloudEvent) -> None:
    """CloudEvents on their topics the way the outbox relay puts them (binary mode, keyed by
    subject)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        for item in events:
            await producer.send_and_wait(
                topic_for_type(item.type),
                key=str(item.subject).encode(),
                value=cloudevents.encode_value(item),
                headers=cloudevents.kafka_headers(cloudevents.to_headers(item)),
            )
    finally:
        await producer.stop()


async def start_group_at_end(bootstrap: str, group: str, topics: Sequence[str]) -> None:
    """Commit ``group``'s offsets at the topics' current ends, so a consumer of that group
    reads only what is published from now on: the broker lives for the whole session and
    other tests' events (other brands, other databases) stay theirs."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        partitions = [
            TopicPartition(topic, p)
            for topic in topics
            for p in sorted(
                consumer.partitions_for_topic(topic) or await _partitions(consumer, topic)
            )
        ]
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        await consumer.commit({tp: offset for tp, offset in ends.items()})
    finally:
        await consumer.stop()


async def _partitions(consumer: Any, topic: str) -> set[int]:
    await consumer._client.force_metadata_update()
    return set(consumer.partitions_for_topic(topic) or ())


async def eventually(check: Any, timeout: float = 20.0) -> Any:
    """Await ``check()`` until it returns something truthy (events cross Kafka)."""
    async with asyncio.timeout(timeout):
        while True:
            result = await check()
            if result:
                return result
            await asyncio.sleep(0.05)


# --- the database --------------------------------------------------------------------------------


async def as_owner(db: TestDatabase, sql: str, *args: Any) -> list[asyncpg.Record]:
    """``sql`` as the tables' owner across every brand (``app.all_brands``)."""
    conn = await asyncpg.connect(db.owner_dsn)
    try:
        async with conn.transaction():
            await set_all_brands(conn)
            return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def outbox(db: TestDatabase, type_: str | None = None) -> list[dict[str, Any]]:
    """The public events written (payloads), oldest first; only ``type_`` when given."""
    rows = await as_owner(
        db,
        "SELECT headers->>'ce_type' AS type, payload FROM outbox "
        "WHERE $1::text IS NULL OR headers->>'ce_type' = $1 ORDER BY id",
        type_,
    )
    return [
        json.loads(r["payload"]) if isinstance(r["payload"], str) else r["payload"] for r in rows
    ]


async def insert_history(
    db: TestDatabase,
    brand: uuid.UUID,
    platform: str,
    since: date,
    until: date,
    *,
    posts_per_week: int = 3,
    seed: int = 7,
) -> dict[str, int]:
    """Synthetic history for the advisor's tests: account days ``since..until`` and posts
    (``posts_per_week``, at varying hours and media kinds, each with 3 days of numbers),
    written as the owner. Deterministic for a ``seed``; returns the counts written."""
    rng = random.Random(f"{seed}:{brand}:{platform}")
    account = [day_numbers(platform, d) for d in dates(since, until)]
    now = datetime.now(UTC)
    await as_owner(
        db,
        "INSERT INTO analytics_metrics (brand_id, platform, date, reach, impressions, "
        "engagement, followers, collected_at, synced_at) "
        "SELECT $1, $2, * , $8, $8 FROM unnest($3::date[], $4::bigint[], $5::bigint[], "
        "$6::bigint[], $7::bigint[]) ON CONFLICT DO NOTHING",
        brand,
        platform,
        [a.date for a in account],
        [a.reach for a in account],
        [a.impressions for a in account],
        [a.engagement for a in account],
        [a.followers for a in account],
        now,
    )
    post_rows: list[tuple[Any, ...]] = []
    metric_rows: list[tuple[Any, ...]] = []
    day = since
    while day <= until:
        for _ in range(posts_per_week):
            when = datetime.combine(
                day + timedelta(days=rng.randint(0, 6)), datetime.min.time(), tzinfo=UTC
            ) + timedelta(hours=rng.choice([8, 9, 12, 17, 19, 21]))
            if when.date() > until:
                continue
            post_id = uuid.uuid4()
            kind = rng.choice(["text", "image", "video"])
            ppid = f"{platform}-{post_id.hex[:10]}"
            post_rows.append((post_id, ppid, when, kind))
            boost = {"text": 1.0, "image": 1.6, "video": 2.2}[kind]
            boost *= 1.5 if when.hour in (12, 19) else 1.0
            for offset in range(3):
                reach = int(rng.randint(100, 1000) * boost)
                engagement = int(reach * rng.uniform(0.02, 0.08))
                metric_rows.append(
                    (
                        post_id,
                        ppid,
                        when.date() + timedelta(days=offset),
                        reach,
                        reach + 50,
                        engagement,
                        engagement // 2,
                        engagement // 5,
                        engagement // 10,
                    )
                )
        day += timedelta(days=7)
    if post_rows:
        await as_owner(
            db,
            "INSERT INTO analytics_posts (brand_id, post_id, platform, platform_post_id, "
            "published_at, media_kind, updated_at) SELECT $1, p, $2, pp, pa, mk, $7 "
            "FROM unnest($3::uuid[], $4::text[], $5::timestamptz[], $6::text[]) "
            "AS u(p, pp, pa, mk)",
            brand,
            platform,
            *[list(c) for c in zip(*post_rows, strict=True)],
            now,
        )
        columns = [list(c) for c in zip(*metric_rows, strict=True)]
        await as_owner(
            db,
            "INSERT INTO analytics_post_metrics (brand_id, platform, post_id, platform_post_id, "
            "date, reach, impressions, engagement, likes, comments, shares, collected_at, "
            "synced_at) SELECT $1, $2, *, $12, $12 FROM unnest($3::uuid[], $4::text[], "
            "$5::date[], $6::bigint[], $7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[], "
            "$11::bigint[]) ON CONFLICT DO NOTHING",
            brand,
            platform,
            *columns,
            now,
        )
    return {"days": len(account), "posts": len(post_rows), "post_days": len(metric_rows)}


# --- the service ------------------------------------------------------------------------------


def analytics_settings(db: TestDatabase, kafka: str, **overrides: Any) -> AnalyticsSettings:
    values: dict[str, Any] = {
        "database_url": db.owner_dsn,
        "runtime_role": APP_ROLE,
        "jwt_secret": SECRET,
        "kafka_bootstrap_servers": kafka,
        "consumer_group": f"analytics-test-{uuid.uuid4().hex[:8]}",
        "consumer_session_timeout_ms": 2000,
        **overrides,
    }
    return AnalyticsSettings.model_validate(values)


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
    def workers(self) -> Any:
        """The sync workers (``step_timeouts``, ``step_daily`` on the fake clock)."""
        return self.app.state.sync_workers

    @property
    def consumer_group(self) -> str:
        return str(self.app.state.settings.consumer_group)

    async def call(
        self,
        method: str,
        path: str,
        brand: uuid.UUID,
        role: str = "manager",
        sub: str | None = None,
        raw: bool = False,
        **kwargs: Any,
    ) -> tuple[int, Any]:
        """``(status, JSON body)``; ``raw`` gives ``(status, (content type, bytes))``."""
        headers = {
            "Authorization": f"Bearer {token(role, brand, sub)}",
            **kwargs.pop("headers", {}),
        }
        async with self.http.request(method, self.base + path, headers=headers, **kwargs) as got:
            body = await got.read()
            if raw:
                return got.status, (got.headers.get("Content-Type", ""), body)
            return got.status, (json.loads(body) if body else None)

    async def inject(self, *events: CloudEvent, timeout: float = 30.0) -> None:
        """Publish the events on Kafka and wait until this service's consumer applied them
        (their inbox rows commit with their effects)."""
        await publish_events(self.kafka, *events)
        await self.wait_applied(*events, timeout=timeout)

    async def wait_applied(self, *events: CloudEvent, timeout: float = 30.0) -> None:
        ids = list({e.id for e in events})

        async def applied() -> bool:
            rows = await as_owner(
                self.db,
                "SELECT count(*) AS n FROM inbox WHERE consumer = $1 AND event_id = ANY($2)",
                self.consumer_group,
                ids,
            )
            return bool(rows[0]["n"] == len(ids))

        await eventually(applied, timeout)

    async def sync(self, brand: uuid.UUID, body: dict[str, Any] | None = None) -> SyncRequested:
        """``POST /v1/analytics/sync`` (202 expected) and the request it put in the outbox."""
        status, got = await self.call("POST", "/v1/analytics/sync", brand, json=body or {})
        assert status == 202, got
        return await self.sync_request(got["sync_log_id"])

    async def sync_request(self, sync_id: str | uuid.UUID) -> SyncRequested:
        for payload in await outbox(self.db, SyncRequested.event_type):
            if payload["sync_id"] == str(sync_id):
                return SyncRequested.model_validate(payload)
        raise AssertionError(f"no sync.requested for {sync_id}")

    async def sync_log(self, brand: uuid.UUID, sync_id: str | uuid.UUID) -> dict[str, Any]:
        status, got = await self.call(
            "GET", f"/v1/analytics/sync-logs/{sync_id}", brand, role="viewer"
        )
        assert status == 200, got
        return got  # type: ignore[no-any-return]

    async def answer_all(
        self, request: SyncRequested, *, scale: int = 1, posts: Iterable[PostDay] = ()
    ) -> list[CloudEvent]:
        """Publishing's ok answer for every platform asked (the deterministic numbers)."""
        answers = [
            answer(request, p, account=days(request, p, scale=scale), posts=list(posts))
            for p in request.platforms
        ]
        await self.inject(*answers)
        return answers


@asynccontextmanager
async def analytics_service(
    db: TestDatabase,
    kafka: str,
    *,
    clock: FakeClock | None = None,
    run_workers: bool = False,
    **overrides: Any,
) -> AsyncIterator[Service]:
    """The service on a real port, its consumer on a group of its own; tests step the
    workers on the fake clock (``svc.workers``) unless ``run_workers``."""
    clock = clock or FakeClock()
    settings = analytics_settings(db, kafka, **overrides)
    await start_group_at_end(kafka, settings.consumer_group, CONSUMED)
    app = create_app(settings, clock=clock, run_workers=run_workers)
    async with serve_asgi(app) as base, aiohttp.ClientSession() as http:
        yield Service(base, app, clock, http, db, kafka)


@asynccontextmanager
async def other_workers(service: Service) -> AsyncIterator[Any]:
    """The sync workers of another replica: their own pool on the same database and clock
    (no consumer, so the group does not rebalance)."""
    from pressroom_analytics.sync import _after_sync
    from pressroom_analytics.sync.workers import SyncWorkers
    from pressroom_kit.db import create_pool

    pool = await create_pool(service.db.app_dsn, min_size=1, max_size=10)
    try:
        yield SyncWorkers(pool, service.app.state.settings, service.clock, _after_sync)
    finally:
        await pool.close()


@asynccontextmanager
async def replica(service: Service, **overrides: Any) -> AsyncIterator[Service]:
    """A second replica of the same deployment: its own app, pool and consumer in the same
    group, on the same database, broker and clock."""
    settings = service.app.state.settings.model_copy(update=overrides)
    app = create_app(settings, clock=service.clock, run_workers=False)
    async with serve_asgi(app) as base, aiohttp.ClientSession() as http:
        yield Service(base, app, service.clock, http, service.db, service.kafka)
