"""Escalations and notifications: rules, the scheduler, email and Slack, client settings and
one-click unsubscribe.

Contract with ``app.py``: ``CONTROLLERS`` and ``install(rt, settings, clock,
run_workers=...)``. Contract with the approvals feature: ``on_requested``, ``on_closed`` and
``escalations_of`` (``lifecycle``), called in the approval's own transaction.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

from pressroom_kit.wiring import Runtime

from pressroom_approval.escalations.lifecycle import escalations_of, on_closed, on_requested
from pressroom_approval.settings import ApprovalSettings

__all__ = ["CONTROLLERS", "escalations_of", "install", "on_closed", "on_requested"]

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
