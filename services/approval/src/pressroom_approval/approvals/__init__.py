"""The approvals feature: one approval per post, opened by publishing's submission,
decided by a manager who is not the author (or a review-link reviewer), locked when
approved, unlocked by an admin, voided by an edit or a cancellation, expired when the
post's time passes undecided.

Contract with ``app.py``: ``CONTROLLERS`` and ``install(rt, settings, clock,
run_workers=...)``, which registers the consumer (publishing's and the brands' topics) and
the expiry worker; with ``run_workers=False`` the worker is only put on ``app.state``
(``approval_expiry``) for tests to ``step()``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import datetime

from pressroom_contracts.topics import Topic
from pressroom_kit.wiring import Runtime

from pressroom_approval.approvals import handlers
from pressroom_approval.approvals.api import CONTROLLERS
from pressroom_approval.approvals.expiry import ExpiryWorker
from pressroom_approval.settings import ApprovalSettings

__all__ = ["CONTROLLERS", "install"]


@contextlib.asynccontextmanager
async def install(
    rt: Runtime,
    settings: ApprovalSettings,
    clock: Callable[[], datetime],
    *,
    run_workers: bool = True,
) -> AsyncIterator[None]:
    expiry = ExpiryWorker(
        rt.pool, clock, interval_s=settings.expiry_interval_s, heartbeats=rt.heartbeats
    )
    rt.app.state.update(approval_expiry=expiry)
    rt.consume(
        "approvals-consumer",
        topics=[Topic.PUBLISHING.value, Topic.BRANDS.value],
        handlers=handlers.consumer_handlers(clock),
    )
    if run_workers:
        rt.workers.add("expiry", expiry.run)
    yield
