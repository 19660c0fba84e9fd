"""Staged writes follow savepoints: what a rolled-back savepoint undid is not committed.

Appends and outbox rows are staged in the client until the commit writes them, so a save
inside a savepoint that is rolled back must leave neither its projection (the database
undoes that) nor its event and outbox rows (``eventstore.savepoint`` drops them from the
staging) — and a save inside a savepoint that is kept must leave all three.
"""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest
from kafka_helpers import create_topics, encoded, produce, read_until
from pressroom_contracts import CloudEvent, dlq_topic
from pressroom_kit import eventstore
from pressroom_kit.consumer import ConsumerSettings, InboxConsumer
from pressroom_kit.db import tenant_transaction
from pressroom_kit.outbox import OutboxMessage, write_outbox
from pressroom_kit.projections import Projection, Projector
from pressroom_kit.repository import Repository
from pressroom_kit.testing.sample import domain as sample

pytestmark = pytest.mark.integration


class Undo(Exception):
    """Raised inside a block to roll its savepoint back."""


async def _left(owner_pool: asyncpg.Pool, note_id: str) -> tuple[int, int, int]:
    """(events, outbox rows, projection rows) committed for ``note_id``."""
    events = await owner_pool.fetchval("SELECT count(*) FROM events WHERE stream_id = $1", note_id)
    outbox = await owner_pool.fetchval("SELECT count(*) FROM outbox WHERE key = $1", note_id)
    notes = await owner_pool.fetchval("SELECT count(*) FROM notes WHERE id = $1", note_id)
    return events, outbox, notes


def _ids(prefix: str, *names: str) -> list[str]:
    tag = uuid.uuid4().hex[:8]
    return [f"{prefix}-{tag}-{n}" for n in names]


async def test_a_save_in_a_rolled_back_savepoint_leaves_nothing_and_one_kept_leaves_all(
    app_pool, owner_pool
):
    brand = uuid.uuid4()
    repo = sample.repository("t")
    before, undone, kept = _ids("sp", "before", "undone", "kept")
    async with tenant_transaction(app_pool, brand) as conn:
        await repo.save(conn, sample.Note.write(before, brand, "b"), brand_id=brand)

        async def rolled_back() -> None:
            async with eventstore.savepoint(conn):
                await repo.save(conn, sample.Note.write(undone, brand, "u"), brand_id=brand)
                assert await conn.fetchval("SELECT count(*) FROM notes WHERE id = $1", undone)
                raise Undo

        with pytest.raises(Undo):
            await rolled_back()
        # Inside the transaction too, the rolled-back save is gone: no projection, and its
        # stream is new again, so the same note can be written once more.
        assert await conn.fetchval("SELECT count(*) FROM notes WHERE id = $1", undone) == 0
        assert await eventstore.current_version(conn, undone) == 0
        async with eventstore.savepoint(conn):
            await repo.save(conn, sample.Note.write(kept, brand, "k"), brand_id=brand)
    assert await _left(owner_pool, before) == (1, 1, 1)
    assert await _left(owner_pool, undone) == (0, 0, 0)
    assert await _left(owner_pool, kept) == (1, 1, 1)


async def test_a_rolled_back_savepoint_restores_a_streams_staged_head(app_pool, owner_pool):
    """A rename staged inside the savepoint is dropped, and the stream's staged version goes
    back to what it was, so the next rename chains on the write before the savepoint."""
    brand = uuid.uuid4()
    repo = sample.repository("t")
    (note_id,) = _ids("sp", "head")
    async with tenant_transaction(app_pool, brand) as conn:
        note = sample.Note.write(note_id, brand, "v1")
        await repo.save(conn, note, brand_id=brand)

        async def rolled_back() -> None:
            async with eventstore.savepoint(conn):
                loaded = await repo.load(conn, note_id)
                assert loaded is not None
                loaded.rename("lost")
                await repo.save(conn, loaded, brand_id=brand)
                raise Undo

        with pytest.raises(Undo):
            await rolled_back()
        loaded = await repo.load(conn, note_id)
        assert loaded is not None and loaded.version == 1
        loaded.rename("v2")
        await repo.save(conn, loaded, brand_id=brand)
    titles = await owner_pool.fetch(
        "SELECT version, data->>'title' AS title FROM events WHERE stream_id = $1 ORDER BY 1",
        note_id,
    )
    assert [(r["version"], r["title"]) for r in titles] == [(1, "v1"), (2, "v2")]
    assert await owner_pool.fetchval("SELECT title FROM notes WHERE id = $1", note_id) == "v2"


