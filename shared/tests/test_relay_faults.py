"""The relay under faults: poison rows, a topic that cannot take messages, a lost leader."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from aiohttp import ClientSession
from aiokafka import AIOKafkaConsumer, TopicPartition
from kafka_helpers import create_topics
from litestar import post
from pressroom_contracts import CloudEvent
from pressroom_kit import cloudevents
from pressroom_kit.db import tenant_transaction
from pressroom_kit.health import Heartbeats
from pressroom_kit.http import create_service_app
from pressroom_kit.outbox import (
    MAX_MESSAGE_BYTES,
    MessageTooLarge,
    OutboxMessage,
    Relay,
    RelaySettings,
    check_message_size,
    discard_parked,
    outbox_row,
    parked_rows,
    retry_parked,
)
from pressroom_kit.testing.sample import domain as sample
from pressroom_kit.testing.servers import serve_asgi
from prometheus_client import REGISTRY

FAST = {"poll_interval": 0.1, "standby_interval": 0.1, "max_backoff": 0.5, "backlog_every": 0}


def _event(key: str, data: dict[str, Any]) -> CloudEvent:
    return CloudEvent(
        id=uuid.uuid4(),
        source="/pressroom/sample",
        type="sample.note.changed.v1",
        subject=key,
        time=datetime.now(UTC),
        data=data,
    )


async def _insert(pool: asyncpg.Pool, topic: str, key: str, data: dict[str, Any]) -> uuid.UUID:
    """An outbox row written straight into the table, past the size check of ``outbox_row``."""
    event = _event(key, data)
    await pool.execute(
        "INSERT INTO outbox (event_id, topic, key, headers, payload) VALUES ($1, $2, $3, $4, $5)",
        event.id,
        topic,
        key,
        cloudevents.to_headers(event),
        data,
    )
    return event.id


async def _read_all(bootstrap: str, topic: str) -> list[Any]:
    """Every record on ``topic``, up to the partitions' current ends."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        if not partitions:
            await consumer._client._wait_on_metadata(topic)
            partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        records: list[Any] = []
        async with asyncio.timeout(20):
            while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
                for items in (await consumer.getmany(timeout_ms=200)).values():
                    records.extend(items)
        return records
    finally:
        await consumer.stop()


async def _until(condition: Callable[[], Any], timeout: float = 20.0, step: float = 0.05) -> None:
    async with asyncio.timeout(timeout):
        while not await condition():
            await asyncio.sleep(step)


@contextlib.asynccontextmanager
async def _running(*relays: Relay) -> AsyncIterator[asyncio.Event]:
    stop = asyncio.Event()
    tasks = [asyncio.create_task(r.run(stop)) for r in relays]
    try:
        yield stop
    finally:
        stop.set()
        await asyncio.gather(*tasks)


def _relay(service: str, dsn: str, bootstrap: str, beats: Heartbeats | None = None, **kw: Any):
    return Relay(
        service=service,
        dsn=dsn,
        bootstrap_servers=bootstrap,
        heartbeats=beats,
        settings=RelaySettings(**{**FAST, **kw}),
    )


def _unsent(pool: asyncpg.Pool) -> Callable[[], Any]:
    async def check() -> bool:
        return bool(
            await pool.fetchval(
                "SELECT count(*) = 0 FROM outbox WHERE sent_at IS NULL AND parked_at IS NULL"
            )
        )

    return check


@pytest.mark.unit
def test_an_oversized_message_is_refused_when_written():
    small = OutboxMessage("pressroom.sample.v1", "k", _event("k", {"title": "x"}))
    check_message_size(small.topic, small.key, cloudevents.to_headers(small.event), {"t": "x"})
    assert outbox_row(small).payload == {"title": "x"}
    big = OutboxMessage("pressroom.sample.v1", "k", _event("k", {"t": "x" * MAX_MESSAGE_BYTES}))
    with pytest.raises(MessageTooLarge) as refused:
        outbox_row(big)
    assert refused.value.status == 413
    assert refused.value.extra["limit"] == MAX_MESSAGE_BYTES
    assert refused.value.extra["size"] > MAX_MESSAGE_BYTES


@pytest.mark.integration
async def test_an_oversized_message_is_a_413_problem_for_the_client():
    @post("/big", opt={"exclude_from_auth": True})
    async def big() -> None:
        outbox_row(OutboxMessage("t", "k", _event("k", {"t": "x" * MAX_MESSAGE_BYTES})))

    app = create_service_app(name="sample", route_handlers=[big], verifier=None)
    async with (
        serve_asgi(app) as base,
        ClientSession() as session,
        session.post(f"{base}/big") as response,
    ):
        assert response.status == 413
        assert response.content_type == "application/problem+json"
        body = await response.json()
    assert body["type"].endswith("/message_too_large")
    assert body["limit"] == MAX_MESSAGE_BYTES
    assert str(MAX_MESSAGE_BYTES) in body["detail"]


