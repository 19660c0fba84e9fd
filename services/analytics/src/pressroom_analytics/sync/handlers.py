"""What the sync feature takes from other services' events (each in the consumer's
transaction with the event's brand set, so a redelivery changes nothing):

- ``brand.created|updated.v1`` -> ``analytics_brands`` (the timezone days are counted in)
- ``publishing.connection.connected|expired|revoked.v1`` -> ``analytics_connections`` (what
  a sync asks for by default, which brands the daily sync visits)
- ``publishing.post.published.v1`` -> ``analytics_posts`` (per-post numbers have a home
  before any sync)
- ``publishing.metrics.collected.v1`` -> the numbers and the sync's log (``answers.py``)

``merge`` joins these with the advisor's handlers into the one consumer's table: two handlers
of one type run one after the other in the same transaction.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime

import asyncpg
from pressroom_contracts import CloudEvent, EventPayload
from pressroom_contracts.events.brands import BrandCreated, BrandUpdated
from pressroom_contracts.events.publishing import (
    ConnectionConnected,
    ConnectionExpired,
    ConnectionRevoked,
    MetricsCollected,
    PostPublished,
)
from pressroom_kit.logs import get_logger

from pressroom_analytics.sync import answers, store

log = get_logger(__name__)
Handler = Callable[[asyncpg.Connection, CloudEvent, EventPayload], Awaitable[None]]

_CONNECTION_STATUS = {
    ConnectionConnected.event_type: "connected",
    ConnectionExpired.event_type: "expired",
    ConnectionRevoked.event_type: "revoked",
}


def _brand_matches(event: CloudEvent, brand_id: object) -> bool:
    if event.brandid is None or event.brandid != brand_id:
        log.warning("event without a matching brand ignored", event_id=str(event.id))
        return False
    return True


async def brand_changed(conn: asyncpg.Connection, event: CloudEvent, payload: EventPayload) -> None:
    assert isinstance(payload, BrandCreated | BrandUpdated)
    if _brand_matches(event, payload.brand_id):
        await store.upsert_brand(conn, payload.brand_id, payload.name, payload.timezone, event.time)


async def connection_changed(
    conn: asyncpg.Connection, event: CloudEvent, payload: EventPayload
) -> None:
    assert isinstance(payload, ConnectionConnected | ConnectionExpired | ConnectionRevoked)
    if _brand_matches(event, payload.brand_id):
        status = _CONNECTION_STATUS[event.type]
        await store.set_connection(conn, payload.brand_id, payload.platform, status, event.time)


async def post_published(
    conn: asyncpg.Connection, event: CloudEvent, payload: EventPayload
) -> None:
    assert isinstance(payload, PostPublished)
    if _brand_matches(event, payload.brand_id):
        await store.record_published(
            conn,
            brand_id=payload.brand_id,
            post_id=payload.post_id,
            platform=payload.platform,
            platform_post_id=payload.platform_post_id,
            published_at=payload.published_at,
            media_kind=None,
            plan_id=payload.plan_id,
            at=event.time,
        )


def sync_handlers(
    clock: Callable[[], datetime], after_sync: answers.AfterSync
) -> dict[str, Handler]:
    return {
        BrandCreated.event_type: brand_changed,
        BrandUpdated.event_type: brand_changed,
        **{name: connection_changed for name in _CONNECTION_STATUS},
        PostPublished.event_type: post_published,
        MetricsCollected.event_type: answers.metrics_collected(clock, after_sync),
    }


def _both(first: Handler, second: Handler) -> Handler:
    async def handle(conn: asyncpg.Connection, event: CloudEvent, payload: EventPayload) -> None:
        await first(conn, event, payload)
        await second(conn, event, payload)

    return handle


def merge(*tables: Mapping[str, Handler]) -> dict[str, Handler]:
    """One handler table from several; a type handled by more than one runs each in turn."""
    merged: dict[str, Handler] = {}
    for table in tables:
        for name, handler in table.items():
            merged[name] = _both(merged[name], handler) if name in merged else handler
    return merged
