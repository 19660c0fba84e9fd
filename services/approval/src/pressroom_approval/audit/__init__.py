"""The audit feature: a hash-chained, append-only log per brand, and GDPR access and erasure.

Other features call ``record`` in their own transactions, with an ``Actor`` (built with
``actor_from_request`` for HTTP callers, ``SYSTEM`` for the service's own work). ``install``
sets the pseudonym key; ``CONTROLLERS`` are the admin routes of the log and of privacy.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

from pressroom_kit.wiring import Runtime

from pressroom_approval.audit.api import AuditLogController, PrivacyController
from pressroom_approval.audit.log import (
    SYSTEM,
    Actor,
    actor_from_request,
    pseudonym,
    record,
    set_pseudonym_key,
)
from pressroom_approval.settings import ApprovalSettings

__all__ = ["CONTROLLERS", "SYSTEM", "Actor", "actor_from_request", "install", "pseudonym", "record"]

CONTROLLERS: list[Any] = [AuditLogController, PrivacyController]


@contextlib.asynccontextmanager
async def install(
    rt: Runtime,
    settings: ApprovalSettings,
    clock: Callable[[], datetime],
    *,
    run_workers: bool = True,
) -> AsyncIterator[None]:
    """The audit log has no background work; it only needs its key before any request."""
    set_pseudonym_key(settings.audit_pseudonym_key.get_secret_value())
    yield
