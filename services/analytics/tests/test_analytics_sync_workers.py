"""The sync workers on a fake clock, with replicas: a sync whose answer never arrives times
out once (what arrived counted; a late answer stores its numbers without reopening the log);
the daily sync is requested once per brand and day however many replicas step it; two
answers of one sync handled at the same moment complete its log exactly once."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, date, datetime

import pytest
from analytics_testkit import (
    FakeClock,
    analytics_service,
    answer,
    as_owner,
    brand_created,
    connected,
    days,
    disconnected,
    other_workers,
    outbox,
)
from pressroom_analytics.sync import handlers
from pressroom_contracts.events.analytics import MetricsSynced, SyncRequested
from pressroom_contracts.events.publishing import MetricsCollected
from pressroom_kit.db import tenant_transaction

pytestmark = pytest.mark.integration


async def test_a_sync_without_every_answer_times_out_once(fresh_db, kafka_bootstrap, topics):
    brand = uuid.uuid4()
    async with analytics_service(fresh_db, kafka_bootstrap, sync_timeout_s=300) as svc:
        await svc.inject(brand_created(brand), connected(brand, "sandbox"), connected(brand, "x"))
        request = await svc.sync(brand)
        await svc.inject(answer(request, "sandbox", account=days(request, "sandbox")))
        svc.clock.advance(299)
        assert await svc.workers.step_timeouts() == 0
        assert (await svc.sync_log(brand, request.sync_id))["status"] == "running"

        svc.clock.advance(2)
        async with other_workers(svc) as other:  # two replicas' workers at once: one ends it
            ended = await asyncio.gather(svc.workers.step_timeouts(), other.step_timeouts())
        assert sorted(ended) == [0, 1]
        log = await svc.sync_log(brand, request.sync_id)
        assert log["status"] == "timed_out"
        assert (log["items_synced"], log["items_failed"]) == (7, 1)
        assert log["duration_ms"] == 301_000
        assert "no answer from x" in log["error"]
        synced = await outbox(fresh_db, MetricsSynced.event_type)
        assert [(s["status"], s["items_synced"]) for s in synced] == [("timed_out", 7)]

        status, goal = await svc.call(
            "POST",
            "/v1/analytics/goals",
            brand,
            json={"metric": "reach", "platform": "x", "target": 10**9, "deadline": "2027-04-30"},
        )
        assert status == 201, goal
        assert goal["current"] == 0

        # The late answer: its numbers are real and stored (and goals follow them); the log
        # stays as it ended.
        late = days(request, "x")
        await svc.inject(answer(request, "x", account=late))
        status, goal = await svc.call("GET", f"/v1/analytics/goals/{goal['id']}", brand, "viewer")
        assert goal["current"] == sum(d.reach for d in late if d.date >= date(2027, 3, 10))
        rows = await as_owner(
            fresh_db, "SELECT count(*) AS n FROM analytics_metrics WHERE platform = 'x'"
        )
        assert rows[0]["n"] == 7
        assert await svc.sync_log(brand, request.sync_id) == log
        assert len(await outbox(fresh_db, MetricsSynced.event_type)) == 1
        assert await svc.workers.step_timeouts() == 0


async def test_the_daily_sync_is_requested_once_per_brand_and_day_by_two_replicas(
    fresh_db, kafka_bootstrap, topics
):
    clock = FakeClock(datetime(2027, 3, 10, 2, 59, tzinfo=UTC))
    brands = [uuid.uuid4() for _ in range(12)]
    quiet = uuid.uuid4()  # its only connection was revoked
    async with analytics_service(
        fresh_db, kafka_bootstrap, clock=clock, daily_sync_hour_utc=3, daily_sync_days=3
    ) as svc:
        await svc.inject(
            brand_created(brands[0], "Pacific/Auckland"),
            *[connected(b, "sandbox") for b in brands],
            connected(brands[1], "x"),
            connected(quiet, "sandbox"),
        )
        await svc.inject(disconnected(quiet, "sandbox"))
        assert await svc.workers.step_daily() == 0  # before 03:00 UTC
        clock.advance(60)
        async with other_workers(svc) as other:
            counts = await asyncio.gather(
                svc.workers.step_daily(), other.step_daily(), svc.workers.step_daily()
            )
            assert sum(counts) == len(brands)
            assert await other.step_daily() == 0
        requested = [
            SyncRequested.model_validate(p)
            for p in await outbox(fresh_db, SyncRequested.event_type)
        ]
        assert sorted(r.brand_id for r in requested) == sorted(brands)
        by_brand = {r.brand_id: r for r in requested}
        assert by_brand[brands[1]].platforms == ["sandbox", "x"]
        assert by_brand[brands[1]].requested_by is None
        # The last 3 local days before today: 03:00 UTC is already 16:00 in Auckland.
        assert (by_brand[brands[2]].since, by_brand[brands[2]].until) == (
            date(2027, 3, 7),
            date(2027, 3, 9),
        )
        assert by_brand[brands[0]].timezone == "Pacific/Auckland"
        status, logs = await svc.call("GET", "/v1/analytics/sync-logs", brands[0], role="viewer")
        assert status == 200 and [i["trigger"] for i in logs["items"]] == ["daily"]

        clock.advance(86_400)  # the next day: once more
        assert await svc.workers.step_daily() == len(brands)
        assert await svc.workers.step_daily() == 0


async def test_two_answers_of_one_sync_at_the_same_moment_complete_it_once(
    fresh_db, kafka_bootstrap, topics
):
    """The answers run in two transactions at once (as two partitions' batches or two
    replicas would). The first holds the log's row lock until the second is seen waiting for
    it; the second then sees the first's answer and completes the log."""
    brand = uuid.uuid4()
    async with analytics_service(fresh_db, kafka_bootstrap) as svc:
        await svc.inject(brand_created(brand))
        request = await svc.sync(brand, {"platforms": ["sandbox", "x"]})
        handle = handlers.sync_handlers(svc.clock, _no_advice)[MetricsCollected.event_type]
        first_done = asyncio.Event()

        async def apply(platform: str, hold: bool) -> None:
            event = answer(request, platform, account=days(request, platform))
            async with tenant_transaction(svc.pool, brand) as conn:
                await handle(conn, event, event.payload())
                if hold:
                    first_done.set()
                    await _until_a_backend_waits_for_a_lock(svc.pool)

        async def second() -> None:
            await first_done.wait()
            await apply("x", hold=False)

        await asyncio.gather(apply("sandbox", hold=True), second())
        log = await svc.sync_log(brand, request.sync_id)
        assert log["status"] == "completed" and log["items_synced"] == 14
        assert set(log["answers"]) == {"sandbox", "x"}
        assert len(await outbox(fresh_db, MetricsSynced.event_type)) == 1

        # And many syncs at once, each with its two answers racing: none is lost.
        many = [await svc.sync(brand, {"platforms": ["sandbox", "x"]}) for _ in range(15)]

        async def race(one: SyncRequested, platform: str) -> None:
            event = answer(one, platform, account=days(one, platform))
            async with tenant_transaction(svc.pool, brand) as conn:
                await handle(conn, event, event.payload())

        await asyncio.gather(*[race(one, p) for one in many for p in ("sandbox", "x")])
        rows = await as_owner(
            fresh_db,
            "SELECT status, count(*) AS n FROM analytics_sync_logs GROUP BY status",
        )
        assert {r["status"]: r["n"] for r in rows} == {"completed": 16}
        assert len(await outbox(fresh_db, MetricsSynced.event_type)) == 16