async def test_nested_two_levels_rolling_back_the_inner_keeps_the_outer(app_pool, owner_pool):
    brand = uuid.uuid4()
    repo = sample.repository("t")
    outer, inner = _ids("nest", "outer", "inner")
    async with tenant_transaction(app_pool, brand) as conn, eventstore.savepoint(conn):
        await repo.save(conn, sample.Note.write(outer, brand, "o"), brand_id=brand)

        async def rolled_back() -> None:
            async with eventstore.savepoint(conn):
                await repo.save(conn, sample.Note.write(inner, brand, "i"), brand_id=brand)
                raise Undo

        with pytest.raises(Undo):
            await rolled_back()
    assert await _left(owner_pool, outer) == (1, 1, 1)
    assert await _left(owner_pool, inner) == (0, 0, 0)


async def test_nested_two_levels_rolling_back_the_outer_drops_the_kept_inner(app_pool, owner_pool):
    brand = uuid.uuid4()
    repo = sample.repository("t")
    before, outer, inner = _ids("nest", "before", "outer", "inner")
    async with tenant_transaction(app_pool, brand) as conn:
        await repo.save(conn, sample.Note.write(before, brand, "b"), brand_id=brand)

        async def rolled_back() -> None:
            async with eventstore.savepoint(conn):
                await repo.save(conn, sample.Note.write(outer, brand, "o"), brand_id=brand)
                async with eventstore.savepoint(conn):
                    await repo.save(conn, sample.Note.write(inner, brand, "i"), brand_id=brand)
                raise Undo

        with pytest.raises(Undo):
            await rolled_back()
    assert await _left(owner_pool, before) == (1, 1, 1)
    assert await _left(owner_pool, outer) == (0, 0, 0)
    assert await _left(owner_pool, inner) == (0, 0, 0)


async def test_a_flush_inside_a_rolled_back_savepoint_stages_what_came_before_again(
    app_pool, owner_pool
):
    """A flush inside the savepoint wrote the rows staged before it, and the rollback
    undid that write: those rows are staged again (and committed), the block's are not."""
    brand = uuid.uuid4()
    repo = sample.repository("t")
    before, inside = _ids("flush", "before", "inside")
    message = OutboxMessage(
        topic="t",
        key=f"{before}-announce",
        event=CloudEvent(source="/test", type="sample.note.changed.v1", data={"x": 1}),
    )
    async with tenant_transaction(app_pool, brand) as conn:
        await repo.save(conn, sample.Note.write(before, brand, "b"), brand_id=brand)
        await write_outbox(conn, [message])
        pending = eventstore.pending_writes(conn)
        assert pending is not None

        async def rolled_back() -> None:
            async with eventstore.savepoint(conn):
                await repo.save(conn, sample.Note.write(inside, brand, "i"), brand_id=brand)
                await pending.flush()
                assert await conn.fetchval(
                    "SELECT count(*) FROM events WHERE stream_id = $1", inside
                )
                raise Undo

        with pytest.raises(Undo):
            await rolled_back()
    assert await _left(owner_pool, before) == (1, 1, 1)
    assert (
        await owner_pool.fetchval(
            "SELECT count(*) FROM outbox WHERE key = $1", f"{before}-announce"
        )
        == 1
    )
    assert await _left(owner_pool, inside) == (0, 0, 0)


async def test_savepoint_outside_a_transaction_is_refused_and_asyncpg_nesting_cannot_open(
    app_pool,
):
    """The rule in ``shared/README.md`` rests on this: inside a kit transaction the only
    savepoints are SQL ones, since asyncpg refuses ``conn.transaction()`` there."""
    async with app_pool.acquire() as conn:
        with pytest.raises(RuntimeError, match="inside a transaction"):
            async with eventstore.savepoint(conn):
                pass
    async with tenant_transaction(app_pool, uuid.uuid4()) as conn:
        with pytest.raises(asyncpg.InterfaceError, match="manually started transaction"):
            async with conn.transaction():
                pass


