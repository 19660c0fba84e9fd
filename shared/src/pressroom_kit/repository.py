"""Load an aggregate, let it decide, save its events, projections and outbox in one go."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from uuid import UUID

import asyncpg

from pressroom_kit import eventstore
from pressroom_kit.cloudevents import new_event
from pressroom_kit.domain import Aggregate
from pressroom_kit.errors import ConcurrencyError
from pressroom_kit.eventstore import NewEvent, RecordedEvent
from pressroom_kit.outbox import OutboxMessage, write_outbox
from pressroom_kit.projections import Projector
from pressroom_kit.telemetry import current_traceparent

A = TypeVar("A", bound=Aggregate)
T = TypeVar("T")

# Turns one stored domain event into zero or more public (topic, type, data) messages.
PublicTranslation = Callable[[RecordedEvent], Sequence[tuple[str, str, dict[str, Any]]]]


@dataclass
class Repository(Generic[A]):
    """Event-sourced repository of one aggregate type within one service."""

    aggregate: type[A]
    source: str
    projector: Projector | None = None
    to_public: PublicTranslation | None = None

    async def load(self, conn: asyncpg.Connection, aggregate_id: str) -> A | None:
        events = await eventstore.load_stream(conn, aggregate_id)
        if not events:
            return None
        return self.aggregate.rehydrate(aggregate_id, ((e.type, e.data) for e in events))

    async def save(
        self,
        conn: asyncpg.Connection,
        item: A,
        *,
        brand_id: UUID | None,
        actor: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> list[RecordedEvent]:
        """Append pending events, project them and write their public messages to the outbox."""
        if not item.pending:
            return []
        traceparent = current_traceparent()
        meta = {"actor": actor, "traceparent": traceparent, **(metadata or {})}
        recorded = await eventstore.append(
            conn,
            stream_id=item.id,
            stream_type=self.aggregate.stream_type,
            expected_version=item.version,
            events=[
                NewEvent(
                    type=e.type_name,
                    data=e.model_dump(mode="json"),
                    schema_version=e.schema_version,
                )
                for e in item.pending
            ],
            brand_id=brand_id,
            metadata=meta,
        )
        item.mark_saved()
        if self.projector is not None:
            await self.projector.apply(conn, recorded)
        if self.to_public is not None:
            messages = []
            for event in recorded:
                for topic, public_type, data in self.to_public(event):
                    messages.append(
                        OutboxMessage(
                            topic=topic,
                            key=event.stream_id,
                            event=new_event(
                                source=self.source,
                                type=public_type,
                                data=data,
                                event_id=event.event_id,
                                subject=event.stream_id,
                                brand_id=event.brand_id,
                                sequence=event.version,
                                time=event.occurred_at,
                                traceparent=traceparent,
                            ),
                        )
                    )
            await write_outbox(conn, messages)
        return recorded


async def retry_on_conflict(
    command: Callable[[], Awaitable[T]], *, attempts: int = 3, backoff: float = 0.01
) -> T:
    """Run ``command`` (which opens its own transaction) again when it lost a race."""
    for attempt in range(1, attempts + 1):
        try:
            return await command()
        except ConcurrencyError:
            if attempt == attempts:
                raise
            await asyncio.sleep(backoff * attempt)
    raise AssertionError("unreachable")
