"""Asking publishing for numbers: a sync log row ``running`` and ``analytics.sync.requested.v1``
in one transaction, so a sync is never logged without being asked for, nor asked for without
a log to answer into.

Publishing holds the platform tokens and answers with one ``publishing.metrics.collected.v1``
per platform (``answers.py``).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Literal
from uuid import UUID

import asyncpg
from pressroom_contracts import CloudEvent, Topic
from pressroom_contracts.events.analytics import SyncRequested
from pressroom_kit.errors import Invalid
from pressroom_kit.outbox import OutboxMessage, write_outbox

from pressroom_analytics.sync import params, store

SOURCE = "/pressroom/analytics"
MAX_RANGE_DAYS = 366
DEFAULT_DAYS = 7
Trigger = Literal["manual", "daily"]


def split_range(since: date, until: date, days: int) -> list[tuple[date, date]]:
    """``since..until`` (inclusive) in consecutive pieces of at most ``days`` days."""
    if days < 1:
        raise ValueError("a piece has at least one day")
    pieces = []
    start = since
    while start <= until:
        end = min(until, start + timedelta(days=days - 1))
        pieces.append((start, end))
        start = end + timedelta(days=1)
    return pieces


async def request_sync(
    conn: asyncpg.Connection,
    *,
    brand_id: UUID,
    platforms: Sequence[str] | None,
    since: date | None,
    until: date | None,
    requested_by: str | None,
    trigger: Trigger,
    now: datetime,
) -> UUID:
    """Log the sync ``running`` and stage ``analytics.sync.requested.v1`` in ``conn``'s
    transaction (the brand's). Missing platforms are the brand's connected ones (422 when
    none is known); a missing range is the last 7 days in the brand's timezone."""
    tz = await store.brand_zone(conn)
    asked = sorted(set(platforms)) if platforms else await store.connected_platforms(conn)
    if not asked:
        raise Invalid(
            "the brand has no connected platform we know of; name the platforms to sync",
            code="no_platforms",
            errors=[{"field": "platforms", "message": "no connected platform is known"}],
        )
    since, until = params.resolve_range(
        since,
        until,
        store.local_day(now, tz),
        default_days=DEFAULT_DAYS,
        max_days=MAX_RANGE_DAYS,
    )
    sync_id = uuid.uuid4()
    await conn.execute(
        "INSERT INTO analytics_sync_logs (id, brand_id, status, trigger, platforms, from_date, "
        "to_date, requested_by, created_at, started_at) "
        "VALUES ($1, $2, 'running', $3, $4, $5, $6, $7, $8, $8)",
        sync_id,
        brand_id,
        trigger,
        asked,
        since,
        until,
        requested_by,
        now,
    )
    payload = SyncRequested(
        sync_id=sync_id,
        brand_id=brand_id,
        platforms=asked,
        since=since,
        until=until,
        timezone=tz.key,
        requested_by=requested_by,
        requested_at=now,
    )
    await write_outbox(
        conn,
        [
            OutboxMessage(
                topic=Topic.ANALYTICS.value,
                key=str(brand_id),
                event=CloudEvent(
                    id=sync_id,
                    source=SOURCE,
                    type=SyncRequested.event_type,
                    subject=str(sync_id),
                    brandid=brand_id,
                    time=now,
                    data=payload.model_dump(mode="json", by_alias=True),
                ),
            )
        ],
    )
    return sync_id
