from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from kafka_helpers import create_topics, encoded, produce, read_until
from pressroom_contracts import TOPICS, CloudEvent, dlq_topic
from pressroom_kit.consumer import ConsumerSettings, InboxConsumer
from pressroom_kit.dlq import (
    dead_letter_topics,
    parse_since,
    read_dead_letters,
    replay_dead_letters,
)
from pressroom_kit.testing.sample import domain as sample

FAST = ConsumerSettings(
    max_attempts=2, retry_backoff=0.01, session_timeout_ms=2000, heartbeat_interval_ms=300
)


def _event(brand: uuid.UUID, note_id: str) -> CloudEvent:
    return CloudEvent(
        id=uuid.uuid4(),
        source="/test",
        type="sample.note.changed.v1",
        subject=note_id,
        brandid=brand,
        data={"note_id": note_id, "title": "t"},
    )


_produce, _encoded = produce, encoded


async def _end_offsets(bootstrap, topic):
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await reader.start()
    try:
        await reader.topics()
        partitions = [TopicPartition(topic, p) for p in reader.partitions_for_topic(topic)]
        return {tp.partition: end for tp, end in (await reader.end_offsets(partitions)).items()}
    finally:
        await reader.stop()


async def _until(predicate, timeout=20.0):
    async with asyncio.timeout(timeout):
        while not await predicate():
            await asyncio.sleep(0.05)


@pytest.mark.unit
def test_since_takes_durations_and_iso_times():
    now = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
    assert parse_since("2h", now) == now - timedelta(hours=2)
    assert parse_since("1h30m", now) == now - timedelta(minutes=90)
    assert parse_since("7d", now) == now - timedelta(days=7)
    assert parse_since("45s", now) == now - timedelta(seconds=45)
    assert parse_since("2025-02-28T08:00:00", now) == datetime(2025, 2, 28, 8, tzinfo=UTC)
    assert parse_since("2025-02-28T08:00:00+02:00", now) == datetime(2025, 2, 28, 6, tzinfo=UTC)
    for bad in ("", "yesterday", "2x", "h", "2h tomorrow"):
        with pytest.raises(ValueError):
            parse_since(bad, now)


@pytest.mark.unit
def test_dead_letter_topics_default_to_every_public_topic():
    assert dead_letter_topics() == [dlq_topic(t) for t in TOPICS]
    assert dead_letter_topics(["a.v1", "a.v1.dlq", "b.v1"]) == ["a.v1.dlq", "b.v1.dlq"]


@pytest.mark.integration
async def test_a_dead_letter_replayed_twice_after_the_fix_has_its_effect_once(
    owner_pool, app_pool, kafka_bootstrap, unique_topic
):
    await create_topics(kafka_bootstrap, unique_topic, dlq_topic(unique_topic), partitions=2)
    brand = uuid.uuid4()
    events = [_event(brand, name) for name in ("a", "boom", "c")]
    await _produce(kafka_bootstrap, unique_topic, [_encoded(e) for e in events])
    boom = events[1]
    broken = True

    async def handler(conn, event, payload):
        if broken and payload.note_id == "boom":
            raise RuntimeError("receiver exploded\nsecond line")
        await conn.execute(
            "INSERT INTO note_mentions (consumer_note, event_id, brand_id) VALUES ($1, $2, $3)",
            payload.note_id,
            event.id,
            event.brandid,
        )

    name = f"g-{uuid.uuid4().hex[:8]}"
    consumer = InboxConsumer(
        name=name,
        dsn_or_pool=app_pool,
        bootstrap_servers=kafka_bootstrap,
        topics=[unique_topic],
        registry=sample.REGISTRY,
        handlers={"sample.note.changed.v1": handler},
        settings=FAST,
    )

    async def mentions(note_id):
        return await owner_pool.fetchval(
            "SELECT count(*) FROM note_mentions WHERE consumer_note = $1", note_id
        )

    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    try:

        async def dead_lettered():
            return consumer.stats["dead_lettered"] == 1 and await mentions("c") == 1

        await _until(dead_lettered)
        began = time.monotonic()
        letters = await read_dead_letters(kafka_bootstrap, topics=[unique_topic], consumers={name})
        read_took = time.monotonic() - began
        assert [letter.event_id for letter in letters] == [boom.id]
        letter = letters[0]
        assert letter.event_type == "sample.note.changed.v1"
        assert letter.consumer == name
        assert letter.error.startswith("handler: RuntimeError('receiver exploded")
        assert letter.original_topic == unique_topic
        assert json.loads(letter.value_text())["note_id"] == "boom"
        # Filters: another consumer, a later --since, another id all find nothing.
        assert (
            await read_dead_letters(kafka_bootstrap, topics=[unique_topic], consumers={"x"}) == []
        )
        assert (
            await read_dead_letters(
                kafka_bootstrap,
                topics=[unique_topic],
                since=datetime.now(UTC) + timedelta(minutes=1),
            )
            == []
        )
        assert (
            await read_dead_letters(kafka_bootstrap, topics=[unique_topic], event_id=uuid.uuid4())
            == []
        )
        assert await read_dead_letters(
            kafka_bootstrap, topics=[unique_topic], since=parse_since("1h")
        )

        dry = await replay_dead_letters(kafka_bootstrap, letters, dry_run=True)
        assert [(r.sent, r.skipped) for r in dry] == [(False, "dry run")]

        broken = False  # the handler is fixed
        first = await replay_dead_letters(kafka_bootstrap, letters)
        assert [(r.sent, r.partition) for r in first] == [(True, letter.original_partition)]

        async def applied():
            return await mentions("boom") == 1

        await _until(applied)
        second = await replay_dead_letters(kafka_bootstrap, letters + letters)
        assert [r.sent for r in second] == [True]  # one send per event id

        async def deduplicated():
            return consumer.stats["duplicate"] >= 1

        await _until(deduplicated)
    finally:
        stop.set()
        await task
    assert await mentions("boom") == 1
    assert await owner_pool.fetchval("SELECT count(*) FROM note_mentions") == 3
    assert await owner_pool.fetchval("SELECT count(*) FROM inbox WHERE event_id = $1", boom.id) == 1
    assert consumer.stats["dead_lettered"] == 1  # nothing failed again
    assert read_took < 5, f"reading the DLQ took {read_took:.1f}s"
    # The replayed messages are the original one: same key, value and ce_id, no dlq_* headers.
    records = await read_until(kafka_bootstrap, unique_topic, lambda r: len(r) >= 5)
    replayed = [r for r in records if dict(r.headers)["ce_id"] == str(boom.id).encode()]
    assert len(replayed) == 3
    at = (letter.original_partition, letter.original_offset)
    original = next(r for r in replayed if (r.partition, r.offset) == at)
    for record in replayed:
        assert record.key == original.key and record.value == original.value
        assert record.headers == original.headers
        assert not any(name.startswith("dlq_") for name, _ in record.headers)


