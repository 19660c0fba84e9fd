"""Kafka consumer with an inbox: effectively exactly-once effects on at-least-once delivery.

For each message the handler's effects and the inbox row ``(consumer, event_id)`` commit in
one database transaction; the Kafka offset is committed only after that. A redelivered event
finds its inbox row and changes nothing. A message that cannot be decoded, has an unknown
type, or whose handler keeps failing goes to ``<topic>.dlq`` with the error in its headers,
and the partition moves on.

A *transient* failure (deadlock, serialization failure, lock timeout, a lost or refused
database connection, a ``ConcurrencyError``) is not the message's fault: its partition is
paused and the same records are retried with capped, jittered backoff for as long as it
takes, while the group membership stays alive and other partitions flow. A rebalance
commits what is finished, drops revoked partitions' records (their new owner reads them
from the committed offset) and never restarts the consumer.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, cast
from uuid import UUID

import asyncpg
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from opentelemetry import trace
from pressroom_contracts import EVENT_TYPES, CloudEvent, EventPayload, dlq_topic
from pydantic import ValidationError

from pressroom_kit import cloudevents, eventstore, metrics
from pressroom_kit.db import set_tenant
from pressroom_kit.errors import ConcurrencyError
from pressroom_kit.health import Heartbeats
from pressroom_kit.logs import get_logger
from pressroom_kit.outbox import make_producer
from pressroom_kit.telemetry import context_from_traceparent

log = get_logger(__name__)
tracer = trace.get_tracer("pressroom_kit.consumer")

Handler = Callable[[asyncpg.Connection, CloudEvent, EventPayload], Awaitable[None]]


@dataclass
class ConsumerSettings:
    # Deterministic failures (any other handler error): tries before the DLQ.
    max_attempts: int = 3
    retry_backoff: float = 0.2
    # Transient failures: retried without limit, backoff doubling up to the cap.
    transient_backoff: float = 0.1
    max_transient_backoff: float = 30.0
    max_records: int = 500
    # The broker's fetch wait while records flow. Tansu does not answer a fetch as soon as
    # data arrives but some way into the wait, so a short wait keeps lag low under load...
    fetch_max_wait_ms: int = 10
    # ...and after empty polls it doubles up to this (Apache Kafka's default), so an idle
    # consumer sends a couple of fetches a second instead of a hundred.
    idle_fetch_max_wait_ms: int = 500
    poll_timeout_ms: int = 200
    idle_poll_timeout_ms: int = 1_000
    # A consumer at rest (nothing for ``rest_after_s``) waits longer still: a quiet local
    # stack then costs next to nothing. Apache Kafka answers a waiting fetch as soon as data
    # arrives, so there this costs no latency; on the embedded broker the first message
    # after a rest waits for at most one such fetch. 0 never rests (the test suite, whose
    # modules idle between steps on the embedded broker).
    rest_after_s: float = 20.0
    rest_fetch_max_wait_ms: int = 2_000
    rest_poll_timeout_ms: int = 3_000
    # Inbox rows older than this are deleted (see shared/README.md for why that is safe).
    inbox_retention: timedelta = timedelta(days=7)
    inbox_cleanup_every: float = 3_600.0
    inbox_cleanup_batch: int = 1_000
    stale_after: float = 30.0
    auto_offset_reset: str = "earliest"
    session_timeout_ms: int = 10_000
    heartbeat_interval_ms: int = 1_000
    # Tansu holds a join for the rebalance timeout; a short one makes (re)joins quick.
    rebalance_timeout_ms: int = 2_000
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def with_session_timeout(
        cls, session_timeout_ms: int, *, rest_after_s: float = 20.0
    ) -> ConsumerSettings:
        """Defaults with this session timeout, a heartbeat a tenth of it and this rest."""
        return cls(
            session_timeout_ms=session_timeout_ms,
            heartbeat_interval_ms=max(100, session_timeout_ms // 10),
            rest_after_s=rest_after_s,
        )


@dataclass
class _Decoded:
    record: ConsumerRecord
    event: CloudEvent | None = None
    payload: EventPayload | None = None
    handler: Handler | None = None
    error: str | None = None


@dataclass
class _Held:
    """A partition's records that hit a transient failure, waiting (paused) to retry."""

    items: list[_Decoded]
    error: str
    attempt: int = 0
    retry_at: float = 0.0


