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

import aiohttp
from pressroom_kit.logs import get_logger
from pressroom_kit.secrets import SecretBox
from pressroom_kit.wiring import Runtime

from pressroom_approval.escalations.api import CONTROLLERS
from pressroom_approval.escalations.delivery import Mailer, Slack
from pressroom_approval.escalations.lifecycle import escalations_of, on_closed, on_requested
from pressroom_approval.escalations.scheduler import EscalationScheduler
from pressroom_approval.escalations.tokens import UnsubscribeTokens
from pressroom_approval.settings import ApprovalSettings

__all__ = ["CONTROLLERS", "escalations_of", "install", "on_closed", "on_requested"]

log = get_logger(__name__)
DEV_SECRET_KEY_ID = "dev"


@contextlib.asynccontextmanager
async def install(
    rt: Runtime,
    settings: ApprovalSettings,
    clock: Callable[[], datetime],
    *,
    run_workers: bool = True,
) -> AsyncIterator[None]:
    """The scheduler (``app.state.escalation_scheduler``; a worker unless ``run_workers`` is
    false, then tests step it), the sealing box and the unsubscribe tokens."""
    if settings.escalation_secret_key_id == DEV_SECRET_KEY_ID:
        log.warning(
            "Slack webhook URLs are sealed with the development key; set "
            "PRESSROOM_APPROVAL_ESCALATION_SECRET_KEYS and _KEY_ID in production"
        )
    box = SecretBox(settings.escalation_secret_keys, settings.escalation_secret_key_id)
    tokens = UnsubscribeTokens(settings.link_signing_key.get_secret_value())
    async with aiohttp.ClientSession() as session:
        scheduler = EscalationScheduler(
            rt.pool,
            settings,
            mailer=Mailer(settings),
            slack=Slack(session, settings.slack_timeout_s),
            box=box,
            tokens=tokens,
            clock=clock,
            # Its readiness beat only when it runs (a stepped scheduler never beats).
            heartbeats=rt.heartbeats if run_workers else None,
        )
        rt.app.state.update(
            escalation_box=box, unsubscribe_tokens=tokens, escalation_scheduler=scheduler
        )
        if run_workers:
            rt.workers.add("escalations", scheduler.run)
        yield
