"""The transactional outbox and its relay to Kafka.

Outbox rows are written in the same transaction as the events they announce. The relay
publishes them as binary-mode CloudEvents keyed by aggregate id, in id order, and marks them
sent from each message's own acknowledgement: a crash anywhere loses nothing, at worst a
message is published twice (consumers deduplicate with their inbox).

A retryable failure (broker away, topic missing) holds back that topic and key only, so the
rest flows and a key's messages never overtake each other. A permanent failure (too large,
invalid topic, not authorized) parks the row: ``parked_at`` and ``error`` say why, the
``pressroom_outbox_parked`` gauge and ``/readyz`` show it, later rows of its key flow, and an
operator retries (``retry_parked``) or discards (``discard_parked``) it.

One relay per service database is active at a time (a session advisory lock); other
replicas wait on standby and take over when the holder's connection goes away. The leader's
connection has keepalives, bounded queries and an idle-session timeout, so a half-open
connection loses the lock within ``RelaySettings.leader_timeout``.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any
from uuid import UUID

import asyncpg
from aiokafka import AIOKafkaProducer
from aiokafka import errors as kafka_errors
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from pressroom_contracts import CloudEvent

from pressroom_kit import cloudevents, eventstore, metrics
from pressroom_kit.db import init_connection
from pressroom_kit.errors import PressroomError
from pressroom_kit.eventstore import OutboxRow
from pressroom_kit.health import Heartbeats
from pressroom_kit.logs import get_logger
from pressroom_kit.runtime import first_set, idle_poll

log = get_logger(__name__)

_RELAY_LOCK = 7_250_003
# The event store's writers' lock: every outbox insert holds it (the SQL function
# pressroom_flush_writes takes the same number).
_WRITERS_LOCK = eventstore._APPEND_LOCK
NOTIFY_CHANNEL = "pressroom_outbox"

# The largest message the relay publishes; also the producer's ``max_request_size`` (the
# aiokafka and Kafka default), so a message refused when it is written is exactly one the
# producer would refuse.
MAX_MESSAGE_BYTES = 1_048_576

# Broker answers that no retry can change: the row is parked.
PERMANENT_ERRORS: tuple[type[Exception], ...] = (
    kafka_errors.MessageSizeTooLargeError,
    kafka_errors.RecordTooLargeError,
    kafka_errors.RecordListTooLargeError,
    kafka_errors.InvalidTopicError,
    kafka_errors.TopicAuthorizationFailedError,
    kafka_errors.ClusterAuthorizationFailedError,
    kafka_errors.CorruptRecordException,
    kafka_errors.UnsupportedForMessageFormatError,
)
_TOPIC_NAME = re.compile(r"^[A-Za-z0-9._-]{1,249}$")


class MessageTooLarge(PressroomError):
    """A message would exceed the broker's size limit; raised when it is written."""

    status, code, title = 413, "message_too_large", "Content too large"


@dataclass(frozen=True)
class OutboxMessage:
    topic: str
    key: str
    event: CloudEvent


def outbox_row(message: OutboxMessage, for_event: UUID | None = None) -> OutboxRow:
    """The row ``eventstore.append`` writes for ``message`` in the same statement, when the
    stored event ``for_event`` (default: the message's own id) is appended.

    Raises ``MessageTooLarge`` for a message the broker would refuse."""
    headers = cloudevents.to_headers(message.event)
    check_message_size(message.topic, message.key, headers, message.event.data)
    return OutboxRow(
        event_id=message.event.id,
        topic=message.topic,
        key=message.key,
        headers=headers,
        payload=message.event.data,
        for_event=for_event or message.event.id,
    )


def message_size(key: str, headers: dict[str, str], payload: Any) -> int:
    """The size of the Kafka record for an outbox row, as the producer estimates it."""
    return int(
        DefaultRecordBatchBuilder.estimate_size_in_bytes(
            key.encode(),
            cloudevents.encode_value_raw(payload),
            cloudevents.kafka_headers(headers),
        )
    )


