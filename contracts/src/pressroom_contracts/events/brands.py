"""``brand.*`` events, published by the gateway (which owns brands and members)."""

from __future__ import annotations

from typing import Any, Literal
from uuid import UUID

from pydantic import Field

from pressroom_contracts.envelope import EventPayload
from pressroom_contracts.registry import register

Role = Literal["admin", "manager", "viewer"]


@register
class BrandCreated(EventPayload):
    event_type = "brand.created.v1"

    brand_id: UUID
    name: str
    timezone: str
    settings: dict[str, Any] = Field(default_factory=dict)
    created_by: str


@register
class BrandUpdated(EventPayload):
    event_type = "brand.updated.v1"

    brand_id: UUID
    name: str
    timezone: str
    settings: dict[str, Any] = Field(default_factory=dict)
    changed: list[str] = Field(default_factory=list, description="names of the fields that changed")


@register
class BrandMemberAdded(EventPayload):
    event_type = "brand.member_added.v1"

    brand_id: UUID
    user_id: str
    email: str | None = None
    role: Role


@register
class BrandMemberRemoved(EventPayload):
    event_type = "brand.member_removed.v1"

    brand_id: UUID
    user_id: str