class _Transient(Exception):
    """A failure that is not the message's fault: retry the same records later."""


_TRANSIENT_SQLSTATE_CLASSES = ("08", "40", "53")
_TRANSIENT_SQLSTATES = {
    "55P03",  # lock_not_available (lock_timeout, NOWAIT)
    "57014",  # query_canceled (statement_timeout)
    "57P01",  # admin_shutdown
    "57P02",  # crash_shutdown
    "57P03",  # cannot_connect_now
    "57P05",  # idle_session_timeout
}


def _lost_connection(exc: BaseException) -> bool:
    # asyncpg says "connection is closed" (or "... was closed in the middle of operation")
    # for a connection that went away; other InterfaceErrors (a handler misusing the
    # connection, e.g. conn.transaction() inside the consumer's transaction) are bugs.
    return isinstance(exc, asyncpg.InterfaceError) and "closed" in str(exc)


def is_transient(exc: BaseException) -> bool:
    """True when ``exc`` (or an error it was raised from) is a retryable infrastructure
    failure: a deadlock, serialization failure, lock or statement timeout, a lost or
    refused connection, resource exhaustion, or a lost optimistic-concurrency race."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ConcurrencyError | OSError) or _lost_connection(current):
            return True
        if isinstance(current, asyncpg.PostgresError):
            sqlstate = getattr(current, "sqlstate", None) or ""
            if sqlstate[:2] in _TRANSIENT_SQLSTATE_CLASSES or sqlstate in _TRANSIENT_SQLSTATES:
                return True
        current = current.__cause__ or current.__context__
    return False


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, inbox: InboxConsumer, consumer: AIOKafkaConsumer) -> None:
        self.inbox, self.consumer = inbox, consumer

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.inbox._on_revoked(self.consumer, set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        log.info("partitions assigned", consumer=self.inbox.name, partitions=len(assigned))


class InboxConsumer:
    """Consumes ``topics`` as group ``name`` and runs ``handlers`` keyed by event type."""

    def __init__(
        self,
        *,
        name: str,
        dsn_or_pool: asyncpg.Pool,
        bootstrap_servers: str,
        topics: Sequence[str],
        handlers: Mapping[str, Handler],
        registry: Mapping[str, type[EventPayload]] = EVENT_TYPES,
        heartbeats: Heartbeats | None = None,
        settings: ConsumerSettings | None = None,
        group_id: str | None = None,
        default_handler: Handler | None = None,
        accept_unknown_types: bool = False,
    ) -> None:
        """``default_handler`` handles every known type that has no handler of its own, and
        with ``accept_unknown_types`` also well-formed CloudEvents of types this build's
        contracts do not know (a generic forwarder such as webhooks wants those; everyone
        else dead-letters them)."""
        self.name = name
        self.group_id = group_id or name
        self.pool = dsn_or_pool
        self.bootstrap_servers = bootstrap_servers
        self.topics = list(topics)
        self.handlers = dict(handlers)
        self.default_handler = default_handler
        self.accept_unknown_types = accept_unknown_types
        self.registry = registry
        self.heartbeats = heartbeats or Heartbeats()
        self.settings = settings or ConsumerSettings()
        self.beat_name = f"consumer:{name}"
        self.heartbeats.register(self.beat_name, max_age=self.settings.stale_after)
        self.stats: collections.Counter[str] = collections.Counter()
        self._consumer: AIOKafkaConsumer | None = None
        self._dlq_producer: Any = None
        # Partitions paused on a transient failure, with the records still to apply.
        self._held: dict[TopicPartition, _Held] = {}
        # Offsets applied but not yet committed; committed after each poll or on revoke.
        self._uncommitted: dict[TopicPartition, int] = {}
        # Serializes applying records with the rebalance listener, which bumps the
        # generation: records fetched before a rebalance are not applied after it.
        self._lock = asyncio.Lock()
        self._generation = 0
        self._fetch_wait_ms = self.settings.fetch_max_wait_ms
        self._empty_since: float | None = None  # monotonic time of the first empty poll
        self._next_cleanup = time.monotonic() + random.uniform(1.0, 60.0)

    @property
    def assignment(self) -> set[TopicPartition]:
        return set(self._consumer.assignment()) if self._consumer is not None else set()

    async def run(self, stop: asyncio.Event) -> None:
        backoff = 0.2
        while not stop.is_set():
            try:
                await self._run_once(stop)
                backoff = 0.2
            except (KafkaError, OSError) as exc:
                self.stats["restarts"] += 1
                self.heartbeats.beat(self.beat_name, ok=False, detail=f"broker: {exc!r}")
                log.warning("consumer lost the broker", consumer=self.name, error=repr(exc))
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=backoff)
                backoff = min(backoff * 2, 5.0)

    async def _run_once(self, stop: asyncio.Event) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap_servers,
            group_id=self.group_id,
            enable_auto_commit=False,
            session_timeout_ms=self.settings.session_timeout_ms,
            heartbeat_interval_ms=self.settings.heartbeat_interval_ms,
            rebalance_timeout_ms=self.settings.rebalance_timeout_ms,
            auto_offset_reset=self.settings.auto_offset_reset,
            fetch_max_wait_ms=self.settings.fetch_max_wait_ms,
            max_poll_records=self.settings.max_records,
            **self.settings.extra,
        )
        consumer.subscribe(self.topics, listener=_Rebalance(self, consumer))
        producer = make_producer(self.bootstrap_servers)
        self._held.clear()
        self._uncommitted.clear()
        self._update_retrying()
        # A new client starts at the short fetch wait: so does the adaptation.
        self._fetch_wait_ms = self.settings.fetch_max_wait_ms
        self._empty_since = None
        await consumer.start()
        try:
            await producer.start()
            self._consumer, self._dlq_producer = consumer, producer
            while not stop.is_set():
                generation = self._generation
                batches = await consumer.getmany(
                    timeout_ms=self._poll_timeout_ms(),
                    max_records=self.settings.max_records,
                )
                self._adapt_fetch_wait(consumer, got_records=bool(batches))
                for tp, records in batches.items():
                    await self._apply_partition(
                        consumer, generation, tp, [self._decode(r) for r in records]
                    )
                await self._retry_held(consumer)
                await self._commit_finished(consumer)
                self._beat(consumer)
                self._record_lag(consumer)
                if time.monotonic() >= self._next_cleanup:
                    await self._clean_inbox()
        finally:
            self._consumer = None
            with contextlib.suppress(Exception):
                await asyncio.wait_for(consumer.stop(), timeout=5)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(producer.stop(), timeout=5)

    def _poll_timeout_ms(self) -> int:
        """Short while records flow; up to a second idle, three at rest; never past a held
        retry."""
        if self._fetch_wait_ms >= self.settings.rest_fetch_max_wait_ms:
            timeout = self.settings.rest_poll_timeout_ms
        elif self._fetch_wait_ms >= self.settings.idle_fetch_max_wait_ms:
            timeout = self.settings.idle_poll_timeout_ms
        else:
            timeout = self.settings.poll_timeout_ms
        if self._held:
            due = min(h.retry_at for h in self._held.values()) - time.monotonic()
            timeout = min(timeout, max(0, int(due * 1000)))
        return timeout

    def _adapt_fetch_wait(
        self, consumer: AIOKafkaConsumer, *, got_records: bool, now: float | None = None
    ) -> None:
        """Short broker fetch waits while records flow, doubling towards the idle wait
        after empty polls, and the rest wait once nothing came for ``rest_after_s``.
        aiokafka reads the wait from its fetcher for every request."""
        now = time.monotonic() if now is None else now
        if got_records:
            self._empty_since = None
            wait = self.settings.fetch_max_wait_ms
        else:
            if self._empty_since is None:
                self._empty_since = now
            rest = self.settings.rest_after_s
            ceiling = (
                self.settings.rest_fetch_max_wait_ms
                if 0 < rest <= now - self._empty_since
                else self.settings.idle_fetch_max_wait_ms
            )
            wait = min(max(1, self._fetch_wait_ms) * 2, ceiling)
        if wait != self._fetch_wait_ms:
            self._fetch_wait_ms = wait
            fetcher = getattr(consumer, "_fetcher", None)
            if fetcher is not None and hasattr(fetcher, "_fetch_max_wait_ms"):
                fetcher._fetch_max_wait_ms = wait

    def _beat(self, consumer: AIOKafkaConsumer) -> None:
        assigned = consumer.assignment()
        if self._held:
            tp, held = next(iter(self._held.items()))
            self.heartbeats.beat(
                self.beat_name,
                ok=False,
                detail=f"retrying {len(self._held)} partitions after a transient error "
                f"({tp.topic}[{tp.partition}] attempt {held.attempt}: {held.error[:200]})",
            )
        elif assigned:
            self.heartbeats.beat(self.beat_name, detail=f"{len(assigned)} partitions")
        else:
            self.heartbeats.beat(self.beat_name, ok=False, detail="no assignment")

    async def _apply_partition(
        self,
        consumer: AIOKafkaConsumer,
        generation: int,
        tp: TopicPartition,
        items: list[_Decoded],
    ) -> None:
        async with self._lock:
            if generation != self._generation or tp not in consumer.assignment():
                return  # revoked since the poll: the new owner reads these from the commit
            try:
                await self._handle_partition(consumer, tp, items)
            except _Transient as exc:
                self._hold(consumer, tp, exc)

    async def _retry_held(self, consumer: AIOKafkaConsumer) -> None:
        now = time.monotonic()
        for tp, held in list(self._held.items()):
            if held.retry_at > now:
                continue
            async with self._lock:
                if self._held.get(tp) is not held:
                    continue  # dropped by a revoke meanwhile
                try:
                    await self._handle_partition(consumer, tp, held.items)
                except _Transient as exc:
                    self._hold(consumer, tp, exc)
                    continue
                del self._held[tp]
                consumer.resume(tp)
                self._update_retrying()
                log.info("transient failure over", consumer=self.name, attempts=held.attempt)

    def _hold(self, consumer: AIOKafkaConsumer, tp: TopicPartition, exc: _Transient) -> None:
        """Pause ``tp`` and schedule its remaining records for a retry with backoff."""
        remaining = exc.args[0] if exc.args and isinstance(exc.args[0], list) else []
        error = repr(exc.__cause__) if exc.__cause__ is not None else repr(exc)
        held = self._held.get(tp)
        if held is None:
            held = self._held[tp] = _Held(items=remaining, error=error)
            consumer.pause(tp)
        held.items, held.error = remaining, error
        held.attempt += 1
        delay = min(
            self.settings.max_transient_backoff,
            self.settings.transient_backoff * 2 ** min(held.attempt - 1, 30),
        )
        held.retry_at = time.monotonic() + delay * random.uniform(0.5, 1.0)
        metrics.CONSUMER_TRANSIENT_RETRIES.labels(self.name, tp.topic).inc()
        self._update_retrying()
        log.warning(
            "transient failure; retrying",
            consumer=self.name,
            topic=tp.topic,
            partition=tp.partition,
            attempt=held.attempt,
            retry_in_s=round(held.retry_at - time.monotonic(), 3),
            error=error,
        )

    def _update_retrying(self) -> None:
        metrics.CONSUMER_RETRYING.labels(self.name).set(len(self._held))

    async def _on_revoked(self, consumer: AIOKafkaConsumer, revoked: set[TopicPartition]) -> None:
        """Rebalance listener: wait for the transaction in flight, commit what is finished,
        forget the revoked partitions' held records (never applied, never committed)."""
        async with self._lock:
            self._generation += 1
            finished = {tp: off for tp, off in self._uncommitted.items() if tp in revoked}
            for tp in finished:
                del self._uncommitted[tp]
            if finished:
                await self._commit(consumer, finished)
            for tp in revoked:
                if self._held.pop(tp, None) is not None:
                    with contextlib.suppress(Exception):
                        consumer.resume(tp)
            self._update_retrying()
        self.stats["revoked"] += len(revoked)
        log.info("partitions revoked", consumer=self.name, partitions=len(revoked))

    async def _commit_finished(self, consumer: AIOKafkaConsumer) -> None:
        async with self._lock:
            if self._uncommitted:
                # One commit for every partition of the poll, after their transactions.
                offsets, self._uncommitted = self._uncommitted, {}
                await self._commit(consumer, offsets)

    async def _commit(self, consumer: AIOKafkaConsumer, offsets: dict[TopicPartition, int]) -> None:
        """Commit offsets; a failure (a rebalance took the partitions, the broker is away)
        only means those records are delivered again, which the inbox makes harmless."""
        try:
            await consumer.commit(offsets)
        except KafkaError as exc:
            self.stats["commit_failed"] += 1
            metrics.CONSUMER_COMMIT_FAILURES.labels(self.name).inc()
            log.warning("offset commit failed; skipped", consumer=self.name, error=repr(exc))

    async def _clean_inbox(self) -> None:
        """Delete this consumer's inbox rows older than the retention, a small batch per
        statement so no long lock or transaction; replicas skip each other's rows."""
        settings = self.settings
        self._next_cleanup = time.monotonic() + settings.inbox_cleanup_every
        deleted = 0
        try:
            for _ in range(10):
                status = await self.pool.execute(
                    """
                    DELETE FROM inbox WHERE consumer = $1 AND event_id IN (
                        SELECT event_id FROM inbox
                        WHERE consumer = $1 AND processed_at < now() - $2::interval
                        LIMIT $3 FOR UPDATE SKIP LOCKED)
                    """,
                    self.name,
                    settings.inbox_retention,
                    settings.inbox_cleanup_batch,
                )
                count = int(status.split()[-1])
                deleted += count
                if count < settings.inbox_cleanup_batch:
                    break
            else:
                self._next_cleanup = time.monotonic()  # more to do: continue after a poll
        except Exception as exc:
            if not (is_transient(exc) or _while_connecting(exc)):
                raise
            self._next_cleanup = time.monotonic() + min(60.0, settings.inbox_cleanup_every)
            log.warning("inbox clean-up failed; will retry", consumer=self.name, error=repr(exc))
        if deleted:
            self.stats["inbox_deleted"] += deleted
            metrics.INBOX_DELETED.labels(self.name).inc(deleted)
            log.info("old inbox rows deleted", consumer=self.name, rows=deleted)

    def _record_lag(self, consumer: AIOKafkaConsumer) -> None:
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp)
            if highwater is None:
                continue
            with contextlib.suppress(Exception):
                position = consumer._subscription.subscription.assignment.state_value(tp).position
                if position is not None:
                    metrics.CONSUMER_LAG.labels(self.name, tp.topic, tp.partition).set(
                        max(0, highwater - position)
                    )

    def _decode(self, record: ConsumerRecord) -> _Decoded:
        item = _Decoded(record)
        try:
            item.event = cloudevents.decode(record.headers, record.value)
        except cloudevents.DecodeError as exc:
            item.error = f"decode: {exc}"
            return item
        model = self.registry.get(item.event.type)
        if model is None:
            if self.accept_unknown_types and self.default_handler is not None:
                item.handler = self.default_handler
                item.payload = EventPayload.model_validate(item.event.data)
                return item
            item.error = f"unknown event type {item.event.type!r}"
            return item
        item.handler = self.handlers.get(item.event.type, self.default_handler)
        if item.handler is None:
            return item  # a known type this consumer does not care about
        try:
            item.payload = model.model_validate(item.event.data)
        except ValidationError as exc:
            item.error = f"invalid {item.event.type} payload: {exc.errors()[0]}"
        return item

    async def _handle_partition(
        self, consumer: AIOKafkaConsumer, tp: TopicPartition, items: list[_Decoded]
    ) -> None:
        """Apply ``items`` in order; finished offsets go to ``_uncommitted``.

        Raises ``_Transient`` carrying the items not yet applied.
        """
        pending = items
        while pending:
            bad = next((i for i, item in enumerate(pending) if item.error), len(pending))
            if bad > 0:
                try:
                    failed = await self._apply_batch(pending[:bad])
                except _Transient as exc:
                    raise _Transient(pending) from exc.__cause__
                if failed is not None:
                    continue  # that item now carries its error: the prefix before it goes next
                self._uncommitted[tp] = pending[bad - 1].record.offset + 1
            if bad == len(pending):
                break
            try:
                await self._handle_alone(pending[bad])
            except _Transient as exc:
                raise _Transient(pending[bad:]) from exc.__cause__
            # Committed at once so that a restart does not dead-letter it a second time.
            self._uncommitted.pop(tp, None)
            await self._commit(consumer, {tp: pending[bad].record.offset + 1})
            pending = pending[bad + 1 :]

    async def _apply_batch(self, items: Sequence[_Decoded]) -> int | None:
        """Apply good items in one transaction, all or nothing.

        Returns ``None`` on success, or the index of the item whose handler failed (its
        ``error`` is set and the whole transaction rolled back). Raises ``_Transient`` when
        the failure is the infrastructure's (see ``is_transient``), wherever it happened.

        The transaction's appends are written at its end; when a stream moved on meanwhile
        (another replica or an HTTP command saved the same aggregate), the batch runs again
        at once on fresh state, a few times, before it counts as a transient failure.
        """
        for attempt in itertools.count(1):
            try:
                return await self._apply_batch_once(items)
            except ConcurrencyError as exc:
                if attempt >= _CONFLICT_ATTEMPTS:
                    raise _Transient() from exc
                await asyncio.sleep(0.01 * random.random() * attempt)
        raise AssertionError("unreachable")

    async def _apply_batch_once(self, items: Sequence[_Decoded]) -> int | None:
        outcomes: collections.Counter[str] = collections.Counter()
        failed: int | None = None
        # The first handled item's brand travels with BEGIN (one round trip less per batch;
        # a UUID, so safe to inline); the inbox has no row-level security, so setting it
        # before the inbox insert changes nothing else.
        tenant: object = next(
            (i.event.brandid for i in items if i.handler is not None and i.event is not None),
            _NO_TENANT,
        )
        begin = "BEGIN"
        if tenant is not _NO_TENANT:
            brand = "" if tenant is None else str(UUID(str(tenant)))
            begin = f"BEGIN; SET LOCAL app.brand_id = '{brand}'"
        try:
            async with (
                self.pool.acquire() as proxy,
                eventstore.writes_transaction(
                    cast(asyncpg.Connection, proxy), begin=begin, require_commit=True
                ),
            ):
                conn = cast(asyncpg.Connection, proxy)
                fresh = await self._record_in_inbox(conn, items)
                for index, item in enumerate(items):
                    if item.handler is None:
                        outcomes["ignored"] += 1
                        continue
                    assert item.event is not None and item.payload is not None
                    if item.event.id not in fresh:
                        outcomes["duplicate"] += 1  # its effects are already committed
                        continue
                    fresh.discard(item.event.id)
                    if item.event.brandid != tenant:
                        await set_tenant(conn, item.event.brandid)
                        tenant = item.event.brandid
                    try:
                        await self._run_handler(conn, item)
                    except Exception as exc:
                        if is_transient(exc):
                            raise
                        failed = index
                        item.error = f"handler: {exc!r}"
                        raise _Abort from exc
                    outcomes["handled"] += 1
        except _Abort:
            return failed
        except ConcurrencyError:
            raise  # a lost race: _apply_batch runs the batch again
        except Exception as exc:
            if is_transient(exc) or _while_connecting(exc):
                raise _Transient() from exc
            # Not attributable to one handler (e.g. the commit refused a staged event): the
            # first item goes alone, so the batch shrinks until the bad one is dead-lettered.
            items[0].error = f"handler: the transaction failed: {exc!r}"
            return 0
        self.stats.update(outcomes)
        for outcome, count in outcomes.items():
            metrics.CONSUMER_PROCESSED.labels(self.name, items[0].record.topic, outcome).inc(count)
        return None

    async def _record_in_inbox(
        self, conn: asyncpg.Connection, items: Sequence[_Decoded]
    ) -> set[UUID]:
        """Insert inbox rows for the handled items; return the ids not seen before."""
        wanted = [i for i in items if i.handler is not None and i.event is not None]
        if not wanted:
            return set()
        rows = await conn.fetch(
            """
            INSERT INTO inbox (consumer, event_id, event_type, topic, partition, "offset")
            SELECT $1, * FROM unnest($2::uuid[], $3::text[], $4::text[], $5::int[], $6::bigint[])
            ON CONFLICT DO NOTHING
            RETURNING event_id
            """,
            self.name,
            [i.event.id for i in wanted if i.event],
            [i.event.type for i in wanted if i.event],
            [i.record.topic for i in wanted],
            [i.record.partition for i in wanted],
            [i.record.offset for i in wanted],
        )
        return {r["event_id"] for r in rows}

    async def _run_handler(self, conn: asyncpg.Connection, item: _Decoded) -> None:
        assert item.event is not None and item.payload is not None and item.handler is not None
        with tracer.start_as_current_span(
            f"consume {item.event.type}",
            context=context_from_traceparent(item.event.traceparent),
            kind=trace.SpanKind.CONSUMER,
            attributes={
                "messaging.system": "kafka",
                "messaging.destination.name": item.record.topic,
                "messaging.consumer.group.name": self.group_id,
                "cloudevents.event_id": str(item.event.id),
                "cloudevents.event_type": item.event.type,
            },
        ):
            await item.handler(conn, item.event, item.payload)

    async def _handle_alone(self, item: _Decoded) -> None:
        """Retry one failing message up to ``max_attempts``, then dead-letter it.

        A transient failure during a retry raises ``_Transient``: the message is held and
        retried later, its deterministic attempts starting again.
        """
        if item.error is None or item.error.startswith("handler"):
            error = item.error
            for attempt in range(1, self.settings.max_attempts):
                await asyncio.sleep(self.settings.retry_backoff * 2 ** (attempt - 1))
                item.error = None
                try:
                    if await self._apply_batch([item]) is None:
                        return
                except _Transient:
                    item.error = error
                    raise
            log.warning("handler keeps failing", consumer=self.name, error=item.error)
        await self._dead_letter(item)

    async def _dead_letter(self, item: _Decoded) -> None:
        record = item.record
        headers = [
            *(record.headers or ()),
            ("dlq_error", (item.error or "unknown")[:2000].encode()),
            ("dlq_consumer", self.name.encode()),
            ("dlq_original_topic", record.topic.encode()),
            ("dlq_original_partition", str(record.partition).encode()),
            ("dlq_original_offset", str(record.offset).encode()),
            ("dlq_failed_at", str(time.time()).encode()),
        ]
        future = await self._dlq_producer.send(
            dlq_topic(record.topic), value=record.value, key=record.key, headers=headers
        )
        await asyncio.wait_for(future, timeout=30)
        self.stats["dead_lettered"] += 1
        metrics.DLQ_MESSAGES.labels(self.name, record.topic).inc()
        metrics.CONSUMER_PROCESSED.labels(self.name, record.topic, "dead_lettered").inc()
        log.error(
            "message dead-lettered",
            consumer=self.name,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            error=item.error,
        )


class _Abort(Exception):
    pass


def _while_connecting(exc: BaseException) -> bool:
    """A connection attempt refused by the server (e.g. a database not accepting
    connections, an unknown role during a failover) is the infrastructure's failure too."""
    return isinstance(exc, asyncpg.PostgresError) and getattr(exc, "sqlstate", "") in {
        "55000",  # object_not_in_prerequisite_state: database not accepting connections
        "28000",  # invalid_authorization_specification
        "3D000",  # invalid_catalog_name: database does not exist (yet)
    }


_NO_TENANT = object()
# A batch whose appends keep losing races runs again this often before it is paused and
# retried with backoff like any transient failure.
_CONFLICT_ATTEMPTS = 5
