from __future__ import annotations

import asyncio
import json
import uuid

import pytest
from kafka_helpers import create_topics, encoded, produce, read_until
from pressroom_contracts import CloudEvent, dlq_topic
from pressroom_kit.consumer import ConsumerSettings, InboxConsumer
from pressroom_kit.health import Heartbeats
from pressroom_kit.testing.sample import domain as sample

pytestmark = pytest.mark.integration

# Tansu holds a group join for about half the session timeout: keep it short in tests.
FAST = ConsumerSettings(session_timeout_ms=2000, heartbeat_interval_ms=300)


def _event(brand, note_id, title, event_id=None):
    return CloudEvent(
        id=event_id or uuid.uuid4(),
        source="/test",
        type="sample.note.changed.v1",
        subject=note_id,
        brandid=brand,
        data={"note_id": note_id, "title": title},
    )


_produce, _encoded = produce, encoded


async def _mention(conn, event, payload):
    """The handler's effect: one row per processed event id."""
    await conn.execute(
        "INSERT INTO note_mentions (consumer_note, event_id, brand_id) VALUES ($1, $2, $3)",
        payload.note_id,
        event.id,
        event.brandid,
    )


def _consumer(pool, bootstrap, topic, handler=None, **overrides):
    """An inbox consumer of the sample domain's events, quick to join Tansu groups."""
    options = {
        "name": f"g-{uuid.uuid4().hex[:8]}",
        "dsn_or_pool": pool,
        "bootstrap_servers": bootstrap,
        "topics": [topic],
        "registry": sample.REGISTRY,
        "handlers": {"sample.note.changed.v1": handler or _mention},
        "settings": FAST,
        **overrides,
    }
    return InboxConsumer(**options)


async def _run_until(consumer, predicate, timeout=20.0):
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    try:
        async with asyncio.timeout(timeout):
            while not await predicate():
                await asyncio.sleep(0.05)
    finally:
        stop.set()
        await task


async def test_the_same_cloudevent_delivered_twice_has_its_effect_once(
    owner_pool, app_pool, kafka_bootstrap, unique_topic
):
    await create_topics(kafka_bootstrap, unique_topic)
    brand = uuid.uuid4()
    first = _event(brand, "n1", "hello")
    other = _event(brand, "n2", "world")
    await _produce(
        kafka_bootstrap,
        unique_topic,
        [_encoded(first), _encoded(first), _encoded(other), _encoded(first)],
    )
    consumer = _consumer(app_pool, kafka_bootstrap, unique_topic)

    async def done():
        return await owner_pool.fetchval("SELECT count(*) FROM inbox") == 2

    await _run_until(consumer, done)
    rows = await owner_pool.fetch("SELECT consumer_note, event_id FROM note_mentions ORDER BY 1")
    assert [(r["consumer_note"], r["event_id"]) for r in rows] == [
        ("n1", first.id),
        ("n2", other.id),
    ]


async def test_redelivery_after_a_crash_before_the_offset_commit_changes_nothing(
    owner_pool, app_pool, kafka_bootstrap, unique_topic
):
    await create_topics(kafka_bootstrap, unique_topic)
    brand = uuid.uuid4()
    events = [_event(brand, f"n{i}", "t") for i in range(5)]
    await _produce(kafka_bootstrap, unique_topic, [_encoded(e) for e in events])
    group = f"g-{uuid.uuid4().hex[:8]}"
    consumer = _consumer(app_pool, kafka_bootstrap, unique_topic, name=group)

    async def all_seen():
        return await owner_pool.fetchval("SELECT count(*) FROM note_mentions") == 5

    await _run_until(consumer, all_seen)
    # "Effects committed, offset commit lost": the same inbox reads the partition again
    # from the start (a group with no committed offsets) and must change nothing.
    replay = _consumer(
        app_pool, kafka_bootstrap, unique_topic, name=group, group_id=f"{group}-replay"
    )

    async def replayed():
        return replay.stats["duplicate"] == 5

    await _run_until(replay, replayed)
    assert await owner_pool.fetchval("SELECT count(*) FROM note_mentions") == 5
    assert await owner_pool.fetchval("SELECT count(*) FROM inbox") == 5


