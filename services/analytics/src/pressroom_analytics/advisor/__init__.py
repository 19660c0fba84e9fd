"""The advisor feature: goals with progress, insights that learn from feedback, monthly plans.

Contract with ``app.py``: ``CONTROLLERS`` (Litestar route handlers) and ``install(rt,
settings, clock, run_workers=...)``, an async context manager that adds the goal deadline
worker. With the sync feature: ``after_sync`` (called by the sync in the transaction that
stored a sync's rows) and ``HANDLERS`` (merged by the sync into its one inbox consumer).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import asyncpg
from pressroom_contracts import CloudEvent, EventPayload
from pressroom_contracts.events.brands import BrandCreated, BrandUpdated
from pressroom_contracts.events.publishing import PostCreated, PostPublished
from pressroom_kit.consumer import Handler
from pressroom_kit.wiring import Runtime

from pressroom_analytics.advisor import api, goals, insights, plans
from pressroom_analytics.advisor.events import brand_timezone
from pressroom_analytics.settings import AnalyticsSettings


async def brand_changed(conn: asyncpg.Connection, event: CloudEvent, payload: EventPayload) -> None:
    """A brand's (new) timezone moves the end of its active goals' deadlines.

    The zone is the one the brand *has* after the sync's handler ran (it runs first and keeps
    the newest event's zone), not the event's: a late, older event leaves the brand's zone
    as it is and so must leave the deadlines."""
    assert isinstance(payload, BrandCreated | BrandUpdated)
    if event.brandid != payload.brand_id:
        return
    try:
        ZoneInfo(payload.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        return  # the sync keeps UTC for a zone it cannot read; so do the goals
    await goals.follow_timezone(conn, await brand_timezone(conn, payload.brand_id))


# Merged by the sync feature into its consumer's handlers; a type both handle (brand events,
# post.published) runs the sync's handler first, then this one.
HANDLERS: dict[str, Handler] = {
    PostCreated.event_type: plans.post_created,
    PostPublished.event_type: plans.post_published,
    BrandCreated.event_type: brand_changed,
    BrandUpdated.event_type: brand_changed,
}


async def after_sync(conn: asyncpg.Connection, *, brand_id: uuid.UUID, now: datetime) -> None:
    """New metrics for ``brand_id`` are in this transaction (its brand is set): update the
    active goals' progress (achieved ones announced once) and regenerate the insights, in
    the same transaction, so what readers see always matches the committed metrics."""
    await goals.refresh_brand(conn, now)
    await insights.regenerate(conn, brand_id, now)


CONTROLLERS: list[Any] = list(api.CONTROLLERS)


@contextlib.asynccontextmanager
async def install(
    rt: Runtime,
    settings: AnalyticsSettings,
    clock: Callable[[], datetime],
    *,
    run_workers: bool = True,
) -> AsyncIterator[None]:
    """The goal deadline worker, on ``app.state.goal_deadlines`` (tests ``step()`` it)."""
    deadlines = goals.GoalDeadlines(
        rt.pool,
        clock,
        poll_s=settings.worker_poll_s,
        heartbeats=rt.heartbeats if run_workers else None,
    )
    rt.app.state.update(goal_deadlines=deadlines)
    if run_workers:
        rt.workers.add("goal-deadlines", deadlines.run)
    yield
