"""Monthly plans through the service: slots where the brand's timezone puts them across the
2027 DST change, 409 / regenerate, approval with its event, published_count from
publishing's events (once per post), bad input and isolation."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from analytics_testkit import (
    FakeClock,
    Service,
    analytics_service,
    brand_created,
    connected,
    event,
    outbox,
    published,
)
from pressroom_analytics.advisor.analysis import PostOutcome
from pressroom_contracts.events.analytics import PlanApproved, PlanGenerated
from pressroom_contracts.events.publishing import PostCreated
from pressroom_kit.testing.plugin import TestDatabase
from test_analytics_advisor import insert_outcomes
from test_analytics_advisor_units import history

pytestmark = pytest.mark.integration

NY = ZoneInfo("America/New_York")
START = datetime(2027, 3, 10, 12, tzinfo=UTC)  # the services' clock


async def plan(svc: Service, brand: uuid.UUID, **body: Any) -> tuple[int, Any]:
    return await svc.call("POST", "/v1/analytics/plans", brand, json=body)


async def read(svc: Service, brand: uuid.UUID, plan_id: str) -> dict[str, Any]:
    status, got = await svc.call("GET", f"/v1/analytics/plans/{plan_id}", brand, role="viewer")
    assert status == 200, got
    return got  # type: ignore[no-any-return]


async def ny_brand(svc: Service, db: TestDatabase, brand: uuid.UUID) -> None:
    """A New York brand on x whose posts do best at 18:00 local, 7 a week lately."""
    await svc.inject(brand_created(brand, "America/New_York"), connected(brand, "x"))
    posts = history(140, best_hour=18, lift=80.0, tz=NY)  # from June 2026
    today = svc.clock().astimezone(NY).date()
    recent = [
        PostOutcome(
            "x",
            datetime.combine(today - timedelta(days=d), time(18), tzinfo=NY).astimezone(UTC),
            None,
            180.0,
        )
        for d in range(1, 57)
    ]
    await insert_outcomes(db, brand, posts + recent)


async def test_slots_follow_the_brands_timezone_across_the_dst_change(
    fresh_db: TestDatabase, kafka_bootstrap: str, topics: None
) -> None:
    brand = uuid.uuid4()
    async with analytics_service(fresh_db, kafka_bootstrap, clock=FakeClock(START)) as svc:
        svc.clock.now = datetime(2027, 3, 1, 12, tzinfo=UTC)
        await ny_brand(svc, fresh_db, brand)
        status, got = await plan(svc, brand, month="2027-03")
        assert status == 201, got
        assert got["status"] == "draft" and got["timezone"] == "America/New_York"
        assert got["summary"] == {"x": {"posts_per_week": 7, "recent_posts": 56}}
        slots = got["slots"]
        assert got["slot_count"] == len(slots) > 0
        assert all(s["platform"] == "x" for s in slots)
        local = [datetime.fromisoformat(s["local_time"]) for s in slots]
        assert {t.hour for t in local} == {18}  # 18:00 in New York, all month
        utc = {
            t.day: datetime.fromisoformat(s["scheduled_at"])
            for t, s in zip(local, slots, strict=True)
        }
        before = [d for d in utc if d < 14]
        after = [d for d in utc if d >= 14]
        assert before and after
        assert all(utc[d].astimezone(UTC).hour == 23 for d in before)  # EST, UTC-5
        assert all(utc[d].astimezone(UTC).hour == 22 for d in after)  # EDT, UTC-4
        assert all(0 < s["confidence"] <= 1 and s["reason"] for s in slots)
        generated = await outbox(fresh_db, PlanGenerated.event_type)
        assert generated == [
            {
                "plan_id": got["id"],
                "brand_id": str(brand),
                "month": "2027-03",
                "slots": len(slots),
                "generated_by": "user-manager",
                "generated_at": generated[0]["generated_at"],
            }
        ]


async def test_one_plan_a_month_regenerate_and_approve(
    fresh_db: TestDatabase, kafka_bootstrap: str, topics: None
) -> None:
    brand = uuid.uuid4()
    async with analytics_service(fresh_db, kafka_bootstrap, clock=FakeClock(START)) as svc:
        await ny_brand(svc, fresh_db, brand)
        status, first = await plan(svc, brand, month="2027-04")
        assert status == 201
        status, got = await plan(svc, brand, month="2027-04")
        assert status == 409 and got["type"].endswith("/plan_exists")
        assert got["plan_id"] == first["id"]

        status, second = await plan(svc, brand, month="2027-04", regenerate=True)
        assert status == 201 and second["id"] != first["id"]
        assert (await svc.call("GET", f"/v1/analytics/plans/{first['id']}", brand))[0] == 404
        status, listing = await svc.call("GET", "/v1/analytics/plans", brand, role="viewer")
        assert [p["id"] for p in listing["items"]] == [second["id"]]
        assert "slots" not in listing["items"][0] or listing["items"][0]["slots"] is None

        # Two regenerations at once: one after the other, one plan remains.
        answers = await asyncio.gather(
            *(plan(svc, brand, month="2027-04", regenerate=True) for _ in range(3))
        )
        assert [s for s, _ in answers] == [201] * 3
        status, listing = await svc.call("GET", "/v1/analytics/plans", brand)
        assert len(listing["items"]) == 1
        current = listing["items"][0]["id"]

        approve = f"/v1/analytics/plans/{current}/approve"
        assert (await svc.call("POST", approve, brand, role="viewer"))[0] == 403
        # Two approvals at once: one wins, the other is told it is approved already.
        answers = await asyncio.gather(*(svc.call("POST", approve, brand) for _ in range(2)))
        assert sorted(status for status, _ in answers) == [200, 409]
        approved = next(body for status, body in answers if status == 200)
        assert approved["status"] == "approved"
        assert approved["approved_by"] == "user-manager"
        events = await outbox(fresh_db, PlanApproved.event_type)
        assert len(events) == 1
        sent = events[0]
        assert sent["plan_id"] == current and sent["month"] == "2027-04"
        assert [s["slot_id"] for s in sent["slots"]] == [s["id"] for s in approved["slots"]]
        assert [datetime.fromisoformat(s["scheduled_at"]) for s in sent["slots"]] == [
            datetime.fromisoformat(s["scheduled_at"]) for s in approved["slots"]
        ]
        assert {s["confidence"] for s in sent["slots"]} == {
            s["confidence"] for s in approved["slots"]
        }
        assert len(sent["slots"]) == approved["slot_count"] > 0

        status, got = await svc.call("POST", approve, brand)
        assert status == 409 and got["type"].endswith("/plan_approved")
        status, got = await plan(svc, brand, month="2027-04", regenerate=True)
        assert status == 409 and got["type"].endswith("/plan_approved")
        assert len(await outbox(fresh_db, PlanApproved.event_type)) == 1
        missing = f"/v1/analytics/plans/{uuid.uuid4()}/approve"
        assert (await svc.call("POST", missing, brand))[0] == 404


async def test_bad_months_and_a_brand_without_platforms(
    fresh_db: TestDatabase, kafka_bootstrap: str, topics: None
) -> None:
    brand = uuid.uuid4()
    async with analytics_service(fresh_db, kafka_bootstrap, clock=FakeClock(START)) as svc:
        for body in (
            {"month": "2027-13"},
            {"month": "2027-3"},
            {"month": "27-03"},
            {"month": "2027-03-01"},
            {"month": 202703},
            {"month": "2027-02"},  # the past (the clock is 2027-03-10)
            {"month": "2030-01"},  # too far ahead
            {"month": "2027-04", "regenerate": "yes"},
            {"month": "2027-04", "extra": True},
            {},
        ):
            status, got = await plan(svc, brand, **body)
            assert status == 422, (body, got)
            assert ("month" in str(got)) or ("regenerate" in str(got)) or ("extra" in str(got))
        status, got = await plan(svc, brand, month="2027-04")
        assert status == 409 and got["type"].endswith("/no_platforms")
        bad = await svc.call("GET", "/v1/analytics/plans", brand, params={"month": "April"})
        assert bad[0] == 422

        # No history: the default frequency (3 a week) with low confidence.
        await svc.inject(connected(brand, "bluesky"))
        status, got = await plan(svc, brand, month="2027-04")
        assert status == 201
        assert got["summary"] == {"bluesky": {"posts_per_week": 3, "recent_posts": 0}}
        assert {s["confidence"] for s in got["slots"]} == {0.1}
        assert len(got["slots"]) == 13  # April 2027: 4 Tuesdays, 4 Wednesdays, 5 Thursdays


async def test_published_count_counts_each_post_once(
    fresh_db: TestDatabase, kafka_bootstrap: str, topics: None
) -> None:
    brand, other = uuid.uuid4(), uuid.uuid4()
    async with analytics_service(fresh_db, kafka_bootstrap, clock=FakeClock(START)) as svc:
        await svc.inject(connected(brand, "x"), connected(other, "x"))
        status, got = await plan(svc, brand, month="2027-04")
        assert status == 201
        plan_id = uuid.UUID(got["id"])
        await svc.call("POST", f"/v1/analytics/plans/{plan_id}/approve", brand)

        first, second = uuid.uuid4(), uuid.uuid4()
        created = [
            event(
                PostCreated.event_type,
                brand,
                post,
                PostCreated(post_id=post, brand_id=brand, platforms=["x", "y"], plan_id=plan_id),
            )
            for post in (first, second)
        ]
        on_x = published(brand, "x", "x-1", post_id=first, plan_id=plan_id)
        await svc.inject(
            *created,
            on_x,
            published(brand, "y", "y-1", post_id=first, plan_id=plan_id),  # same post, 2nd platform
            published(brand, "x", "x-2", post_id=uuid.uuid4()),  # no plan
            published(other, "x", "x-3", post_id=uuid.uuid4(), plan_id=plan_id),  # not theirs
        )
        await svc.inject(on_x)  # resent
        await svc.inject(published(brand, "x", "x-1", post_id=first, plan_id=plan_id))  # new id
        got = await read(svc, brand, str(plan_id))
        assert got["created_count"] == 2 and got["published_count"] == 1

        await svc.inject(published(brand, "x", "x-4", post_id=second, plan_id=plan_id))
        got = await read(svc, brand, str(plan_id))
        assert got["published_count"] == 2
        # The other brand sees nothing of it.
        assert (await svc.call("GET", f"/v1/analytics/plans/{plan_id}", other))[0] == 404
        status, listing = await svc.call("GET", "/v1/analytics/plans", other)
        assert listing["items"] == []
        assert (await svc.call("POST", f"/v1/analytics/plans/{plan_id}/approve", other))[0] == 404
