"""Composition root: ``create_app(settings)``; nothing connects at import."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from importlib import resources
from typing import Any

from aiohttp.abc import AbstractResolver
from litestar import Litestar
from pressroom_contracts import TOPICS
from pressroom_kit.auth import JWTVerifier
from pressroom_kit.consumer import ConsumerSettings, InboxConsumer
from pressroom_kit.db import create_pool, prepare_database
from pressroom_kit.health import Heartbeats
from pressroom_kit.http import ReadinessCheck, broker_check, create_service_app, database_check
from pressroom_kit.logs import get_logger
from pressroom_kit.outbox import Relay
from pressroom_kit.runtime import BackgroundWorkers
from pressroom_kit.secrets import SecretBox

from pressroom_webhook import handlers
from pressroom_webhook.api import DeliveryController, EndpointController
from pressroom_webhook.delivery import Clock, DeliveryWorker, utcnow
from pressroom_webhook.settings import DEV_KEY_ID, WebhookSettings
from pressroom_webhook.ssrf import GuardedResolver

log = get_logger(__name__)
MIGRATIONS = ("webhook", resources.files("pressroom_webhook") / "migrations")


def create_app(
    settings: WebhookSettings | None = None,
    *,
    clock: Clock = utcnow,
    inner_resolver: AbstractResolver | None = None,
    run_delivery: bool = True,
) -> Litestar:
    """The webhook service. ``clock``, ``inner_resolver`` and ``run_delivery`` exist so tests
    can drive time, simulate DNS and step the delivery worker themselves."""
    settings = settings or WebhookSettings()
    heartbeats = Heartbeats()
    workers = BackgroundWorkers()
    box = SecretBox(settings.encryption_keys, settings.encryption_key_id)
    resolver = GuardedResolver(allow_private=settings.allow_private_targets, inner=inner_resolver)
    state: dict[str, Any] = {}

    async def database_ready() -> None:
        await database_check(state["pool"])()

    readiness: dict[str, ReadinessCheck] = {
        "database": database_ready,
        "broker": broker_check(settings.kafka_bootstrap_servers),
    }

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        if settings.encryption_key_id == DEV_KEY_ID:
            log.warning(
                "webhook secrets are sealed with the development key; "
                "set PRESSROOM_WEBHOOK_ENCRYPTION_KEYS in production"
            )
        runtime_dsn = await prepare_database(
            database_url=settings.database_url,
            migrate_database_url=settings.migrate_database_url,
            runtime_role=settings.runtime_role,
            migrations=[MIGRATIONS],
        )
        pool = await create_pool(runtime_dsn, min_size=2, max_size=30)
        app.state.update(pool=pool, box=box, settings=settings, resolver=resolver, clock=clock)
        state["pool"] = pool
        worker = DeliveryWorker(
            pool, box, settings, heartbeats, clock=clock, inner_resolver=inner_resolver
        )
        app.state.worker = worker
        workers.add(
            "relay",
            Relay(
                service="webhook",
                dsn=runtime_dsn,
                bootstrap_servers=settings.kafka_bootstrap_servers,
                heartbeats=heartbeats,
            ).run,
        )
        workers.add(
            "fanout",
            InboxConsumer(
                name=settings.consumer_group,
                dsn_or_pool=pool,
                bootstrap_servers=settings.kafka_bootstrap_servers,
                topics=list(TOPICS),
                handlers={},
                default_handler=handlers.fanout_handler(settings.max_attempts, clock),
                accept_unknown_types=True,
                heartbeats=heartbeats,
                settings=ConsumerSettings.with_session_timeout(
                    settings.consumer_session_timeout_ms
                ),
            ).run,
        )
        if run_delivery:
            workers.add("delivery", worker.run)
        try:
            async with workers.lifespan():  # workers stop before what they use closes
                yield
        finally:
            await worker.close()
            await pool.close()

    return create_service_app(
        name="webhook",
        description="Signed webhook deliveries (Standard Webhooks) to any URL, Zapier, Make "
        "or Slack, with retries, replay and attempt history.",
        route_handlers=[EndpointController, DeliveryController],
        verifier=JWTVerifier(settings.jwt()),
        heartbeats=heartbeats,
        readiness=readiness,
        lifespan=[lifespan],
        cors_origins=settings.cors_origins,
    )
