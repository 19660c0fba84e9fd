"""Composition root: ``create_app(settings)``; nothing connects at import.

Each feature package contributes its controllers and its background work:
``approvals`` (the approvals, their consumer and the expiry worker), ``audit`` (the
hash-chained log and GDPR), ``escalations`` (rules, the scheduler, email and Slack, client
settings and unsubscribe), ``review`` (review links and the public review page).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from importlib import resources
from typing import Any

from litestar import Litestar
from pressroom_kit.logs import get_logger
from pressroom_kit.wiring import Runtime, ServiceWiring

from pressroom_approval import approvals, audit, escalations, review
from pressroom_approval.settings import DEV_AUDIT_KEY, DEV_LINK_KEY, ApprovalSettings

log = get_logger(__name__)
MIGRATIONS = ("approval", resources.files("pressroom_approval") / "migrations")
Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


def create_app(
    settings: ApprovalSettings | None = None,
    *,
    clock: Clock = utcnow,
    run_workers: bool = True,
) -> Litestar:
    """The approval service. ``clock`` and ``run_workers`` exist so tests can drive time and
    step the expiry worker and the escalation scheduler themselves."""
    settings = settings or ApprovalSettings()

    @contextlib.asynccontextmanager
    async def setup(rt: Runtime) -> AsyncIterator[None]:
        if settings.link_signing_key.get_secret_value() == DEV_LINK_KEY:
            log.warning(
                "review links are signed with the development key; set "
                "PRESSROOM_APPROVAL_LINK_SIGNING_KEY in production"
            )
        if settings.audit_pseudonym_key.get_secret_value() == DEV_AUDIT_KEY:
            log.warning(
                "audit pseudonyms use the development key; set "
                "PRESSROOM_APPROVAL_AUDIT_PSEUDONYM_KEY in production"
            )
        rt.app.state.update(clock=clock)
        async with contextlib.AsyncExitStack() as stack:
            for feature in (audit, escalations, approvals, review):
                await stack.enter_async_context(
                    feature.install(rt, settings, clock, run_workers=run_workers)
                )
            yield

    route_handlers: list[Any] = [
        *approvals.CONTROLLERS,
        *audit.CONTROLLERS,
        *escalations.CONTROLLERS,
        *review.CONTROLLERS,
    ]
    wiring = ServiceWiring(
        "approval", settings, migrations=[MIGRATIONS], setup=setup, pool_size=(2, 20)
    )
    return wiring.app(
        description="Approvals with locks, escalations by email and Slack, review links for "
        "people without an account, and a hash-chained, append-only audit log.",
        route_handlers=route_handlers,
    )
