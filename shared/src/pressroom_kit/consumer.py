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
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import asyncpg
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from opentelemetry import trace
from pressroom_contracts import EVENT_TYPES, CloudEvent, EventPayload, dlq_topic
from pydantic import ValidationError

from pressroom_kit import cloudevents, metrics
from pressroom_kit.db import set_tenant
from pressroom_kit.health import Heartbeats
from pressroom_kit.logs import get_logger
from pressroom_kit.outbox import make_producer
from pressroom_kit.telemetry import context_from_traceparent

log = get_logger(__name__)
tracer = trace.get_tracer("pressroom_kit.consumer")

Handler = Callable[[asyncpg.Connection, CloudEvent, EventPayload], Awaitable[None]]


class PoisonMessage(Exception):
    """A message that can never be handled (bad encoding, unknown type, invalid payload)."""


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
    ) -> None:
        self.name = name
        self.group_id = group_id or name
        self.pool = dsn_or_pool
        self.bootstrap_servers = bootstrap_servers
        self.topics = list(topics)
        self.handlers = dict(handlers)
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
                for tp, records in batches.items():
                    await self._handle_partition(consumer, tp, records)
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
            item.error = f"unknown event type {item.event.type!r}"
            return item
        item.handler = self.handlers.get(item.event.type)
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
            failed_at = await self._apply_batch(pending)
            if failed_at is None:
                break
            if failed_at > 0:
                # Everything before the failing message is good: commit it on its own.
                retry_ok = await self._apply_batch(pending[:failed_at])
                if retry_ok is not None:
                    failed_at = retry_ok
            await self._handle_alone(pending[failed_at])
            await consumer.commit({tp: pending[failed_at].record.offset + 1})
            pending = pending[failed_at + 1 :]
        await consumer.commit({tp: records[-1].offset + 1})

    async def _apply_batch(self, items: Sequence[_Decoded]) -> int | None:
        """Apply items in one transaction; return the index of the first failure, if any."""
        failed: int | None = None
        outcomes: collections.Counter[str] = collections.Counter()
        try:
            async with self.pool.acquire() as proxy, proxy.transaction():
                conn = cast(asyncpg.Connection, proxy)
                for index, item in enumerate(items):
                    if item.error is not None:
                        failed = index
                        raise _Abort
                    try:
                        outcomes[await self._apply_one(conn, item)] += 1
                    except Exception as exc:
                        failed = index
                        item.error = f"handler: {exc!r}"
                        raise _Abort from exc
        except _Abort:
            return failed
        self.stats.update(outcomes)
        for outcome, count in outcomes.items():
            metrics.CONSUMER_PROCESSED.labels(self.name, items[0].record.topic, outcome).inc(count)
        return None

    async def _apply_one(self, conn: asyncpg.Connection, item: _Decoded) -> str:
        if item.handler is None:
            return "ignored"
        assert item.event is not None and item.payload is not None
        inserted = await conn.fetchval(
            'INSERT INTO inbox (consumer, event_id, event_type, topic, partition, "offset") '
            "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING RETURNING 1",
            self.name,
            item.event.id,
            item.event.type,
            item.record.topic,
            item.record.partition,
            item.record.offset,
        )
        if inserted is None:
            return "duplicate"  # seen before: its effects are already committed
        with tracer.start_as_current_span(
            f"consume {item.event.type}",
            context=context_from_traceparent(item.event.traceparent),
            kind=trace.SpanKind.CONSUMER,
            attributes={
                "messaging.system": "kafka",
                "messaging.destination.name": item.record.topic,
                "messaging.consumer.group.name": self.name,
                "cloudevents.event_id": str(item.event.id),
                "cloudevents.event_type": item.event.type,
            },
        ):
            await set_tenant(conn, item.event.brandid)
            await item.handler(conn, item.event, item.payload)
        return "handled"

    async def _handle_alone(self, item: _Decoded) -> None:
        """Retry one failing message up to ``max_attempts``, then dead-letter it."""
        if item.error is None or item.error.startswith("handler"):
            for attempt in range(1, self.settings.max_attempts):
                await asyncio.sleep(self.settings.retry_backoff * 2 ** (attempt - 1))
                item.error = None
                if await self._apply_batch([item]) is None:
                    return
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
