"""The advisor through the service: insights regenerated after a sync, ranked by weight x
confidence, feedback that moves weights (concurrently, without losing an update), and
isolation between brands."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from analytics_testkit import (
    Service,
    analytics_service,
    as_owner,
    brand_created,
    connected,
)
from pressroom_analytics import advisor
from pressroom_analytics.advisor.analysis import PostOutcome
from pressroom_kit.db import tenant_transaction
from pressroom_kit.testing.plugin import TestDatabase
from test_analytics_advisor_units import history

pytestmark = pytest.mark.integration

NY = ZoneInfo("America/New_York")


async def insert_outcomes(db: TestDatabase, brand: uuid.UUID, posts: Sequence[PostOutcome]) -> None:
    """Posts with their engagement as one day of post metrics (the advisor sums the days)."""
    ids = [uuid.uuid4() for _ in posts]
    ppids = [f"{p.platform}-{i.hex[:12]}" for p, i in zip(posts, ids, strict=True)]
    await as_owner(
        db,
        "INSERT INTO analytics_posts (brand_id, post_id, platform, platform_post_id, "
        "published_at, media_kind, updated_at) SELECT $1, * , now() FROM unnest($2::uuid[], "
        "$3::text[], $4::text[], $5::timestamptz[], $6::text[])",
        brand,
        ids,
        [p.platform for p in posts],
        ppids,
        [p.published_at for p in posts],
        [p.media_kind for p in posts],
    )
    await as_owner(
        db,
        "INSERT INTO analytics_post_metrics (brand_id, post_id, platform, platform_post_id, "
        "date, reach, engagement, collected_at, synced_at) SELECT $1, u.*, now(), now() "
        "FROM unnest($2::uuid[], $3::text[], $4::text[], $5::date[], $6::bigint[], "
        "$7::bigint[]) AS u",
        brand,
        ids,
        [p.platform for p in posts],
        ppids,
        [p.published_at.date() for p in posts],
        [int(p.engagement * 10) for p in posts],
        [int(p.engagement) for p in posts],
    )


async def after_sync(svc: Service, brand: uuid.UUID) -> None:
    async with tenant_transaction(svc.pool, brand) as conn:
        await advisor.after_sync(conn, brand_id=brand, now=svc.clock())


async def insights(svc: Service, brand: uuid.UUID, **params: str) -> list[dict]:  # type: ignore[type-arg]
    status, body = await svc.call(
        "GET", "/v1/analytics/insights", brand, role="viewer", params=params
    )
    assert status == 200, body
    return body["items"]  # type: ignore[no-any-return]


async def test_a_sync_regenerates_insights_that_find_the_best_hour(
    fresh_db: TestDatabase, kafka_bootstrap: str, topics: None
) -> None:
    brand = uuid.uuid4()
    async with analytics_service(fresh_db, kafka_bootstrap) as svc:
        await svc.inject(brand_created(brand, "America/New_York"), connected(brand, "x"))
        assert await insights(svc, brand) == []
        await insert_outcomes(fresh_db, brand, history(140, best_hour=18, tz=NY))
        request = await svc.sync(brand)
        await svc.answer_all(request)  # the sync's handler calls advisor.after_sync

        items = await insights(svc, brand)
        best = next(i for i in items if i["type"] == "best_hour")
        assert best["kind"] == "insight" and best["platform"] == "x"
        assert best["evidence"]["slots"][0]["slot"] == 18  # 18:00 in New York, not UTC
        assert best["sample_size"] == 140 and 0 < best["confidence"] <= 1
        assert best["weight"] == 1.0 and best["score"] == pytest.approx(best["confidence"])
        scores = [i["score"] for i in items]
        assert scores == sorted(scores, reverse=True)
        assert {i["category"] for i in items} == {"timing", "format", "frequency"}

        # Another regeneration keeps the insights' ids.
        await after_sync(svc, brand)
        assert {i["id"] for i in await insights(svc, brand)} == {i["id"] for i in items}


async def test_too_few_posts_give_insufficient_data(
    fresh_db: TestDatabase, kafka_bootstrap: str, topics: None
) -> None:
    brand = uuid.uuid4()
    async with analytics_service(fresh_db, kafka_bootstrap) as svc:
        await after_sync(svc, brand)
        items = await insights(svc, brand)
        assert len(items) == 5
        assert {(i["platform"], i["kind"], i["confidence"]) for i in items} == {
            ("all", "insufficient_data", 0.0)
        }
        await insert_outcomes(fresh_db, brand, history(6))
        await after_sync(svc, brand)
        items = await insights(svc, brand)
        assert {i["platform"] for i in items} == {"x"}  # the "all" rows are gone
        best = next(i for i in items if i["type"] == "best_hour")
        assert best["kind"] == "insufficient_data"
        assert best["evidence"] == {"have": 6, "need": 10}
        assert "at least 10" in best["explanation"]


async def test_feedback_moves_weights_and_the_ranking(
    fresh_db: TestDatabase, kafka_bootstrap: str, topics: None
) -> None:
    brand, other = uuid.uuid4(), uuid.uuid4()
    async with analytics_service(fresh_db, kafka_bootstrap) as svc:
        await insert_outcomes(fresh_db, brand, history(280, best_hour=18))
        await after_sync(svc, brand)
        items = await insights(svc, brand)
        top = items[0]
        assert top["score"] > 0

        path = f"/v1/analytics/insights/{top['id']}/feedback"
        status, body = await svc.call("POST", path, brand, json={"feedback": "rejected"})
        assert status == 200, body
        assert body["previous_weight"] == 1.0 and body["new_weight"] == pytest.approx(0.7)
        after = {i["id"]: i for i in await insights(svc, brand)}
        assert after[top["id"]]["weight"] == pytest.approx(0.7)
        assert after[top["id"]]["score"] == pytest.approx(0.7 * top["confidence"])
        ranked = [i["id"] for i in await insights(svc, brand)]
        expected = sorted(after.values(), key=lambda i: -i["score"])
        assert ranked[0] == expected[0]["id"]
        # The weight belongs to (category, type): every platform's insight of that type moves.
        same_type = [i for i in after.values() if i["type"] == top["type"]]
        assert all(i["weight"] == pytest.approx(0.7) for i in same_type)

        for feedback, factor in (("accepted", 1.2), ("dismissed", 0.9)):
            svc.clock.advance(1)
            status, body = await svc.call("POST", path, brand, json={"feedback": feedback})
            assert status == 200
            assert body["new_weight"] == pytest.approx(body["previous_weight"] * factor)
        rows = await as_owner(
            fresh_db,
            "SELECT feedback, previous_weight, new_weight FROM advisor_feedback "
            "WHERE brand_id = $1 ORDER BY created_at",
            brand,
        )
        assert [r["feedback"] for r in rows] == ["rejected", "accepted", "dismissed"]
        assert rows[-1]["new_weight"] == pytest.approx(0.7 * 1.2 * 0.9)

        # Clamped to [0.1, 5].
        for _ in range(8):
            await svc.call("POST", path, brand, json={"feedback": "rejected"})
        assert (await svc.call("POST", path, brand, json={"feedback": "rejected"}))[1][
            "new_weight"
        ] == pytest.approx(0.1)

        # Bad input, roles, other brands.
        assert (await svc.call("POST", path, brand, json={"feedback": "love"}))[0] == 422
        assert (await svc.call("POST", path, brand, json={}))[0] == 422
        assert (await svc.call("POST", path, brand, role="viewer", json={"feedback": "accepted"}))[
            0
        ] == 403
        missing = f"/v1/analytics/insights/{uuid.uuid4()}/feedback"
        assert (await svc.call("POST", missing, brand, json={"feedback": "accepted"}))[0] == 404
        status, body = await svc.call("POST", path, other, json={"feedback": "accepted"})
        assert status == 404 and body["type"].endswith("/no_insight")
        assert await insights(svc, other) == []


async def test_concurrent_feedback_loses_no_update(
    fresh_db: TestDatabase, kafka_bootstrap: str, topics: None
) -> None:
    brand = uuid.uuid4()
    async with analytics_service(fresh_db, kafka_bootstrap) as svc:
        await insert_outcomes(fresh_db, brand, history(70))
        await after_sync(svc, brand)
        target = (await insights(svc, brand))[0]
        path = f"/v1/analytics/insights/{target['id']}/feedback"
        answers = await asyncio.gather(
            *(svc.call("POST", path, brand, json={"feedback": "accepted"}) for _ in range(8))
        )
        assert [status for status, _ in answers] == [200] * 8
        weight = next(i for i in await insights(svc, brand) if i["id"] == target["id"])["weight"]
        assert weight == pytest.approx(1.2**8)
        # Each update started from the one before: the previous weights form one chain.
        chain = sorted((body["previous_weight"], body["new_weight"]) for _, body in answers)
        for (_, new), (previous, _) in itertools.pairwise(chain):
            assert previous == pytest.approx(new)


async def test_insights_of_one_brand_stay_its_own(
    fresh_db: TestDatabase, kafka_bootstrap: str, topics: None
) -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    async with analytics_service(fresh_db, kafka_bootstrap) as svc:
        await insert_outcomes(fresh_db, a, history(70, platform="x"))
        await insert_outcomes(fresh_db, b, history(12, platform="y", seed=5))
        await after_sync(svc, a)
        await after_sync(svc, b)
        assert {i["platform"] for i in await insights(svc, a)} == {"x"}
        b_items = await insights(svc, b)
        assert {i["platform"] for i in b_items} == {"y"}
        assert next(i for i in b_items if i["type"] == "best_hour")["sample_size"] == 12
        assert await insights(svc, a, platform="y") == []
        status, _body = await svc.call(
            "GET", "/v1/analytics/insights", a, params={"platform": "X!"}
        )
        assert status == 422


def test_outcome_helper_is_consistent() -> None:
    posts = history(3)
    assert all(p.published_at.tzinfo is not None for p in posts)
    assert posts[0].published_at < datetime(2027, 1, 1, tzinfo=UTC)
