"""Composition root: ``create_app(settings)``; nothing connects at import."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from importlib import resources
from typing import Any

import aiohttp
from litestar import Litestar
from pressroom_contracts.topics import Topic
from pressroom_kit.logs import get_logger
from pressroom_kit.secrets import SecretBox
from pressroom_kit.wiring import Runtime, ServiceWiring

from pressroom_publishing import handlers, platforms
from pressroom_publishing.connections.api import ConnectionController
from pressroom_publishing.connections.credentials import VaultCredentials
from pressroom_publishing.connections.workers import ConnectionWorker
from pressroom_publishing.media_links import MediaLinks
from pressroom_publishing.metrics_sync import MetricsSync
from pressroom_publishing.platforms.base import CredentialSource, Platform, PlatformHTTP
from pressroom_publishing.posts.api import CalendarController, PostController
from pressroom_publishing.posts.live_checks import LiveChecks
from pressroom_publishing.sandbox.mount import sandbox_mount
from pressroom_publishing.scheduler import Clock, Scheduler, utcnow
from pressroom_publishing.settings import DEV_KEY_ID, PublishingSettings

log = get_logger(__name__)
MIGRATIONS = ("publishing", resources.files("pressroom_publishing") / "migrations")
PlatformFactory = Callable[[PlatformHTTP], Mapping[str, Platform]]


def configured_platforms(settings: PublishingSettings) -> PlatformFactory:
    """The adapters this installation runs: the sandbox when enabled, and every platform
    configured in ``PRESSROOM_PUBLISHING_PLATFORMS`` (id -> its adapter's settings)."""

    def build(http: PlatformHTTP) -> Mapping[str, Platform]:
        configs: dict[str, dict[str, Any]] = {}
        if settings.sandbox_enabled:
            # The sandbox's built-in client (``client_id``/``client_secret`` defaults).
            configs["sandbox"] = {
                "api_url": settings.sandbox_api(),
                "auth_url": settings.sandbox_auth(),
            }
        for key, value in settings.platforms.items():
            config = dict(value)
            if config.get("adapter") == "sandbox":
                if not settings.sandbox_enabled:
                    raise ValueError(f"platform {key!r} is sandbox-backed: enable the sandbox")
                # Another id on the built-in sandbox: its address unless given.
                config.setdefault("api_url", settings.sandbox_api())
                config.setdefault("auth_url", settings.sandbox_auth())
            configs[key] = config
        return platforms.build_platforms(http, configs)

    return build


def create_app(
    settings: PublishingSettings | None = None,
    *,
    clock: Clock = utcnow,
    run_scheduler: bool = True,
    run_connections: bool = True,
    run_metrics: bool = True,
    credentials: CredentialSource | None = None,
    platform_factory: PlatformFactory | None = None,
) -> Litestar:
    """The publishing service. ``clock``, ``run_scheduler``/``run_connections``/
    ``run_metrics``, ``credentials`` and ``platform_factory`` exist so tests can drive time,
    step the scheduler, the connection worker and the metrics worker themselves, and stand in
    for the token vault and the platforms."""
    settings = settings or PublishingSettings()
    box = SecretBox(settings.encryption_keys, settings.encryption_key_id)
    build_platforms = platform_factory or configured_platforms(settings)

    @contextlib.asynccontextmanager
    async def setup(rt: Runtime) -> AsyncIterator[None]:
        if settings.encryption_key_id == DEV_KEY_ID:
            log.warning(
                "platform tokens are sealed with the development key; "
                "set PRESSROOM_PUBLISHING_ENCRYPTION_KEYS in production"
            )
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=512, limit_per_host=128),
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        http = PlatformHTTP(session, timeout_s=settings.platform_timeout_s)
        adapters = dict(build_platforms(http))
        vault = VaultCredentials(rt.pool, box, adapters, settings, clock)
        source = credentials or vault
        secret = settings.jwt_secret.get_secret_value() if settings.jwt_secret else None
        scheduler = Scheduler(
            rt.pool,
            settings,
            adapters,
            source,
            MediaLinks(session, settings.media_url, secret),
            heartbeats=rt.heartbeats,
            clock=clock,
        )
        connection_worker = ConnectionWorker(vault, rt.heartbeats)
        metrics_sync = MetricsSync(
            rt.pool, settings, adapters, source, heartbeats=rt.heartbeats, clock=clock
        )
        rt.app.state.update(
            clock=clock,
            box=box,
            http=http,
            platforms=adapters,
            credentials=source,
            live_checks=LiveChecks(adapters, source),
            scheduler=scheduler,
            connection_worker=connection_worker,
            metrics_sync=metrics_sync,
        )
        rt.consume(
            "consumer",
            topics=[
                Topic.BRANDS.value,
                Topic.MEDIA.value,
                Topic.APPROVAL.value,
                Topic.ANALYTICS.value,
            ],
            handlers=handlers.consumer_handlers(clock),
        )
        if run_scheduler:
            rt.workers.add("scheduler", scheduler.run)
        if run_connections:
            rt.workers.add("connections", connection_worker.run)
        if run_metrics:
            rt.workers.add("metrics_sync", metrics_sync.run)
        try:
            yield
        finally:
            await session.close()

    route_handlers: list[Any] = [PostController, CalendarController, ConnectionController]
    if settings.sandbox_enabled:
        route_handlers.append(sandbox_mount(public_url=settings.sandbox_auth()))
    wiring = ServiceWiring(
        "publishing", settings, migrations=[MIGRATIONS], setup=setup, pool_size=(2, 30)
    )
    return wiring.app(
        description="Posts scheduled to many platforms, each published exactly once, with "
        "OAuth connections and the sandbox platform.",
        route_handlers=route_handlers,
    )