async def test_a_poison_message_goes_to_the_dlq_and_the_partition_moves_on(
    owner_pool, app_pool, kafka_bootstrap, unique_topic
):
    await create_topics(kafka_bootstrap, unique_topic, dlq_topic(unique_topic))
    brand = uuid.uuid4()
    good_before = _event(brand, "before", "ok")
    good_after = _event(brand, "after", "ok")
    unknown = _event(brand, "x", "x").model_copy(update={"type": "sample.note.unknown.v1"})
    invalid_payload = _event(brand, "y", "y").model_copy(update={"data": {"title": 5}})
    _, _, headers = _encoded(_event(brand, "z", "z"))
    messages = [
        _encoded(good_before),
        (b"z", b"{not json", headers),
        (b"z", b"{}", [("ce_type", b"x")]),  # not a CloudEvent
        _encoded(unknown),
        _encoded(invalid_payload),
        _encoded(good_after),
    ]
    await _produce(kafka_bootstrap, unique_topic, messages)
    beats = Heartbeats()
    consumer = _consumer(app_pool, kafka_bootstrap, unique_topic, heartbeats=beats)

    async def done():
        return await owner_pool.fetchval("SELECT count(*) FROM note_mentions") == 2

    await _run_until(consumer, done)
    dead = await read_until(kafka_bootstrap, dlq_topic(unique_topic), lambda r: len(r) >= 4)
    assert len(dead) == 4
    errors = [dict(r.headers)["dlq_error"].decode() for r in dead]
    assert errors[0].startswith("decode: value is not JSON")
    assert "missing CloudEvents headers" in errors[1]
    assert "unknown event type" in errors[2]
    assert "invalid sample.note.changed.v1 payload" in errors[3]
    assert dict(dead[0].headers)["dlq_original_topic"] == unique_topic.encode()
    assert dead[0].value == b"{not json"
    from prometheus_client import REGISTRY

    labels = {"consumer": consumer.name, "topic": unique_topic}
    assert REGISTRY.get_sample_value("pressroom_dlq_messages_total", labels) == 4
    assert consumer.stats["dead_lettered"] == 4


async def test_a_handler_that_keeps_failing_is_retried_then_dead_lettered(
    owner_pool, app_pool, kafka_bootstrap, unique_topic
):
    await create_topics(kafka_bootstrap, unique_topic, dlq_topic(unique_topic))
    brand = uuid.uuid4()
    events = [_event(brand, name, "t") for name in ("a", "boom", "c")]
    await _produce(kafka_bootstrap, unique_topic, [_encoded(e) for e in events])
    attempts = []

    async def flaky(conn, event, payload):
        if payload.note_id == "boom":
            attempts.append(1)
            raise RuntimeError("receiver exploded")
        await _mention(conn, event, payload)

    consumer = _consumer(
        app_pool,
        kafka_bootstrap,
        unique_topic,
        flaky,
        settings=ConsumerSettings(
            max_attempts=3, retry_backoff=0.01, session_timeout_ms=2000, heartbeat_interval_ms=300
        ),
    )

    async def done():
        return await owner_pool.fetchval("SELECT count(*) FROM note_mentions") == 2

    await _run_until(consumer, done)
    assert len(attempts) >= 3
    dead = await read_until(kafka_bootstrap, dlq_topic(unique_topic), lambda r: len(r) >= 1)
    assert json.loads(dead[0].value)["note_id"] == "boom"
    assert "receiver exploded" in dict(dead[0].headers)["dlq_error"].decode()
    # The failed message left no partial effect and no inbox row.
    assert (
        await owner_pool.fetchval("SELECT count(*) FROM inbox WHERE event_id = $1", events[1].id)
        == 0
    )