async def test_a_failing_handler_in_a_consumer_batch_leaves_nothing_it_saved(
    owner_pool, app_pool, kafka_bootstrap, unique_topic
):
    """The consumer isolates a failed handler by rolling the whole batch back and applying
    the others again without it: the failed handler's save (event, outbox row, projection)
    is gone with its transaction's staging, and the good messages' saves are committed."""
    await create_topics(kafka_bootstrap, unique_topic, dlq_topic(unique_topic))
    brand = uuid.uuid4()
    repo = sample.repository(f"{unique_topic}-out")
    tag = uuid.uuid4().hex[:8]
    names = [f"{tag}-a", f"{tag}-boom", f"{tag}-c"]
    events = [
        CloudEvent(
            source="/test",
            type="sample.note.changed.v1",
            subject=name,
            brandid=brand,
            data={"note_id": name, "title": "t"},
        )
        for name in names
    ]
    await produce(kafka_bootstrap, unique_topic, [encoded(e) for e in events])

    async def save_then_maybe_fail(conn, event, payload):
        await repo.save(conn, sample.Note.write(payload.note_id, brand, "t"), brand_id=brand)
        if payload.note_id.endswith("-boom"):
            raise RuntimeError("after the save")

    consumer = InboxConsumer(
        name=f"g-{tag}",
        dsn_or_pool=app_pool,
        bootstrap_servers=kafka_bootstrap,
        topics=[unique_topic],
        registry=sample.REGISTRY,
        handlers={"sample.note.changed.v1": save_then_maybe_fail},
        settings=ConsumerSettings(
            max_attempts=2, retry_backoff=0.01, session_timeout_ms=2000, heartbeat_interval_ms=300
        ),
    )
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    try:
        dead = await read_until(kafka_bootstrap, dlq_topic(unique_topic), lambda r: len(r) >= 1)
        async with asyncio.timeout(20):
            while (await _left(owner_pool, names[2]))[0] == 0:
                await asyncio.sleep(0.05)
    finally:
        stop.set()
        await task
    assert "after the save" in dict(dead[0].headers)["dlq_error"].decode()
    assert await _left(owner_pool, names[0]) == (1, 1, 1)
    assert await _left(owner_pool, names[1]) == (0, 0, 0)
    assert await _left(owner_pool, names[2]) == (1, 1, 1)


async def test_a_failed_projection_takes_what_it_staged_and_wrote_with_it(app_pool, owner_pool):
    """``Repository.save``'s projection savepoint follows the same rule: a projection that
    wrote a row and staged an outbox row, then failed, leaves neither behind for a caller
    that catches the error and commits."""
    brand = uuid.uuid4()
    (note_id,) = _ids("proj", "broken")
    announce = f"{note_id}-announce"

    async def broken(conn: asyncpg.Connection, event: eventstore.RecordedEvent) -> None:
        await conn.execute(
            "INSERT INTO notes (id, brand_id, title, updated_at) VALUES ($1, $2, 'x', now())",
            event.stream_id,
            event.brand_id,
        )
        message = CloudEvent(source="/test", type="sample.note.changed.v1", data={"x": 1})
        await write_outbox(conn, [OutboxMessage(topic="t", key=announce, event=message)])
        raise ValueError("projection bug")

    repo = Repository(
        sample.Note,
        source="/test",
        projector=Projector(
            [Projection(name="broken", tables=("notes",), handlers={"NoteWritten": broken})]
        ),
    )
    async with tenant_transaction(app_pool, brand) as conn:
        with pytest.raises(ValueError, match="projection bug"):
            await repo.save(conn, sample.Note.write(note_id, brand, "t"), brand_id=brand)
    assert await _left(owner_pool, note_id) == (0, 0, 0)
    assert await owner_pool.fetchval("SELECT count(*) FROM outbox WHERE key = $1", announce) == 0
