"""Composition root: ``create_app(settings)``; nothing connects at import."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from importlib import resources

from aiohttp.abc import AbstractResolver
from litestar import Litestar
from pressroom_contracts import TOPICS
from pressroom_kit.logs import get_logger
from pressroom_kit.secrets import SecretBox
from pressroom_kit.wiring import Runtime, ServiceWiring

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
    box = SecretBox(settings.encryption_keys, settings.encryption_key_id)
    resolver = GuardedResolver(allow_private=settings.allow_private_targets, inner=inner_resolver)

    @contextlib.asynccontextmanager
    async def setup(rt: Runtime) -> AsyncIterator[None]:
        if settings.encryption_key_id == DEV_KEY_ID:
            log.warning(
                "webhook secrets are sealed with the development key; "
                "set PRESSROOM_WEBHOOK_ENCRYPTION_KEYS in production"
            )
        worker = DeliveryWorker(
            rt.pool, box, settings, rt.heartbeats, clock=clock, inner_resolver=inner_resolver
        )
        rt.app.state.update(box=box, resolver=resolver, clock=clock, worker=worker)
        rt.consume(
            "fanout",
            topics=TOPICS,
            handlers={},
            default_handler=handlers.fanout_handler(settings.max_attempts, clock),
            accept_unknown_types=True,
        )
        if run_delivery:
            rt.workers.add("delivery", worker.run)
        try:
            yield
        finally:
            await worker.close()

    wiring = ServiceWiring(
        "webhook", settings, migrations=[MIGRATIONS], setup=setup, pool_size=(2, 30)
    )
    return wiring.app(
        description="Signed webhook deliveries (Standard Webhooks) to any URL, Zapier, Make "
        "or Slack, with retries, replay and attempt history.",
        route_handlers=[EndpointController, DeliveryController],
    )
