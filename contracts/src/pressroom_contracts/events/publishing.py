"""``publishing.*`` events, published by the publishing service.

Only the events other services consume so far are here; the publishing service adds the rest
of its catalog (API.md) when it lands.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from pydantic import Field

from pressroom_contracts.envelope import EventPayload
from pressroom_contracts.registry import register


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
