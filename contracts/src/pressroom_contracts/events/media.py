"""``media.*`` events, published by the media service."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import Field

from pressroom_contracts.envelope import EventPayload
from pressroom_contracts.registry import register

Kind = Literal["image", "video"]


@register
class MediaAssetUploaded(EventPayload):
    event_type = "media.asset.uploaded.v1"

    asset_id: UUID
    brand_id: UUID
    kind: Kind
    filename: str
    content_type: str
    size_bytes: int
    hash: str = Field(description="SHA-256 of the uploaded bytes, hex")
    category: str | None = None
    tags: list[str] = Field(default_factory=list)
    width: int | None = None
    height: int | None = None
    duration_s: float | None = None
    uploaded_by: str | None = None


@register
class MediaAssetUpdated(EventPayload):
    event_type = "media.asset.updated.v1"

    asset_id: UUID
    brand_id: UUID
    filename: str
    category: str | None = None
    tags: list[str] = Field(default_factory=list)
    changed: list[str] = Field(default_factory=list, description="names of the fields that changed")


@register
class MediaAssetDeleted(EventPayload):
    event_type = "media.asset.deleted.v1"

    asset_id: UUID
    brand_id: UUID
    size_bytes: int
    forced: bool = Field(description="deleted while in use")


@register
class MediaAssetUsed(EventPayload):
    event_type = "media.asset.used.v1"

    asset_id: UUID
    brand_id: UUID
    used_in: str = Field(description="what uses it, e.g. post:<id>")
    action: str = Field(description="scheduled or published:<platform>")
    usage_count: int
    used_by_user: str | None = None


@register
class MediaQuotaWarning(EventPayload):
    event_type = "media.quota.warning.v1"

    brand_id: UUID
    used_bytes: int
    limit_bytes: int
    percent: float
    warning_threshold: float


@register
class MediaQuotaExceeded(EventPayload):
    event_type = "media.quota.exceeded.v1"

    brand_id: UUID
    used_bytes: int
    reserved_bytes: int
    requested_bytes: int
    limit_bytes: int
    filename: str | None = None
    refused_at: datetime
