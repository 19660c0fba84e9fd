"""Running the publishing service in tests: a fake clock, a fake social platform served over
real HTTP, credentials kept in the connections tables, and helpers for events and rows.

The fake platform speaks a small REST API of the usual shape (``POST /<platform>/v1/posts``
with a bearer token and a client reference, ``GET /<platform>/v1/posts?client_reference=``,
errors as ``{"error": {"code", "message"}}``), counts every post it creates, and can be
scripted to fail the next calls (5xx, 429 with ``Retry-After``, a timeout, a rejection).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, ClassVar

import aiohttp
import asyncpg
from aiohttp import web
from pressroom_contracts import CloudEvent
from pressroom_kit import cloudevents
from pressroom_kit.auth import mint_token
from pressroom_kit.db import tenant_transaction
from pressroom_kit.testing.plugin import APP_ROLE, TestDatabase
from pressroom_kit.testing.servers import serve_asgi
from pressroom_publishing.app import create_app
from pressroom_publishing.platforms.base import (
    Account,
    Capabilities,
    ConnectionUnusable,
    Credentials,
    MetricsReport,
    OAuthContext,
    Platform,
    PlatformError,
    PlatformHTTP,
    PostContent,
    Problem,
    PublishedPost,
    PublishRequest,
    Response,
    RevokedError,
    TextCount,
    TokenGrant,
)
from pressroom_publishing.platforms.meta import Quota
from pressroom_publishing.settings import PublishingSettings

SECRET = "publishing-test-secret-publishing-test-secret"


class FakeClock:
    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


# --- the fake platform --------------------------------------------------------------------


@dataclass
class Action:
    """What the platform does with the next publish call instead of creating a post."""

    status: int = 0  # an error answer with this status
    code: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    create_then_wait: float | asyncio.Event | None = None  # create the post, then hang


@dataclass
class FakePlatformServer:
    url: str = ""
    created: list[dict[str, Any]] = field(default_factory=list)
    calls: Counter[str] = field(default_factory=Counter)
    expired_tokens: set[str] = field(default_factory=set)
    revoked_tokens: set[str] = field(default_factory=set)
    script: dict[str, list[Action]] = field(default_factory=dict)
    quota: dict[str, tuple[int, int]] = field(default_factory=dict)  # platform: (used, total)
    instance_chars: int = 500  # the fake Mastodon instance's own text limit

    def fail_next(self, platform: str, *actions: Action) -> None:
        self.script.setdefault(platform, []).extend(actions)

    def fail_next_find(self, platform: str, *statuses: int) -> None:
        """The next lookups of ``platform`` answer these error statuses."""
        self.script.setdefault(f"{platform}:find", []).extend(Action(status=s) for s in statuses)

    def posts_for(self, reference: str) -> list[dict[str, Any]]:
        return [p for p in self.created if p["client_reference"] == reference]

    def creations(self) -> Counter[str]:
        return Counter(p["client_reference"] for p in self.created)


def _error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    return web.json_response(
        {"error": {"code": code, "message": message}}, status=status, headers=headers
    )


@asynccontextmanager
async def fake_platform() -> AsyncIterator[FakePlatformServer]:
    state = FakePlatformServer()

    def refused(request: web.Request) -> web.Response | None:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if not token.startswith("tok-"):
            return _error(401, "invalid_token", "no token")
        if token in state.revoked_tokens:
            return _error(401, "token_revoked", "the user revoked this app")
        if token in state.expired_tokens:
            return _error(401, "token_expired", "the access token expired")
        return None

    async def create(request: web.Request) -> web.StreamResponse:
        platform = request.match_info["platform"]
        state.calls[f"{platform}:publish"] += 1
        answer = refused(request)
        if answer is not None:
            return answer
        body = await request.json()
        queue = state.script.get(platform) or []
        action = queue.pop(0) if queue else None
        if action is not None and action.status:
            return _error(
                action.status, action.code or f"http_{action.status}", "scripted", action.headers
            )
        post_id = uuid.uuid4().hex[:12]
        post = {
            "id": post_id,
            "platform": platform,
            "url": f"{state.url}/{platform}/p/{post_id}",
            "text": body["text"],
            "media": body.get("media", []),
            "options": body.get("options", {}),
            "client_reference": body["client_reference"],
        }
        state.created.append(post)
        if action is not None and action.create_then_wait is not None:
            wait = action.create_then_wait
            if isinstance(wait, asyncio.Event):
                await wait.wait()
            else:
                await asyncio.sleep(wait)
        return web.json_response({"data": {"id": post_id, "url": post["url"]}}, status=201)

    async def find(request: web.Request) -> web.StreamResponse:
        platform = request.match_info["platform"]
        state.calls[f"{platform}:find"] += 1
        answer = refused(request)
        if answer is not None:
            return answer
        queue = state.script.get(f"{platform}:find") or []
        if queue:
            status = queue.pop(0).status
            return _error(status, f"http_{status}", "scripted")
        reference = request.query.get("client_reference", "")
        found = [
            {"id": p["id"], "url": p["url"]}
            for p in state.created
            if p["platform"] == platform and p["client_reference"] == reference
        ]
        return web.json_response({"data": found})

    async def quota(request: web.Request) -> web.StreamResponse:
        platform = request.match_info["platform"]
        state.calls[f"{platform}:quota"] += 1
        used, total = state.quota.get(platform, (0, 50))
        return web.json_response({"data": {"used": used, "total": total, "window_s": 86400}})

    async def instance(request: web.Request) -> web.StreamResponse:
        state.calls[f"{request.match_info['platform']}:instance"] += 1
        return web.json_response({"data": {"max_characters": state.instance_chars}})

    app = web.Application()
    app.router.add_get("/{platform}/v1/quota", quota)
    app.router.add_get("/{platform}/v1/instance", instance)
    app.router.add_post("/{platform}/v1/posts", create)
    app.router.add_get("/{platform}/v1/posts", find)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    state.url = f"http://127.0.0.1:{port}"
    try:
        yield state
    finally:
        await runner.cleanup()


class FakePlatform(Platform):
    """An adapter for the fake platform; subclasses pick the id and capabilities."""

    capabilities: ClassVar[Capabilities] = Capabilities(
        platform="sandbox",
        display_name="Sandbox",
        text_limit=500,
        lookup_by_reference=True,
        max_images=4,
    )

    @property
    def base(self) -> str:
        return f"{self.config['api_url']}/{self.id}/v1"

    async def authorization_url(self, context: OAuthContext) -> str:
        return f"{self.config['api_url']}/authorize?state={context.state}"

    async def exchange_code(self, code: str, context: OAuthContext) -> TokenGrant:
        return TokenGrant(access_token=f"tok-{code}")

    async def refresh(self, credentials: Credentials) -> TokenGrant:
        return TokenGrant(access_token=credentials.access_token + "-r")

    async def verify(self, credentials: Credentials) -> Account:
        return Account(account_id=credentials.account_id)

    def validate(self, content: PostContent) -> list[Problem]:
        """The capabilities, and the one option the fake takes: ``title``, a short string
        (like Pinterest's)."""
        problems = super().validate(content)
        for name, value in content.options.items():
            if name != "title":
                problems.append(Problem(f"options.{name}", "unknown option; one of title"))
            elif not isinstance(value, str) or len(value) > 100:
                problems.append(Problem("options.title", "a string of at most 100 characters"))
        return problems

    async def publish(self, credentials: Credentials, request: PublishRequest) -> PublishedPost:
        answer = await self.http.request(
            self,
            "POST",
            f"{self.base}/posts",
            token=credentials.access_token,
            json={
                "text": request.content.text,
                "media": [{"url": m.url, "kind": m.kind} for m in request.content.media],
                "link": request.content.link,
                "options": dict(request.content.options),
                "client_reference": request.reference,
            },
        )
        data = answer.json()["data"]
        return PublishedPost(platform_post_id=data["id"], url=data["url"])

    async def find_published(
        self, credentials: Credentials, request: PublishRequest
    ) -> PublishedPost | None:
        if not self.capabilities.lookup_by_reference:
            return await super().find_published(credentials, request)
        answer = await self.http.request(
            self,
            "GET",
            f"{self.base}/posts",
            token=credentials.access_token,
            params={"client_reference": request.reference},
        )
        found = answer.json()["data"]
        return (
            PublishedPost(platform_post_id=found[0]["id"], url=found[0]["url"]) if found else None
        )

    async def delete(self, credentials: Credentials, platform_post_id: str) -> None:
        return None

    async def fetch_metrics(
        self,
        credentials: Credentials,
        since: date,
        until: date,
        platform_post_ids: Sequence[str] = (),
    ) -> MetricsReport:
        return MetricsReport()

    def classify(self, response: Response) -> PlatformError:
        error = super().classify(response)
        if error.code == "token_revoked":
            return RevokedError(self.id, error.message, code=error.code, status=error.status)
        return error


class FakeMastodon(FakePlatform):
    """No lookup by reference: an unknown outcome cannot be reconciled. Its instance has
    its own text limit (``validate_for``)."""

    async def validate_for(self, credentials: Credentials, content: PostContent) -> list[Problem]:
        answer = await self.http.request(
            self, "GET", f"{self.base}/instance", token=credentials.access_token
        )
        limit = answer.json()["data"]["max_characters"]
        if len(content.text) > limit:
            return [Problem("text", f"{len(content.text)} characters; the instance takes {limit}")]
        return []

    capabilities = Capabilities(
        platform="mastodon", display_name="Mastodon", text_limit=500, lookup_by_reference=False
    )


class FakeX(FakePlatform):
    """With a publishing quota, like Instagram's and Threads'."""

    async def publishing_quota(self, credentials: Credentials) -> Quota:
        answer = await self.http.request(
            self, "GET", f"{self.base}/quota", token=credentials.access_token
        )
        data = answer.json()["data"]
        return Quota(used=data["used"], total=data["total"], window_s=data["window_s"])

    capabilities = Capabilities(
        platform="x",
        display_name="X",
        text_limit=280,
        text_count=TextCount.CHARACTERS,
        lookup_by_reference=True,
        max_images=4,
    )


class FakePinterest(FakePlatform):
    capabilities = Capabilities(
        platform="pinterest",
        display_name="Pinterest",
        text_limit=500,
        needs_media=True,
        media_kinds=frozenset({"image"}),
        max_images=1,
        lookup_by_reference=True,
    )


FAKES: dict[str, type[FakePlatform]] = {
    "sandbox": FakePlatform,
    "mastodon": FakeMastodon,
    "x": FakeX,
    "pinterest": FakePinterest,
}


def fake_factory(api_url: str, ids: Sequence[str] = tuple(FAKES)):  # type: ignore[no-untyped-def]
    def build(http: PlatformHTTP) -> dict[str, Platform]:
        return {i: FAKES[i](http, {"api_url": api_url}) for i in ids}

    return build


# --- credentials from the connections tables ---------------------------------------------


class TableCredentials:
    """A ``CredentialSource`` over ``platform_connections``/``platform_connection_tokens``:
    the token is ``tok-<connection id>-<generation>``; a refresh bumps the generation once
    (the first caller wins, like the real vault), a revocation marks the connection."""

    def __init__(self, pool: asyncpg.Pool | None = None) -> None:
        self.pool = pool
        self.refreshes = 0
        self.dead_refresh: set[str] = set()  # platforms whose refresh token is dead

    async def credentials(self, brand_id: uuid.UUID, platform: str) -> Credentials:
        assert self.pool is not None
        async with tenant_transaction(self.pool, brand_id) as conn:
            row = await conn.fetchrow(
                "SELECT c.id, c.status, c.account_id, t.generation FROM platform_connections c "
                "LEFT JOIN platform_connection_tokens t ON t.connection_id = c.id "
                "WHERE c.platform = $1",
                platform,
            )
        if row is None:
            raise ConnectionUnusable(platform, "missing", f"the brand has no {platform} connection")
        if row["status"] != "connected":
            raise ConnectionUnusable(
                platform, row["status"], f"the {platform} connection is {row['status']}"
            )
        return Credentials(
            connection_id=row["id"],
            brand_id=brand_id,
            platform=platform,
            access_token=f"tok-{row['id']}-{row['generation']}",
            account_id=row["account_id"],
        )

    async def refresh_after_rejection(self, stale: Credentials) -> Credentials:
        assert self.pool is not None
        self.refreshes += 1
        if stale.platform in self.dead_refresh:
            raise ConnectionUnusable(stale.platform, "expired", "the refresh token is dead too")
        generation = int(stale.access_token.rsplit("-", 1)[1])
        async with tenant_transaction(self.pool, stale.brand_id) as conn:
            await conn.execute(
                "UPDATE platform_connection_tokens SET generation = generation + 1, "
                "updated_at = now() WHERE connection_id = $1 AND generation = $2",
                stale.connection_id,
                generation,
            )
        return await self.credentials(stale.brand_id, stale.platform)

    async def mark_revoked(self, credentials: Credentials, error: PlatformError) -> None:
        assert self.pool is not None
        async with tenant_transaction(self.pool, credentials.brand_id) as conn:
            await conn.execute(
                "UPDATE platform_connections SET status = 'revoked', last_error = $2, "
                "updated_at = now() WHERE id = $1",
                credentials.connection_id,
                error.message,
            )


# --- the service ----------------------------------------------------------------------------


def token(role: str = "manager", brand: uuid.UUID | None = None, sub: str | None = None) -> str:
    return mint_token(SECRET, sub=sub or f"user-{role}", role=role, brand_id=brand)  # type: ignore[arg-type]


@dataclass
class Service:
    base: str
    app: Any
    clock: FakeClock
    http: aiohttp.ClientSession
    db: TestDatabase
    credentials: TableCredentials

    @property
    def pool(self) -> asyncpg.Pool:
        return self.app.state.pool  # type: ignore[no-any-return]

    @property
    def scheduler(self) -> Any:
        return self.app.state.scheduler

    @property
    def metrics(self) -> Any:
        """The metrics worker (``MetricsSync``), stepped by the tests."""
        return self.app.state.metrics_sync

    async def call(
        self,
        method: str,
        path: str,
        brand: uuid.UUID,
        role: str = "manager",
        sub: str | None = None,
        **kwargs: Any,
    ) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token(role, brand, sub)}"}
        async with self.http.request(method, self.base + path, headers=headers, **kwargs) as answer:
            raw = await answer.read()
            return answer.status, (json.loads(raw) if raw else None)

    async def create(self, brand: uuid.UUID, **body: Any) -> dict[str, Any]:
        body.setdefault("content", {"text": "Hello"})
        body.setdefault("platforms", ["sandbox"])
        status, answer = await self.call("POST", "/v1/posts", brand, json=body)
        assert status == 201, answer
        return answer  # type: ignore[no-any-return]

    async def post(self, brand: uuid.UUID, post_id: str) -> dict[str, Any]:
        status, answer = await self.call("GET", f"/v1/posts/{post_id}", brand, role="viewer")
        assert status == 200, answer
        return answer  # type: ignore[no-any-return]

    async def drain(self, rounds: int = 50) -> None:
        """Step the scheduler until nothing due is left (on the fake clock)."""
        for _ in range(rounds):
            if await self.scheduler.step() == 0:
                return


