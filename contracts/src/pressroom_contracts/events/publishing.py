"""``publishing.*`` events, published by the publishing service.

Posts: ``created`` (a draft), ``updated`` (an edit or reschedule), ``submitted`` (it needs an
approval: the approval service opens one), ``scheduled`` (it will go out at
``scheduled_at``), then per platform ``published`` or ``failed`` or ``unconfirmed`` (the outcome
of an attempt is unknown after a crash and the platform cannot be asked), and ``cancelled``.
Connections: ``connected``, ``expiring`` (scheduled posts would fail for want of a usable
token), ``expired`` (the token is dead and cannot be refreshed), ``revoked`` (the user or the
platform withdrew it). Tokens never appear in any event.
"""

from __future__ import annotations

from datetime import date as date_
from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from pressroom_contracts.envelope import EventPayload
from pressroom_contracts.registry import register


@register
class PostCreated(EventPayload):
    event_type = "publishing.post.created.v1"

    post_id: UUID
    brand_id: UUID
    platforms: list[str] = Field(default_factory=list)
    text: str = ""
    media_ids: list[UUID] = Field(default_factory=list)
    scheduled_at: datetime | None = None
    requires_approval: bool | None = Field(
        default=None, description="the post's own setting; null follows the brand's"
    )
    created_by: str | None = None
    plan_id: UUID | None = Field(
        default=None, description="the analytics plan the draft was made from, if any"
    )


@register
class PostUpdated(EventPayload):
    event_type = "publishing.post.updated.v1"

    post_id: UUID
    brand_id: UUID
    changed: list[str] = Field(default_factory=list, description="names of the fields that changed")
    platforms: list[str] = Field(default_factory=list)
    media_ids: list[UUID] = Field(default_factory=list)
    scheduled_at: datetime | None = None
    status: str = Field(description="the post's status after the edit")
    updated_by: str | None = None
    version: int | None = Field(
        default=None,
        description="the post's version after this change (its event stream's length); an "
        "approval is bound to the version it was asked for",
    )
    submission: int | None = Field(
        default=None, description="the post's latest submission number (0 or null: none yet)"
    )


@register
class PostSubmitted(EventPayload):
    """The post needs an approval before it is scheduled."""

    event_type = "publishing.post.submitted.v1"

    post_id: UUID
    brand_id: UUID
    platforms: list[str] = Field(default_factory=list)
    text: str = ""
    media_ids: list[UUID] = Field(default_factory=list)
    scheduled_at: datetime | None = None
    author: str | None = Field(
        default=None, description="who created the post (never its approver)"
    )
    submitted_by: str | None = None
    submission: int | None = Field(
        default=None,
        description="numbers the post's submissions (1, 2, ...); an approval decision "
        "names it in its own `submission` so that a late decision about an earlier version "
        "is not applied to the post as edited since",
    )
    version: int | None = Field(default=None, description="the post's version that was submitted")
    texts: dict[str, str] = Field(
        default_factory=dict,
        description="the text each platform will get (its override, else the post's text)",
    )
    media_by_platform: dict[str, list[UUID]] = Field(
        default_factory=dict, description="the media each platform will get"
    )


@register
class PostScheduled(EventPayload):
    event_type = "publishing.post.scheduled.v1"

    post_id: UUID
    brand_id: UUID
    scheduled_at: datetime
    platforms: list[str] = Field(default_factory=list)
    media_ids: list[UUID] = Field(default_factory=list)
    scheduled_by: str | None = None


@register
class PostPublished(EventPayload):
    event_type = "publishing.post.published.v1"

    post_id: UUID
    brand_id: UUID
    platform: str
    platform_post_id: str
    url: str | None = None
    media_ids: list[UUID] = Field(default_factory=list)
    published_at: datetime
    published_by: str | None = None
    plan_id: UUID | None = Field(
        default=None, description="the analytics plan the post was made from, if any"
    )


