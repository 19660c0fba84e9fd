"""Composition root: ``create_app(settings)``; nothing connects at import."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from importlib import resources
from typing import Any

import aiohttp
from litestar import Litestar
from pressroom_contracts.topics import Topic
from pressroom_kit.auth import JWTVerifier
from pressroom_kit.consumer import ConsumerSettings, InboxConsumer
from pressroom_kit.db import create_pool, prepare_database
from pressroom_kit.health import Heartbeats
from pressroom_kit.http import ReadinessCheck, broker_check, create_service_app, database_check
from pressroom_kit.logs import get_logger
from pressroom_kit.outbox import Relay
from pressroom_kit.runtime import BackgroundWorkers

from pressroom_publishing import handlers, platforms
from pressroom_publishing.media_links import MediaLinks
from pressroom_publishing.platforms.base import CredentialSource, Platform, PlatformHTTP
from pressroom_publishing.posts.api import CalendarController, PostController
from pressroom_publishing.scheduler import Clock, Scheduler, utcnow
from pressroom_publishing.settings import PublishingSettings

log = get_logger(__name__)
MIGRATIONS = ("publishing", resources.files("pressroom_publishing") / "migrations")
PlatformFactory = Callable[[PlatformHTTP], Mapping[str, Platform]]


def configured_platforms(settings: PublishingSettings) -> PlatformFactory:
    """The adapters this installation runs: the sandbox when enabled."""

    def build(http: PlatformHTTP) -> Mapping[str, Platform]:
        configs: dict[str, dict[str, Any]] = {}
        if settings.sandbox_enabled:
            configs["sandbox"] = {
                "api_url": settings.sandbox_api(),
                "auth_url": settings.sandbox_auth(),
                "client_id": "pressroom-sandbox",
                "client_secret": "pressroom-sandbox-secret",
            }
        return platforms.build_platforms(http, configs)

    return build


def create_app(
    settings: PublishingSettings | None = None,
    *,
    clock: Clock = utcnow,
    run_scheduler: bool = True,
    credentials: CredentialSource | None = None,
    platform_factory: PlatformFactory | None = None,
) -> Litestar:
    """The publishing service. ``clock``, ``run_scheduler``, ``credentials`` and
    ``platform_factory`` exist so tests can drive time, step the scheduler themselves and
    stand in for the connections and the platforms."""
    settings = settings or PublishingSettings()
    heartbeats = Heartbeats()
    workers = BackgroundWorkers()
    build_platforms = platform_factory or configured_platforms(settings)
    state: dict[str, Any] = {}

    async def database_ready() -> None:
        await database_check(state["pool"])()

    readiness: dict[str, ReadinessCheck] = {
        "database": database_ready,
        "broker": broker_check(settings.kafka_bootstrap_servers),
    }

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        runtime_dsn = await prepare_database(
            database_url=settings.database_url,
            migrate_database_url=settings.migrate_database_url,
            runtime_role=settings.runtime_role,
            migrations=[MIGRATIONS],
        )
        pool = await create_pool(runtime_dsn, min_size=2, max_size=30)
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=512, limit_per_host=128),
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        http = PlatformHTTP(session, timeout_s=settings.platform_timeout_s)
        adapters = dict(build_platforms(http))
        secret = settings.jwt_secret.get_secret_value() if settings.jwt_secret else None
        media = MediaLinks(session, settings.media_url, secret)
        box = None  # lead: box = SecretBox(settings.encryption_keys, settings.encryption_key_id)
        source = (
            credentials  # lead: ... or VaultCredentials(pool, box, adapters, settings, clock=clock)
        )
        app.state.update(
            pool=pool,
            settings=settings,
            clock=clock,
            platforms=adapters,
            credentials=source,
            box=box,
            http=http,
        )
        state["pool"] = pool
        workers.add(
            "relay",
            Relay(
                service="publishing",
                dsn=runtime_dsn,
                bootstrap_servers=settings.kafka_bootstrap_servers,
                heartbeats=heartbeats,
            ).run,
        )
        workers.add(
            "consumer",
            InboxConsumer(
                name=settings.consumer_group,
                dsn_or_pool=pool,
                bootstrap_servers=settings.kafka_bootstrap_servers,
                topics=[Topic.BRANDS.value, Topic.MEDIA.value, Topic.APPROVAL.value],
                handlers=handlers.consumer_handlers(clock),
                heartbeats=heartbeats,
                settings=ConsumerSettings.with_session_timeout(
                    settings.consumer_session_timeout_ms
                ),
            ).run,
        )
        # lead: workers.add("connections", ConnectionWorker(pool, box, adapters, ...).run)
        if source is not None:
            scheduler = Scheduler(
                pool, settings, adapters, source, media, heartbeats=heartbeats, clock=clock
            )
            app.state.scheduler = scheduler
            if run_scheduler:
                workers.add("scheduler", scheduler.run)
        else:
            log.warning("no credential source: the scheduler does not run")
        try:
            async with workers.lifespan():  # workers stop before what they use closes
                yield
        finally:
            await session.close()
            await pool.close()

    return create_service_app(
        name="publishing",
        description="Posts scheduled to many platforms, each published exactly once, with "
        "OAuth connections and the sandbox platform.",
        route_handlers=[
            PostController,
            CalendarController,
            # lead: ConnectionController,
            # lead: sandbox_mount(),
        ],
        verifier=JWTVerifier(settings.jwt()),
        heartbeats=heartbeats,
        readiness=readiness,
        lifespan=[lifespan],
        cors_origins=settings.cors_origins,
    )
