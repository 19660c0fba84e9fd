"""The review feature (placeholder of the skeleton: its owner replaces this).

Contract with ``app.py``: ``CONTROLLERS`` (Litestar route handlers) and ``install(rt,
settings, clock, run_workers=...)``, an async context manager that registers the feature's
consumers and workers on the runtime and closes what it opened.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

from pressroom_kit.wiring import Runtime

from pressroom_approval.settings import ApprovalSettings

CONTROLLERS: list[Any] = []


@contextlib.asynccontextmanager
async def install(
    rt: Runtime,
    settings: ApprovalSettings,
    clock: Callable[[], datetime],
    *,
    run_workers: bool = True,
) -> AsyncIterator[None]:
    yield
