"""The advisor's public events go out through the outbox, in the transaction that decided
them (a goal's status change, a plan's generation or approval), so they are announced
exactly when the change commits."""

from __future__ import annotations

import uuid
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import asyncpg
from pressroom_contracts import EventPayload, Topic
from pressroom_kit.cloudevents import new_event
from pressroom_kit.outbox import OutboxMessage, write_outbox

SOURCE = "/pressroom/analytics"


async def emit(
    conn: asyncpg.Connection,
    payload: EventPayload,
    *,
    brand_id: uuid.UUID,
    subject: uuid.UUID,
    now: datetime,
) -> None:
    """Stage ``payload`` on ``pressroom.analytics.v1`` (keyed by brand: one brand's events
    stay in order) in the current transaction."""
    event = new_event(
        source=SOURCE,
        type=payload.event_type,
        data=payload.model_dump(mode="json", by_alias=True),
        event_id=uuid.uuid4(),
        subject=str(subject),
        brand_id=brand_id,
        sequence=None,
        time=now,
        traceparent=None,
    )
    await write_outbox(conn, [OutboxMessage(Topic.ANALYTICS.value, str(brand_id), event)])


async def brand_timezone(conn: asyncpg.Connection, brand_id: uuid.UUID) -> ZoneInfo:
    """The brand's timezone from ``analytics_brands`` (kept from brand events), UTC when
    the brand is not known yet or its zone is not one zoneinfo knows."""
    name = await conn.fetchval(
        "SELECT timezone FROM analytics_brands WHERE brand_id = $1", brand_id
    )
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")