def publishing_settings(db: TestDatabase, kafka: str, **overrides: Any) -> PublishingSettings:
    values: dict[str, Any] = {
        "database_url": db.owner_dsn,
        "runtime_role": APP_ROLE,
        "jwt_secret": SECRET,
        "kafka_bootstrap_servers": kafka,
        "consumer_group": f"publishing-test-{uuid.uuid4().hex[:8]}",
        "consumer_session_timeout_ms": 2000,
        "platform_timeout_s": 2.0,
        "media_url": "http://127.0.0.1:9",
        "sandbox_enabled": False,
        **overrides,
    }
    return PublishingSettings.model_validate(values)


@asynccontextmanager
async def publishing_service(
    db: TestDatabase,
    kafka: str,
    platform: FakePlatformServer,
    *,
    ids: Sequence[str] = tuple(FAKES),
    clock: FakeClock | None = None,
    run_scheduler: bool = False,
    **overrides: Any,
) -> AsyncIterator[Service]:
    """The service on a real port. Tests step the scheduler (and the metrics worker) on a
    fake clock, unless ``run_scheduler`` runs them for real (on the real clock)."""
    clock = clock or FakeClock()
    credentials = TableCredentials()
    app = create_app(
        publishing_settings(db, kafka, **overrides),
        clock=(lambda: datetime.now(UTC)) if run_scheduler else clock,
        run_scheduler=run_scheduler,
        run_connections=False,
        run_metrics=run_scheduler,
        credentials=credentials,
        platform_factory=fake_factory(platform.url, ids),
    )
    async with serve_asgi(app) as base, aiohttp.ClientSession() as http:
        credentials.pool = app.state.pool
        app.state.scheduler.random_fraction = lambda: 0.0  # the backoff schedule, exactly
        yield Service(base, app, clock, http, db, credentials)


