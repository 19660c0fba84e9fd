"""The endpoint aggregate: where a brand's events go and how they are signed. Pure Python."""

from __future__ import annotations

import fnmatch
from datetime import datetime
from typing import ClassVar
from uuid import UUID

from pressroom_kit.domain import Aggregate, DomainEvent
from pressroom_kit.errors import Conflict, Invalid, NotFound

from pressroom_webhook.providers import PROVIDERS


class EndpointCreated(DomainEvent):
    type_name: ClassVar[str] = "EndpointCreated"
    brand_id: UUID
    url: str
    provider: str
    event_types: list[str]
    description: str
    enabled: bool
    secret_enc: str


class EndpointChanged(DomainEvent):
    type_name: ClassVar[str] = "EndpointChanged"
    url: str
    provider: str
    event_types: list[str]
    description: str
    enabled: bool


class SecretRotated(DomainEvent):
    type_name: ClassVar[str] = "SecretRotated"
    secret_enc: str
    previous_secret_enc: str
    previous_valid_until: datetime


class EndpointDisabled(DomainEvent):
    type_name: ClassVar[str] = "EndpointDisabled"
    reason: str


class EndpointDeleted(DomainEvent):
    type_name: ClassVar[str] = "EndpointDeleted"


def valid_event_types(patterns: list[str]) -> list[str]:
    """Exact types (``publishing.post.published.v1``) or wildcards (``publishing.post.*``)."""
    if not patterns:
        raise Invalid(
            'an endpoint needs at least one event type (use "*" for all)',
            errors=[{"field": "event_types", "message": "at least one"}],
        )
    cleaned = []
    for pattern in patterns:
        pattern = pattern.strip()
        if not pattern or len(pattern) > 200 or any(c in pattern for c in " []?"):
            raise Invalid(
                f"bad event type pattern {pattern!r}",
                errors=[{"field": "event_types", "message": f"bad pattern {pattern!r}"}],
            )
        cleaned.append(pattern)
    return sorted(set(cleaned))


def matches(patterns: list[str], event_type: str) -> bool:
    return any(fnmatch.fnmatchcase(event_type, pattern) for pattern in patterns)


class Endpoint(Aggregate):
    stream_type = "webhook_endpoint"
    event_classes = (
        EndpointCreated,
        EndpointChanged,
        SecretRotated,
        EndpointDisabled,
        EndpointDeleted,
    )

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.url = ""
        self.provider = "generic"
        self.event_types: list[str] = []
        self.description = ""
        self.enabled = False
        self.deleted = False
        self.secret_enc = ""

    def apply(self, event: DomainEvent) -> None:
        match event:
            case EndpointCreated() | EndpointChanged():
                self.url, self.provider = event.url, event.provider
                self.event_types, self.description = list(event.event_types), event.description
                self.enabled = event.enabled
                if isinstance(event, EndpointCreated):
                    self.secret_enc = event.secret_enc
            case SecretRotated():
                self.secret_enc = event.secret_enc
            case EndpointDisabled():
                self.enabled = False
            case EndpointDeleted():
                self.deleted, self.enabled = True, False

    @classmethod
    def create(
        cls,
        endpoint_id: UUID,
        *,
        brand_id: UUID,
        url: str,
        provider: str,
        event_types: list[str],
        description: str,
        enabled: bool,
        secret_enc: str,
    ) -> Endpoint:
        if provider not in PROVIDERS:
            raise Invalid(
                f"provider must be one of {', '.join(PROVIDERS)}",
                errors=[{"field": "provider", "message": "unknown provider"}],
            )
        endpoint = cls(str(endpoint_id))
        endpoint.record(
            EndpointCreated(
                brand_id=brand_id,
                url=url,
                provider=provider,
                event_types=valid_event_types(event_types),
                description=description[:500],
                enabled=enabled,
                secret_enc=secret_enc,
            )
        )
        return endpoint

    def _live(self) -> None:
        if self.deleted:
            raise NotFound("this endpoint was deleted", code="no_endpoint")

    def change(
        self,
        *,
        url: str | None = None,
        provider: str | None = None,
        event_types: list[str] | None = None,
        description: str | None = None,
        enabled: bool | None = None,
    ) -> None:
        self._live()
        if provider is not None and provider not in PROVIDERS:
            raise Invalid(
                f"provider must be one of {', '.join(PROVIDERS)}",
                errors=[{"field": "provider", "message": "unknown provider"}],
            )
        new = EndpointChanged(
            url=self.url if url is None else url,
            provider=self.provider if provider is None else provider,
            event_types=self.event_types if event_types is None else valid_event_types(event_types),
            description=self.description if description is None else description[:500],
            enabled=self.enabled if enabled is None else enabled,
        )
        current = (self.url, self.provider, self.event_types, self.description, self.enabled)
        if (new.url, new.provider, new.event_types, new.description, new.enabled) != current:
            self.record(new)

    def rotate(self, *, secret_enc: str, previous_valid_until: datetime) -> None:
        self._live()
        self.record(
            SecretRotated(
                secret_enc=secret_enc,
                previous_secret_enc=self.secret_enc,
                previous_valid_until=previous_valid_until,
            )
        )

    def disable(self, reason: str) -> None:
        self._live()
        if not self.enabled:
            raise Conflict("the endpoint is already disabled", code="already_disabled")
        self.record(EndpointDisabled(reason=reason))

    def delete(self) -> None:
        self._live()
        self.record(EndpointDeleted())
