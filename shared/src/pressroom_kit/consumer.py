"""Kafka consumer with an inbox: effectively exactly-once effects on at-least-once delivery.

For each message the handler's effects and the inbox row ``(consumer, event_id)`` commit in
one database transaction; the Kafka offset is committed only after that. A redelivered event
finds its inbox row and changes nothing. A message that cannot be decoded, has an unknown
type, or whose handler keeps failing goes to ``<topic>.dlq`` with the error in its headers,
and the partition moves on.
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
from typing import Any, cast
from uuid import UUID

import asyncpg
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
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
    max_attempts: int = 3
    retry_backoff: float = 0.2
    max_records: int = 500
    fetch_max_wait_ms: int = 10
    poll_timeout_ms: int = 200
    stale_after: float = 30.0
    auto_offset_reset: str = "earliest"
    session_timeout_ms: int = 10_000
    heartbeat_interval_ms: int = 1_000
    # Tansu holds a join for the rebalance timeout; a short one makes (re)joins quick.
    rebalance_timeout_ms: int = 2_000
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def with_session_timeout(cls, session_timeout_ms: int) -> ConsumerSettings:
        """Defaults with this session timeout and a heartbeat a tenth of it."""
        return cls(
            session_timeout_ms=session_timeout_ms,
            heartbeat_interval_ms=max(100, session_timeout_ms // 10),
        )


@dataclass
class _Decoded:
    record: ConsumerRecord
    event: CloudEvent | None = None
    payload: EventPayload | None = None
    handler: Handler | None = None
    error: str | None = None


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
                self.heartbeats.beat(self.beat_name, ok=False, detail=f"broker: {exc!r}")
                log.warning("consumer lost the broker", consumer=self.name, error=repr(exc))
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=backoff)
                backoff = min(backoff * 2, 5.0)

    async def _run_once(self, stop: asyncio.Event) -> None:
        consumer = AIOKafkaConsumer(
            *self.topics,
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
        producer = make_producer(self.bootstrap_servers)
        await consumer.start()
        try:
            await producer.start()
            self._consumer, self._dlq_producer = consumer, producer
            while not stop.is_set():
                batches = await consumer.getmany(
                    timeout_ms=self.settings.poll_timeout_ms,
                    max_records=self.settings.max_records,
                )
                assigned = consumer.assignment()
                self.heartbeats.beat(
                    self.beat_name,
                    ok=bool(assigned),
                    detail=f"{len(assigned)} partitions" if assigned else "no assignment",
                )
                offsets = {}
                for tp, records in batches.items():
                    await self._handle_partition(consumer, tp, records)
                    offsets[tp] = records[-1].offset + 1
                if offsets:
                    # One commit for every partition of the poll, after their transactions.
                    await consumer.commit(offsets)
                self._record_lag(consumer)
        finally:
            self._consumer = None
            with contextlib.suppress(Exception):
                await asyncio.wait_for(consumer.stop(), timeout=5)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(producer.stop(), timeout=5)

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
        self, consumer: AIOKafkaConsumer, tp: TopicPartition, records: Sequence[ConsumerRecord]
    ) -> None:
        pending = [self._decode(r) for r in records]
        while pending:
            bad = next((i for i, item in enumerate(pending) if item.error), len(pending))
            if bad > 0:
                failed = await self._apply_batch(pending[:bad])
                if failed is not None:
                    continue  # that item now carries its error: the prefix before it goes next
            if bad == len(pending):
                break
            await self._handle_alone(pending[bad])
            await consumer.commit({tp: pending[bad].record.offset + 1})
            pending = pending[bad + 1 :]

    async def _apply_batch(self, items: Sequence[_Decoded]) -> int | None:
        """Apply good items in one transaction, all or nothing.

        Returns ``None`` on success, or the index of the item whose handler failed (its
        ``error`` is set and the whole transaction rolled back). The transaction's appends
        are written at its end; when a stream moved on meanwhile (another replica or an HTTP
        command saved the same aggregate), the whole batch runs again on fresh state.
        """
        for attempt in itertools.count(1):
            try:
                return await self._apply_batch_once(items)
            except ConcurrencyError:
                if attempt >= _CONFLICT_ATTEMPTS:
                    raise
                await asyncio.sleep(self.settings.retry_backoff * random.random() * attempt)
        raise AssertionError("unreachable")

    async def _apply_batch_once(self, items: Sequence[_Decoded]) -> int | None:
        outcomes: collections.Counter[str] = collections.Counter()
        failed: int | None = None
        try:
            async with (
                self.pool.acquire() as proxy,
                proxy.transaction(),
                eventstore.deferred_writes(cast(asyncpg.Connection, proxy)),
            ):
                conn = cast(asyncpg.Connection, proxy)
                fresh = await self._record_in_inbox(conn, items)
                tenant: object = _NO_TENANT
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
                        failed = index
                        item.error = f"handler: {exc!r}"
                        raise _Abort from exc
                    outcomes["handled"] += 1
        except _Abort:
            return failed
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
        """Retry one failing message up to ``max_attempts``, then dead-letter it."""
        if item.error is None or item.error.startswith("handler"):
            for attempt in range(1, self.settings.max_attempts):
                await asyncio.sleep(self.settings.retry_backoff * 2 ** (attempt - 1))
                item.error = None
                if await self._apply_batch([item]) is None:
                    return
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


_NO_TENANT = object()
# A batch whose appends keep losing races is retried this often before it counts as failed.
_CONFLICT_ATTEMPTS = 20