# --- rows and events --------------------------------------------------------------------------


async def as_owner(db: TestDatabase, sql: str, *args: Any) -> Any:
    conn = await asyncpg.connect(db.owner_dsn)
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


async def connect_platform(
    db: TestDatabase, brand: uuid.UUID, platform: str, status: str = "connected"
) -> uuid.UUID:
    connection_id = uuid.uuid4()
    await as_owner(
        db,
        "WITH c AS (INSERT INTO platform_connections (id, brand_id, platform, status, account_id, "
        "created_at, updated_at) VALUES ($1, $2, $3, $4, 'acct-1', now(), now()) RETURNING id) "
        "INSERT INTO platform_connection_tokens (connection_id, brand_id, platform, "
        "access_token_enc, updated_at) SELECT id, $2, $3, 'sealed', now() FROM c",
        connection_id,
        brand,
        platform,
        status,
    )
    return connection_id


async def add_media(
    db: TestDatabase,
    brand: uuid.UUID,
    kind: str = "image",
    content_type: str = "image/jpeg",
    size: int = 1000,
) -> uuid.UUID:
    asset_id = uuid.uuid4()
    await as_owner(
        db,
        "INSERT INTO publishing_media (asset_id, brand_id, kind, filename, content_type, "
        "size_bytes, width, height, updated_at) VALUES ($1, $2, $3, 'f', $4, $5, 10, 10, now())",
        asset_id,
        brand,
        kind,
        content_type,
        size,
    )
    return asset_id


