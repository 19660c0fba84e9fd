"""Composition root: ``create_app(settings)``; nothing connects at import."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from importlib import resources
from typing import Any

from litestar import Litestar
from pressroom_contracts.events.publishing import PostCancelled, PostPublished, PostScheduled
from pressroom_contracts.topics import Topic
from pressroom_kit.auth import JWTVerifier
from pressroom_kit.consumer import ConsumerSettings, InboxConsumer
from pressroom_kit.db import create_pool, prepare_database
from pressroom_kit.health import Heartbeats
from pressroom_kit.http import ReadinessCheck, broker_check, create_service_app, database_check
from pressroom_kit.logs import get_logger
from pressroom_kit.outbox import Relay
from pressroom_kit.runtime import BackgroundWorkers

from pressroom_media import handlers
from pressroom_media.api import MediaController
from pressroom_media.files import serve_file
from pressroom_media.pipeline import Uploads, prepare_staging
from pressroom_media.processing import Limits, Processor
from pressroom_media.settings import DEV_URL_KEY, MediaSettings
from pressroom_media.signing import UrlSigner
from pressroom_media.storage import create_storage

log = get_logger(__name__)
MIGRATIONS = ("media", resources.files("pressroom_media") / "migrations")


def create_app(settings: MediaSettings | None = None) -> Litestar:
    settings = settings or MediaSettings()
    heartbeats = Heartbeats()
    workers = BackgroundWorkers()
    storage = create_storage(settings)
    signer = UrlSigner(
        settings.url_signing_key.get_secret_value().encode(),
        base_url=settings.public_base_url,
        ttl_s=settings.url_ttl_s,
    )
    state: dict[str, Any] = {}

    async def database_ready() -> None:
        await database_check(state["pool"])()

    readiness: dict[str, ReadinessCheck] = {
        "database": database_ready,
        "broker": broker_check(settings.kafka_bootstrap_servers),
        "storage": storage.check,
    }

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        if settings.url_signing_key.get_secret_value() == DEV_URL_KEY:
            log.warning(
                "file URLs are signed with the development key; "
                "set PRESSROOM_MEDIA_URL_SIGNING_KEY in production"
            )
        runtime_dsn = await prepare_database(
            database_url=settings.database_url,
            migrate_database_url=settings.migrate_database_url,
            runtime_role=settings.runtime_role,
            migrations=[MIGRATIONS],
        )
        staging = prepare_staging(settings.staging_path(), settings.reservation_ttl_s)
        await storage.start()
        processor = Processor(
            settings.processing_workers,
            Limits(
                max_image_pixels=settings.max_image_pixels,
                max_video_pixels=settings.max_video_pixels,
                max_video_duration_s=settings.max_video_duration_s,
            ),
            timeout_s=settings.processing_timeout_s,
        )
        pool = await create_pool(runtime_dsn, min_size=2, max_size=20)
        state["pool"] = pool
        app.state.update(
            pool=pool,
            settings=settings,
            storage=storage,
            signer=signer,
            uploads=Uploads(pool, storage, processor, settings, staging),
        )
        workers.add(
            "relay",
            Relay(
                service="media",
                dsn=runtime_dsn,
                bootstrap_servers=settings.kafka_bootstrap_servers,
                heartbeats=heartbeats,
            ).run,
        )
        workers.add(
            "usage",
            InboxConsumer(
                name=settings.consumer_group,
                dsn_or_pool=pool,
                bootstrap_servers=settings.kafka_bootstrap_servers,
                topics=[Topic.PUBLISHING.value],
                handlers={
                    PostPublished.event_type: handlers.record_usage,
                    PostScheduled.event_type: handlers.record_usage,
                    PostCancelled.event_type: handlers.record_usage,
                },
                heartbeats=heartbeats,
                settings=ConsumerSettings.with_session_timeout(
                    settings.consumer_session_timeout_ms
                ),
            ).run,
        )

        async def sweep(stop: asyncio.Event) -> None:
            """Clean up after crashed uploads (any replica may; claims never overlap)."""
            while not stop.is_set():
                await handlers.sweep_expired_reservations(pool, storage, now=datetime.now(UTC))
                heartbeats.beat("sweeper")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), settings.sweep_interval_s)

        heartbeats.register("sweeper", max_age=settings.sweep_interval_s * 2 + 30)
        workers.add("sweeper", sweep)
        warming = asyncio.create_task(processor.warm())
        try:
            async with workers.lifespan():  # workers stop before what they use closes
                yield
        finally:
            warming.cancel()
            await pool.close()
            processor.close()
            await storage.close()
            shutil.rmtree(staging, ignore_errors=True)

    return create_service_app(
        name="media",
        description="The media library: streamed uploads with duplicate detection, quotas, "
        "image and video processing, platform variants and signed, expiring file URLs.",
        route_handlers=[MediaController, serve_file],
        verifier=JWTVerifier(settings.jwt()),
        heartbeats=heartbeats,
        readiness=readiness,
        lifespan=[lifespan],
        cors_origins=settings.cors_origins,
    )