@pytest.mark.integration
async def test_a_poison_row_is_parked_and_the_rows_around_it_go_out_once(
    app_pool, sample_db, kafka_bootstrap, unique_topic
):
    await create_topics(kafka_bootstrap, unique_topic)
    first = await _insert(app_pool, unique_topic, "k1", {"title": "a"})
    poison = await _insert(app_pool, unique_topic, "k2", {"title": "x" * 2_000_000})
    third = await _insert(app_pool, unique_topic, "k3", {"title": "c"})
    after = await _insert(app_pool, unique_topic, "k2", {"title": "d"})
    bad_topic = await _insert(app_pool, "not a topic!", "k4", {"title": "e"})
    beats = Heartbeats()
    relay = _relay("poison", sample_db.app_dsn, kafka_bootstrap, beats)
    async with _running(relay):
        await _until(_unsent(app_pool))
        await _until(lambda: asyncio.sleep(0, "degraded" in beats.status()["relay:poison"]))
        status = beats.status()["relay:poison"]
        assert status["ok"] and status["degraded"] == "2 outbox rows parked"
        assert REGISTRY.get_sample_value("pressroom_outbox_parked", {"service": "poison"}) == 2
        parked = {r["event_id"]: r for r in await parked_rows(app_pool)}
        assert parked.keys() == {poison, bad_topic}
        assert "MessageSizeTooLargeError" in parked[poison]["error"]
        assert "InvalidTopicError" in parked[bad_topic]["error"]

        # A retried row that still cannot go is parked again; a discarded one is gone.
        before = parked[poison]["parked_at"]
        assert await retry_parked(app_pool, [parked[poison]["id"]]) == 1

        async def parked_again() -> bool:
            rows = {r["event_id"]: r for r in await parked_rows(app_pool)}
            return poison in rows and rows[poison]["parked_at"] > before

        await _until(parked_again)
        ids = [r["id"] for r in await parked_rows(app_pool)]
        assert await discard_parked(app_pool, ids) == 2
        await _until(lambda: asyncio.sleep(0, "degraded" not in beats.status()["relay:poison"]))
        assert REGISTRY.get_sample_value("pressroom_outbox_parked", {"service": "poison"}) == 0
    records = await _read_all(kafka_bootstrap, unique_topic)
    assert [uuid.UUID(dict(r.headers)["ce_id"].decode()) for r in records] == [first, third, after]


@pytest.mark.integration
async def test_a_partial_failure_across_partitions_parks_only_the_failing_rows(
    app_pool, sample_db, kafka_bootstrap, unique_topic
):
    """One batch over three partitions where some rows fail for good (a topic the broker
    cannot have, an oversized record): every other row goes out once, in order per key.

    Tansu creates any topic on first use, so a missing topic is no fault it can show."""
    await create_topics(kafka_bootstrap, unique_topic, partitions=3)
    written: dict[str, list[uuid.UUID]] = defaultdict(list)
    failing: set[uuid.UUID] = set()
    for version in range(3):
        for key in ("a0", "a1", "b0", "a2"):
            if key == "b0":
                failing.add(await _insert(app_pool, "bad/topic", key, {"title": f"v{version}"}))
            elif key == "a1" and version == 1:
                failing.add(await _insert(app_pool, unique_topic, key, {"t": "x" * 1_100_000}))
            else:
                written[key].append(await _insert(app_pool, unique_topic, key, {"v": version}))
    relay = _relay("partial", sample_db.app_dsn, kafka_bootstrap)
    async with _running(relay):
        await _until(_unsent(app_pool))
    assert {r["event_id"] for r in await parked_rows(app_pool)} == failing
    per_key: dict[str, list[uuid.UUID]] = defaultdict(list)
    for record in await _read_all(kafka_bootstrap, unique_topic):
        per_key[record.key.decode()].append(uuid.UUID(dict(record.headers)["ce_id"].decode()))
    assert per_key == written