async def _no_advice(conn, *, brand_id, now):  # type: ignore[no-untyped-def]
    return None


async def _until_a_backend_waits_for_a_lock(pool) -> None:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(10):
        while True:
            async with pool.acquire() as conn:
                waiting = await conn.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND datname = current_database()"
                )
            if waiting:
                return
            await asyncio.sleep(0.01)


async def test_an_overdue_sync_whose_ending_fails_holds_back_no_other(
    fresh_db, kafka_bootstrap, topics, monkeypatch
):
    """The first overdue sync cannot be ended (its brand's goal refresh fails): it stays
    running and is logged, the one behind it on the next page still times out, and once the
    fault is gone the next round ends the first too."""
    from pressroom_analytics.sync import workers

    monkeypatch.setattr(workers, "BATCH", 1)  # one sync per page: the cursor must move on
    stuck, fine = uuid.uuid4(), uuid.uuid4()
    async with analytics_service(fresh_db, kafka_bootstrap, sync_timeout_s=300) as svc:
        await svc.inject(brand_created(stuck), connected(stuck, "sandbox"))
        await svc.inject(brand_created(fine), connected(fine, "sandbox"))
        first = await svc.sync(stuck)
        svc.clock.advance(1)
        second = await svc.sync(fine)
        real = svc.workers.after_sync

        async def failing(conn, *, brand_id, now):
            if brand_id == stuck:
                raise RuntimeError("goal refresh failed")
            await real(conn, brand_id=brand_id, now=now)

        svc.workers.after_sync = failing
        svc.clock.advance(301)
        assert await svc.workers.step_timeouts() == 1
        assert (await svc.sync_log(stuck, first.sync_id))["status"] == "running"
        assert (await svc.sync_log(fine, second.sync_id))["status"] == "timed_out"

        svc.workers.after_sync = real
        assert await svc.workers.step_timeouts() == 1
        assert (await svc.sync_log(stuck, first.sync_id))["status"] == "timed_out"
        assert await svc.workers.step_timeouts() == 0


async def test_an_answer_for_a_platform_not_asked_for_still_moves_goals(
    fresh_db, kafka_bootstrap, topics
):
    """Publishing answered for x though the sync asked only for sandbox: the numbers are
    stored (they are real), the goals follow them, and the log waits for sandbox alone."""
    brand = uuid.uuid4()
    async with analytics_service(fresh_db, kafka_bootstrap) as svc:
        await svc.inject(brand_created(brand), connected(brand, "sandbox"), connected(brand, "x"))
        status, goal = await svc.call(
            "POST",
            "/v1/analytics/goals",
            brand,
            json={"metric": "reach", "platform": "x", "target": 10**9, "deadline": "2027-04-30"},
        )
        assert status == 201 and goal["current"] == 0, goal
        request = await svc.sync(brand, {"platforms": ["sandbox"]})
        assert request.platforms == ["sandbox"]
        unasked = days(request, "x")
        await svc.inject(answer(request, "x", account=unasked))
        status, goal = await svc.call("GET", f"/v1/analytics/goals/{goal['id']}", brand, "viewer")
        start = date.fromisoformat(goal["start_date"])
        assert goal["current"] == sum(d.reach for d in unasked if d.date >= start) > 0
        assert (await svc.sync_log(brand, request.sync_id))["status"] == "running"