async def targets(db: TestDatabase, post_id: str | uuid.UUID) -> dict[str, asyncpg.Record]:
    rows = await as_owner(
        db, "SELECT * FROM publishing_targets WHERE post_id = $1", uuid.UUID(str(post_id))
    )
    return {r["platform"]: r for r in rows}


async def outbox(db: TestDatabase) -> list[tuple[str, dict[str, Any]]]:
    """The public events written, oldest first: (type, data)."""
    rows = await as_owner(db, "SELECT headers->>'ce_type' AS type, payload FROM outbox ORDER BY id")
    return [(r["type"], json.loads(r["payload"])) for r in rows]


async def publish_events(bootstrap: str, topic: str, *events: CloudEvent) -> None:
    """CloudEvents on a topic the way the outbox relay puts them (binary mode)."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        for event in events:
            await producer.send_and_wait(
                topic,
                key=str(event.subject).encode(),
                value=cloudevents.encode_value(event),
                headers=cloudevents.kafka_headers(cloudevents.to_headers(event)),
            )
    finally:
        await producer.stop()


async def eventually(check: Any, timeout: float = 20.0) -> Any:
    """Await ``check()`` until it returns something truthy (events cross Kafka)."""
    async with asyncio.timeout(timeout):
        while True:
            result = await check()
            if result:
                return result
            await asyncio.sleep(0.05)


def event(type_: str, brand: uuid.UUID, subject: Any, **data: Any) -> CloudEvent:
    return CloudEvent(
        source="/pressroom/test",
        type=type_,
        subject=str(subject),
        brandid=brand,
        data=json.loads(json.dumps(data, default=str)),
    )


@asynccontextmanager
async def another_replica(service: Service, **overrides: Any) -> AsyncIterator[Any]:
    """A second scheduler on its own pool, HTTP client and credential source, sharing the
    service's database, platform and clock: another replica of the same deployment."""
    from pressroom_kit.db import create_pool
    from pressroom_publishing.scheduler import Scheduler

    settings = service.app.state.settings.model_copy(update=overrides)
    pool = await create_pool(service.db.app_dsn, min_size=1, max_size=20)
    try:
        async with aiohttp.ClientSession() as session:
            http = PlatformHTTP(session, timeout_s=settings.platform_timeout_s)
            api_url = next(iter(service.app.state.platforms.values())).config["api_url"]
            scheduler = Scheduler(
                pool,
                settings,
                fake_factory(api_url)(http),
                TableCredentials(pool),
                clock=service.clock,
                random_fraction=lambda: 0.0,
            )
            yield scheduler
    finally:
        await pool.close()


@asynccontextmanager
async def sandbox_service(db: TestDatabase, kafka: str, **overrides: Any) -> AsyncIterator[Service]:
    """The service as deployed locally: the sandbox mounted in it, its adapter, the token
    vault (``VaultCredentials``) and the scheduler stepped on a fake clock."""
    from pressroom_kit.embedded import free_port

    port = free_port()
    clock = FakeClock()
    settings = publishing_settings(
        db,
        kafka,
        port=port,
        public_url=f"http://127.0.0.1:{port}",
        sandbox_enabled=True,
        **overrides,
    )
    app = create_app(
        settings, clock=clock, run_scheduler=False, run_connections=False, run_metrics=False
    )
    async with serve_asgi(app, port=port) as base, aiohttp.ClientSession() as http:
        service = Service(base, app, clock, http, db, TableCredentials())
        service.scheduler.random_fraction = lambda: 0.0
        yield service