@pytest.mark.integration
async def test_entries_that_are_not_cloudevents_are_listed_but_never_replayed(
    kafka_bootstrap, unique_topic
):
    dead = dlq_topic(unique_topic)
    await create_topics(kafka_bootstrap, unique_topic, dead)
    notes = [
        ("dlq_error", b"decode: value is not JSON"),
        ("dlq_consumer", b"svc"),
        ("dlq_original_topic", unique_topic.encode()),
        ("dlq_original_partition", b"0"),
        ("dlq_original_offset", b"7"),
        ("dlq_failed_at", str(time.time()).encode()),
    ]
    await _produce(kafka_bootstrap, dead, [(b"k", b"{not json", [("ce_type", b"x"), *notes])])
    letters = await read_dead_letters(kafka_bootstrap, topics=[unique_topic], consumers={"svc"})
    assert [(letter.event_id, letter.original_offset) for letter in letters] == [(None, 7)]
    assert letters[0].value_text() == "{not json"
    outcomes = await replay_dead_letters(kafka_bootstrap, letters)
    assert [r.sent for r in outcomes] == [False]
    assert "ce_id" in (outcomes[0].skipped or "")
    assert await _end_offsets(kafka_bootstrap, unique_topic) == {0: 0}


@pytest.mark.integration
async def test_reading_dlqs_that_do_not_exist_finds_nothing(kafka_bootstrap, unique_topic):
    assert await read_dead_letters(kafka_bootstrap, topics=[unique_topic]) == []


def _dead_letter_message(consumer, topic, offset):
    headers = [
        ("ce_id", str(uuid.uuid4()).encode()),
        ("ce_type", b"sample.note.changed.v1"),
        ("dlq_error", b"handler: boom"),
        ("dlq_consumer", consumer.encode()),
        ("dlq_original_topic", topic.encode()),
        ("dlq_original_partition", b"0"),
        ("dlq_original_offset", str(offset).encode()),
        ("dlq_failed_at", str(time.time()).encode()),
    ]
    return str(offset).encode(), b'{"note_id":"n","title":"t"}', headers


@pytest.mark.integration
async def test_a_read_finds_every_entry_written_in_batches_and_ends_while_writes_go_on(
    kafka_bootstrap, unique_topic
):
    dead = dlq_topic(unique_topic)
    await create_topics(kafka_bootstrap, unique_topic, dead, partitions=2)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, linger_ms=20)
    await producer.start()
    try:
        # One produce request with many records: Tansu then under-reports the end offset.
        sent = []
        for i in range(300):
            key, value, headers = _dead_letter_message("svc", unique_topic, i)
            sent.append(
                await producer.send(dead, value=value, key=key, headers=headers, partition=i % 2)
            )
        await asyncio.gather(*sent)
        stop = asyncio.Event()

        async def keep_writing():
            offset = 1000
            while not stop.is_set():
                key, value, headers = _dead_letter_message("svc", unique_topic, offset)
                await producer.send_and_wait(dead, value=value, key=key, headers=headers)
                offset += 1

        writer = asyncio.create_task(keep_writing())
        try:
            began = time.monotonic()
            letters = await read_dead_letters(
                kafka_bootstrap, topics=[unique_topic], max_seconds=10
            )
            took = time.monotonic() - began
        finally:
            stop.set()
            await writer
    finally:
        await producer.stop()
    assert {letter.original_offset for letter in letters} >= set(range(300))
    assert took < 5, f"the read took {took:.1f}s"


@pytest.mark.integration
async def test_without_topics_a_read_covers_every_public_dlq(kafka_bootstrap):
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import TopicAlreadyExistsError

    dead = dlq_topic(TOPICS[-1])
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        if dead not in set(await admin.list_topics()):
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics([NewTopic(dead, 1, 1)])
    finally:
        await admin.close()
    consumer = f"svc-{uuid.uuid4().hex[:8]}"  # the broker is shared: filter on a fresh name
    await _produce(kafka_bootstrap, dead, [_dead_letter_message(consumer, TOPICS[-1], 3)])
    letters = await read_dead_letters(kafka_bootstrap, consumers={consumer})
    assert [(letter.topic, letter.original_offset) for letter in letters] == [(dead, 3)]
