"""``approval.*`` events, published by the approval service.

An approval is opened from ``publishing.post.submitted.v1`` (``requested``), decided
(``approved``: the post is scheduled and locked; ``rejected``), reopened (``unlocked``: the
post goes back to draft and needs a new decision), ``expired`` (still pending when the
post's publish time passed: the post does not go out until a late decision), and
``escalated`` (a reminder or an escalation went to people who can decide). The publishing
service consumes ``approved``, ``rejected``, ``unlocked`` and ``expired``.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from pydantic import Field

from pressroom_contracts.envelope import EventPayload
from pressroom_contracts.registry import register


@register
class ApprovalRequested(EventPayload):
    """A post waits for a decision (one approval per post; a new submission reopens it)."""

    event_type = "approval.requested.v1"

    approval_id: UUID
    post_id: UUID
    brand_id: UUID
    submission: int | None = Field(
        default=None, description="the `submission` of the publishing.post.submitted.v1"
    )
    author: str | None = Field(default=None, description="the post's author (never its approver)")
    platforms: list[str] = Field(default_factory=list)
    scheduled_at: datetime | None = None
    requested_at: datetime


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
    scheduled_at: datetime | None = Field(
        default=None,
        description="a new publish time given with a late decision (the approval had "
        "expired); null: the post keeps its time, or goes out at once when that has passed",
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


@register
class ApprovalExpired(EventPayload):
    """Still pending when the post's publish time passed: the post does not go out; a late
    approval schedules it (at once, or at a time the decision gives)."""

    event_type = "approval.expired.v1"

    approval_id: UUID
    post_id: UUID
    brand_id: UUID
    submission: int | None = None
    scheduled_at: datetime | None = Field(default=None, description="the publish time missed")
    expired_at: datetime


@register
class ApprovalEscalated(EventPayload):
    """A due escalation step (a reminder, or an escalation to another role) was sent."""

    event_type = "approval.escalated.v1"

    approval_id: UUID
    post_id: UUID
    brand_id: UUID
    escalation_id: UUID
    rule_id: UUID | None = None
    rule_type: str = Field(description="the rule's type, e.g. reminder_24h, escalate_48h")
    target_role: str | None = Field(default=None, description="the role notified")
    channels: list[str] = Field(default_factory=list, description="email and/or slack")
    recipients: int = Field(default=0, description="how many people were notified")
    escalated_at: datetime
