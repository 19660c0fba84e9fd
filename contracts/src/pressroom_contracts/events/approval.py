"""``approval.*`` events, published by the approval service.

The publishing service consumes ``approved`` (schedule the post), ``rejected`` and
``unlocked`` (the post goes back to draft); the approval service adds the rest of its
catalog (API.md) when it lands.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from pydantic import Field

from pressroom_contracts.envelope import EventPayload
from pressroom_contracts.registry import register


@register
class ApprovalApproved(EventPayload):
    event_type = "approval.approved.v1"

    approval_id: UUID
    post_id: UUID
    brand_id: UUID
    decided_by: str
    comment: str | None = None
    decided_at: datetime
    submission: int | None = Field(
        default=None,
        description="the `submission` of the publishing.post.submitted.v1 decided on; "
        "without it, publishing applies the decision only if `decided_at` is not before "
        "the post's latest submission",
    )


@register
class ApprovalRejected(EventPayload):
    event_type = "approval.rejected.v1"

    approval_id: UUID
    post_id: UUID
    brand_id: UUID
    decided_by: str
    reason: str = Field(description="why, as the reviewer wrote it")
    decided_at: datetime
    submission: int | None = Field(
        default=None,
        description="the `submission` of the publishing.post.submitted.v1 decided on; "
        "without it, publishing applies the decision only if `decided_at` is not before "
        "the post's latest submission",
    )


@register
class ApprovalUnlocked(EventPayload):
    """An approved post is open for edits again; it needs a new approval."""

    event_type = "approval.unlocked.v1"

    approval_id: UUID
    post_id: UUID
    brand_id: UUID
    unlocked_by: str
    reason: str | None = None
    unlocked_at: datetime
