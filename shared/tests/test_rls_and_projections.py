from __future__ import annotations

import uuid

import pytest
from pressroom_kit import projections
from pressroom_kit.db import tenant_transaction
from pressroom_kit.testing.sample import domain as sample

pytestmark = pytest.mark.integration


async def _write(pool, brand, note_id, title):
    async with tenant_transaction(pool, brand) as conn:
        note = sample.Note.write(note_id, brand, title)
        await sample.repository("t").save(conn, note, brand_id=brand, actor="u1")


async def _rename(pool, brand, note_id, title):
    repo = sample.repository("t")
    async with tenant_transaction(pool, brand) as conn:
        note = await repo.load(conn, note_id)
        note.rename(title)
        await repo.save(conn, note, brand_id=brand, actor="u1")


async def test_tenant_context_limits_what_a_query_without_brand_filter_sees(app_pool):
    brand_a, brand_b = uuid.uuid4(), uuid.uuid4()
    await _write(app_pool, brand_a, "a1", "from A")
    await _write(app_pool, brand_a, "a2", "from A again")
    await _write(app_pool, brand_b, "b1", "from B")

    async with tenant_transaction(app_pool, brand_a) as conn:
        rows = await conn.fetch("SELECT id FROM notes ORDER BY id")  # no brand filter
    assert [r["id"] for r in rows] == ["a1", "a2"]

    async with tenant_transaction(app_pool, brand_b) as conn:
        assert [r["id"] for r in await conn.fetch("SELECT id FROM notes")] == ["b1"]

    assert await app_pool.fetch("SELECT id FROM notes") == []  # no context: nothing

    async with tenant_transaction(app_pool, brand_a) as conn:
        with pytest.raises(Exception, match="row-level security"):
            await conn.execute(
                "INSERT INTO notes (id, brand_id, title, updated_at) VALUES ('x', $1, 'x', now())",
                brand_b,
            )
    async with tenant_transaction(app_pool, brand_a) as conn:
        await conn.execute("UPDATE notes SET title = 'hijack'")  # only A's rows are visible
    async with tenant_transaction(app_pool, brand_b) as conn:
        assert await conn.fetchval("SELECT title FROM notes WHERE id = 'b1'") == "from B"


async def test_projection_is_read_your_writes(app_pool):
    brand = uuid.uuid4()
    await _write(app_pool, brand, "n1", "first")
    await _rename(app_pool, brand, "n1", "second")
    async with tenant_transaction(app_pool, brand) as conn:
        row = await conn.fetchrow("SELECT title, edits FROM notes WHERE id = 'n1'")
    assert dict(row) == {"title": "second", "edits": 1}


async def test_rebuild_gives_the_same_rows_as_the_live_projection(app_pool, owner_pool):
    brands = [uuid.uuid4() for _ in range(3)]
    for i in range(30):
        brand = brands[i % 3]
        await _write(app_pool, brand, f"n{i}", f"title {i}")
        for j in range(i % 4):
            await _rename(app_pool, brand, f"n{i}", f"title {i}.{j}")

    seen = []
    async with owner_pool.acquire() as conn:
        count = await projections.rebuild(
            conn, sample.NOTES_PROJECTION, batch_size=7, progress=lambda d, t: seen.append((d, t))
        )
        assert count > 0
        assert seen[-1][0] == seen[-1][1]
        diffs = await projections.verify(conn, sample.NOTES_PROJECTION)
        assert all(d.equal for d in diffs), diffs
        rebuilt = await conn.fetchval("SELECT count(*) FROM rebuild_notes.notes")
        assert rebuilt == 30

        # A live row that drifted is caught by verify, and swap repairs it.
        await conn.execute("UPDATE notes SET title = 'drifted' WHERE id = 'n5'")
        diffs = await projections.verify(conn, sample.NOTES_PROJECTION)
        assert diffs[0].only_live == 1 and diffs[0].only_rebuilt == 1
        await projections.swap(conn, sample.NOTES_PROJECTION)
        assert await conn.fetchval("SELECT title FROM notes WHERE id = 'n5'") == "title 5.0"


async def test_racing_creators_of_one_aggregate_get_a_concurrency_error_not_a_crash(app_pool):
    import asyncio

    from pressroom_kit.errors import ConcurrencyError

    brand = uuid.uuid4()
    results = await asyncio.gather(
        *(_write(app_pool, brand, "same-id", f"writer {n}") for n in range(4)),
        return_exceptions=True,
    )
    assert sum(r is None for r in results) == 1
    assert all(isinstance(r, ConcurrencyError) for r in results if r is not None)
    async with tenant_transaction(app_pool, brand) as conn:
        assert await conn.fetchval("SELECT count(*) FROM notes WHERE id = 'same-id'") == 1


async def test_a_genuinely_broken_projection_is_not_mistaken_for_a_race(app_pool):
    brand = uuid.uuid4()
    async with tenant_transaction(app_pool, brand) as conn:
        # A stray read-table row the event store knows nothing about.
        await conn.execute(
            "INSERT INTO notes (id, brand_id, title, updated_at) VALUES ('ghost', $1, 'x', now())",
            brand,
        )
    import asyncpg

    with pytest.raises(asyncpg.UniqueViolationError):
        await _write(app_pool, brand, "ghost", "real")
    assert await app_pool.fetchval("SELECT count(*) FROM events WHERE stream_id = 'ghost'") == 0


async def test_one_stored_event_may_announce_itself_in_several_messages(app_pool, owner_pool):
    from dataclasses import replace

    from pressroom_kit.eventstore import RecordedEvent

    repo = sample.repository("t")
    assert repo.to_public is not None
    single = repo.to_public

    def twice(event: RecordedEvent) -> list[tuple[str, str, dict[str, object]]]:
        first = single(event)
        return [*first, ("t.audit", "note.audited.v1", {"note_id": event.stream_id})]

    brand = uuid.uuid4()
    async with tenant_transaction(app_pool, brand) as conn:
        note = sample.Note.write("multi", brand, "hello")
        await replace(repo, to_public=twice).save(conn, note, brand_id=brand, actor="u1")
    rows = await owner_pool.fetch(
        "SELECT o.event_id, o.topic FROM outbox o ORDER BY o.id DESC LIMIT 2"
    )
    stored = await owner_pool.fetchval("SELECT event_id FROM events WHERE stream_id = 'multi'")
    assert sorted(r["topic"] for r in rows) == ["t", "t.audit"]
    # The first message keeps the stored event's id, the second gets a stable one of its own.
    assert {r["event_id"] for r in rows} == {stored, uuid.uuid5(stored, "note.audited.v1")}
