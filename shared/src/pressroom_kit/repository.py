"""Load an aggregate, let it decide, save its events, projections and outbox in one go."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar
from uuid import UUID, uuid5

import asyncpg

from pressroom_kit import eventstore
from pressroom_kit.cloudevents import new_event
from pressroom_kit.domain import Aggregate
from pressroom_kit.errors import ConcurrencyError
from pressroom_kit.eventstore import NewEvent, RecordedEvent
from pressroom_kit.outbox import OutboxMessage, outbox_row
from pressroom_kit.projections import Projector
from pressroom_kit.telemetry import current_traceparent

# Savepoints one transaction's saves may open (PostgreSQL caches 64 subtransactions per
# backend; the rest is left to the service's own savepoints).
SAVEPOINT_BUDGET = 32

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
        if events[0].stream_type != self.aggregate.stream_type:
            # Another kind of aggregate has this id (a client asked for a post by a
            # connection's id): to this repository it does not exist.
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
        """Project pending events, then append them with their outbox rows.

        Call inside the command's transaction. The projections run first (read-your-writes),
        with ``global_position`` still 0. Inside ``deferred_writes`` (every
        ``tenant_transaction`` and consumer transaction) the append is staged and written
        with the transaction's other writes as its last statement; otherwise it is written
        now and must be the transaction's last statement, since it holds the writers' lock
        until commit.
        """
        if not item.pending:
            return []
        traceparent = current_traceparent()
        meta = {"actor": actor, "traceparent": traceparent, **(metadata or {})}
        occurred_at = datetime.now(UTC)
        new_events = [
            NewEvent(
                type=e.type_name, data=e.model_dump(mode="json"), schema_version=e.schema_version
            )
            for e in item.pending
        ]
        preview = eventstore.preview(
            stream_id=item.id,
            stream_type=self.aggregate.stream_type,
            expected_version=item.version,
            events=new_events,
            brand_id=brand_id,
            metadata=meta,
            occurred_at=occurred_at,
        )
        outbox = [
            outbox_row(m, event_id) for m, event_id in self._public_messages(preview, traceparent)
        ]
        if self.projector is not None:
            await self._project(conn, self.projector, item, preview)
        recorded = await eventstore.append(
            conn,
            stream_id=item.id,
            stream_type=self.aggregate.stream_type,
            expected_version=item.version,
            events=new_events,
            brand_id=brand_id,
            metadata=meta,
            occurred_at=occurred_at,
            outbox=outbox,
        )
        item.mark_saved()
        return recorded

    async def _project(
        self,
        conn: asyncpg.Connection,
        projector: Projector,
        item: A,
        preview: Sequence[RecordedEvent],
    ) -> None:
        """Run the projections, telling a lost race from a projection bug while the
        transaction's savepoint budget lasts.

        A writer racing us may have projected the same rows first; its commit makes our
        projection collide before our append could say "concurrency conflict". So on a
        constraint violation the savepoint is rolled back and the stream's version decides.
        A savepoint that projected is a subtransaction with its own xid, and released or not
        it counts until the transaction ends: past 64, PostgreSQL's subtransaction cache
        overflows and every other session's snapshots slow down. So a transaction takes at
        most ``SAVEPOINT_BUDGET`` of them; later saves project without one, and a collision
        there fails the transaction as the constraint violation it is (the inbox consumer
        then retries the message alone, where the budget starts again).
        """
        pending = eventstore.pending_writes(conn)
        if pending is not None and pending.savepoints >= SAVEPOINT_BUDGET:
            await projector.apply(conn, preview)
            return
        if pending is not None:
            pending.savepoints += 1
        try:
            # Not released: a release is one more round trip per save and buys nothing. A
            # released savepoint keeps its subtransaction (and cache entry) until the
            # transaction ends all the same; the next save's savepoint nests inside this one,
            # a caller's own savepoints keep working around or inside it, and COMMIT ends
            # them all. Any failure rolls the projection back together with whatever it
            # staged (``eventstore.savepoint``), so a caller that goes on keeps none of it.
            async with eventstore.savepoint(conn, release=False):
                await projector.apply(conn, preview)
        except asyncpg.IntegrityConstraintViolationError:
            actual = await eventstore.current_version(conn, item.id)
            if actual != item.version:
                raise ConcurrencyError(
                    f"stream {item.id} is at version {actual}, expected {item.version}",
                    stream_id=item.id,
                    actual_version=actual,
                ) from None
            raise  # we did not lose a race: the projection itself is wrong

    def _public_messages(
        self, events: Sequence[RecordedEvent], traceparent: str | None
    ) -> list[tuple[OutboxMessage, UUID]]:
        """The public messages of ``events``, each with the stored event it announces."""
        if self.to_public is None:
            return []
        messages = []
        for event in events:
            for index, (topic, public_type, data) in enumerate(self.to_public(event)):
                # The first public message keeps the event's id; others get a stable derived id.
                message_id = event.event_id if index == 0 else uuid5(event.event_id, public_type)
                messages.append(
                    (
                        OutboxMessage(
                            topic=topic,
                            key=event.stream_id,
                            event=new_event(
                                source=self.source,
                                type=public_type,
                                data=data,
                                event_id=message_id,
                                subject=event.stream_id,
                                brand_id=event.brand_id,
                                sequence=event.version,
                                time=event.occurred_at,
                                traceparent=traceparent,
                            ),
                        ),
                        event.event_id,
                    )
                )
        return messages


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
