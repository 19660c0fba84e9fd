"""The sync feature: sync requests and publishing's answers, daily metrics, the summary,
per-post metrics, charts, the daily sync and the timeouts.

Contract with ``app.py``: ``CONTROLLERS`` (Litestar route handlers) and ``install(rt,
settings, clock, run_workers=...)``, an async context manager that registers the service's
one inbox consumer (topics publishing and brands; the advisor's ``HANDLERS`` merged into
its table, so one consumer group handles both features) and the sync workers.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

from pressroom_contracts import Topic
from pressroom_kit.wiring import Runtime

from pressroom_analytics.settings import AnalyticsSettings
from pressroom_analytics.sync import handlers
from pressroom_analytics.sync.charts import ChartController, ChartRenderer
from pressroom_analytics.sync.metrics_api import MetricsController
from pressroom_analytics.sync.sync_api import SyncController
from pressroom_analytics.sync.workers import SyncWorkers

CONTROLLERS: list[Any] = [SyncController, MetricsController, ChartController]


async def _after_sync(conn: Any, *, brand_id: Any, now: datetime) -> None:
    # Imported when called: the advisor imports nothing of ours, and its hook may be replaced
    # while this module is loaded (its owner's tests).
    from pressroom_analytics import advisor

    await advisor.after_sync(conn, brand_id=brand_id, now=now)


@contextlib.asynccontextmanager
async def install(
    rt: Runtime,
    settings: AnalyticsSettings,
    clock: Callable[[], datetime],
    *,
    run_workers: bool = True,
) -> AsyncIterator[None]:
    from pressroom_analytics import advisor

    workers = SyncWorkers(rt.pool, settings, clock, _after_sync, rt.heartbeats)
    renderer = ChartRenderer(settings.chart_concurrency)
    rt.app.state.update(sync_workers=workers, charts=renderer)
    rt.consume(
        "consumer",
        topics=[Topic.PUBLISHING.value, Topic.BRANDS.value],
        handlers=handlers.merge(
            handlers.sync_handlers(clock, _after_sync), getattr(advisor, "HANDLERS", {})
        ),
    )
    if run_workers:
        rt.workers.add("sync", workers.run)
    yield
