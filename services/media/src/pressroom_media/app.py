"""Composition root: ``create_app(settings)``; nothing connects at import."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from importlib import resources

from litestar import Litestar
from pressroom_contracts.events.publishing import PostCancelled, PostPublished, PostScheduled
from pressroom_contracts.topics import Topic
from pressroom_kit.logs import get_logger
from pressroom_kit.wiring import Runtime, ServiceWiring

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
    storage = create_storage(settings)
    signer = UrlSigner(
        settings.url_signing_key.get_secret_value().encode(),
        base_url=settings.public_base_url,
        ttl_s=settings.url_ttl_s,
    )

    @contextlib.asynccontextmanager
    async def setup(rt: Runtime) -> AsyncIterator[None]:
        if settings.url_signing_key.get_secret_value() == DEV_URL_KEY:
            log.warning(
                "file URLs are signed with the development key; "
                "set PRESSROOM_MEDIA_URL_SIGNING_KEY in production"
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
        rt.app.state.update(
            storage=storage,
            signer=signer,
            uploads=Uploads(rt.pool, storage, processor, settings, staging),
        )
        rt.consume(
            "usage",
            topics=[Topic.PUBLISHING.value],
            handlers={
                PostPublished.event_type: handlers.record_usage,
                PostScheduled.event_type: handlers.record_usage,
                PostCancelled.event_type: handlers.record_usage,
            },
        )

        async def sweep(stop: asyncio.Event) -> None:
            """Clean up after crashed uploads (any replica may; claims never overlap)."""
            while not stop.is_set():
                await handlers.sweep_expired_reservations(rt.pool, storage, now=datetime.now(UTC))
                rt.heartbeats.beat("sweeper")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), settings.sweep_interval_s)

        rt.heartbeats.register("sweeper", max_age=settings.sweep_interval_s * 2 + 30)
        rt.workers.add("sweeper", sweep)
        warming = asyncio.create_task(processor.warm())
        try:
            yield
        finally:
            warming.cancel()
            processor.close()
            await storage.close()
            shutil.rmtree(staging, ignore_errors=True)

    wiring = ServiceWiring(
        "media",
        settings,
        migrations=[MIGRATIONS],
        setup=setup,
        readiness={"storage": storage.check},
    )
    return wiring.app(
        description="The media library: streamed uploads with duplicate detection, quotas, "
        "image and video processing, platform variants and signed, expiring file URLs.",
        route_handlers=[MediaController, serve_file],
    )
