"""The event store: append with expected version, load a stream, read all in order."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import asyncpg

from pressroom_kit.errors import ConcurrencyError

# Every writer takes this transaction-level advisory lock before positions are handed out and
# keeps it until commit, so commit order equals global_position order and a reader following
# positions never skips a late commit.
_APPEND_LOCK = 7_250_002


@dataclass(frozen=True)
class NewEvent:
    type: str
    data: dict[str, Any]
    schema_version: int = 1
    event_id: UUID = field(default_factory=uuid4)


@dataclass(frozen=True)
class RecordedEvent:
    global_position: int
    event_id: UUID
    stream_id: str
    stream_type: str
    version: int
    type: str
    schema_version: int
    data: dict[str, Any]
    metadata: dict[str, Any]
    brand_id: UUID | None
    occurred_at: datetime

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> RecordedEvent:
        return cls(**dict(row))


_COLUMNS = (
    "global_position, event_id, stream_id, stream_type, version, type, schema_version, "
    "data, metadata, brand_id, occurred_at"
)


@dataclass(frozen=True)
class OutboxRow:
    """A message ``event_id`` to publish once the stored event ``for_event`` commits (see
    ``pressroom_kit.outbox``); one stored event may announce itself in several messages."""

    event_id: UUID
    topic: str
    key: str
    headers: dict[str, str]
    payload: dict[str, Any]
    for_event: UUID


_APPEND_SQL = """
WITH lock AS MATERIALIZED (SELECT pg_advisory_xact_lock($10::bigint) AS locked),
ins AS (
    INSERT INTO events (event_id, stream_id, stream_type, version, type, schema_version,
                        data, metadata, brand_id, occurred_at)
    SELECT e.event_id, $1, $2, $3 + e.ord, e.type, e.schema_version, e.data, $4, $5, $11
    FROM lock,
         unnest($6::uuid[], $7::text[], $8::int[], $9::jsonb[])
             WITH ORDINALITY AS e(event_id, type, schema_version, data, ord)
    WHERE (SELECT coalesce(max(version), 0) FROM events WHERE stream_id = $1) = $3
    ORDER BY e.ord
    RETURNING global_position, event_id, version
),
out AS (
    INSERT INTO outbox (event_id, topic, key, headers, payload)
    SELECT o.event_id, o.topic, o.key, o.headers, o.payload
    FROM unnest($12::uuid[], $13::text[], $14::text[], $15::jsonb[], $16::jsonb[], $17::uuid[])
             WITH ORDINALITY AS o(event_id, topic, key, headers, payload, for_event, ord)
    JOIN ins ON ins.event_id = o.for_event
    ORDER BY ins.global_position, o.ord
)
SELECT global_position, version FROM ins ORDER BY version
"""


async def append(
    conn: asyncpg.Connection,
    *,
    stream_id: str,
    stream_type: str,
    expected_version: int,
    events: Sequence[NewEvent],
    brand_id: UUID | None = None,
    metadata: dict[str, Any] | None = None,
    occurred_at: datetime | None = None,
    outbox: Sequence[OutboxRow] = (),
) -> list[RecordedEvent]:
    """Append ``events`` to a stream that must be at ``expected_version`` (0: new stream),
    with their ``outbox`` rows, in one statement.

    Must run inside a transaction; the caller commits. Raises ``ConcurrencyError`` when the
    stream moved on, so of two racing writers exactly one wins.

    The statement first takes a transaction-level advisory lock that every writer shares, so
    positions are handed out in commit order; it is the last thing a command does before
    ``COMMIT`` so the lock is held for as short a time as possible.
    """
    if not conn.is_in_transaction():
        raise RuntimeError("append() must run inside a transaction")
    if not events:
        return []
    occurred = occurred_at or datetime.now(UTC)
    meta = metadata or {}
    try:
        rows = await conn.fetch(
            _APPEND_SQL,
            stream_id,
            stream_type,
            expected_version,
            meta,
            brand_id,
            [e.event_id for e in events],
            [e.type for e in events],
            [e.schema_version for e in events],
            [e.data for e in events],
            _APPEND_LOCK,
            occurred,
            [o.event_id for o in outbox],
            [o.topic for o in outbox],
            [o.key for o in outbox],
            [o.headers for o in outbox],
            [o.payload for o in outbox],
            [o.for_event for o in outbox],
        )
    except asyncpg.UniqueViolationError as exc:
        if exc.constraint_name != "events_stream_id_version_key":
            raise
        raise ConcurrencyError(
            f"stream {stream_id} moved past version {expected_version}", stream_id=stream_id
        ) from exc
    if not rows:
        current = await conn.fetchval(
            "SELECT coalesce(max(version), 0) FROM events WHERE stream_id = $1", stream_id
        )
        raise ConcurrencyError(
            f"stream {stream_id} is at version {current}, expected {expected_version}",
            stream_id=stream_id,
            actual_version=current,
        )
    unpositioned = preview(
        stream_id=stream_id,
        stream_type=stream_type,
        expected_version=expected_version,
        events=events,
        brand_id=brand_id,
        metadata=meta,
        occurred_at=occurred,
    )
    return [
        replace(event, global_position=row["global_position"])
        for row, event in zip(rows, unpositioned, strict=True)
    ]


def preview(
    *,
    stream_id: str,
    stream_type: str,
    expected_version: int,
    events: Sequence[NewEvent],
    brand_id: UUID | None,
    metadata: dict[str, Any],
    occurred_at: datetime,
) -> list[RecordedEvent]:
    """The events as they will be recorded, before they have a ``global_position`` (0)."""
    return [
        RecordedEvent(
            global_position=0,
            event_id=event.event_id,
            stream_id=stream_id,
            stream_type=stream_type,
            version=expected_version + offset,
            type=event.type,
            schema_version=event.schema_version,
            data=event.data,
            metadata=metadata,
            brand_id=brand_id,
            occurred_at=occurred_at,
        )
        for offset, event in enumerate(events, start=1)
    ]


async def load_stream(
    conn: asyncpg.Connection | asyncpg.Pool, stream_id: str, *, after_version: int = 0
) -> list[RecordedEvent]:
    """The events of one stream, in version order."""
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM events WHERE stream_id = $1 AND version > $2 ORDER BY version",
        stream_id,
        after_version,
    )
    return [RecordedEvent.from_row(r) for r in rows]


async def read_all(
    conn: asyncpg.Connection | asyncpg.Pool,
    *,
    after_position: int = 0,
    batch_size: int = 1000,
    types: Sequence[str] | None = None,
) -> AsyncIterator[list[RecordedEvent]]:
    """Every event after ``after_position`` in global order, in batches."""
    position = after_position
    while True:
        rows = await conn.fetch(
            f"SELECT {_COLUMNS} FROM events WHERE global_position > $1 "
            "AND ($3::text[] IS NULL OR type = ANY($3)) ORDER BY global_position LIMIT $2",
            position,
            batch_size,
            list(types) if types is not None else None,
        )
        if not rows:
            return
        batch = [RecordedEvent.from_row(r) for r in rows]
        position = batch[-1].global_position
        yield batch


async def head_position(conn: asyncpg.Connection | asyncpg.Pool) -> int:
    """The highest global position written so far (0 for an empty store)."""
    return int(await conn.fetchval("SELECT coalesce(max(global_position), 0) FROM events"))
