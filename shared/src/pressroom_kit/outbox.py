"""The transactional outbox and its relay to Kafka.

Outbox rows are written in the same transaction as the events they announce. The relay
publishes them as binary-mode CloudEvents keyed by aggregate id, in id order, and marks them
sent only after the broker acknowledged them: a crash anywhere loses nothing, at worst a
message is published twice (consumers deduplicate with their inbox).

One relay per service database is active at a time (a session advisory lock); other
replicas wait on standby and take over when the holder's connection goes away.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from uuid import UUID

import asyncpg
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from pressroom_contracts import CloudEvent

from pressroom_kit import cloudevents, eventstore, metrics
from pressroom_kit.db import connect
from pressroom_kit.eventstore import OutboxRow
from pressroom_kit.health import Heartbeats
from pressroom_kit.logs import get_logger

log = get_logger(__name__)

_RELAY_LOCK = 7_250_003
NOTIFY_CHANNEL = "pressroom_outbox"


@dataclass(frozen=True)
class OutboxMessage:
    topic: str
    key: str
    event: CloudEvent


def outbox_row(message: OutboxMessage, for_event: UUID | None = None) -> OutboxRow:
    """The row ``eventstore.append`` writes for ``message`` in the same statement, when the
    stored event ``for_event`` (default: the message's own id) is appended."""
    return OutboxRow(
        event_id=message.event.id,
        topic=message.topic,
        key=message.key,
        headers=cloudevents.to_headers(message.event),
        payload=message.event.data,
        for_event=for_event or message.event.id,
    )


async def write_outbox(conn: asyncpg.Connection, messages: Sequence[OutboxMessage]) -> None:
    """Outbox rows that announce no stored event (e.g. from a consumer); call inside the
    transaction whose effects they announce.

    Inside ``eventstore.deferred_writes`` (every ``tenant_transaction`` and consumer
    transaction) they are written with the transaction's appends as its last statement;
    otherwise now, under the writers' lock, so make it the last statement before
    ``COMMIT``. Either way outbox ids follow commit order, so the relay publishes one key's
    messages in the order their transactions committed.
    """
    if not messages:
        return
    rows = [
        OutboxRow(
            event_id=m.event.id,
            topic=m.topic,
            key=m.key,
            headers=cloudevents.to_headers(m.event),
            payload=m.event.data,
            for_event=None,
        )
        for m in messages
    ]
    pending = eventstore.pending_writes(conn)
    if pending is not None:
        pending.add_outbox(rows)
        return
    if not conn.is_in_transaction():
        raise RuntimeError("write_outbox() must run inside a transaction")
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
    }
    options.update(overrides)
    return AIOKafkaProducer(**options)


@dataclass
class RelaySettings:
    batch_size: int = 500
    poll_interval: float = 1.0
    # After a wake-up, wait at least this long since the previous fetch so that a burst of
    # commits (each one NOTIFYs) travels as one batch instead of one query per commit.
    min_batch_interval: float = 0.005
    standby_interval: float = 1.0
    max_backoff: float = 5.0
    retention: timedelta = timedelta(days=1)
    backlog_every: float = 2.0


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
        self.heartbeats.register(self.beat_name, max_age=max(10.0, self.settings.poll_interval * 5))
        self.is_leader = False
        self._wake = asyncio.Event()
        self._producer: AIOKafkaProducer | None = None

    async def run(self, stop: asyncio.Event) -> None:
        backoff = 0.2
        while not stop.is_set():
            try:
                await self._run_once(stop)
                backoff = 0.2
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                self.heartbeats.beat(self.beat_name, ok=False, detail=f"database: {exc}")
                log.warning("relay lost the database", error=str(exc))
                await _sleep_or_stop(stop, backoff)
                backoff = min(backoff * 2, self.settings.max_backoff)
            finally:
                self.is_leader = False
                metrics.RELAY_LEADER.labels(self.service).set(0)
        await self._stop_producer()

    async def _run_once(self, stop: asyncio.Event) -> None:
        conn = await connect(self.dsn)
        try:
            while not stop.is_set():
                if await conn.fetchval("SELECT pg_try_advisory_lock($1)", _RELAY_LOCK):
                    break
                self.heartbeats.beat(self.beat_name, detail="standby")
                await _sleep_or_stop(stop, self.settings.standby_interval)
            if stop.is_set():
                return
            self.is_leader = True
            metrics.RELAY_LEADER.labels(self.service).set(1)
            log.info("relay is the leader", service=self.service)
            await conn.add_listener(NOTIFY_CHANNEL, self._on_notify)
            await self._publish_loop(conn, stop)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), timeout=2)

    def _on_notify(self, *_: object) -> None:
        self._wake.set()

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
        while not stop.is_set():
            since = time.monotonic() - last_fetch
            if since < self.settings.min_batch_interval:
                await asyncio.sleep(self.settings.min_batch_interval - since)
            self._wake.clear()
            now = time.monotonic()
            last_fetch = now
            if now - last_backlog >= self.settings.backlog_every:
                backlog = await conn.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
                metrics.OUTBOX_BACKLOG.labels(self.service).set(backlog)
                last_backlog = now
            if now - last_cleanup >= 60:
                await conn.execute(
                    "DELETE FROM outbox WHERE sent_at < now() - $1::interval",
                    self.settings.retention,
                )
                last_cleanup = now
            rows = await conn.fetch(
                "SELECT id, topic, key, headers, payload, created_at FROM outbox "
                "WHERE sent_at IS NULL ORDER BY id LIMIT $1",
                self.settings.batch_size,
            )
            if rows:
                try:
                    await self._publish(rows)
                except (TimeoutError, KafkaError, OSError) as exc:
                    self.heartbeats.beat(self.beat_name, ok=False, detail=f"broker: {exc!r}")
                    log.warning(
                        "relay cannot publish; backing off", error=repr(exc), backoff_s=backoff
                    )
                    await self._stop_producer()
                    await _sleep_or_stop(stop, backoff * (0.5 + random.random()))
                    backoff = min(backoff * 2, self.settings.max_backoff)
                    continue
                backoff = 0.1
                await conn.execute(
                    "UPDATE outbox SET sent_at = clock_timestamp() WHERE id = ANY($1::bigint[])",
                    [r["id"] for r in rows],
                )
                self.heartbeats.beat(self.beat_name, detail="publishing")
                if len(rows) == self.settings.batch_size:
                    continue
            else:
                self.heartbeats.beat(self.beat_name, detail="idle")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.settings.poll_interval)

    async def _publish(self, rows: Sequence[asyncpg.Record]) -> None:
        producer = await self._ensure_producer()
        futures = []
        for row in rows:
            value = cloudevents.encode_value_raw(row["payload"])
            futures.append(
                await producer.send(
                    row["topic"],
                    value=value,
                    key=row["key"].encode(),
                    headers=cloudevents.kafka_headers(row["headers"]),
                )
            )
        await asyncio.wait_for(asyncio.gather(*futures), timeout=30)
        acked = time.time()
        for row in rows:
            metrics.OUTBOX_PUBLISH_LAG.labels(self.service).observe(
                max(0.0, acked - row["created_at"].timestamp())
            )
        metrics.OUTBOX_PUBLISHED.labels(self.service).inc(len(rows))


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