def check_message_size(topic: str, key: str, headers: dict[str, str], payload: Any) -> None:
    """Refuse, with ``MessageTooLarge`` (a 413 problem), a message larger than
    ``MAX_MESSAGE_BYTES``: written to the outbox it could never be published."""
    size = message_size(key, headers, payload)
    if size > MAX_MESSAGE_BYTES:
        raise MessageTooLarge(
            f"the event for {key} would be a {size} byte message on {topic}; "
            f"the limit is {MAX_MESSAGE_BYTES} bytes",
            size=size,
            limit=MAX_MESSAGE_BYTES,
        )


async def write_outbox(conn: asyncpg.Connection, messages: Sequence[OutboxMessage]) -> None:
    """Outbox rows that announce no stored event (e.g. from a consumer); call inside the
    transaction whose effects they announce. ``MessageTooLarge`` for a message the broker
    would refuse.

    Inside ``eventstore.deferred_writes`` (every ``tenant_transaction`` and consumer
    transaction) they are written with the transaction's appends as its last statement;
    otherwise now, under the writers' lock, so make it the last statement before
    ``COMMIT``. Either way outbox ids follow commit order, so the relay publishes one key's
    messages in the order their transactions committed.
    """
    if not messages:
        return
    rows = [replace(outbox_row(m), for_event=None) for m in messages]
    if not conn.is_in_transaction():
        raise RuntimeError("write_outbox() must run inside a transaction")
    pending = eventstore.pending_writes(conn)
    if pending is not None:
        pending.add_outbox(rows)
        return
    now = eventstore.PendingWrites(conn)
    now.add_outbox(rows)
    await now.flush()


def make_producer(bootstrap_servers: str, **overrides: object) -> AIOKafkaProducer:
    """A producer for ordered, acknowledged publishing (no idempotence: Tansu lacks it)."""
    options: dict[str, object] = {
        "bootstrap_servers": bootstrap_servers,
        "acks": "all",
        "enable_idempotence": False,
        # A few ms of linger lets a relay batch travel in few produce requests.
        "linger_ms": 5,
        "request_timeout_ms": 10_000,
        "retry_backoff_ms": 100,
        "max_batch_size": 256 * 1024,
        "max_request_size": MAX_MESSAGE_BYTES,
    }
    options.update(overrides)
    return AIOKafkaProducer(**options)


def is_permanent(exc: BaseException) -> bool:
    """Whether a publish failure can never succeed by retrying (the row is parked)."""
    return isinstance(exc, PERMANENT_ERRORS)


