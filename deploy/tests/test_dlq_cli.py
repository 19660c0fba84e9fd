"""``pressroom dlq list|show|replay`` against a real consumer, database and broker."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from pressroom_contracts import CloudEvent, dlq_topic
from pressroom_deploy.cli import main
from pressroom_kit import cloudevents
from pressroom_kit.consumer import ConsumerSettings, InboxConsumer
from pressroom_kit.db import apply_migrations, connect, create_pool, grant_runtime_role
from pressroom_kit.testing.plugin import APP_ROLE
from pressroom_kit.testing.sample import domain as sample

pytestmark = pytest.mark.integration


@pytest.fixture
async def pools(fresh_db):
    conn = await connect(fresh_db.owner_dsn)
    try:
        await apply_migrations(conn, [sample.MIGRATIONS])
        await grant_runtime_role(conn, APP_ROLE)
    finally:
        await conn.close()
    app = await create_pool(fresh_db.app_dsn, max_size=5)
    owner = await create_pool(fresh_db.owner_dsn, max_size=2)
    yield app, owner
    await app.close()
    await owner.close()


async def _create_topics(bootstrap, *topics):
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(t, 1, 1) for t in topics])
    finally:
        await admin.close()


async def _produce(bootstrap, topic, events):
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        for event in events:
            await producer.send_and_wait(
                topic,
                value=cloudevents.encode_value(event),
                key=event.subject.encode(),
                headers=cloudevents.kafka_headers(cloudevents.to_headers(event)),
            )
    finally:
        await producer.stop()


async def _end_offset(bootstrap, topic):
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await reader.start()
    try:
        tp = TopicPartition(topic, 0)
        return (await reader.end_offsets([tp]))[tp]
    finally:
        await reader.stop()


async def _until(predicate, timeout=20.0):
    async with asyncio.timeout(timeout):
        while not await predicate():
            await asyncio.sleep(0.05)


async def _pressroom(capsys, *argv):
    """Run ``pressroom <argv>`` as a user would; its exit status, stdout and stderr."""
    with pytest.raises(SystemExit) as exited:
        await asyncio.to_thread(main, list(argv))
    captured = capsys.readouterr()
    return exited.value.code, captured.out, captured.err


async def test_pressroom_dlq_lists_shows_and_replays_a_dead_letter_once(
    pools, kafka_bootstrap, unique_topic, capsys
):
    app_pool, owner_pool = pools
    await _create_topics(kafka_bootstrap, unique_topic, dlq_topic(unique_topic))
    brand = uuid.uuid4()
    events = [
        CloudEvent(
            id=uuid.uuid4(),
            source="/test",
            type="sample.note.changed.v1",
            subject=note,
            brandid=brand,
            data={"note_id": note, "title": "t"},
        )
        for note in ("a", "boom")
    ]
    boom = events[1]
    broken = True

    async def handler(conn, event, payload):
        if broken and payload.note_id == "boom":
            raise RuntimeError("receiver exploded: " + "x" * 80 + " END")
        await conn.execute(
            "INSERT INTO note_mentions (consumer_note, event_id, brand_id) VALUES ($1, $2, $3)",
            payload.note_id,
            event.id,
            event.brandid,
        )

    service = f"t{uuid.uuid4().hex[:8]}"
    consumer = InboxConsumer(
        name=f"pressroom-{service}",  # how services name their consumers
        dsn_or_pool=app_pool,
        bootstrap_servers=kafka_bootstrap,
        topics=[unique_topic],
        registry=sample.REGISTRY,
        handlers={"sample.note.changed.v1": handler},
        settings=ConsumerSettings(
            max_attempts=2, retry_backoff=0.01, session_timeout_ms=2000, heartbeat_interval_ms=300
        ),
    )

    async def booms():
        return await owner_pool.fetchval(
            "SELECT count(*) FROM note_mentions WHERE consumer_note = 'boom'"
        )

    common = ["--topic", unique_topic, "--bootstrap", kafka_bootstrap]
    await _produce(kafka_bootstrap, unique_topic, events)
    stop = asyncio.Event()
    # The consumer's log lines would mix with the command's output: capture them apart.
    logs = structlog.testing.capture_logs()
    logs.__enter__()
    task = asyncio.create_task(consumer.run(stop))
    try:

        async def dead_lettered():
            return consumer.stats["dead_lettered"] == 1

        await _until(dead_lettered)

        code, out, _ = await _pressroom(capsys, "dlq", "list", service, *common)
        assert code == 0, out
        header, row, total = out.splitlines()
        assert header.split() == ["ID", "TYPE", "ORIGINAL", "FAILED", "AT", "ERROR"]
        assert row.startswith(str(boom.id))
        assert "sample.note.changed.v1" in row and f"{unique_topic}[0]@1" in row
        assert "receiver exploded" in row and row.endswith("…") and "END" not in row
        assert total == "1 dead letter"

        code, out, _ = await _pressroom(capsys, "dlq", "list", "nobody", *common)
        assert (code, out.strip()) == (0, "no dead letters of nobody / pressroom-nobody match")

        code, out, _ = await _pressroom(
            capsys, "dlq", "show", service, "--id", str(boom.id), *common
        )
        assert code == 0, out
        assert f"dead letter {dlq_topic(unique_topic)}[0]@0" in out
        assert f"ce_id: {boom.id}" in out and f"dlq_consumer: pressroom-{service}" in out
        assert "END" in out  # the whole error
        value = out.split("\nvalue\n", 1)[1]
        assert json.loads(value) == {"note_id": "boom", "title": "t"}

        code, _, _ = await _pressroom(
            capsys, "dlq", "show", service, "--id", str(uuid.uuid4()), *common
        )
        assert code == 1

        code, out, _ = await _pressroom(capsys, "dlq", "replay", service, "--dry-run", *common)
        assert code == 0, out
        assert f"would replay {boom.id}" in out and "nothing sent" in out
        assert await _end_offset(kafka_bootstrap, unique_topic) == 2

        broken = False  # the handler is fixed
        code, out, _ = await _pressroom(
            capsys, "dlq", "replay", service, "--id", str(boom.id), "--since", "1h", *common
        )
        assert code == 0, out
        assert f"replayed {boom.id} (sample.note.changed.v1) to {unique_topic}[0]@2" in out

        async def applied():
            return await booms() == 1

        await _until(applied)

        code, out, _ = await _pressroom(capsys, "dlq", "replay", service, *common)  # again
        assert code == 0, out
        assert f"replayed {boom.id}" in out and "1 of 1 replayed" in out

        async def deduplicated():
            return consumer.stats["duplicate"] >= 1

        await _until(deduplicated)
    finally:
        stop.set()
        await task
        logs.__exit__(None, None, None)
    assert await booms() == 1
    assert await owner_pool.fetchval("SELECT count(*) FROM inbox") == 2
    assert consumer.stats["dead_lettered"] == 1


async def test_pressroom_dlq_reports_an_unreachable_broker_without_a_traceback(capsys):
    from pressroom_kit.embedded import free_port

    code, _, err = await _pressroom(
        capsys, "dlq", "list", "media", "--bootstrap", f"127.0.0.1:{free_port()}"
    )
    assert code == 1
    assert err.startswith("cannot read the dead-letter topics") and "Traceback" not in err
