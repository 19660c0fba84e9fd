"""Composition root: ``create_app(settings)``; nothing connects at import.

Two feature packages contribute controllers and background work: ``sync`` (sync requests
and publishing's answers, daily metrics, the summary, per-post metrics, charts, the daily
sync and the timeouts) and ``advisor`` (goals, insights with feedback, monthly plans).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from importlib import resources
from typing import Any

from litestar import Litestar
from pressroom_kit.wiring import Runtime, ServiceWiring

from pressroom_analytics import advisor, sync
from pressroom_analytics.settings import AnalyticsSettings

MIGRATIONS = ("analytics", resources.files("pressroom_analytics") / "migrations")
Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


def create_app(
    settings: AnalyticsSettings | None = None,
    *,
    clock: Clock = utcnow,
    run_workers: bool = True,
) -> Litestar:
    """The analytics service. ``clock`` and ``run_workers`` exist so tests can drive time
    and step the workers (daily sync, timeouts, goal deadlines) themselves."""
    settings = settings or AnalyticsSettings()

    @contextlib.asynccontextmanager
    async def setup(rt: Runtime) -> AsyncIterator[None]:
        rt.app.state.update(clock=clock)
        async with contextlib.AsyncExitStack() as stack:
            for feature in (sync, advisor):
                await stack.enter_async_context(
                    feature.install(rt, settings, clock, run_workers=run_workers)
                )
            yield

    route_handlers: list[Any] = [*sync.CONTROLLERS, *advisor.CONTROLLERS]
    wiring = ServiceWiring(
        "analytics", settings, migrations=[MIGRATIONS], setup=setup, pool_size=(2, 20)
    )
    return wiring.app(
        description="Daily metrics synced from the platforms through publishing, goals, an "
        "advisor that learns from feedback, monthly auto-plans and charts.",
        route_handlers=route_handlers,
    )