@register
class PostFailed(EventPayload):
    """One platform of the post failed for good (a permanent error, or retries used up)."""

    event_type = "publishing.post.failed.v1"

    post_id: UUID
    brand_id: UUID
    platform: str
    error_code: str = Field(description="ours: rejected, revoked, expired, retries_exhausted, ...")
    error: str = Field(description="what went wrong, with the platform's own code and message")
    attempts: int
    failed_at: datetime


@register
class PostCancelled(EventPayload):
    event_type = "publishing.post.cancelled.v1"

    post_id: UUID
    brand_id: UUID
    platforms: list[str] = Field(
        default_factory=list, description="the platforms that will not be published"
    )
    media_ids: list[UUID] = Field(default_factory=list)
    cancelled_at: datetime
    cancelled_by: str | None = None


@register
class PostUnconfirmed(EventPayload):
    """An attempt's outcome is unknown and the platform cannot be asked: a person decides
    (retry, or mark it published)."""

    event_type = "publishing.post.unconfirmed.v1"

    post_id: UUID
    brand_id: UUID
    platform: str
    attempt: int
    client_reference: str = Field(description="the idempotency key the attempt was sent with")
    attempted_at: datetime


@register
class ConnectionConnected(EventPayload):
    event_type = "publishing.connection.connected.v1"

    connection_id: UUID
    brand_id: UUID
    platform: str
    account_id: str
    account_name: str | None = None
    scopes: list[str] = Field(default_factory=list)
    expires_at: datetime | None = Field(default=None, description="when the access token expires")
    reconnected: bool = False
    connected_by: str | None = None


@register
class ConnectionExpiring(EventPayload):
    """Scheduled posts would fail for want of a usable token unless someone reconnects."""

    event_type = "publishing.connection.expiring.v1"

    connection_id: UUID
    brand_id: UUID
    platform: str
    usable_until: datetime = Field(description="when the connection stops being usable")
    first_affected_post_at: datetime | None = None
    affected_posts: int = 0


@register
class ConnectionExpired(EventPayload):
    event_type = "publishing.connection.expired.v1"

    connection_id: UUID
    brand_id: UUID
    platform: str
    reason: str


@register
class ConnectionRevoked(EventPayload):
    event_type = "publishing.connection.revoked.v1"

    connection_id: UUID
    brand_id: UUID
    platform: str
    reason: str
    revoked_by: str | None = Field(default=None, description="null when the platform revoked it")


class AccountDay(BaseModel):
    """One day of an account's numbers on a platform."""

    model_config = ConfigDict(frozen=True)

    date: date_
    reach: int = 0
    impressions: int = 0
    engagement: int = 0
    followers: int = 0


class PostDay(BaseModel):
    """One day of a published post's numbers on a platform."""

    model_config = ConfigDict(frozen=True)

    post_id: UUID | None = Field(default=None, description="ours, when the post is known")
    platform_post_id: str
    date: date_
    reach: int = 0
    impressions: int = 0
    engagement: int = 0
    likes: int = 0
    comments: int = 0
    shares: int = 0
    published_at: datetime | None = None
    media_kind: str | None = Field(
        default=None, description="text, image, video or mixed: what the post carried"
    )


@register
class MetricsCollected(EventPayload):
    """The answer to ``analytics.sync.requested.v1``, one per platform asked for: the
    account's days and the published posts' days in the range, or why there are none."""

    event_type = "publishing.metrics.collected.v1"
    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True)

    sync_id: UUID
    brand_id: UUID
    platform: str
    status: Literal["ok", "failed", "not_connected", "not_supported"]
    since: date_ = Field(alias="from")
    until: date_ = Field(alias="to")
    account: list[AccountDay] = Field(default_factory=list)
    posts: list[PostDay] = Field(default_factory=list)
    error: str | None = Field(default=None, description="what went wrong, when not ok")
    collected_at: datetime
