"""The CloudEvents 1.0 envelope and the base of every payload model."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar
from uuid import UUID, uuid4

from pydantic import BaseModel, ConfigDict, Field


class EventPayload(BaseModel):
    """The ``data`` of a public event.

    Subclasses set ``event_type`` as ``<domain>.<aggregate>.<event>.vN``.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    event_type: ClassVar[str] = ""


class CloudEvent(BaseModel):
    """A CloudEvents 1.0 event as Pressroom puts it on Kafka (binary content mode).

    ``brandid`` and ``sequence`` are CloudEvents extension attributes; ``traceparent`` is the
    W3C distributed-tracing extension.
    """

    model_config = ConfigDict(frozen=True)

    id: UUID = Field(default_factory=uuid4)
    source: str
    type: str
    subject: str | None = None
    time: datetime = Field(default_factory=lambda: datetime.now(UTC))
    specversion: str = "1.0"
    datacontenttype: str = "application/json"
    brandid: UUID | None = None
    sequence: int | None = None
    traceparent: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)

    def payload(self) -> EventPayload:
        """The ``data`` parsed into its contract model; ``KeyError`` for an unknown type."""
        from pressroom_contracts.registry import payload_model

        return payload_model(self.type).model_validate(self.data)