@dataclass
class RelaySettings:
    batch_size: int = 500
    poll_interval: float = 1.0
    # The fallback poll (commits wake the relay with NOTIFY; the poll only catches what a
    # lost listener connection missed) doubles while fetches come back empty, up to this.
    idle_poll_max: float = 5.0
    # After a wake-up, wait at least this long since the previous fetch so that a burst of
    # commits (each one NOTIFYs) travels as one batch instead of one query per commit.
    min_batch_interval: float = 0.005
    # A fetch of at least this many rows means load: the relay then asks commits not to
    # NOTIFY (see migration 0006) and fetches every min_batch_interval until one comes back
    # empty; fewer rows, and commits go on waking it, as when idle.
    busy_rows: int = 2
    standby_interval: float = 1.0
    max_backoff: float = 5.0
    retention: timedelta = timedelta(days=1)
    backlog_every: float = 2.0
    # A leader whose connection stops answering loses the lock within this time: the server
    # ends a session idle this long (the leader queries at least every third of it) and
    # probes a silent peer with TCP keepalives; the leader gives up on a query after
    # ``query_timeout``.
    leader_timeout: float = 30.0
    query_timeout: float = 10.0
    # Bounds on one batch: topic metadata, then the acknowledgements. Their sum stays below
    # ``leader_timeout`` so a slow broker never costs the leader its lock.
    metadata_timeout: float = 5.0
    publish_timeout: float = 15.0

    def __post_init__(self) -> None:
        if self.metadata_timeout + self.publish_timeout >= self.leader_timeout:
            raise ValueError("metadata_timeout + publish_timeout must be below leader_timeout")
        if self.query_timeout >= self.leader_timeout:
            raise ValueError("query_timeout must be below leader_timeout")

    def server_settings(self) -> dict[str, str]:
        """Session settings of the relay's own connection (see ``leader_timeout``)."""
        idle = max(1, int(self.leader_timeout / 3))
        return {
            "application_name": "pressroom-relay",
            "idle_session_timeout": f"{int(self.leader_timeout * 1000)}",
            "idle_in_transaction_session_timeout": f"{int(self.query_timeout * 1000)}",
            "statement_timeout": f"{int(self.query_timeout * 1000)}",
            "tcp_keepalives_idle": str(idle),
            "tcp_keepalives_interval": str(max(1, idle // 2)),
            "tcp_keepalives_count": "3",
            "tcp_user_timeout": f"{int(self.leader_timeout * 1000)}",
            # The relay only marks rows sent (or parked) and deletes old ones: a mark lost in
            # a server crash just publishes the row again, which delivery already allows for
            # (at least once), so these commits need not wait for their WAL flush and do not
            # compete for it with the commands' commits.
            "synchronous_commit": "off",
        }


@dataclass
class _Batch:
    """What became of one fetched batch."""

    sent: list[asyncpg.Record] = field(default_factory=list)
    parked: list[tuple[asyncpg.Record, str]] = field(default_factory=list)
    held: set[tuple[str, str]] = field(default_factory=set)
    first_error: BaseException | None = None

    def fail(self, row: asyncpg.Record, exc: BaseException) -> None:
        if is_permanent(exc):
            self.parked.append((row, f"{type(exc).__name__}: {exc}"))
        else:
            self.held.add((row["topic"], row["key"]))
            self.first_error = self.first_error or exc


class Relay:
    """Publishes a service's outbox to Kafka. Run with ``await relay.run(stop_event)``."""

    def __init__(
        self,
        *,
        service: str,
        dsn: str,
        bootstrap_servers: str,
        heartbeats: Heartbeats | None = None,
        settings: RelaySettings | None = None,
    ) -> None:
        self.service = service
        self.dsn = dsn
        self.bootstrap_servers = bootstrap_servers
        self.heartbeats = heartbeats or Heartbeats()
        self.settings = settings or RelaySettings()
        self.beat_name = f"relay:{service}"
        self.heartbeats.register(
            self.beat_name,
            max_age=max(10.0, self.settings.poll_interval * 5, self.settings.idle_poll_max * 2),
        )
        self.is_leader = False
        self.parked = 0
        self._wake = asyncio.Event()
        # Whether commits notify us (outbox_relay_state.waiting); None: not known yet.
        self._waiting: bool | None = None
        self._producer: AIOKafkaProducer | None = None
        # (topic, key) held back after a retryable failure, until the monotonic time given.
        self._held: dict[tuple[str, str], float] = {}
        self._held_backoff = 0.1

    async def run(self, stop: asyncio.Event) -> None:
        backoff = 0.2
        while not stop.is_set():
            try:
                await self._run_once(stop)
                backoff = 0.2
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                self._beat(ok=False, detail=f"database: {exc!r}")
                log.warning("relay lost the database", error=repr(exc))
                await _sleep_or_stop(stop, backoff)
                backoff = min(backoff * 2, self.settings.max_backoff)
            finally:
                if self.is_leader:
                    log.info("relay is no longer the leader", service=self.service)
                self.is_leader = False
                metrics.RELAY_LEADER.labels(self.service).set(0)
        await self._stop_producer()

    async def _connect(self) -> asyncpg.Connection:
        conn = await asyncpg.connect(
            self.dsn,
            timeout=self.settings.query_timeout,
            command_timeout=self.settings.query_timeout,
            server_settings=self.settings.server_settings(),
        )
        await init_connection(conn)
        return conn

    @property
    def _ping_interval(self) -> float:
        # The server ends a session idle for leader_timeout: speak well before that.
        return self.settings.leader_timeout / 3

    async def _run_once(self, stop: asyncio.Event) -> None:
        conn = await self._connect()
        try:
            while not stop.is_set():
                if await conn.fetchval("SELECT pg_try_advisory_lock($1)", _RELAY_LOCK):
                    break
                self._beat(detail="standby")
                await _sleep_or_stop(stop, min(self.settings.standby_interval, self._ping_interval))
            if stop.is_set():
                return
            self.is_leader = True
            metrics.RELAY_LEADER.labels(self.service).set(1)
            log.info("relay is the leader", service=self.service)
            await conn.add_listener(NOTIFY_CHANNEL, self._on_notify)
            self._waiting = None  # a previous leader may have left it either way
            await self._publish_loop(conn, stop)
        finally:
            try:
                await asyncio.wait_for(conn.close(), timeout=2)
            except Exception:
                conn.terminate()

    def _on_notify(self, *_: object) -> None:
        self._wake.set()

    def _beat(self, *, ok: bool = True, detail: str) -> None:
        degraded = f"{self.parked} outbox rows parked" if self.parked else None
        self.heartbeats.beat(self.beat_name, ok=ok, detail=detail, degraded=degraded)

    async def _ensure_producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            producer = make_producer(self.bootstrap_servers)
            try:
                await producer.start()
            except BaseException:
                with contextlib.suppress(Exception):
                    await producer.stop()
                raise
            self._producer = producer
        return self._producer

    async def _stop_producer(self) -> None:
        if self._producer is not None:
            producer, self._producer = self._producer, None
            with contextlib.suppress(Exception):
                await asyncio.wait_for(producer.stop(), timeout=5)

    async def _publish_loop(self, conn: asyncpg.Connection, stop: asyncio.Event) -> None:
        backoff = 0.1
        last_backlog = 0.0
        last_cleanup = 0.0
        last_fetch = 0.0
        quiet = 0  # empty fetches in a row: the fallback poll backs off
        while not stop.is_set():
            since = time.monotonic() - last_fetch
            if since < self.settings.min_batch_interval:
                await asyncio.sleep(self.settings.min_batch_interval - since)
            self._wake.clear()
            now = time.monotonic()
            last_fetch = now
            if now - last_backlog >= self.settings.backlog_every:
                await self._count_backlog(conn)
                last_backlog = now
            if now - last_cleanup >= 60:
                await conn.execute(
                    "DELETE FROM outbox WHERE sent_at < now() - $1::interval",
                    self.settings.retention,
                )
                last_cleanup = now
            self._held = {pair: until for pair, until in self._held.items() if until > now}
            rows = await conn.fetch(
                """
                SELECT id, topic, key, headers, payload, created_at FROM outbox o
                WHERE sent_at IS NULL AND parked_at IS NULL
                  AND NOT EXISTS (
                      SELECT 1 FROM unnest($2::text[], $3::text[]) AS h(topic, key)
                      WHERE h.topic = o.topic AND h.key = o.key)
                ORDER BY id LIMIT $1
                """,
                self.settings.batch_size,
                [topic for topic, _ in self._held],
                [key for _, key in self._held],
            )
            quiet = 0 if rows else quiet + 1
            if rows:
                if len(rows) >= self.settings.busy_rows and self._waiting is not False:
                    # Under load: commits need not notify until we wait again.
                    await conn.execute("UPDATE outbox_relay_state SET waiting = false")
                    self._waiting = False
                try:
                    batch = await self._publish(rows)
                except (TimeoutError, kafka_errors.KafkaError, OSError) as exc:
                    batch = _Batch(held={(r["topic"], r["key"]) for r in rows}, first_error=exc)
                await self._record(conn, batch)
                if batch.first_error is not None and not batch.sent and not batch.parked:
                    # Nothing got through: the broker is away, not one topic or key.
                    self._held.clear()
                    self._beat(ok=False, detail=f"broker: {batch.first_error!r}")
                    log.warning(
                        "relay cannot publish; backing off",
                        error=repr(batch.first_error),
                        backoff_s=backoff,
                    )
                    await self._stop_producer()
                    await _sleep_or_stop(stop, backoff * (0.5 + random.random()))
                    backoff = min(backoff * 2, self.settings.max_backoff)
                    continue
                backoff = 0.1
                self._hold(batch)
                self._beat(
                    ok=batch.first_error is None,
                    detail="publishing"
                    if batch.first_error is None
                    else f"holding {len(self._held)} keys back: {batch.first_error!r}",
                )
                # Fetch again after min_batch_interval rather than wait for a NOTIFY: under
                # load the next commits are already there, and they do not notify.
                continue
            if not self._waiting:
                # Going idle: from now on commits notify; the next fetch sees the rows of
                # any commit that came before (see _announce_waiting).
                await self._announce_waiting(conn)
                continue
            self._beat(
                ok=not self._held,
                detail="idle" if not self._held else f"holding {len(self._held)} keys back",
            )
            # The first empty fetch waits poll_interval, each further one twice as long.
            poll = idle_poll(self.settings.poll_interval, quiet - 1, self.settings.idle_poll_max)
            timeout = min(poll, self._ping_interval)
            if self._held:
                timeout = min(timeout, max(0.0, min(self._held.values()) - time.monotonic()))
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(first_set(stop, self._wake), timeout=timeout)

    async def _announce_waiting(self, conn: asyncpg.Connection) -> None:
        """Set ``outbox_relay_state.waiting`` in a transaction that holds the writers' lock
        through its commit. Outbox rows are only inserted under that lock, and the notify
        trigger reads the flag with a fresh snapshot, so every commit either finished before
        this one (the next fetch sees its rows) or sees the flag and notifies."""
        await conn.execute(
            """
            WITH lock AS MATERIALIZED (SELECT pg_advisory_xact_lock($1::bigint))
            UPDATE outbox_relay_state SET waiting = true FROM lock
            """,
            _WRITERS_LOCK,
        )
        self._waiting = True

    def _hold(self, batch: _Batch) -> None:
        """Hold back the (topic, key)s that failed retryably, with a shared backoff that grows
        while failures go on, so other keys flow at full speed meanwhile."""
        if not batch.held:
            if not self._held:
                self._held_backoff = 0.1
            return
        until = time.monotonic() + self._held_backoff * (0.5 + random.random())
        for pair in batch.held:
            self._held[pair] = until
        log.warning(
            "relay holds keys back after a retryable failure",
            keys=len(batch.held),
            error=repr(batch.first_error),
            backoff_s=self._held_backoff,
        )
        self._held_backoff = min(self._held_backoff * 2, self.settings.max_backoff)

    async def _count_backlog(self, conn: asyncpg.Connection) -> None:
        counts = await conn.fetchrow(
            "SELECT count(*) FILTER (WHERE parked_at IS NULL) AS backlog, "
            "count(*) FILTER (WHERE parked_at IS NOT NULL) AS parked "
            "FROM outbox WHERE sent_at IS NULL"
        )
        assert counts is not None
        backlog, parked = counts["backlog"], counts["parked"]
        metrics.OUTBOX_BACKLOG.labels(self.service).set(backlog)
        metrics.OUTBOX_PARKED.labels(self.service).set(parked)
        self.parked = parked

    async def _record(self, conn: asyncpg.Connection, batch: _Batch) -> None:
        if batch.sent:
            await conn.execute(
                "UPDATE outbox SET sent_at = clock_timestamp() WHERE id = ANY($1::bigint[])",
                [r["id"] for r in batch.sent],
            )
            acked = time.time()
            for row in batch.sent:
                metrics.OUTBOX_PUBLISH_LAG.labels(self.service).observe(
                    max(0.0, acked - row["created_at"].timestamp())
                )
            metrics.OUTBOX_PUBLISHED.labels(self.service).inc(len(batch.sent))
        if batch.parked:
            await conn.execute(
                """
                UPDATE outbox SET parked_at = clock_timestamp(), error = p.error
                FROM unnest($1::bigint[], $2::text[]) AS p(id, error)
                WHERE outbox.id = p.id
                """,
                [row["id"] for row, _ in batch.parked],
                [error for _, error in batch.parked],
            )
            for row, error in batch.parked:
                log.error(
                    "relay parked an outbox row it can never publish",
                    service=self.service,
                    outbox_id=row["id"],
                    topic=row["topic"],
                    key=row["key"],
                    error=error,
                )
            await self._count_backlog(conn)

    async def _publish(self, rows: Sequence[asyncpg.Record]) -> _Batch:
        """Send ``rows`` in id order and sort them by outcome. The first retryable failure of
        a (topic, key) holds back its later rows in the batch, so a key keeps its order; a
        permanent failure parks the row and later rows of its key go on."""
        producer = await self._ensure_producer()
        batch = _Batch()
        topic_errors = await self._topic_metadata(producer, {r["topic"] for r in rows})
        pending: list[tuple[asyncpg.Record, asyncio.Future[Any]]] = []
        for row in rows:
            pair = (row["topic"], row["key"])
            if pair in batch.held:
                continue
            error = topic_errors.get(row["topic"])
            if error is not None:
                batch.fail(row, error)
                continue
            try:
                if message_size(row["key"], row["headers"], row["payload"]) > MAX_MESSAGE_BYTES:
                    raise kafka_errors.MessageSizeTooLargeError(
                        f"larger than the {MAX_MESSAGE_BYTES} byte limit"
                    )
                future = await producer.send(
                    row["topic"],
                    value=cloudevents.encode_value_raw(row["payload"]),
                    key=row["key"].encode(),
                    headers=cloudevents.kafka_headers(row["headers"]),
                )
            except (kafka_errors.KafkaError, OSError) as exc:
                batch.fail(row, exc)
                continue
            pending.append((row, future))
        if pending:
            await asyncio.wait([f for _, f in pending], timeout=self.settings.publish_timeout)
        for row, future in pending:
            if not future.done():
                # The message may still land; if so, the retry publishes it twice.
                future.cancel()
                batch.fail(row, TimeoutError("no acknowledgement in time"))
            elif future.cancelled():
                batch.fail(row, TimeoutError("send cancelled"))
            elif (failure := future.exception()) is not None:
                batch.fail(row, failure)
            else:
                batch.sent.append(row)
        return batch

    async def _topic_metadata(
        self, producer: AIOKafkaProducer, topics: set[str]
    ) -> dict[str, BaseException]:
        """The topics of a batch that cannot take messages now, with the reason."""

        async def lookup(topic: str) -> BaseException | None:
            if not _TOPIC_NAME.fullmatch(topic) or topic in (".", ".."):
                invalid: BaseException = kafka_errors.InvalidTopicError(
                    f"{topic!r} is not a valid topic name"
                )
                return invalid
            failure: BaseException | None = None
            try:
                await asyncio.wait_for(
                    producer.partitions_for(topic), timeout=self.settings.metadata_timeout
                )
            except (TimeoutError, kafka_errors.KafkaError) as exc:
                failure = exc
            return failure

        found = await asyncio.gather(*(lookup(t) for t in topics))
        return {t: e for t, e in zip(topics, found, strict=True) if e is not None}


async def parked_rows(conn: asyncpg.Connection, limit: int = 100) -> list[asyncpg.Record]:
    """The parked outbox rows, oldest first: id, event id, topic, key, error, parked_at."""
    return list(
        await conn.fetch(
            "SELECT id, event_id, topic, key, error, created_at, parked_at FROM outbox "
            "WHERE parked_at IS NOT NULL AND sent_at IS NULL ORDER BY id LIMIT $1",
            limit,
        )
    )


async def retry_parked(conn: asyncpg.Connection, ids: Sequence[int]) -> int:
    """Put parked rows back in line (say after raising the broker's size limit); the relay
    publishes them next, after later messages of their key. Returns how many."""
    status = await conn.execute(
        "UPDATE outbox SET parked_at = NULL, error = NULL "
        "WHERE id = ANY($1::bigint[]) AND parked_at IS NOT NULL AND sent_at IS NULL",
        list(ids),
    )
    await conn.execute("SELECT pg_notify($1, '')", NOTIFY_CHANNEL)
    return int(status.split()[-1])


async def discard_parked(conn: asyncpg.Connection, ids: Sequence[int]) -> int:
    """Drop parked rows for good (their events stay in the event store). Returns how many."""
    status = await conn.execute(
        "DELETE FROM outbox WHERE id = ANY($1::bigint[]) AND parked_at IS NOT NULL "
        "AND sent_at IS NULL",
        list(ids),
    )
    return int(status.split()[-1])


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
