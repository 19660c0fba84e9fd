"""Saves in one transaction keep PostgreSQL's subtransaction cache from overflowing.

``pg_stat_get_backend_subxact`` (PostgreSQL 16+) tells how many subtransactions a backend's
transaction holds in its cache and whether it overflowed (past 64, which slows every other
session's snapshots).
"""

from __future__ import annotations

import asyncio
import collections
import uuid

import asyncpg
import pytest
from kafka_helpers import create_topics, encoded, produce
from pressroom_contracts import CloudEvent
from pressroom_kit.consumer import ConsumerSettings, InboxConsumer
from pressroom_kit.db import tenant_transaction
from pressroom_kit.eventstore import TransactionAborted
from pressroom_kit.repository import SAVEPOINT_BUDGET
from pressroom_kit.testing.sample import domain as sample

pytestmark = pytest.mark.integration

SUBXACT = (
    "SELECT subxact_count, subxact_overflowed FROM pg_stat_get_backend_subxact("
    "(SELECT b FROM pg_stat_get_backend_idset() b WHERE pg_stat_get_backend_pid(b) = "
    "pg_backend_pid()))"
)


async def test_a_hundred_saves_in_one_transaction_stay_within_the_subxact_cache(app_pool):
    brand = uuid.uuid4()
    repo = sample.repository("t")
    async with tenant_transaction(app_pool, brand) as conn:
        for i in range(100):
            await repo.save(conn, sample.Note.write(f"many-{i}", brand, f"n{i}"), brand_id=brand)
        row = await conn.fetchrow(SUBXACT)
        # The projections of every save are visible in the transaction (read-your-writes).
        assert await conn.fetchval("SELECT count(*) FROM notes WHERE id LIKE 'many-%'") == 100
    assert row["subxact_count"] == SAVEPOINT_BUDGET and not row["subxact_overflowed"]
    assert (
        await app_pool.fetchval("SELECT count(*) FROM events WHERE stream_id LIKE 'many-%'") == 100
    )


@pytest.mark.parametrize("saves_before", [0, SAVEPOINT_BUDGET])
async def test_a_collision_past_the_budget_fails_the_transaction_as_what_it_is(
    app_pool, saves_before
):
    """Within the budget a projection that collides without a race is rolled back to its
    savepoint and reported, and the transaction goes on; past it no savepoint is left to tell
    a race from a bug, so the violation fails the whole transaction and nothing is kept."""
    brand = uuid.uuid4()
    repo = sample.repository("t")
    ghost = f"ghost-{uuid.uuid4().hex[:8]}"
    async with tenant_transaction(app_pool, brand) as conn:
        await conn.execute(
            "INSERT INTO notes (id, brand_id, title, updated_at) VALUES ($1, $2, 'x', now())",
            ghost,
            brand,
        )
    usable: list[bool] = []

    async def many_then_colliding() -> None:
        async with tenant_transaction(app_pool, brand) as conn:
            for i in range(saves_before):
                note = sample.Note.write(f"{ghost}-{i}", brand, "t")
                await repo.save(conn, note, brand_id=brand)
            with pytest.raises(asyncpg.UniqueViolationError):
                await repo.save(conn, sample.Note.write(ghost, brand, "t"), brand_id=brand)
            try:
                usable.append(await conn.fetchval("SELECT 1") == 1)
            except asyncpg.InFailedSQLTransactionError:
                usable.append(False)

    if saves_before < SAVEPOINT_BUDGET:
        await many_then_colliding()
        assert usable == [True]
    else:
        with pytest.raises(TransactionAborted):
            await many_then_colliding()
        assert usable == [False]
        kept = await app_pool.fetchval(
            "SELECT count(*) FROM events WHERE stream_id LIKE $1", f"{ghost}%"
        )
        assert kept == 0


async def test_a_consumer_batch_of_a_hundred_saves_commits_without_overflow(
    app_pool, kafka_bootstrap, unique_topic
):
    await create_topics(kafka_bootstrap, unique_topic)
    brand = uuid.uuid4()
    repo = sample.repository("t")
    events = [
        CloudEvent(
            source="/test",
            type="sample.note.changed.v1",
            subject=f"batch-{i}",
            brandid=brand,
            data={"note_id": f"batch-{i}", "title": f"n{i}"},
        )
        for i in range(100)
    ]
    await produce(kafka_bootstrap, unique_topic, [encoded(e) for e in events])
    saves_per_transaction: collections.Counter[int] = collections.Counter()
    overflowed: list[bool] = []

    async def save_note(conn: asyncpg.Connection, event: CloudEvent, payload: object) -> None:
        assert isinstance(payload, sample.NoteChangedV1)
        note = sample.Note.write(payload.note_id, brand, payload.title)
        await repo.save(conn, note, brand_id=brand)
        saves_per_transaction[await conn.fetchval("SELECT txid_current()")] += 1
        overflowed.append((await conn.fetchrow(SUBXACT))["subxact_overflowed"])

    consumer = InboxConsumer(
        name=f"g-{uuid.uuid4().hex[:8]}",
        dsn_or_pool=app_pool,
        bootstrap_servers=kafka_bootstrap,
        topics=[unique_topic],
        registry=sample.REGISTRY,
        handlers={"sample.note.changed.v1": save_note},
        settings=ConsumerSettings(session_timeout_ms=2000, heartbeat_interval_ms=300),
    )
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    try:
        async with asyncio.timeout(30):
            while (
                await app_pool.fetchval(
                    "SELECT count(*) FROM events WHERE stream_id LIKE 'batch-%'"
                )
                < 100
            ):
                await asyncio.sleep(0.05)
    finally:
        stop.set()
        await task
    assert max(saves_per_transaction.values()) > SAVEPOINT_BUDGET  # batches past the budget
    assert not any(overflowed)
    assert consumer.stats["dead_lettered"] == 0
