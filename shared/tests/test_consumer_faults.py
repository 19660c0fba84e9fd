"""The inbox consumer under faults: transient database errors, rebalances, idle, retention."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import timedelta

import asyncpg
import pytest
from kafka_helpers import create_topics
from pressroom_contracts import dlq_topic
from pressroom_kit.consumer import ConsumerSettings
from pressroom_kit.db import connect
from pressroom_kit.errors import ConcurrencyError
from pressroom_kit.health import Heartbeats
from pressroom_kit.testing.plugin import APP_ROLE
from prometheus_client import REGISTRY
from test_consumer import _consumer, _encoded, _event, _mention, _produce

pytestmark = pytest.mark.integration


def _settings(**overrides: object) -> ConsumerSettings:
    options: dict[str, object] = {
        "session_timeout_ms": 2000,
        "heartbeat_interval_ms": 300,
        "retry_backoff": 0.01,
        "transient_backoff": 0.02,
        "max_transient_backoff": 0.3,
    }
    options.update(overrides)
    return ConsumerSettings(**options)  # type: ignore[arg-type]


async def _wait(predicate, timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while not await predicate():
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def _running(consumer):
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    try:
        yield task
    finally:
        stop.set()
        await task


async def _raise_in_postgres(conn: asyncpg.Connection, condition: str) -> None:
    """Have the server itself raise the error a real deadlock or race would."""
    await conn.execute(
        f"DO $$ BEGIN RAISE EXCEPTION 'simulated by the test' USING ERRCODE = '{condition}'; END $$"
    )


@pytest.mark.parametrize("condition", ["deadlock_detected", "serialization_failure"])
async def test_a_transient_database_error_is_retried_past_max_attempts_not_dead_lettered(
    owner_pool, app_pool, kafka_bootstrap, unique_topic, condition
):
    await create_topics(kafka_bootstrap, unique_topic, dlq_topic(unique_topic))
    brand = uuid.uuid4()
    events = [_event(brand, name, "t") for name in ("a", "contended", "c")]
    await _produce(kafka_bootstrap, unique_topic, [_encoded(e) for e in events])
    attempts = []
    seen_retrying = []

    async def contended(conn, event, payload):
        if payload.note_id == "contended" and len(attempts) < 6:
            attempts.append(1)
            seen_retrying.append(
                REGISTRY.get_sample_value("pressroom_consumer_retrying", {"consumer": name})
            )
            await _raise_in_postgres(conn, condition)
        await _mention(conn, event, payload)

    beats = Heartbeats()
    consumer = _consumer(
        app_pool,
        kafka_bootstrap,
        unique_topic,
        contended,
        heartbeats=beats,
        settings=_settings(max_attempts=3),
    )
    name = consumer.name

    async def all_handled():
        return await owner_pool.fetchval("SELECT count(*) FROM note_mentions") == 3

    async with _running(consumer):
        await _wait(all_handled)
    assert len(attempts) == 6  # twice max_attempts, and still not dead-lettered
    assert consumer.stats["dead_lettered"] == 0
    assert consumer.stats["restarts"] == 0
    assert 1.0 in seen_retrying  # the partition was paused, and said so
    assert REGISTRY.get_sample_value("pressroom_consumer_retrying", {"consumer": name}) == 0
    retries = REGISTRY.get_sample_value(
        "pressroom_consumer_transient_retries_total", {"consumer": name, "topic": unique_topic}
    )
    assert retries is not None and retries >= 5
    notes = await owner_pool.fetch("SELECT consumer_note FROM note_mentions ORDER BY 1")
    assert [r["consumer_note"] for r in notes] == ["a", "c", "contended"]


async def test_a_lost_race_is_retried_and_a_real_bug_still_goes_to_the_dlq(
    owner_pool, app_pool, kafka_bootstrap, unique_topic
):
    await create_topics(kafka_bootstrap, unique_topic, dlq_topic(unique_topic))
    brand = uuid.uuid4()
    events = [_event(brand, name, "t") for name in ("raced", "buggy", "fine")]
    await _produce(kafka_bootstrap, unique_topic, [_encoded(e) for e in events])
    raced = []

    async def handler(conn, event, payload):
        if payload.note_id == "raced" and len(raced) < 4:
            raced.append(1)
            raise ConcurrencyError("stream changed since it was loaded")
        if payload.note_id == "buggy":
            await conn.execute("SELECT no_such_column FROM note_mentions")
        await _mention(conn, event, payload)

    consumer = _consumer(app_pool, kafka_bootstrap, unique_topic, handler, settings=_settings())

    async def settled():
        return consumer.stats["dead_lettered"] == 1 and (
            await owner_pool.fetchval("SELECT count(*) FROM note_mentions") == 2
        )

    async with _running(consumer):
        await _wait(settled)
    assert len(raced) == 4
    inbox = await owner_pool.fetch("SELECT event_id FROM inbox")
    assert {r["event_id"] for r in inbox} == {events[0].id, events[2].id}


async def test_a_database_that_goes_away_holds_the_message_until_it_is_back(
    owner_pool, app_pool, kafka_bootstrap, unique_topic, sample_db, pg_admin_dsn
):
    await create_topics(kafka_bootstrap, unique_topic, dlq_topic(unique_topic))
    brand = uuid.uuid4()
    first, second = _event(brand, "before", "t"), _event(brand, "during", "t")
    beats = Heartbeats()
    consumer = _consumer(
        app_pool, kafka_bootstrap, unique_topic, heartbeats=beats, settings=_settings()
    )
    admin = await connect(pg_admin_dsn)
    try:
        async with _running(consumer):
            await _produce(kafka_bootstrap, unique_topic, [_encoded(first)])
            await _wait(lambda: _count(owner_pool, 1))
            await admin.execute(f'ALTER DATABASE "{sample_db.name}" ALLOW_CONNECTIONS false')
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = $1 AND usename = $2",
                sample_db.name,
                APP_ROLE,
            )
            await _produce(kafka_bootstrap, unique_topic, [_encoded(second)])

            async def retrying():
                status = beats.status()[consumer.beat_name]
                return not status["ok"] and "retrying" in status["detail"]

            await _wait(retrying)
            await asyncio.sleep(1.0)  # a while down: far more than max_attempts quick tries
            assert consumer.stats["dead_lettered"] == 0
            await admin.execute(f'ALTER DATABASE "{sample_db.name}" ALLOW_CONNECTIONS true')
            await _wait(lambda: _count(owner_pool, 2))

            async def ready_again():
                return beats.status()[consumer.beat_name]["ok"]

            await _wait(ready_again)
    finally:
        await admin.execute(f'ALTER DATABASE "{sample_db.name}" ALLOW_CONNECTIONS true')
        await admin.close()
    assert consumer.stats["dead_lettered"] == 0
    assert consumer.stats["restarts"] == 0
    assert await owner_pool.fetchval("SELECT count(*) FROM inbox") == 2


async def _count(pool, expected: int) -> bool:
    return await pool.fetchval("SELECT count(*) FROM note_mentions") == expected


@pytest.mark.slow
async def test_a_second_consumer_joining_mid_batch_loses_nothing_and_restarts_nothing(
    owner_pool, app_pool, kafka_bootstrap, unique_topic
):
    await create_topics(kafka_bootstrap, unique_topic, dlq_topic(unique_topic), partitions=4)
    brand = uuid.uuid4()
    events = [_event(brand, f"n{i}", "t") for i in range(200)]
    await _produce(kafka_bootstrap, unique_topic, [_encoded(e) for e in events])
    handled = []
    joining = asyncio.Event()

    async def slow_mention(conn, event, payload):
        handled.append(event.id)
        if len(handled) == 20:
            # Mid-batch, inside its transaction: the second consumer joins meanwhile.
            await joining.wait()
            await asyncio.sleep(2.0)
        await _mention(conn, event, payload)

    group = f"g-{uuid.uuid4().hex[:8]}"
    settings = _settings(max_records=50, rebalance_timeout_ms=6000)
    first = _consumer(
        app_pool, kafka_bootstrap, unique_topic, slow_mention, name=group, settings=settings
    )
    second = _consumer(
        app_pool, kafka_bootstrap, unique_topic, _mention, name=group, settings=settings
    )
    async with _running(first):
        await _wait(lambda: _have_handled(handled, 20))
        async with _running(second):
            joining.set()
            await _wait(lambda: _at_least(owner_pool, 200), timeout=60)
            assert first.stats["revoked"] > 0  # the join did rebalance the first consumer
    # What the first finished before the revoke was committed then: nobody re-reads it.
    assert first.stats["duplicate"] + second.stats["duplicate"] == 0
    assert first.stats["restarts"] == 0
    assert second.stats["restarts"] == 0
    rows = await owner_pool.fetch("SELECT event_id FROM note_mentions")
    assert sorted(r["event_id"] for r in rows) == sorted(e.id for e in events)  # once each
    assert await owner_pool.fetchval("SELECT count(*) FROM inbox") == 200
    assert first.stats["dead_lettered"] + second.stats["dead_lettered"] == 0


async def _have_handled(handled: list[object], count: int) -> bool:
    return len(handled) >= count


async def _at_least(pool, expected: int) -> bool:
    return await pool.fetchval("SELECT count(*) FROM note_mentions") >= expected


async def test_an_idle_consumer_waits_longer_per_fetch_and_still_picks_up_at_once(
    owner_pool, app_pool, kafka_bootstrap, unique_topic
):
    await create_topics(kafka_bootstrap, unique_topic)
    consumer = _consumer(app_pool, kafka_bootstrap, unique_topic, settings=_settings())

    def fetch_wait() -> int:
        assert consumer._consumer is not None
        return int(consumer._consumer._fetcher._fetch_max_wait_ms)

    async def idle():
        return consumer._consumer is not None and fetch_wait() == 500

    async with _running(consumer):
        await _wait(idle)
        loop = asyncio.get_running_loop()
        started = loop.time()
        await _produce(kafka_bootstrap, unique_topic, [_encoded(_event(uuid.uuid4(), "n", "t"))])
        await _wait(lambda: _count(owner_pool, 1))
        assert loop.time() - started < 1.0  # the first message after idle: one long fetch
        assert consumer._fetch_wait_ms == 10 or fetch_wait() <= 40  # short again while busy


async def test_inbox_rows_past_the_retention_are_deleted_in_batches(
    owner_pool, app_pool, kafka_bootstrap, unique_topic
):
    await create_topics(kafka_bootstrap, unique_topic)
    consumer = _consumer(
        app_pool,
        kafka_bootstrap,
        unique_topic,
        settings=_settings(
            inbox_retention=timedelta(days=7), inbox_cleanup_every=0.2, inbox_cleanup_batch=3
        ),
    )
    consumer._next_cleanup = 0.0  # the first clean-up at once instead of within a minute
    rows = [
        (consumer.name, uuid.uuid4(), age)
        for age in [timedelta(days=8)] * 8 + [timedelta(days=6)] * 2 + [timedelta(minutes=1)] * 2
    ] + [("another-consumer", uuid.uuid4(), timedelta(days=30))]
    await owner_pool.executemany(
        """
        INSERT INTO inbox (consumer, event_id, event_type, topic, partition, "offset",
                           processed_at)
        VALUES ($1, $2, 'sample.note.changed.v1', 't', 0, 0, now() - $3::interval)
        """,
        rows,
    )

    async def cleaned():
        return consumer.stats["inbox_deleted"] == 8

    async with _running(consumer):
        await _wait(cleaned)
    left = await owner_pool.fetch("SELECT consumer, event_id FROM inbox")
    kept = {(c, e) for c, e, age in rows if age != timedelta(days=8)}
    assert {(r["consumer"], r["event_id"]) for r in left} == kept
