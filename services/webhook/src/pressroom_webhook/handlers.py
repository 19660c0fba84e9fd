"""Endpoint commands and the fan-out of consumed events into deliveries."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import asyncpg
from pressroom_contracts import CloudEvent, EventPayload
from pressroom_contracts.events.webhook import WebhookEndpointDisabled
from pressroom_contracts.topics import Topic
from pressroom_kit.cloudevents import to_structured
from pressroom_kit.db import tenant_transaction
from pressroom_kit.errors import NotFound
from pressroom_kit.eventstore import RecordedEvent
from pressroom_kit.projections import Projector
from pressroom_kit.repository import Repository, retry_on_conflict
from pressroom_kit.secrets import SecretBox

from pressroom_webhook.domain import Endpoint, matches
from pressroom_webhook.projections import ENDPOINTS
from pressroom_webhook.secrets import new_secret

SOURCE = "/pressroom/webhook"


def to_public(event: RecordedEvent) -> list[tuple[str, str, dict[str, Any]]]:
    if event.type != "EndpointDisabled":
        return []
    return [
        (
            Topic.WEBHOOK.value,
            WebhookEndpointDisabled.event_type,
            {
                "endpoint_id": event.stream_id,
                "url": event.metadata.get("url", ""),
                "reason": event.data["reason"],
            },
        )
    ]


REPOSITORY: Repository[Endpoint] = Repository(
    Endpoint, source=SOURCE, projector=Projector([ENDPOINTS]), to_public=to_public
)


async def create_endpoint(
    pool: asyncpg.Pool,
    box: SecretBox,
    *,
    brand_id: uuid.UUID,
    actor: str,
    url: str,
    provider: str,
    event_types: list[str],
    description: str,
    enabled: bool,
) -> tuple[uuid.UUID, str]:
    """Create an endpoint; return its id and the signing secret (shown this once)."""
    endpoint_id = uuid.uuid4()
    secret = new_secret()
    endpoint = Endpoint.create(
        endpoint_id,
        brand_id=brand_id,
        url=url,
        provider=provider,
        event_types=event_types,
        description=description,
        enabled=enabled,
        secret_enc=box.encrypt(secret, context=str(endpoint_id)),
    )
    async with tenant_transaction(pool, brand_id) as conn:
        await REPOSITORY.save(conn, endpoint, brand_id=brand_id, actor=actor)
    return endpoint_id, secret


async def change_endpoint(
    pool: asyncpg.Pool,
    *,
    brand_id: uuid.UUID,
    endpoint_id: uuid.UUID,
    actor: str,
    decide: Callable[[Endpoint], None],
    metadata: dict[str, Any] | None = None,
) -> None:
    async def command() -> None:
        async with tenant_transaction(pool, brand_id) as conn:
            endpoint = await _load(conn, brand_id, endpoint_id)
            decide(endpoint)
            await REPOSITORY.save(
                conn,
                endpoint,
                brand_id=brand_id,
                actor=actor,
                metadata={"url": endpoint.url, **(metadata or {})},
            )

    await retry_on_conflict(command)


async def _load(conn: asyncpg.Connection, brand_id: uuid.UUID, endpoint_id: uuid.UUID) -> Endpoint:
    # The projection row (under RLS) proves the endpoint belongs to the caller's brand.
    owned = await conn.fetchval(
        "SELECT 1 FROM webhook_endpoints WHERE id = $1 AND NOT deleted", endpoint_id
    )
    endpoint = await REPOSITORY.load(conn, str(endpoint_id)) if owned else None
    if endpoint is None or endpoint.deleted:
        raise NotFound(f"no webhook endpoint {endpoint_id}", code="no_endpoint")
    return endpoint


async def rotate_secret(
    pool: asyncpg.Pool,
    box: SecretBox,
    *,
    brand_id: uuid.UUID,
    endpoint_id: uuid.UUID,
    actor: str,
    now: datetime,
    overlap: timedelta,
) -> str:
    secret = new_secret()
    sealed = box.encrypt(secret, context=str(endpoint_id))
    await change_endpoint(
        pool,
        brand_id=brand_id,
        endpoint_id=endpoint_id,
        actor=actor,
        decide=lambda e: e.rotate(secret_enc=sealed, previous_valid_until=now + overlap),
    )
    return secret


async def enqueue(
    conn: asyncpg.Connection,
    event: CloudEvent,
    *,
    max_attempts: int,
    now: datetime,
    endpoint_ids: list[uuid.UUID] | None = None,
) -> int:
    """One ``webhook_events`` row per matching enabled endpoint of the event's brand.

    The idempotency key (endpoint + event id) is unique, so a redelivered Kafka message or a
    second replica creates nothing new. Returns how many rows were created.
    """
    rows = await conn.fetch(
        "SELECT id, event_types FROM webhook_endpoints "
        "WHERE brand_id = $1 AND enabled AND NOT deleted",
        event.brandid,
    )
    targets = [
        r["id"]
        for r in rows
        if (endpoint_ids is not None and r["id"] in endpoint_ids)
        or (endpoint_ids is None and matches(r["event_types"], event.type))
    ]
    if not targets:
        return 0
    created = await conn.fetch(
        """
        INSERT INTO webhook_events (id, brand_id, endpoint_id, event_id, event_type,
                                    idempotency_key, payload, status, max_attempts,
                                    next_attempt_at, created_at, updated_at)
        SELECT gen_random_uuid(), $1, t.endpoint_id, $2::uuid, $3,
               t.endpoint_id::text || ':' || $2::uuid::text,
               $4, 'pending', $5, $6, $6, $6
        FROM unnest($7::uuid[]) AS t(endpoint_id)
        ON CONFLICT (idempotency_key) DO NOTHING
        RETURNING id
        """,
        event.brandid,
        event.id,
        event.type,
        to_structured(event),
        max_attempts,
        now,
        targets,
    )
    return len(created)


def fanout_handler(max_attempts: int, clock: Callable[[], datetime]) -> Callable[..., Any]:
    async def handle(conn: asyncpg.Connection, event: CloudEvent, _: EventPayload) -> None:
        if event.brandid is None or event.type.startswith("webhook."):
            return  # no brand to deliver to; and never webhook about webhooks (no loops)
        await enqueue(conn, event, max_attempts=max_attempts, now=clock())

    return handle
