"""The writers' lock covers only a transaction's last statement.

A consumer batch runs several handlers in one transaction and a handler may save several
aggregates; none of that may hold the lock that every HTTP write of the service needs, or a
command waiting for it while holding a row the batch needs next deadlocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid

import asyncpg
import pytest
from kafka_helpers import create_topics
from pressroom_contracts import CloudEvent
from pressroom_kit import cloudevents, eventstore
from pressroom_kit.consumer import ConsumerSettings, InboxConsumer
from pressroom_kit.db import tenant_transaction
from pressroom_kit.errors import ConcurrencyError
from pressroom_kit.eventstore import NewEvent
from pressroom_kit.testing.sample import domain as sample

pytestmark = pytest.mark.integration

FAST = ConsumerSettings(session_timeout_ms=2000, heartbeat_interval_ms=300)


async def _write_notes(pool: asyncpg.Pool, repo, brand: uuid.UUID, *ids: str) -> None:
    async with tenant_transaction(pool, brand) as conn:
        for note_id in ids:
            await repo.save(conn, sample.Note.write(note_id, brand, "v0"), brand_id=brand)


async def _rename(conn: asyncpg.Connection, repo, brand: uuid.UUID, note_id: str, title: str):
    note = await repo.load(conn, note_id)
    assert note is not None
    note.rename(title)
    await repo.save(conn, note, brand_id=brand)


async def _blocked_or_done(pool: asyncpg.Pool, task: asyncio.Task, pid: int | None) -> None:
    """Until ``task`` finished or its backend ``pid`` waits for a lock."""
    async with asyncio.timeout(5):
        while not task.done():
            if pid is not None and await pool.fetchval(
                "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1", pid
            ):
                return
            await asyncio.sleep(0.01)


def _consumer(pool: asyncpg.Pool, bootstrap: str, topic: str, handler) -> InboxConsumer:
    return InboxConsumer(
        name=f"g-{uuid.uuid4().hex[:8]}",
        dsn_or_pool=pool,
        bootstrap_servers=bootstrap,
        topics=[topic],
        registry=sample.REGISTRY,
        handlers={"sample.note.changed.v1": handler},
        settings=FAST,
    )


def _change(brand: uuid.UUID, note_id: str, title: str) -> CloudEvent:
    return CloudEvent(
        id=uuid.uuid4(),
        source="/test",
        type="sample.note.changed.v1",
        subject=note_id,
        brandid=brand,
        data={"note_id": note_id, "title": title},
    )


async def _produce(bootstrap: str, topic: str, events: list[CloudEvent]) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        for event in events:
            await producer.send_and_wait(
                topic,
                key=b"one-partition",
                value=cloudevents.encode_value(event),
                headers=cloudevents.kafka_headers(cloudevents.to_headers(event)),
            )
    finally:
        await producer.stop()


async def test_a_batch_of_two_handlers_does_not_deadlock_with_a_command(
    app_pool, owner_pool, kafka_bootstrap, unique_topic
):
    """Handler 1 saves note A; a command then edits note B (its projection locks B's row)
    and commits; handler 2 edits note B. With the lock taken at handler 1's save, the
    command waited for the lock while holding B, handler 2 waited for B: a deadlock."""
    await create_topics(kafka_bootstrap, unique_topic)
    repo = sample.repository(unique_topic)
    brand = uuid.uuid4()
    await _write_notes(app_pool, repo, brand, "a", "b")
    first_saved, go_on = asyncio.Event(), asyncio.Event()

    async def handler(conn, event, payload):
        await _rename(conn, repo, brand, payload.note_id, payload.title)
        if payload.note_id == "a":
            first_saved.set()
            await go_on.wait()

    await _produce(
        kafka_bootstrap, unique_topic, [_change(brand, "a", "c1"), _change(brand, "b", "c2")]
    )
    consumer = _consumer(app_pool, kafka_bootstrap, unique_topic, handler)
    stop = asyncio.Event()
    consuming = asyncio.create_task(consumer.run(stop))
    try:
        async with asyncio.timeout(20):
            await first_saved.wait()
        pid: list[int] = []

        async def command() -> float:
            started = time.monotonic()
            async with tenant_transaction(app_pool, brand) as conn:
                pid.append(await conn.fetchval("SELECT pg_backend_pid()"))
                await _rename(conn, repo, brand, "b", "from-http")
            return time.monotonic() - started

        http = asyncio.create_task(command())
        while not pid:
            await asyncio.sleep(0.005)
        await _blocked_or_done(owner_pool, http, pid[0])
        go_on.set()
        took = await http  # raised DeadlockDetectedError before
        async with asyncio.timeout(20):
            while await owner_pool.fetchval("SELECT count(*) FROM inbox") < 2:
                await asyncio.sleep(0.05)
    finally:
        stop.set()
        await consuming
    assert took < 1.0
    assert consumer.stats["dead_lettered"] == 0
    rows = await owner_pool.fetch("SELECT id, title, edits FROM notes ORDER BY id")
    assert [tuple(r) for r in rows] == [("a", "c1", 1), ("b", "c2", 2)]
    versions = await owner_pool.fetch(
        "SELECT stream_id, array_agg(version ORDER BY version) AS v FROM events GROUP BY 1"
    )
    assert {r["stream_id"]: r["v"] for r in versions} == {"a": [1, 2], "b": [1, 2, 3]}


async def test_a_write_during_a_long_batch_is_not_delayed_by_it(app_pool, unique_topic):
    repo = sample.repository(unique_topic)
    brand = uuid.uuid4()
    await _write_notes(app_pool, repo, brand, "slow")
    saved = asyncio.Event()

    async def long_batch() -> None:
        async with tenant_transaction(app_pool, brand) as conn:
            await _rename(conn, repo, brand, "slow", "renamed")
            saved.set()
            await asyncio.sleep(1.0)  # more handlers of the batch, after a save

    batch = asyncio.create_task(long_batch())
    await saved.wait()
    started = time.monotonic()
    await _write_notes(app_pool, repo, brand, "quick")
    took = time.monotonic() - started
    await batch
    assert took < 0.3, f"a write waited {took:.2f} s for a batch it has nothing to do with"


async def test_staged_appends_are_visible_to_loads_in_the_same_transaction(app_pool):
    repo = sample.repository("t")
    brand = uuid.uuid4()
    async with tenant_transaction(app_pool, brand) as conn:
        await repo.save(conn, sample.Note.write("n", brand, "one"), brand_id=brand)
        await _rename(conn, repo, brand, "n", "two")
        await _rename(conn, repo, brand, "n", "three")
        assert await eventstore.current_version(conn, "n") == 3
    events = await eventstore.load_stream(app_pool, "n")
    assert [(e.version, e.data["title"]) for e in events] == [(1, "one"), (2, "two"), (3, "three")]
    assert [e.global_position for e in events] == sorted(e.global_position for e in events)


async def test_a_staged_append_that_lost_the_race_fails_the_commit_and_writes_nothing(
    app_pool, owner_pool
):
    repo = sample.repository("t")
    brand = uuid.uuid4()
    await _write_notes(app_pool, repo, brand, "n")
    loaded = asyncio.Event()
    rival_done = asyncio.Event()

    async def loser() -> None:
        async with tenant_transaction(app_pool, brand) as conn:
            note = await repo.load(conn, "n")
            loaded.set()
            await rival_done.wait()
            note.rename("late")
            await sample.repository("t").save(conn, note, brand_id=brand)
            await conn.execute(
                "INSERT INTO note_mentions VALUES ('n', $1, $2)", uuid.uuid4(), brand
            )

    task = asyncio.create_task(loser())
    await loaded.wait()
    async with tenant_transaction(app_pool, brand) as conn:
        await _rename(conn, repo, brand, "n", "first")
    rival_done.set()
    with pytest.raises(ConcurrencyError):
        await task
    assert await owner_pool.fetchval("SELECT title FROM notes WHERE id = 'n'") == "first"
    assert await owner_pool.fetchval("SELECT count(*) FROM note_mentions") == 0
    assert await owner_pool.fetchval("SELECT max(version) FROM events WHERE stream_id='n'") == 2


async def test_one_statement_writes_many_streams_and_outbox_rows_in_commit_order(app_pool):
    async with app_pool.acquire() as conn, conn.transaction():
        async with eventstore.deferred_writes(conn) as pending:
            for i in range(3):
                await eventstore.append(
                    conn,
                    stream_id=f"s{i}",
                    stream_type="note",
                    expected_version=0,
                    events=[NewEvent("NoteRenamed", {"title": str(i)})],
                )
            assert pending and await conn.fetchval("SELECT count(*) FROM events") == 0
        assert await conn.fetchval("SELECT count(*) FROM events") == 3
    positions = [e.global_position async for b in eventstore.read_all(app_pool) for e in b]
    assert len(positions) == 3 and positions == sorted(positions)


async def test_a_nested_kit_transaction_on_the_same_connection_is_refused(app_pool):
    async with app_pool.acquire() as conn, eventstore.writes_transaction(conn):
        with pytest.raises(RuntimeError, match="already in a transaction"):
            async with eventstore.writes_transaction(conn):
                pass


async def test_a_save_on_the_outer_connection_inside_an_inner_transaction_is_staged(
    app_pool, owner_pool
):
    """Before, the inner transaction hid the outer one: the outer save wrote at once, took the
    writers' lock until the outer commit, and the inner commit waited for it forever."""
    repo = sample.repository("t")
    brand = uuid.uuid4()
    async with (
        asyncio.timeout(10),
        tenant_transaction(app_pool, brand) as outer,
        tenant_transaction(app_pool, brand) as inner,
    ):
        await repo.save(outer, sample.Note.write("outer", brand, "o"), brand_id=brand)
        await repo.save(inner, sample.Note.write("inner", brand, "i"), brand_id=brand)
    rows = await owner_pool.fetch("SELECT stream_id FROM events ORDER BY global_position")
    assert [r["stream_id"] for r in rows] == ["inner", "outer"]


async def test_a_commit_after_a_swallowed_error_says_it_rolled_back(app_pool):
    brand = uuid.uuid4()

    async def swallow() -> None:
        async with tenant_transaction(app_pool, brand) as conn:
            await sample.repository("t").save(
                conn, sample.Note.write("lost", brand, "t"), brand_id=brand
            )
            with contextlib.suppress(asyncpg.PostgresError):
                await conn.execute("SELECT 1/0")

    with pytest.raises(eventstore.TransactionAborted):
        await swallow()


async def test_an_event_the_commit_refuses_is_dead_lettered_and_the_rest_flows(
    app_pool, owner_pool, kafka_bootstrap, unique_topic
):
    """The staged rows reach the server at the commit, outside any one handler: a refusal
    there (here NaN, which jsonb does not take) must shrink the batch down to the bad message
    and dead-letter it, not crash the consumer on every restart."""
    await create_topics(kafka_bootstrap, unique_topic, f"{unique_topic}.dlq")
    brand = uuid.uuid4()

    async def handler(conn, event, payload):
        note = sample.Note.write(payload.note_id, brand, payload.title)
        await eventstore.append(
            conn,
            stream_id=f"x-{payload.note_id}",
            stream_type="note",
            expected_version=0,
            events=[NewEvent("Scored", {"score": float("nan") if payload.title == "bad" else 1})],
        )
        await sample.repository(unique_topic).save(conn, note, brand_id=brand)

    events = [_change(brand, f"n{i}", "bad" if i == 1 else "ok") for i in range(3)]
    await _produce(kafka_bootstrap, unique_topic, events)
    consumer = _consumer(app_pool, kafka_bootstrap, unique_topic, handler)
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    try:
        async with asyncio.timeout(30):
            while consumer.stats["dead_lettered"] < 1 or (
                await owner_pool.fetchval("SELECT count(*) FROM notes") < 2
            ):
                await asyncio.sleep(0.05)
    finally:
        stop.set()
        await task
    assert consumer.stats["dead_lettered"] == 1
    assert consumer.stats["restarts"] == 0
    notes = await owner_pool.fetch("SELECT id FROM notes ORDER BY id")
    assert [r["id"] for r in notes] == ["n0", "n2"]


async def test_an_id_of_another_kind_of_aggregate_is_not_found_rather_than_a_crash(app_pool):
    """A client may name any id: a repository of another aggregate type finds nothing there
    (not a ``KeyError`` replaying events it does not know, which reached a 500)."""
    from pressroom_kit.repository import Repository

    class Other(sample.Note):
        stream_type = "other"

    brand = uuid.uuid4()
    note_id = f"n-{uuid.uuid4().hex[:8]}"
    await _write_notes(app_pool, sample.repository("t"), brand, note_id)
    others = Repository(Other, source="/test")
    async with tenant_transaction(app_pool, brand) as conn:
        assert await others.load(conn, note_id) is None
        assert await sample.repository("t").load(conn, note_id) is not None
