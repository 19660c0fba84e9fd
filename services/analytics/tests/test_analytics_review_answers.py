"""Review: an answer from publishing carries what the platform said, and a platform's
numbers or error text are not ours to trust. An answer with a count past PostgreSQL's
bigint, or an error holding a NUL, must still be stored and end the sync (not be
dead-lettered, leaving the sync to time out)."""

from __future__ import annotations

import uuid
from datetime import date

import pytest
from analytics_testkit import analytics_service, answer, as_owner, brand_created, connected
from pressroom_contracts.events.publishing import AccountDay, PostDay

pytestmark = pytest.mark.integration

HUGE = 10**30


async def test_an_answer_with_counts_past_bigint_is_stored_and_ends_the_sync(
    fresh_db, kafka_bootstrap, topics
):
    brand = uuid.uuid4()
    async with analytics_service(fresh_db, kafka_bootstrap) as svc:
        await svc.inject(brand_created(brand), connected(brand, "sandbox"))
        request = await svc.sync(brand)
        day = request.until
        await svc.inject(
            answer(
                request,
                "sandbox",
                account=[AccountDay(date=day, reach=HUGE, impressions=-5, engagement=HUGE)],
                posts=[PostDay(platform_post_id="p1", date=day, reach=HUGE, likes=HUGE)],
            )
        )
        log = await svc.sync_log(brand, request.sync_id)
        assert log["status"] == "completed", log
        rows = await as_owner(
            fresh_db, "SELECT reach, impressions FROM analytics_metrics WHERE brand_id = $1", brand
        )
        assert len(rows) == 1 and rows[0]["reach"] > 0 and rows[0]["impressions"] == 0
        for path in ("/v1/analytics/posts", "/v1/analytics/summary", "/v1/analytics/metrics"):
            status, got = await svc.call(
                "GET", f"{path}?from={day - (day - date(2027, 1, 1))}&to={day}", brand, "viewer"
            )
            assert status == 200, (path, got)


async def test_an_answer_whose_error_holds_a_nul_ends_the_sync(fresh_db, kafka_bootstrap, topics):
    brand = uuid.uuid4()
    async with analytics_service(fresh_db, kafka_bootstrap) as svc:
        await svc.inject(brand_created(brand), connected(brand, "sandbox"))
        request = await svc.sync(brand)
        await svc.inject(answer(request, "sandbox", status="failed", error="bad\x00gateway"))
        log = await svc.sync_log(brand, request.sync_id)
        assert log["status"] == "failed", log
        assert log["answers"]["sandbox"]["error"].startswith("bad")


async def test_an_answer_with_a_huge_post_id_ends_the_sync(fresh_db, kafka_bootstrap, topics):
    brand = uuid.uuid4()
    huge_id = "".join(str(uuid.uuid4()) for _ in range(200))  # 7 200 chars, not compressible
    async with analytics_service(fresh_db, kafka_bootstrap) as svc:
        await svc.inject(brand_created(brand), connected(brand, "sandbox"))
        request = await svc.sync(brand)
        day = request.until
        posts = [
            PostDay(platform_post_id=huge_id, date=day, reach=1),
            PostDay(platform_post_id="fine", date=day, reach=2),
        ]
        await svc.inject(answer(request, "sandbox", posts=posts))
        log = await svc.sync_log(brand, request.sync_id)
        assert log["status"] == "completed", log
        rows = await as_owner(
            fresh_db, "SELECT reach FROM analytics_post_metrics WHERE brand_id = $1", brand
        )
        assert 2 in [r["reach"] for r in rows]