@pytest.mark.integration
async def test_every_row_reaches_kafka_exactly_once_without_faults(
    app_pool, sample_db, kafka_bootstrap, unique_topic
):
    await create_topics(kafka_bootstrap, unique_topic, partitions=3)
    brand = uuid.uuid4()
    repo = sample.repository(unique_topic)
    for i in range(20):
        async with tenant_transaction(app_pool, brand) as conn:
            await repo.save(conn, sample.Note.write(f"n{i}", brand, "v0"), brand_id=brand)
    relay = _relay("once", sample_db.app_dsn, kafka_bootstrap, batch_size=7)
    async with _running(relay):
        for r in range(1, 5):
            for i in range(20):
                async with tenant_transaction(app_pool, brand) as conn:
                    note = await repo.load(conn, f"n{i}")
                    note.rename(f"v{r}")
                    await repo.save(conn, note, brand_id=brand)
        await _until(_unsent(app_pool))
    records = await _read_all(kafka_bootstrap, unique_topic)
    assert len(records) == 100
    assert len({dict(r.headers)["ce_id"] for r in records}) == 100
    per_key: dict[str, list[str]] = defaultdict(list)
    for record in records:
        per_key[record.key.decode()].append(
            cloudevents.decode(record.headers, record.value).data["title"]
        )
    assert per_key == {f"n{i}": [f"v{r}" for r in range(5)] for i in range(20)}


class _FreezingProxy:
    """A TCP proxy that can stop forwarding without closing anything: a half-open path."""

    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self.frozen = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        if self.frozen.is_set():
            await asyncio.Event().wait()  # accepted, never answered
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        self._writers.append(up_writer)
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(src, dst))
            self._tasks.add(task)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await src.read(65536):
                if self.frozen.is_set():
                    await asyncio.Event().wait()
                dst.write(data)
                await dst.drain()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for writer in self._writers:
            writer.transport.abort()
        if self.server is not None:
            self.server.close()


def _via(dsn: str, port: int) -> str:
    parts = urlsplit(dsn)
    userinfo = parts.netloc.rpartition("@")[0]
    return urlunsplit(parts._replace(netloc=f"{userinfo}@127.0.0.1:{port}"))


LEADER = {"leader_timeout": 3.0, "query_timeout": 1.0, "metadata_timeout": 0.5}


async def _lock_holder(pool: asyncpg.Pool) -> int | None:
    return await pool.fetchval(
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND objid = 7250003 AND granted"
    )


@pytest.mark.integration
@pytest.mark.slow
async def test_a_half_open_leader_connection_loses_leadership_within_the_leader_timeout(
    app_pool, owner_pool, sample_db, kafka_bootstrap, unique_topic
):
    await create_topics(kafka_bootstrap, unique_topic)
    pg = urlsplit(sample_db.app_dsn)
    proxy = _FreezingProxy(pg.hostname or "127.0.0.1", pg.port or 5432)
    port = await proxy.start()
    first = _relay(
        "half-a", _via(sample_db.app_dsn, port), kafka_bootstrap, publish_timeout=1, **LEADER
    )
    second = _relay("half-b", sample_db.app_dsn, kafka_bootstrap, publish_timeout=1, **LEADER)
    try:
        async with _running(first):
            await _until(lambda: asyncio.sleep(0, first.is_leader))
            async with _running(second):
                await asyncio.sleep(0.3)
                assert not second.is_leader
                proxy.frozen.set()
                frozen_at = time.monotonic()
                await _until(lambda: asyncio.sleep(0, second.is_leader), timeout=15)
                took = time.monotonic() - frozen_at
                assert not first.is_leader
                assert took < 3.0 + 2.0, took
                event_id = await _insert(app_pool, unique_topic, "k", {"title": "after"})
                await _until(_unsent(app_pool))
    finally:
        await proxy.close()
    records = await _read_all(kafka_bootstrap, unique_topic)
    assert [dict(r.headers)["ce_id"].decode() for r in records] == [str(event_id)]


@pytest.mark.integration
async def test_a_terminated_leader_backend_hands_leadership_on(
    app_pool, owner_pool, sample_db, kafka_bootstrap, unique_topic
):
    await create_topics(kafka_bootstrap, unique_topic)
    first = _relay("kill-a", sample_db.app_dsn, kafka_bootstrap, publish_timeout=1, **LEADER)
    second = _relay("kill-b", sample_db.app_dsn, kafka_bootstrap, publish_timeout=1, **LEADER)
    async with _running(first, second):
        await _until(lambda: asyncio.sleep(0, first.is_leader or second.is_leader))
        holder = await _lock_holder(owner_pool)
        assert holder is not None
        assert await owner_pool.fetchval("SELECT pg_terminate_backend($1)", holder)

        async def new_holder() -> bool:
            pid = await _lock_holder(owner_pool)
            return pid is not None and pid != holder and (first.is_leader != second.is_leader)

        await _until(new_holder, timeout=10)
        event_id = await _insert(app_pool, unique_topic, "k", {"title": "after"})
        await _until(_unsent(app_pool))
    records = await _read_all(kafka_bootstrap, unique_topic)
    assert [dict(r.headers)["ce_id"].decode() for r in records] == [str(event_id)]
