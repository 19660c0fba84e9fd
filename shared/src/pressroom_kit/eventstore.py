"""The event store: append with expected version, load a stream, read all in order."""

from __future__ import annotations

import contextlib
import itertools
import json
import secrets
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import asyncpg

from pressroom_kit.errors import ConcurrencyError

# Every write to the event store and the outbox takes this transaction-level advisory lock
# in the statement that inserts, and keeps it until commit, so commit order equals
# global_position (and outbox id) order and a reader following positions never skips a late
# commit. Inside ``deferred_writes`` that statement is the transaction's last: a transaction's
# appends are collected and written together at its end, so no statement of ours ever waits
# on a row lock while holding the writers' lock (a handler saving several aggregates, or a
# batch of handlers, cannot deadlock against a command that waits for the lock).
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
    ``pressroom_kit.outbox``); one stored event may announce itself in several messages.
    ``for_event`` is ``None`` for a message that announces no stored event (``write_outbox``)."""

    event_id: UUID
    topic: str
    key: str
    headers: dict[str, str]
    payload: dict[str, Any]
    for_event: UUID | None


# One statement writes every event and outbox row of a transaction. Each insert joins the
# materialized lock row first, so the lock is granted before any position or id is drawn;
# the version check reads the statement's snapshot, and a writer that committed while we
# waited for the lock is caught by the unique (stream_id, version) key instead.
_WRITE_SQL = """
WITH lock AS MATERIALIZED (SELECT pg_advisory_xact_lock($1::bigint) AS locked),
expected AS (
    SELECT * FROM unnest($2::text[], $3::int[]) AS x(stream_id, version)
),
conflict AS MATERIALIZED (
    SELECT x.stream_id,
           (SELECT coalesce(max(version), 0) FROM events e WHERE e.stream_id = x.stream_id)
               AS actual
    FROM expected x
    WHERE (SELECT coalesce(max(version), 0) FROM events e WHERE e.stream_id = x.stream_id)
          <> x.version
    LIMIT 1
),
ins AS (
    INSERT INTO events (event_id, stream_id, stream_type, version, type, schema_version,
                        data, metadata, brand_id, occurred_at)
    SELECT e.event_id, e.stream_id, e.stream_type, e.version, e.type, e.schema_version,
           e.data, e.metadata, e.brand_id, e.occurred_at
    FROM lock,
         unnest($4::uuid[], $5::text[], $6::text[], $7::int[], $8::text[], $9::int[],
                $10::jsonb[], $11::jsonb[], $12::uuid[], $13::timestamptz[])
             WITH ORDINALITY AS e(event_id, stream_id, stream_type, version, type,
                                  schema_version, data, metadata, brand_id, occurred_at, ord)
    WHERE NOT EXISTS (SELECT 1 FROM conflict)
    ORDER BY e.ord
    RETURNING global_position, event_id
),
out AS (
    INSERT INTO outbox (event_id, topic, key, headers, payload)
    SELECT o.event_id, o.topic, o.key, o.headers, o.payload
    FROM lock,
         unnest($14::uuid[], $15::text[], $16::text[], $17::jsonb[], $18::jsonb[], $19::uuid[])
             WITH ORDINALITY AS o(event_id, topic, key, headers, payload, for_event, ord)
    LEFT JOIN ins ON ins.event_id = o.for_event
    WHERE NOT EXISTS (SELECT 1 FROM conflict)
      AND (o.for_event IS NULL OR ins.event_id IS NOT NULL)
    ORDER BY o.ord
)
SELECT global_position, event_id, NULL::text AS conflict, NULL::int AS actual FROM ins
UNION ALL
SELECT NULL, NULL, stream_id, actual FROM conflict
"""


@dataclass
class _Append:
    stream_id: str
    stream_type: str
    expected_version: int
    events: list[RecordedEvent]
    outbox: list[OutboxRow]


@dataclass(frozen=True)
class StagingMark:
    """What a transaction had staged at one moment (``PendingWrites.mark``).

    It keeps the staging lists themselves with their lengths: staging only ever appends to
    a list, and ``flush``/``commit`` swap in new lists rather than clear the old ones, so
    the first ``n`` items of a kept list are exactly what was staged at the mark, even
    when a flush ran after it."""

    appends: list[_Append]
    n_appends: int
    outbox: list[OutboxRow]
    n_outbox: int
    heads: dict[str, int]


class PendingWrites:
    """The appends and outbox rows of one transaction, written together by ``flush``.

    Appends to the same stream chain on each other (the second must expect the version the
    first leaves); ``staged`` lets a load in the same transaction see what is staged.
    """

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self._appends: list[_Append] = []
        self._outbox: list[OutboxRow] = []
        self._heads: dict[str, int] = {}
        self._closed = False
        self.savepoints = 0  # projection savepoints the saves took (``Repository.save``)
        # With nothing staged, a COMMIT that rolled back is only reported when asked for (the
        # inbox consumer asks: its inbox row would be gone while the offset moves on).
        self.require_commit = False

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this transaction has ended; its staged writes are gone")

    def __bool__(self) -> bool:
        return bool(self._appends or self._outbox)

    def staged(self, stream_id: str) -> list[RecordedEvent]:
        """The events staged for ``stream_id`` in this transaction (``global_position`` 0)."""
        return [e for a in self._appends if a.stream_id == stream_id for e in a.events]

    def staged_version(self, stream_id: str) -> int | None:
        """The version ``stream_id`` will be at once flushed, when this transaction staged it."""
        return self._heads.get(stream_id)

    def add_append(
        self,
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
        """Stage an append; raises ``ConcurrencyError`` at once when it contradicts an append
        already staged for the same stream."""
        self._check_open()
        head = self._heads.get(stream_id)
        if head is not None and head != expected_version:
            raise ConcurrencyError(
                f"stream {stream_id} is staged at version {head}, expected {expected_version}",
                stream_id=stream_id,
                actual_version=head,
            )
        recorded = preview(
            stream_id=stream_id,
            stream_type=stream_type,
            expected_version=expected_version,
            events=events,
            brand_id=brand_id,
            metadata=metadata or {},
            occurred_at=occurred_at or datetime.now(UTC),
        )
        if not recorded:
            return []
        self._appends.append(
            _Append(stream_id, stream_type, expected_version, recorded, list(outbox))
        )
        self._heads[stream_id] = recorded[-1].version
        return recorded

    def add_outbox(self, rows: Sequence[OutboxRow]) -> None:
        self._check_open()
        self._outbox.extend(rows)

    def mark(self) -> StagingMark:
        """What is staged now, for ``restore`` (``savepoint`` takes one on entry)."""
        return StagingMark(
            self._appends, len(self._appends), self._outbox, len(self._outbox), dict(self._heads)
        )

    def restore(self, mark: StagingMark) -> None:
        """Stage exactly what was staged at ``mark`` again: what a ``ROLLBACK TO SAVEPOINT``
        taken at the mark does to the database. A flush after the mark wrote inside the
        savepoint, so the rollback undid it too: its rows from before the mark are staged
        again, and the rest is dropped like everything else staged since."""
        self._check_open()
        self._appends = mark.appends[: mark.n_appends]
        self._outbox = mark.outbox[: mark.n_outbox]
        self._heads = dict(mark.heads)

    async def flush(self) -> list[RecordedEvent]:
        """Write everything staged in one statement (which takes the writers' lock: commit
        right after it). Raises ``ConcurrencyError`` when a stream moved on meanwhile."""
        if not self:
            return []
        if not self.conn.is_in_transaction():
            raise RuntimeError("event store writes must run inside a transaction")
        appends, outbox_only = self._appends, self._outbox
        self._appends, self._outbox, self._heads = [], [], {}
        first: dict[str, int] = {}
        for a in appends:
            first.setdefault(a.stream_id, a.expected_version)
        events = [e for a in appends for e in a.events]
        outbox = [o for a in appends for o in a.outbox] + outbox_only
        try:
            rows = await self.conn.fetch(
                _WRITE_SQL,
                _APPEND_LOCK,
                list(first),
                list(first.values()),
                [e.event_id for e in events],
                [e.stream_id for e in events],
                [e.stream_type for e in events],
                [e.version for e in events],
                [e.type for e in events],
                [e.schema_version for e in events],
                [e.data for e in events],
                [e.metadata for e in events],
                [e.brand_id for e in events],
                [e.occurred_at for e in events],
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
            streams = ", ".join(first)
            raise ConcurrencyError(
                f"a stream of {streams} moved on while this transaction ran",
                stream_id=next(iter(first)),
            ) from exc
        conflict = next((r for r in rows if r["conflict"] is not None), None)
        if conflict is not None:
            stream = conflict["conflict"]
            raise ConcurrencyError(
                f"stream {stream} is at version {conflict['actual']}, expected {first[stream]}",
                stream_id=stream,
                actual_version=conflict["actual"],
            )
        positions = {r["event_id"]: r["global_position"] for r in rows}
        return [replace(e, global_position=positions[e.event_id]) for e in events]

    async def commit(self) -> None:
        """Write everything staged and commit, with the writers' lock held only inside the
        server: one simple query hands the rows over in the transaction-local setting
        ``pressroom.writes`` (a dollar-quoted literal, see ``dollar_quote``), then
        ``SELECT pressroom_flush_writes(); COMMIT`` takes the lock, writes and commits, so
        the lock is released by a commit that no client round trip separates from it, and
        the whole hand-over costs one round trip. Raises ``ConcurrencyError`` (the
        transaction then needs a ROLLBACK) when a stream moved on meanwhile."""
        if not self:
            status = await self.conn.execute("COMMIT")
            if self.require_commit:
                _check_committed(status)
            return
        appends, outbox_only = self._appends, self._outbox
        self._appends, self._outbox, self._heads = [], [], {}
        streams: dict[str, int] = {}
        for a in appends:
            streams.setdefault(a.stream_id, a.expected_version)
        staged = {
            "streams": [{"stream_id": s, "expected": v} for s, v in streams.items()],
            "events": [
                {
                    "event_id": e.event_id,
                    "stream_id": e.stream_id,
                    "stream_type": e.stream_type,
                    "version": e.version,
                    "type": e.type,
                    "schema_version": e.schema_version,
                    "data": e.data,
                    "metadata": e.metadata,
                    "brand_id": e.brand_id,
                    "occurred_at": e.occurred_at.isoformat(),
                }
                for a in appends
                for e in a.events
            ],
            "outbox": [
                {
                    "event_id": o.event_id,
                    "topic": o.topic,
                    "key": o.key,
                    "headers": o.headers,
                    "payload": o.payload,
                }
                for o in [*(o for a in appends for o in a.outbox), *outbox_only]
            ],
        }
        writes = json.dumps(staged, separators=(",", ":"), default=str)
        try:
            status = await self.conn.execute(
                f"SELECT FROM set_config('pressroom.writes', {dollar_quote(writes)}, true); "
                "SELECT pressroom_flush_writes(); COMMIT"
            )
        except asyncpg.InFailedSQLTransactionError as exc:
            raise TransactionAborted(
                "a statement of this transaction failed; nothing is written"
            ) from exc
        except asyncpg.UniqueViolationError as exc:
            if exc.constraint_name != "events_stream_id_version_key":
                raise
            raise ConcurrencyError(
                f"a stream of {', '.join(streams)} moved on while this transaction ran",
                stream_id=next(iter(streams)),
            ) from exc
        except asyncpg.PostgresError as exc:
            if exc.sqlstate != _STREAM_MOVED:
                raise
            stream = str(getattr(exc, "detail", "") or next(iter(streams)))
            hint = getattr(exc, "hint", None)
            raise ConcurrencyError(
                str(getattr(exc, "message", None) or exc),
                stream_id=stream,
                actual_version=int(hint) if hint and hint.isdigit() else None,
            ) from exc
        _check_committed(status)


def dollar_quote(text: str) -> str:
    """``text`` as a PostgreSQL dollar-quoted literal, ``$tag$text$tag$``.

    The content of a dollar-quoted string is taken verbatim (no escapes, whatever
    ``standard_conforming_strings`` says), and it ends at the first ``$tag$``; so the tag is
    drawn at random until neither ``$tag$`` nor ``$tag`` (which the closing ``$`` would
    complete) occurs in ``text``. A NUL cannot travel in a query; the JSON the kit quotes
    has none (``json.dumps`` writes ``\\u0000``)."""
    if "\x00" in text:
        raise ValueError("a NUL character cannot travel in a query")
    while True:
        tag = f"pr{secrets.token_hex(6)}"
        if f"${tag}" not in text:
            return f"${tag}${text}${tag}$"


# The SQLSTATE pressroom_flush_writes raises when a stream is not at the expected version.
_STREAM_MOVED = "PR409"


def _check_committed(status: str) -> None:
    # COMMIT of a transaction in which a statement failed (and the caller swallowed the
    # error) answers ROLLBACK: nothing was written, and the caller must not believe otherwise.
    if status != "COMMIT":
        raise TransactionAborted(f"the transaction was rolled back ({status}), not committed")


class TransactionAborted(RuntimeError):
    """A statement of the transaction failed earlier, so its COMMIT rolled it back."""


# Every kit transaction open in this context, by the connection behind it: a save on the
# outer connection inside an inner tenant_transaction still stages on the outer one.
_PENDING: ContextVar[tuple[PendingWrites, ...]] = ContextVar("pressroom_pending_writes", default=())


def _raw(conn: asyncpg.Connection) -> object:
    # A pool hands out proxies; compare the connections behind them.
    return getattr(conn, "_con", conn)


def pending_writes(conn: asyncpg.Connection) -> PendingWrites | None:
    """The writes staged for ``conn``'s transaction, when it is a kit transaction
    (``writes_transaction`` or ``deferred_writes``) open in this context."""
    raw = _raw(conn)
    for pending in reversed(_PENDING.get()):
        if _raw(pending.conn) is raw and not pending._closed:
            return pending
    return None


@contextlib.contextmanager
def _staging(pending: PendingWrites) -> Iterator[None]:
    token = _PENDING.set((*_PENDING.get(), pending))
    try:
        yield
    finally:
        pending._closed = True
        _PENDING.reset(token)


_SAVEPOINT_IDS = itertools.count(1)


@asynccontextmanager
async def savepoint(conn: asyncpg.Connection, *, release: bool = True) -> AsyncIterator[None]:
    """A savepoint inside ``conn``'s transaction whose staged writes follow it.

    Appends and outbox rows are staged in this process until the commit writes them (see
    ``PendingWrites``), so a raw ``ROLLBACK TO SAVEPOINT`` undoes a save's projection in the
    database but leaves its event and outbox rows staged, and the commit would write them:
    an event with no projection, announced to every consumer. Here the block's exception
    rolls the database back to the savepoint *and* restores what was staged on entry (then
    re-raises); a block that ends normally keeps both (with ``release`` the savepoint is
    released, one round trip; without, it stays until the transaction ends, which costs
    nothing more, see ``Repository._project``). Nests to any depth. Use this, never raw
    ``SAVEPOINT`` SQL, around anything that saves or writes the outbox. (asyncpg's nested
    ``conn.transaction()`` cannot open inside a kit transaction at all: it refuses a
    transaction begun by SQL.)"""
    if not conn.is_in_transaction():
        raise RuntimeError("savepoint() must run inside a transaction")
    pending = pending_writes(conn)
    mark = pending.mark() if pending is not None else None
    name = f"pressroom_sp_{next(_SAVEPOINT_IDS)}"
    await conn.execute(f"SAVEPOINT {name}")
    try:
        yield
    except BaseException:
        if pending is not None and mark is not None and not pending._closed:
            pending.restore(mark)
        if not conn.is_closed():
            # A PostgresError here (the savepoint is gone: raw SQL in the block released or
            # rolled back past it) propagates: the transaction is not where the caller thinks.
            with contextlib.suppress(asyncpg.InterfaceError, OSError):
                await conn.execute(f"ROLLBACK TO SAVEPOINT {name}; RELEASE SAVEPOINT {name}")
        raise
    if release:
        await conn.execute(f"RELEASE SAVEPOINT {name}")


@asynccontextmanager
async def deferred_writes(conn: asyncpg.Connection) -> AsyncIterator[PendingWrites]:
    """Inside a transaction on ``conn``: the appends (``Repository.save``) and outbox rows
    (``write_outbox``) of this block are staged and written in one statement when the block
    ends without an error; the caller must commit right after (the writers' lock is held
    until then). Prefer ``writes_transaction``, which also commits."""
    pending = PendingWrites(conn)
    with _staging(pending):
        yield pending
        await pending.flush()


@asynccontextmanager
async def writes_transaction(
    conn: asyncpg.Connection, *, begin: str = "BEGIN", require_commit: bool = False
) -> AsyncIterator[PendingWrites]:
    """A transaction on ``conn`` (opened with ``begin``) whose appends and outbox rows are
    staged and written by its commit (``PendingWrites.commit``); rolled back on error.
    ``tenant_transaction`` and the inbox consumer run every transaction this way. A
    connection already in a transaction is refused: a nested BEGIN would commit the outer
    transaction early and lose its staged writes. A COMMIT that rolled back (a statement
    failed and its error was swallowed) raises ``TransactionAborted`` when writes were staged,
    or always with ``require_commit``."""
    if conn.is_in_transaction() or pending_writes(conn) is not None:
        raise RuntimeError("writes_transaction() on a connection already in a transaction")
    pending = PendingWrites(conn)
    pending.require_commit = require_commit
    with _staging(pending):
        await conn.execute(begin)
        try:
            yield pending
            await pending.commit()
        except BaseException:
            if not conn.is_closed() and conn.is_in_transaction():
                with contextlib.suppress(asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
                    await conn.execute("ROLLBACK")
            raise


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
    with their ``outbox`` rows.

    Inside ``deferred_writes`` the append is staged and written at the block's end (the
    returned events then have ``global_position`` 0); otherwise it is written now, in one
    statement that takes the writers' lock, so it must be the last statement before
    ``COMMIT``. Must run inside a transaction. Raises ``ConcurrencyError`` when the stream
    moved on, so of two racing writers exactly one wins.
    """
    if not conn.is_in_transaction():
        raise RuntimeError("append() must run inside a transaction")
    pending = pending_writes(conn)
    now = pending is None
    if pending is None:
        pending = PendingWrites(conn)
    staged = pending.add_append(
        stream_id=stream_id,
        stream_type=stream_type,
        expected_version=expected_version,
        events=events,
        brand_id=brand_id,
        metadata=metadata,
        occurred_at=occurred_at,
        outbox=outbox,
    )
    return await pending.flush() if now else staged


