"""Composition root: ``create_app(settings)``; nothing connects at import.

The skeleton: database, pool, relay. Posts, connections, the scheduler and the sandbox
platform plug in here as they land.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from importlib import resources
from typing import Any

from litestar import Litestar
from pressroom_kit.auth import JWTVerifier
from pressroom_kit.db import create_pool, prepare_database
from pressroom_kit.health import Heartbeats
from pressroom_kit.http import ReadinessCheck, broker_check, create_service_app, database_check
from pressroom_kit.outbox import Relay
from pressroom_kit.runtime import BackgroundWorkers

from pressroom_publishing.settings import PublishingSettings

MIGRATIONS = ("publishing", resources.files("pressroom_publishing") / "migrations")


def create_app(settings: PublishingSettings | None = None) -> Litestar:
    settings = settings or PublishingSettings()
    heartbeats = Heartbeats()
    workers = BackgroundWorkers()
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
        app.state.update(pool=pool, settings=settings)
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
        try:
            async with workers.lifespan():
                yield
        finally:
            await pool.close()

    return create_service_app(
        name="publishing",
        description="Posts scheduled to many platforms, each published exactly once, with "
        "OAuth connections and the sandbox platform.",
        route_handlers=[],
        verifier=JWTVerifier(settings.jwt()),
        heartbeats=heartbeats,
        readiness=readiness,
        lifespan=[lifespan],
        cors_origins=settings.cors_origins,
    )
