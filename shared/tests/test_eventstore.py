from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest
from pressroom_kit import eventstore
from pressroom_kit.errors import ConcurrencyError
from pressroom_kit.eventstore import NewEvent

pytestmark = pytest.mark.integration


async def _append(pool: asyncpg.Pool, stream: str, expected: int, n: int = 1) -> list[int]:
    async with pool.acquire() as conn, conn.transaction():
        recorded = await eventstore.append(
            conn,
            stream_id=stream,
            stream_type="note",
            expected_version=expected,
            events=[NewEvent("NoteRenamed", {"title": f"t{i}"}) for i in range(n)],
        )
        return [r.version for r in recorded]


async def test_two_concurrent_appends_at_same_version_exactly_one_wins(app_pool):
    stream = f"note-{uuid.uuid4()}"
    await _append(app_pool, stream, 0)
    results = await asyncio.gather(
        *(_append(app_pool, stream, 1) for _ in range(2)), return_exceptions=True
    )
    winners = [r for r in results if not isinstance(r, BaseException)]
    losers = [r for r in results if isinstance(r, ConcurrencyError)]
    assert winners == [[2]]
    assert len(losers) == 1
    assert [e.version for e in await eventstore.load_stream(app_pool, stream)] == [1, 2]


async def test_many_racing_writers_leave_a_gapless_stream(app_pool):
    stream = f"note-{uuid.uuid4()}"
    results = await asyncio.gather(
        *(_append(app_pool, stream, 0, n=3) for _ in range(8)), return_exceptions=True
    )
    assert sum(not isinstance(r, BaseException) for r in results) == 1
    assert [e.version for e in await eventstore.load_stream(app_pool, stream)] == [1, 2, 3]


async def test_read_all_follows_commit_order(app_pool):
    streams = [f"s-{i}" for i in range(5)]
    for round_ in range(3):
        await asyncio.gather(*(_append(app_pool, s, round_) for s in streams))
    positions = []
    async for batch in eventstore.read_all(app_pool, batch_size=4):
        positions += [e.global_position for e in batch]
    assert positions == sorted(positions)
    assert len(positions) == 15
    assert await eventstore.head_position(app_pool) == positions[-1]


async def test_a_reader_following_positions_never_skips_a_late_commit(app_pool):
    """A slow writer that got its position first must not commit after a faster one."""
    slow_started = asyncio.Event()

    async def slow_writer():
        async with app_pool.acquire() as conn, conn.transaction():
            await eventstore.append(
                conn,
                stream_id="slow",
                stream_type="note",
                expected_version=0,
                events=[NewEvent("NoteRenamed", {})],
            )
            slow_started.set()
            await asyncio.sleep(0.3)

    async def fast_writer():
        await slow_started.wait()
        await _append(app_pool, "fast", 0)

    seen: list[int] = []

    async def reader():
        last = 0
        deadline = asyncio.get_running_loop().time() + 2
        while asyncio.get_running_loop().time() < deadline and len(seen) < 2:
            async for batch in eventstore.read_all(app_pool, after_position=last):
                seen.extend(e.global_position for e in batch)
                last = batch[-1].global_position
            await asyncio.sleep(0.01)

    await asyncio.gather(slow_writer(), fast_writer(), reader())
    assert len(seen) == 2, "the reader skipped an event that committed late"


async def test_events_are_append_only_even_for_the_owner(owner_pool):
    await _append(owner_pool, "immutable", 0)
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await owner_pool.execute("UPDATE events SET data = '{}'")
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await owner_pool.execute("DELETE FROM events")


async def test_append_outside_a_transaction_is_refused(app_pool):
    async with app_pool.acquire() as conn:
        with pytest.raises(RuntimeError):
            await eventstore.append(
                conn,
                stream_id="x",
                stream_type="note",
                expected_version=0,
                events=[NewEvent("NoteRenamed", {})],
            )


async def test_append_refuses_a_naive_occurred_at_and_writes_nothing(app_pool):
    from datetime import datetime

    from pressroom_kit.db import tenant_transaction

    stream, brand = f"note-{uuid.uuid4()}", uuid.uuid4()

    async def at_once() -> None:
        async with app_pool.acquire() as conn, conn.transaction():
            await _naive_append(conn, stream, brand, datetime(2026, 1, 1))

    async def staged() -> None:  # staged by a kit transaction, written by its commit
        async with tenant_transaction(app_pool, brand) as conn:
            await _naive_append(conn, stream, brand, datetime(2026, 1, 1))

    for attempt in (at_once, staged):
        with pytest.raises(ValueError, match="occurred_at must be timezone-aware"):
            await attempt()
    assert await eventstore.load_stream(app_pool, stream) == []


async def _naive_append(conn, stream, brand, when):
    await eventstore.append(
        conn,
        stream_id=stream,
        stream_type="note",
        expected_version=0,
        events=[NewEvent("NoteWritten", {"title": "t"})],
        brand_id=brand,
        occurred_at=when,
    )