async def current_version(conn: asyncpg.Connection, stream_id: str) -> int:
    """The version ``stream_id`` is at for this transaction, counting staged appends."""
    pending = pending_writes(conn)
    staged = pending.staged_version(stream_id) if pending is not None else None
    if staged is not None:
        return staged
    return int(
        await conn.fetchval(
            "SELECT coalesce(max(version), 0) FROM events WHERE stream_id = $1", stream_id
        )
    )


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
    """The events as they will be recorded, before they have a ``global_position`` (0).

    ``occurred_at`` must be timezone-aware: a naive one would be read in whatever zone the
    process or the session happens to be in (asyncpg takes the local zone, the staged flush
    the server's ``TimeZone``), and projections and rebuilds take their times from it."""
    if occurred_at.tzinfo is None or occurred_at.utcoffset() is None:
        raise ValueError(
            f"occurred_at must be timezone-aware (got the naive {occurred_at.isoformat()}); "
            "use datetime.now(UTC)"
        )
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
    """The events of one stream, in version order; on a connection whose transaction staged
    appends to it (``deferred_writes``), those too."""
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM events WHERE stream_id = $1 AND version > $2 ORDER BY version",
        stream_id,
        after_version,
    )
    stored = [RecordedEvent.from_row(r) for r in rows]
    pending = None if isinstance(conn, asyncpg.Pool) else pending_writes(conn)
    if pending is not None:
        stored += [e for e in pending.staged(stream_id) if e.version > after_version]
    return stored


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
