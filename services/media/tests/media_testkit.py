"""Helpers of the media tests (a unique module name: test modules never import another
folder's ``conftest``)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from multidict import CIMultiDict
from pressroom_contracts import CloudEvent
from pressroom_kit.auth import mint_token
from pressroom_kit.testing.plugin import APP_ROLE, TestDatabase
from pressroom_kit.testing.servers import serve_asgi
from pressroom_media.app import create_app
from pressroom_media.settings import MediaSettings

SECRET = "media-test-secret-media-test-secret-123"


def token(role: str = "manager", brand: uuid.UUID | None = None, sub: str | None = None) -> str:
    return mint_token(
        SECRET,
        sub=sub or f"user-{role}",
        role=role,  # type: ignore[arg-type]
        brand_id=brand,
    )


def form(
    data: bytes,
    filename: str = "photo.jpg",
    content_type: str = "image/jpeg",
    **fields: str | list[str],
) -> aiohttp.FormData:
    body = aiohttp.FormData(quote_fields=False)  # as browsers send names: not %-encoded
    for name, value in fields.items():
        for item in value if isinstance(value, list) else [value]:
            body.add_field(name, item)
    body.add_field("file", data, filename=filename, content_type=content_type)
    return body


@dataclass
class Service:
    base: str
    app: Any
    http: aiohttp.ClientSession
    settings: MediaSettings

    @property
    def pool(self) -> Any:
        return self.app.state.pool

    async def call(
        self, method: str, path: str, brand: uuid.UUID, role: str = "manager", **kwargs: Any
    ) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token(role, brand)}", **kwargs.pop("headers", {})}
        url = path if path.startswith("http") else self.base + path
        async with self.http.request(method, url, headers=headers, **kwargs) as response:
            raw = await response.read()
            is_json = response.content_type.endswith("json")
            return response.status, (json.loads(raw) if raw and is_json else raw)

    async def upload(
        self, brand: uuid.UUID, data: bytes, filename: str = "photo.jpg", **kwargs: Any
    ) -> tuple[int, Any]:
        return await self.call("POST", "/v1/media", brand, data=form(data, filename, **kwargs))

    async def fetch(self, url: str, **headers: str) -> tuple[int, CIMultiDict[str], bytes]:
        """A file URL as a platform would fetch it: no token."""
        url = url.replace(self.settings.public_base_url, self.base)
        async with self.http.get(url, headers=headers) as response:
            return response.status, CIMultiDict(response.headers), await response.read()

    def stored_files(self) -> list[Path]:
        root = self.settings.storage_path()
        return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []

    def staged_files(self) -> list[Path]:
        root = self.settings.staging_path()
        return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def media_settings(db: TestDatabase, kafka: str, data_dir: Path, **overrides: Any) -> MediaSettings:
    values: dict[str, Any] = {
        "database_url": db.owner_dsn,
        "runtime_role": APP_ROLE,
        "jwt_secret": SECRET,
        "kafka_bootstrap_servers": kafka,
        "data_dir": data_dir,
        "consumer_group": f"media-test-{uuid.uuid4().hex[:8]}",
        "consumer_session_timeout_ms": 2000,
        "url_signing_key": "media-test-url-key",
        "public_base_url": "http://media.example",
        "processing_workers": 2,
        **overrides,
    }
    return MediaSettings.model_validate(values)


@asynccontextmanager
async def media_service(
    db: TestDatabase, kafka: str, data_dir: Path, **overrides: Any
) -> AsyncIterator[Service]:
    settings = media_settings(db, kafka, data_dir, **overrides)
    app = create_app(settings)
    async with serve_asgi(app) as base, aiohttp.ClientSession() as http:
        yield Service(base, app, http, settings)


def post_event(
    kind: str, brand: uuid.UUID, post: uuid.UUID, media_ids: list[str], **extra: Any
) -> CloudEvent:
    """A publishing event as the publishing service writes it: scheduled, published (on
    ``platform``) or cancelled."""
    now = datetime.now(UTC)
    common = {"post_id": str(post), "brand_id": str(brand), "media_ids": media_ids}
    if kind == "published":
        data = {
            **common,
            "platform": extra.get("platform", "instagram"),
            "platform_post_id": "ig_123",
            "url": "https://instagram.example/p/123",
            "published_at": now.isoformat(),
            "published_by": "user-editor",
        }
    elif kind == "cancelled":
        data = {
            **common,
            "platforms": extra.get("platforms", ["instagram"]),
            "cancelled_at": now.isoformat(),
            "cancelled_by": "user-canceller",
        }
    else:
        data = {
            **common,
            "scheduled_at": now.isoformat(),
            "platforms": ["instagram"],
            "scheduled_by": "user-editor",
        }
    return CloudEvent(
        source="/pressroom/publishing",
        type=f"publishing.post.{kind}.v1",
        subject=str(post),
        brandid=brand,
        data=data,
    )


async def publish(bootstrap: str, topic: str, *events: Any) -> None:
    """Put CloudEvents on a topic the way the outbox relay does (binary mode)."""
    from aiokafka import AIOKafkaProducer
    from pressroom_kit import cloudevents

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


async def outbox_types(owner_dsn: str) -> list[str]:
    """The public event types the service has written, oldest first."""
    import asyncpg

    conn = await asyncpg.connect(owner_dsn)
    try:
        rows = await conn.fetch("SELECT headers->>'ce_type' AS type FROM outbox ORDER BY id")
    finally:
        await conn.close()
    return [r["type"] for r in rows]


async def assert_rebuild_equals_live(owner_dsn: str) -> None:
    """The projections rebuilt from the event store equal the live tables."""
    from pressroom_kit.db import connect
    from pressroom_kit.projections import rebuild, verify
    from pressroom_media.projections import MEDIA

    conn = await connect(owner_dsn)
    try:
        await rebuild(conn, MEDIA)
        diffs = await verify(conn, MEDIA)
        assert [d.table for d in diffs] == list(MEDIA.tables)
        assert all(d.equal for d in diffs), diffs
    finally:
        await conn.close()
