from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
import uuid
from collections import defaultdict

import pytest
from kafka_helpers import create_topics, read_until
from pressroom_kit import cloudevents
from pressroom_kit.db import tenant_transaction
from pressroom_kit.health import Heartbeats
from pressroom_kit.outbox import Relay, RelaySettings
from pressroom_kit.testing.sample import domain as sample

pytestmark = pytest.mark.integration


async def _write_notes(pool, brand, topic, n_aggregates, renames):
    repo = sample.repository(topic)
    for i in range(n_aggregates):
        async with tenant_transaction(pool, brand) as conn:
            await repo.save(conn, sample.Note.write(f"n{i}", brand, "v0"), brand_id=brand)
    for r in range(1, renames + 1):
        for i in range(n_aggregates):
            async with tenant_transaction(pool, brand) as conn:
                note = await repo.load(conn, f"n{i}")
                note.rename(f"v{r}")
                await repo.save(conn, note, brand_id=brand)


def _ce_id(record):
    return dict(record.headers)["ce_id"]


def _first_seen_titles(records):
    per_key: dict[str, list[str]] = defaultdict(list)
    seen_ids = set()
    for record in records:
        event = cloudevents.decode(record.headers, record.value)
        if event.id in seen_ids:
            continue
        seen_ids.add(event.id)
        per_key[record.key.decode()].append(event.data["title"])
    return per_key, seen_ids


async def test_relay_publishes_cloudevents_in_order_and_marks_rows_sent(
    app_pool, sample_db, kafka_bootstrap, unique_topic
):
    await create_topics(kafka_bootstrap, unique_topic, partitions=3)
    brand = uuid.uuid4()
    await _write_notes(app_pool, brand, unique_topic, n_aggregates=4, renames=3)
    beats = Heartbeats()
    relay = Relay(
        service="sample",
        dsn=sample_db.app_dsn,
        bootstrap_servers=kafka_bootstrap,
        heartbeats=beats,
        settings=RelaySettings(poll_interval=0.2),
    )
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    try:
        records = await read_until(kafka_bootstrap, unique_topic, lambda r: len(r) >= 16)
    finally:
        stop.set()
        await task
    per_key, _ = _first_seen_titles(records)
    assert per_key == {f"n{i}": ["v0", "v1", "v2", "v3"] for i in range(4)}
    headers = dict(records[0].headers)
    assert headers["ce_type"] == b"sample.note.changed.v1"
    assert headers["ce_specversion"] == b"1.0"
    assert headers["ce_source"] == b"/pressroom/sample"
    assert headers["ce_brandid"] == str(brand).encode()
    assert headers["content-type"] == b"application/json"
    assert {"ce_id", "ce_time", "ce_subject", "ce_sequence"} <= headers.keys()
    assert await app_pool.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL") == 0
    assert beats.status()["relay:sample"]["ok"]


async def test_second_relay_stands_by_while_the_first_holds_the_lock(sample_db, kafka_bootstrap):
    stop = asyncio.Event()
    settings = RelaySettings(poll_interval=0.1, standby_interval=0.1)
    first = Relay(
        service="a", dsn=sample_db.app_dsn, bootstrap_servers=kafka_bootstrap, settings=settings
    )
    second = Relay(
        service="b", dsn=sample_db.app_dsn, bootstrap_servers=kafka_bootstrap, settings=settings
    )
    t1 = asyncio.create_task(first.run(stop))
    await asyncio.sleep(0.5)
    t2 = asyncio.create_task(second.run(stop))
    await asyncio.sleep(0.5)
    assert first.is_leader and not second.is_leader
    stop.set()
    await asyncio.gather(t1, t2)


async def test_relay_keeps_rows_while_the_broker_is_down_and_publishes_later(
    app_pool, sample_db, kafka_bootstrap, unique_topic
):
    from pressroom_kit.embedded import EmbeddedKafka, free_port

    port = free_port()
    brand = uuid.uuid4()
    await _write_notes(app_pool, brand, unique_topic, n_aggregates=2, renames=1)
    beats = Heartbeats()
    relay = Relay(
        service="down",
        dsn=sample_db.app_dsn,
        bootstrap_servers=f"127.0.0.1:{port}",
        heartbeats=beats,
        settings=RelaySettings(poll_interval=0.1, max_backoff=0.5),
    )
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    try:
        await asyncio.sleep(1.5)
        assert await app_pool.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL") == 4
        assert not beats.status()["relay:down"]["ok"]
        broker = EmbeddedKafka(port=port).start()
        try:
            await create_topics(broker.bootstrap_servers, unique_topic)
            records = await read_until(
                broker.bootstrap_servers, unique_topic, lambda r: len(r) >= 4, timeout=20
            )
            assert len({_ce_id(r) for r in records}) == 4
        finally:
            stop.set()
            await task
            broker.stop()
    finally:
        stop.set()


@pytest.mark.slow
async def test_no_event_is_lost_when_the_relay_is_killed_at_random(
    app_pool, sample_db, kafka_bootstrap, unique_topic
):
    """1,000 events appended while the relay process is SIGKILLed and restarted."""
    await create_topics(kafka_bootstrap, unique_topic, partitions=3)
    brand = uuid.uuid4()
    rng = random.Random(42)

    def start_relay():
        return asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "pressroom_kit",
            "relay",
            "--service",
            "killme",
            "--dsn",
            sample_db.app_dsn,
            "--bootstrap",
            kafka_bootstrap,
            "--batch-size",
            "50",
            "--poll-interval",
            "0.2",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )

    writer = asyncio.create_task(_write_notes(app_pool, brand, unique_topic, 100, 9))
    kills = 0
    process = await start_relay()
    try:
        while not writer.done():
            await asyncio.sleep(rng.uniform(0.05, 0.4))
            process.send_signal(signal.SIGKILL)
            await process.wait()
            kills += 1
            process = await start_relay()
        await writer
        records = await read_until(
            kafka_bootstrap,
            unique_topic,
            lambda r: len({_ce_id(x) for x in r}) >= 1000,
            timeout=60,
        )
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            await process.wait()
    assert kills >= 3
    per_key, ids = _first_seen_titles(records)
    assert len(ids) == 1000, f"{1000 - len(ids)} events never reached Kafka"
    for key, titles in per_key.items():
        assert titles == [f"v{i}" for i in range(10)], f"{key} out of order: {titles}"
