"""``webhook.*`` events, published by the webhook service."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from pressroom_contracts.envelope import EventPayload
from pressroom_contracts.registry import register


@register
class WebhookDeliverySucceeded(EventPayload):
    event_type = "webhook.delivery.succeeded.v1"

    delivery_id: UUID
    endpoint_id: UUID
    event_id: UUID
    event_type_delivered: str
    attempts: int
    response_code: int
    delivered_at: datetime


@register
class WebhookDeliveryFailed(EventPayload):
    event_type = "webhook.delivery.failed.v1"

    delivery_id: UUID
    endpoint_id: UUID
    event_id: UUID
    event_type_delivered: str
    attempts: int
    last_error: str
    response_code: int | None = None


@register
class WebhookEndpointDisabled(EventPayload):
    event_type = "webhook.endpoint.disabled.v1"

    endpoint_id: UUID
    url: str
    reason: str
