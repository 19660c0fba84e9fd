"""Goals through the service: validation, progress from the synced metrics, achieved and
missed each announced once (concurrent syncs, two deadline workers, a redelivered answer),
and isolation between brands."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from analytics_testkit import (
    FakeClock,
    Service,
    analytics_service,
    as_owner,
    brand_created,
    brand_updated,
    connected,
    eventually,
    outbox,
    replica,
)
from pressroom_analytics import advisor
from pressroom_analytics.advisor.goals import GoalDeadlines
from pressroom_contracts.events.analytics import GoalAchieved, GoalMissed
from pressroom_contracts.events.publishing import AccountDay
from pressroom_kit.db import tenant_transaction
from pressroom_kit.testing.plugin import TestDatabase

pytestmark = pytest.mark.integration

START = datetime(2027, 3, 10, 12, tzinfo=UTC)  # the services' clock
TODAY = START.date()


async def add_days(
    db: TestDatabase, brand: uuid.UUID, platform: str, rows: list[tuple[date, int, int, int]]
) -> None:
    """(date, reach, engagement, followers) rows of daily metrics."""
    await as_owner(
        db,
        "INSERT INTO analytics_metrics (brand_id, platform, date, reach, impressions, "
        "engagement, followers, collected_at, synced_at) SELECT $1, $2, d, r, r * 2, e, f, "
        "now(), now() FROM unnest($3::date[], $4::bigint[], $5::bigint[], $6::bigint[]) "
        "AS u(d, r, e, f) ON CONFLICT (brand_id, platform, date) DO UPDATE SET "
        "reach = EXCLUDED.reach, engagement = EXCLUDED.engagement, followers = EXCLUDED.followers",
        brand,
        platform,
        *[list(c) for c in zip(*rows, strict=True)],
    )


async def create(svc: Service, brand: uuid.UUID, **body: Any) -> dict[str, Any]:
    status, got = await svc.call("POST", "/v1/analytics/goals", brand, json=body)
    assert status == 201, got
    return got  # type: ignore[no-any-return]


async def goal(svc: Service, brand: uuid.UUID, goal_id: str) -> dict[str, Any]:
    status, got = await svc.call("GET", f"/v1/analytics/goals/{goal_id}", brand, role="viewer")
    assert status == 200, got
    return got  # type: ignore[no-any-return]


async def after_sync(svc: Service, brand: uuid.UUID) -> None:
    async with tenant_transaction(svc.pool, brand) as conn:
        await advisor.after_sync(conn, brand_id=brand, now=svc.clock())


async def test_bad_goals_are_refused_naming_the_field(
    fresh_db: TestDatabase, kafka_bootstrap: str, topics: None
) -> None:
    brand = uuid.uuid4()
    async with analytics_service(fresh_db, kafka_bootstrap, clock=FakeClock(START)) as svc:
        # Kiribati is UTC+14: at 12:00 UTC on 10 March it is already 11 March there.
        await svc.inject(brand_created(brand, "Pacific/Kiritimati"))
        good = {"metric": "reach", "target": 1000, "deadline": "2027-04-01"}
        cases = [
            ({**good, "metric": "likes"}, "metric"),
            ({**good, "target": 0}, "target"),
            ({**good, "target": -5}, "target"),
            ({**good, "target": "many"}, "target"),
            ({**good, "deadline": "2027-03-10"}, "deadline"),  # yesterday in Kiribati
            ({**good, "deadline": 1805000000}, "deadline"),
            ({**good, "deadline": "2027-02-30"}, "deadline"),
            ({**good, "deadline": "9999-12-31"}, "deadline"),
            ({**good, "target": 1e300}, "target"),
            ({**good, "target": True}, "target"),
            ({**good, "target": "5"}, "target"),
            ({**good, "platform": "Not A Platform"}, "platform"),
            ({**good, "surprise": 1}, "surprise"),
            ({"metric": "reach", "target": 5}, "deadline"),
        ]
        for body, field in cases:
            status, got = await svc.call("POST", "/v1/analytics/goals", brand, json=body)
            assert status == 422, (body, got)
            assert field in str(got), (body, got)
        created = await create(svc, brand, **{**good, "deadline": "2027-03-11"})  # today there
        assert created["start_date"] == "2027-03-11" and created["status"] == "active"
        assert (await svc.call("POST", "/v1/analytics/goals", brand, role="viewer", json=good))[
            0
        ] == 403
        assert (await svc.call("GET", "/v1/analytics/goals", brand, role="viewer"))[0] == 200


async def test_progress_follows_the_metric_definitions(
    fresh_db: TestDatabase, kafka_bootstrap: str, topics: None
) -> None:
    brand = uuid.uuid4()
    async with analytics_service(fresh_db, kafka_bootstrap, clock=FakeClock(START)) as svc:
        before = TODAY - timedelta(days=1)  # not in any goal's window
        await add_days(fresh_db, brand, "x", [(before, 999, 999, 500), (TODAY, 100, 10, 700)])
        await add_days(fresh_db, brand, "y", [(TODAY, 300, 6, 50)])
        reach = await create(svc, brand, metric="reach", target=1000, deadline="2027-03-31")
        x_reach = await create(
            svc, brand, metric="reach", target=1000, deadline="2027-03-31", platform="x"
        )
        followers = await create(
            svc, brand, metric="followers", target=10_000, deadline="2027-03-31"
        )
        rate = await create(svc, brand, metric="engagementRate", target=0.5, deadline="2027-03-31")
        assert reach["current"] == 400 and reach["progress"] == pytest.approx(0.4)
        assert x_reach["current"] == 100
        assert followers["current"] == 750  # the latest day of each platform, summed
        assert rate["current"] == pytest.approx(16 / 400)  # from totals, not an average

        await add_days(fresh_db, brand, "x", [(TODAY + timedelta(days=1), 200, 40, 710)])
        await after_sync(svc, brand)
        assert (await goal(svc, brand, reach["id"]))["current"] == 600
        assert (await goal(svc, brand, followers["id"]))["current"] == 760
        assert (await goal(svc, brand, rate["id"]))["current"] == pytest.approx(56 / 600)

        # PATCH: a lower target that is reached ends the goal at once; then it is frozen.
        path = f"/v1/analytics/goals/{reach['id']}"
        status, got = await svc.call("PATCH", path, brand, json={"name": "Spring", "target": 500})
        assert status == 200 and got["status"] == "achieved" and got["name"] == "Spring"
        status, got = await svc.call("PATCH", path, brand, json={"target": 5000})
        assert status == 409
        assert (await svc.call("PATCH", path, brand, json={"target": None}))[0] == 422
        status, got = await svc.call(
            "PATCH", f"/v1/analytics/goals/{x_reach['id']}", brand, json={"deadline": "2027-01-01"}
        )
        assert status == 422 and "deadline" in str(got)
        assert len(await outbox(fresh_db, GoalAchieved.event_type)) == 1

        status, listing = await svc.call(
            "GET", "/v1/analytics/goals", brand, role="viewer", params={"status": "active"}
        )
        assert {g["id"] for g in listing["items"]} == {x_reach["id"], followers["id"], rate["id"]}
        assert (await svc.call("DELETE", path, brand))[0] == 204
        assert (await svc.call("DELETE", path, brand))[0] == 404
        assert (await svc.call("GET", path, brand))[0] == 404


async def test_a_goal_is_achieved_once_however_many_syncs_race(
    fresh_db: TestDatabase, kafka_bootstrap: str, topics: None
) -> None:
    brand = uuid.uuid4()
    async with analytics_service(fresh_db, kafka_bootstrap, clock=FakeClock(START)) as svc:
        await svc.inject(brand_created(brand), connected(brand, "x"))
        created = await create(svc, brand, metric="engagement", target=50, deadline="2027-03-20")
        assert created["status"] == "active" and created["current"] == 0

        # A real sync's answer crosses Kafka; publishing resends it (same event id) and a
        # second answer races: the goal ends once.
        request = await svc.sync(brand)
        numbers = [AccountDay(date=TODAY, reach=1000, engagement=80, followers=5)]
        from analytics_testkit import answer

        first = answer(request, "x", account=numbers)
        await svc.inject(first)
        await svc.inject(first)
        await asyncio.gather(*(after_sync(svc, brand) for _ in range(4)))

        got = await goal(svc, brand, created["id"])
        assert got["status"] == "achieved" and got["current"] == 80
        events = await outbox(fresh_db, GoalAchieved.event_type)
        assert len(events) == 1
        assert events[0]["goal_id"] == created["id"] and events[0]["current"] == 80
        assert events[0]["target"] == 50 and events[0]["deadline"] == "2027-03-20"

        # Ended goals are left alone by the deadline worker.
        svc.clock.advance(86400 * 30)
        assert await svc.app.state.goal_deadlines.step() == {"missed": 0, "achieved": 0}
        assert await outbox(fresh_db, GoalMissed.event_type) == []


async def test_a_goal_is_missed_once_at_its_deadline_with_two_workers(
    fresh_db: TestDatabase, kafka_bootstrap: str, topics: None
) -> None:
    brand, other = uuid.uuid4(), uuid.uuid4()
    async with analytics_service(fresh_db, kafka_bootstrap, clock=FakeClock(START)) as svc:
        await svc.inject(brand_created(brand, "America/New_York"))
        await add_days(fresh_db, brand, "x", [(TODAY, 100, 5, 10)])
        goals = [
            await create(svc, brand, metric="reach", target=10_000, deadline="2027-03-12")
            for _ in range(5)
        ]
        later = await create(svc, brand, metric="reach", target=10_000, deadline="2027-03-13")
        theirs = await create(svc, other, metric="reach", target=10_000, deadline="2027-03-12")
        first: GoalDeadlines = svc.app.state.goal_deadlines

        # 2027-03-12 ends at 05:00 UTC on the 13th in New York (EST); at midnight UTC for
        # the other brand (not known yet: UTC).
        svc.clock.now = svc.clock.now.replace(day=13, hour=4, minute=59)
        assert await first.step() == {"missed": 1, "achieved": 0}
        svc.clock.now = svc.clock.now.replace(hour=5, minute=0)
        async with replica(svc) as other_replica:
            second: GoalDeadlines = other_replica.app.state.goal_deadlines
            outcomes = await asyncio.gather(first.step(), second.step(), first.step())
        assert sum(o["missed"] for o in outcomes) == 5
        events = await outbox(fresh_db, GoalMissed.event_type)
        assert sorted(e["goal_id"] for e in events) == sorted(
            [g["id"] for g in goals] + [theirs["id"]]
        )
        got = await goal(svc, brand, goals[0]["id"])
        assert got["status"] == "missed" and got["current"] == 100 and got["missed_at"]
        assert (await goal(svc, brand, later["id"]))["status"] == "active"
        assert await first.step() == {"missed": 0, "achieved": 0}
        assert len(await outbox(fresh_db, GoalMissed.event_type)) == 6


async def test_goals_of_one_brand_stay_its_own(
    fresh_db: TestDatabase, kafka_bootstrap: str, topics: None
) -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    async with analytics_service(fresh_db, kafka_bootstrap, clock=FakeClock(START)) as svc:
        await add_days(fresh_db, b, "x", [(TODAY, 5000, 500, 10)])
        mine = await create(svc, a, metric="reach", target=1000, deadline="2027-03-31")
        assert mine["current"] == 0  # b's numbers are not a's
        path = f"/v1/analytics/goals/{mine['id']}"
        assert (await svc.call("GET", path, b))[0] == 404
        assert (await svc.call("PATCH", path, b, json={"target": 1}))[0] == 404
        assert (await svc.call("DELETE", path, b))[0] == 404
        status, listing = await svc.call("GET", "/v1/analytics/goals", b)
        assert status == 200 and listing["items"] == []
        assert (await goal(svc, a, mine["id"]))["status"] == "active"


async def test_a_timezone_change_moves_the_end_of_active_deadlines(
    fresh_db: TestDatabase, kafka_bootstrap: str, topics: None
) -> None:
    brand = uuid.uuid4()
    async with analytics_service(fresh_db, kafka_bootstrap, clock=FakeClock(START)) as svc:
        created = await create(svc, brand, metric="reach", target=10, deadline="2027-03-12")

        async def ends() -> datetime:
            rows = await as_owner(
                fresh_db,
                "SELECT due_at FROM analytics_goals WHERE id = $1",
                uuid.UUID(created["id"]),
            )
            return rows[0]["due_at"]  # type: ignore[no-any-return]

        assert await ends() == datetime(2027, 3, 13, tzinfo=UTC)  # not known yet: UTC
        await svc.inject(brand_created(brand, "Asia/Tokyo"))
        assert await ends() == datetime(2027, 3, 12, 15, tzinfo=UTC)  # midnight in Tokyo
        await svc.inject(brand_updated(brand, "America/Los_Angeles"))
        assert await ends() == datetime(2027, 3, 13, 8, tzinfo=UTC)
        status, _ = await svc.call("GET", "/v1/analytics/goals", brand, params={"status": "done"})
        assert status == 422


async def test_the_deadline_worker_runs_in_the_service(
    fresh_db: TestDatabase, kafka_bootstrap: str, topics: None
) -> None:
    brand = uuid.uuid4()
    clock = FakeClock(START)
    async with analytics_service(
        fresh_db, kafka_bootstrap, clock=clock, run_workers=True, worker_poll_s=0.05
    ) as svc:
        created = await create(svc, brand, metric="reach", target=10, deadline="2027-03-10")
        clock.advance(86400)

        async def missed() -> bool:
            return (await goal(svc, brand, created["id"]))["status"] == "missed"

        await eventually(missed, timeout=10)
        assert len(await outbox(fresh_db, GoalMissed.event_type)) == 1
