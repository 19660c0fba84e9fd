"""Commits wake the relay only while it waits for them (migration 0006).

Under load the relay fetches every ``min_batch_interval`` anyway, so it asks commits not to
NOTIFY (each one costs the command a queue insert under a database-wide lock inside its
commit, and the relay a message); before it waits again it says so under the writers' lock
and fetches once more, so no commit is left waiting for the fallback poll.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid

import asyncpg
import pytest
from kafka_helpers import create_topics
from pressroom_kit.db import tenant_transaction
from pressroom_kit.outbox import NOTIFY_CHANNEL, Relay, RelaySettings
from pressroom_kit.testing.sample import domain as sample

pytestmark = pytest.mark.integration

# A fallback poll far beyond any wait below: a lost wake-up shows as a timeout.
SETTINGS = RelaySettings(poll_interval=30.0, busy_rows=1)


async def _save_note(pool: asyncpg.Pool, repo, brand: uuid.UUID) -> uuid.UUID:
    async with tenant_transaction(pool, brand) as conn:
        (event,) = await repo.save(
            conn, sample.Note.write(f"wake-{uuid.uuid4()}", brand, "t"), brand_id=brand
        )
    return event.event_id


async def _wait_sent(pool: asyncpg.Pool, ids: list[uuid.UUID], timeout: float) -> float:
    start = time.monotonic()
    while True:
        unsent = await pool.fetchval(
            "SELECT count(*) FROM outbox WHERE event_id = ANY($1::uuid[]) AND sent_at IS NULL",
            ids,
        )
        if unsent == 0:
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{unsent} of {len(ids)} rows not published in {timeout} s")
        await asyncio.sleep(0.005)


async def test_no_wakeup_is_lost_around_the_relay_going_idle(
    app_pool, sample_db, kafka_bootstrap, unique_topic
):
    """Single commits at random moments after the previous publish land in every phase of
    the relay's way back to waiting (its pause, the empty fetch, the flag, the re-fetch):
    each is published at once, never after the 30 s fallback poll."""
    await create_topics(kafka_bootstrap, unique_topic)
    repo = sample.repository(unique_topic)
    brand = uuid.uuid4()
    relay = Relay(
        service="sample",
        dsn=sample_db.app_dsn,
        bootstrap_servers=kafka_bootstrap,
        settings=SETTINGS,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    try:
        await _wait_sent(app_pool, [await _save_note(app_pool, repo, brand)], timeout=20)
        waits = []
        for _ in range(40):
            await asyncio.sleep(random.uniform(0, 0.02))
            waits.append(await _wait_sent(app_pool, [await _save_note(app_pool, repo, brand)], 5))
    finally:
        stop.set()
        await task
    assert max(waits) < 5


async def test_commits_do_not_notify_while_the_relay_is_busy(
    app_pool, sample_db, kafka_bootstrap, unique_topic
):
    await create_topics(kafka_bootstrap, unique_topic)
    repo = sample.repository(unique_topic)
    brand = uuid.uuid4()
    listener = await asyncpg.connect(sample_db.app_dsn)
    notified = 0

    def count(*_: object) -> None:
        nonlocal notified
        notified += 1

    await listener.add_listener(NOTIFY_CHANNEL, count)
    # 50 ms between busy fetches: even on a slow machine each one finds rows, so the relay
    # stays busy through the burst instead of going idle between commits.
    settings = RelaySettings(poll_interval=30.0, busy_rows=1, min_batch_interval=0.05)
    relay = Relay(
        service="sample",
        dsn=sample_db.app_dsn,
        bootstrap_servers=kafka_bootstrap,
        settings=settings,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    try:
        await _wait_sent(app_pool, [await _save_note(app_pool, repo, brand)], timeout=20)
        await asyncio.sleep(0.1)
        idle_notified = notified
        # Idle, a commit notifies (the relay waits for it).
        await _wait_sent(app_pool, [await _save_note(app_pool, repo, brand)], timeout=5)
        assert notified > idle_notified

        async def writer() -> list[uuid.UUID]:
            return [await _save_note(app_pool, repo, brand) for _ in range(40)]

        before = notified
        ids = [i for batch in await asyncio.gather(*(writer() for _ in range(8))) for i in batch]
        await _wait_sent(app_pool, ids, timeout=20)
        during = notified - before
    finally:
        stop.set()
        await task
        await listener.close()
    # 320 commits under load: only the few around the relay's idle spells notify.
    assert during < len(ids) / 2, (during, len(ids))


async def test_a_writer_without_a_grant_on_the_flag_still_commits(app_pool, owner_pool):
    """During a rolling upgrade a replica's role may not be granted the new table yet: the
    trigger reads the flag as the owner, so commits go on."""
    await owner_pool.execute("REVOKE ALL ON outbox_relay_state FROM pressroom_app")
    try:
        repo = sample.repository("t")
        await _save_note(app_pool, repo, uuid.uuid4())
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await app_pool.fetchval("SELECT waiting FROM outbox_relay_state")
    finally:
        await owner_pool.execute(
            "GRANT SELECT, INSERT, UPDATE, DELETE ON outbox_relay_state TO pressroom_app"
        )
