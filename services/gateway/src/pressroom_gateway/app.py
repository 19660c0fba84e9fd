"""Composition root: ``create_app(settings)`` builds the gateway; nothing connects at import."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from importlib import resources
from typing import Any

import aiohttp
from litestar import Litestar, MediaType, Response, get
from litestar.middleware.base import DefineMiddleware
from pressroom_contracts.__main__ import bundled_asyncapi
from pressroom_kit.auth import JWTVerifier
from pressroom_kit.db import create_pool, prepare_database
from pressroom_kit.health import Heartbeats
from pressroom_kit.http import (
    PUBLIC,
    ReadinessCheck,
    api_docs_page,
    create_service_app,
    database_check,
)
from pressroom_kit.logs import get_logger
from pressroom_kit.outbox import Relay
from pressroom_kit.runtime import BackgroundWorkers

from pressroom_gateway import handlers
from pressroom_gateway.api import BrandController
from pressroom_gateway.edge import Edge
from pressroom_gateway.forwarded import TrustedProxies
from pressroom_gateway.openapi import OpenAPIMerger
from pressroom_gateway.proxy import ProxySettings, ReverseProxy
from pressroom_gateway.ratelimit import (
    Limits,
    MemoryBuckets,
    RateLimiter,
    RateLimitMiddleware,
    RedisBuckets,
)
from pressroom_gateway.settings import GatewaySettings

log = get_logger(__name__)
MIGRATIONS = ("gateway", resources.files("pressroom_gateway") / "migrations")


def _backend_check(proxy: ReverseProxy, url: str, timeout: float) -> ReadinessCheck:
    async def check() -> None:
        assert proxy.session is not None
        async with proxy.session.get(
            f"{url}/readyz", timeout=aiohttp.ClientTimeout(total=timeout)
        ) as response:
            if response.status != 200:
                raise ConnectionError(f"{url}/readyz answered {response.status}")

    return check


def create_app(settings: GatewaySettings | None = None) -> Edge:
    settings = settings or GatewaySettings()
    heartbeats = Heartbeats()
    workers = BackgroundWorkers()
    verifier = JWTVerifier(settings.jwt())
    trusted_proxies = TrustedProxies(settings.trusted_proxies)
    proxy = ReverseProxy(
        settings.routes,
        ProxySettings(
            max_body_bytes=settings.max_body_bytes,
            connect_timeout_s=settings.connect_timeout_s,
            read_timeout_s=settings.read_timeout_s,
            total_timeout_s=settings.total_timeout_s,
        ),
        trusted_proxies,
    )
    store = RedisBuckets(settings.redis_url) if settings.redis_url else MemoryBuckets()
    limits = Limits(
        user=settings.rate_limit_user,
        brand=settings.rate_limit_brand,
        anonymous=settings.rate_limit_anonymous,
        window_s=settings.rate_limit_window_s,
        signed_file=settings.rate_limit_signed_file,
        signed_client=settings.rate_limit_signed_client,
    )
    limiter = RateLimiter(store, limits, trusted_proxies, tuple(settings.signed_url_prefixes))
    state: dict[str, Any] = {}
    readiness: dict[str, ReadinessCheck] = {}

    async def database_ready() -> None:
        await database_check(state["pool"])()

    readiness["database"] = database_ready
    for url in sorted(set(settings.routes.values())):
        readiness[f"backend {url}"] = _backend_check(proxy, url, settings.backend_ready_timeout_s)

    merger: OpenAPIMerger | None = None

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        runtime_dsn = await prepare_database(
            database_url=settings.database_url,
            migrate_database_url=settings.migrate_database_url,
            runtime_role=settings.runtime_role,
            migrations=[MIGRATIONS],
        )
        pool = await create_pool(runtime_dsn, min_size=2, max_size=20)
        app.state.pool = state["pool"] = pool
        await proxy.start(settings.pool_size)
        if settings.demo_brand_id is not None:
            created = await handlers.ensure_demo_brand(
                pool,
                settings.demo_brand_id,
                admin_sub=str(uuid.uuid5(settings.demo_brand_id, "dev-admin")),
            )
            log.info("demo brand ready", brand_id=str(settings.demo_brand_id), created=created)
        relay = Relay(
            service="gateway",
            dsn=runtime_dsn,
            bootstrap_servers=settings.kafka_bootstrap_servers,
            heartbeats=heartbeats,
        )
        workers.add("relay", relay.run)
        assert merger is not None
        openapi_merger = merger
        workers.add("openapi", lambda stop: openapi_merger.run(stop, lambda: proxy.session))
        try:
            async with workers.lifespan():  # workers stop before what they use closes
                yield
        finally:
            await proxy.stop()
            if isinstance(store, RedisBuckets):
                await store.close()
            await pool.close()

    @get("/schema/openapi.json", opt=PUBLIC, include_in_schema=False, sync_to_thread=False)
    def merged_openapi() -> dict[str, Any]:
        assert merger is not None
        return merger.merged()

    asyncapi = bundled_asyncapi()  # the contracts are fixed for a release: built once

    @get("/schema/asyncapi.json", opt=PUBLIC, include_in_schema=False, sync_to_thread=False)
    def asyncapi_document() -> dict[str, Any]:
        """The public event catalog (topics, CloudEvent headers, every payload schema) as
        one self-contained AsyncAPI 3.0 document, beside the OpenAPI one."""
        return asyncapi

    @get(
        "/schema",
        opt=PUBLIC,
        include_in_schema=False,
        media_type=MediaType.HTML,
        sync_to_thread=False,
    )
    def api_docs() -> Response[str]:
        return Response(api_docs_page("/schema/openapi.json"), media_type=MediaType.HTML)

    app = create_service_app(
        name="gateway",
        description="The Pressroom gateway: brands and members, and every service behind it.",
        route_handlers=[BrandController, merged_openapi, asyncapi_document, api_docs],
        verifier=verifier,
        heartbeats=heartbeats,
        readiness=readiness,
        lifespan=[lifespan],
        cors_origins=settings.cors_origins,
        public_paths=settings.public_paths,
        after_auth_middleware=[DefineMiddleware(RateLimitMiddleware, limiter=limiter)],
        openapi_path="/schema/gateway",
    )

    def own_document() -> dict[str, Any]:
        return app.openapi_schema.to_schema()

    merger = OpenAPIMerger(own_document, settings.routes, refresh_s=settings.openapi_refresh_s)
    app.state.merger = merger
    app.state.proxy = proxy
    return Edge(app, proxy, verifier, limiter, settings.public_paths)
