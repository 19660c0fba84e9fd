"""The commit hands the staged writes over inside its own simple query, as a literal.

``PendingWrites.commit`` sends ``SELECT set_config('pressroom.writes', $tag$...$tag$, true);
SELECT pressroom_flush_writes(); COMMIT`` as one round trip: the JSON of the events and
outbox rows is quoted by ``dollar_quote``, not bound as a parameter, so whatever a payload
holds must reach the tables byte for byte and never end the literal or the statement.
"""

from __future__ import annotations

import contextlib
import uuid

import asyncpg
import pytest
from pressroom_kit import eventstore
from pressroom_kit.db import tenant_transaction
from pressroom_kit.errors import ConcurrencyError
from pressroom_kit.eventstore import NewEvent, OutboxRow
from pressroom_kit.testing.sample import domain as sample

pytestmark = pytest.mark.integration

HOSTILE = [
    "'); DROP TABLE events; --",
    "$$ ; COMMIT; SELECT 1 $$",
    "$pr$ $pr0$ $prffffffffffff$ $prx",  # shapes of the kit's own tags
    "ends with a tag head $pr",
    "back\\slash \\' \\\\ E'\\x41'",
    "quotes ' '' \" \"\" and ; semicolons ;;",
    "unicode é ✓ 🎉 \u2028 \u200b and a control \x01 \x1f",
    "NUL escaped by JSON: \\u0000 (the text, not the character)",
    "-- a comment\n/* another */ newline\r\n tab\t",
]


@pytest.mark.parametrize("text", HOSTILE)
async def test_hostile_payloads_reach_events_and_outbox_unchanged(app_pool, text):
    brand = uuid.uuid4()
    stream = f"hostile-{uuid.uuid4()}"
    key = f"k{text}"
    async with tenant_transaction(app_pool, brand) as conn:
        await eventstore.append(
            conn,
            stream_id=stream,
            stream_type="note",
            expected_version=0,
            events=[NewEvent("NoteWritten", {"title": text, text: [text]})],
            brand_id=brand,
            metadata={"actor": text},
            outbox=[
                OutboxRow(
                    event_id=uuid.uuid4(),
                    topic="t",
                    key=key,
                    headers={"h": text},
                    payload={"p": text},
                    for_event=None,
                )
            ],
        )
    (event,) = await eventstore.load_stream(app_pool, stream)
    assert event.data == {"title": text, text: [text]}
    assert event.metadata == {"actor": text}
    row = await app_pool.fetchrow("SELECT headers, payload FROM outbox WHERE key = $1", key)
    assert row is not None and row["headers"] == {"h": text} and row["payload"] == {"p": text}
    # Nothing else ran: the events table is still there and the transaction committed once.
    assert await app_pool.fetchval("SELECT to_regclass('events') IS NOT NULL")


async def test_a_saved_aggregate_with_a_hostile_title_projects_and_commits(app_pool):
    brand = uuid.uuid4()
    repo = sample.repository("t")
    note_id = f"hostile-note-{uuid.uuid4()}"
    title = "$prabc$'; ROLLBACK; --"
    async with tenant_transaction(app_pool, brand) as conn:
        await repo.save(conn, sample.Note.write(note_id, brand, title), brand_id=brand)
    async with tenant_transaction(app_pool, brand) as conn:
        assert await conn.fetchval("SELECT title FROM notes WHERE id = $1", note_id) == title
        note = await repo.load(conn, note_id)
    assert note is not None and note.title == title


async def test_a_conflict_is_still_reported_through_the_single_query(app_pool):
    stream = f"handover-{uuid.uuid4()}"
    for expected in (0, 0):
        with contextlib.suppress(ConcurrencyError):
            async with tenant_transaction(app_pool, None) as conn:
                await eventstore.append(
                    conn,
                    stream_id=stream,
                    stream_type="note",
                    expected_version=expected,
                    events=[NewEvent("NoteWritten", {"title": "x"})],
                )
    with pytest.raises(ConcurrencyError) as caught:
        async with tenant_transaction(app_pool, None) as conn:
            await eventstore.append(
                conn,
                stream_id=stream,
                stream_type="note",
                expected_version=0,
                events=[NewEvent("NoteWritten", {"title": "y"})],
            )
    assert caught.value.extra == {"stream_id": stream, "actual_version": 1}
    assert [e.version for e in await eventstore.load_stream(app_pool, stream)] == [1]


async def test_saves_leave_their_savepoints_to_the_commit_and_callers_savepoints_work(app_pool):
    """A save's projection savepoint is not released (one round trip less); the caller's
    own savepoints, and asyncpg's nested transactions, still work around and after it, and
    a later save's collision still rolls back only its own projection."""
    brand = uuid.uuid4()
    repo = sample.repository("t")
    prefix = f"sp-{uuid.uuid4().hex[:8]}"
    async with tenant_transaction(app_pool, brand) as conn:
        await repo.save(conn, sample.Note.write(f"{prefix}-1", brand, "one"), brand_id=brand)
        # The caller's own savepoint around a save, released; then one rolled back.
        await conn.execute("SAVEPOINT mine")
        await repo.save(conn, sample.Note.write(f"{prefix}-2", brand, "two"), brand_id=brand)
        await conn.execute("RELEASE SAVEPOINT mine")
        await conn.execute("SAVEPOINT mine")
        await conn.execute(
            "INSERT INTO notes (id, brand_id, title, updated_at) VALUES ($1, $2, 'gone', now())",
            f"{prefix}-gone",
            brand,
        )
        await conn.execute("ROLLBACK TO SAVEPOINT mine")
        await conn.execute("RELEASE SAVEPOINT mine")
        # A projection that collides with a row this transaction wrote (not a race): the
        # save's own savepoint is rolled back, the error surfaces, the transaction goes on.
        await conn.execute(
            "INSERT INTO notes (id, brand_id, title, updated_at) VALUES ($1, $2, 'x', now())",
            f"{prefix}-3",
            brand,
        )
        with pytest.raises(asyncpg.UniqueViolationError):
            await repo.save(conn, sample.Note.write(f"{prefix}-3", brand, "three"), brand_id=brand)
        await repo.save(conn, sample.Note.write(f"{prefix}-4", brand, "four"), brand_id=brand)
    rows = await app_pool.fetch(
        "SELECT stream_id FROM events WHERE stream_id LIKE $1 ORDER BY stream_id", f"{prefix}%"
    )
    assert [r["stream_id"] for r in rows] == [f"{prefix}-1", f"{prefix}-2", f"{prefix}-4"]
    async with tenant_transaction(app_pool, brand) as conn:
        notes = await conn.fetch(
            "SELECT id, title FROM notes WHERE id LIKE $1 ORDER BY id", f"{prefix}%"
        )
    assert [(r["id"], r["title"]) for r in notes] == [
        (f"{prefix}-1", "one"),
        (f"{prefix}-2", "two"),
        (f"{prefix}-3", "x"),
        (f"{prefix}-4", "four"),
    ]
