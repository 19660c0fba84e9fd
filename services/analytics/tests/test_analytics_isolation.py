"""Tenancy: brand B sees none of brand A's rows through any route (metrics, summary, posts,
sync logs, charts), cannot read A's sync by id, and an answer naming A's sync under B's
brand neither reads nor ends A's log; every sync table has row-level security."""

from __future__ import annotations

import uuid
from datetime import date

import pytest
from analytics_testkit import (
    analytics_service,
    answer,
    as_owner,
    brand_created,
    connected,
    days,
    insert_history,
)
from pressroom_contracts.events.analytics import SyncRequested

pytestmark = pytest.mark.integration

TABLES = (
    "analytics_brands",
    "analytics_connections",
    "analytics_metrics",
    "analytics_posts",
    "analytics_post_metrics",
    "analytics_sync_logs",
    "analytics_daily_syncs",
)


async def test_brand_b_sees_nothing_of_brand_a(fresh_db, kafka_bootstrap, topics):
    a, b = uuid.uuid4(), uuid.uuid4()
    async with analytics_service(fresh_db, kafka_bootstrap) as svc:
        await svc.inject(brand_created(a), brand_created(b), connected(a, "sandbox"))
        await insert_history(fresh_db, a, "sandbox", date(2027, 1, 1), date(2027, 3, 10))
        request = await svc.sync(a)
        query = "from=2027-01-01&to=2027-03-10"
        for brand, expect_rows in ((a, True), (b, False)):
            status, body = await svc.call("GET", f"/v1/analytics/metrics?{query}", brand, "viewer")
            assert status == 200 and bool(body["items"]) is expect_rows
            status, body = await svc.call("GET", f"/v1/analytics/posts?{query}", brand, "viewer")
            assert status == 200 and bool(body["items"]) is expect_rows
            status, body = await svc.call("GET", f"/v1/analytics/summary?{query}", brand, "viewer")
            assert status == 200 and bool(body["platforms"]) is expect_rows
            assert (body["overall"]["totals"]["reach"] > 0) is expect_rows
            status, body = await svc.call("GET", "/v1/analytics/sync-logs", brand, "viewer")
            assert status == 200 and bool(body["items"]) is expect_rows
        status, _ = await svc.call("GET", f"/v1/analytics/sync-logs/{request.sync_id}", b)
        assert status == 404
        status, _ = await svc.call("POST", "/v1/analytics/sync", b, json={})
        assert status == 422  # A's connections are not B's

        # An answer for A's sync sent under B's brand (payload and CloudEvent agree on B).
        forged = SyncRequested.model_validate(
            {**request.model_dump(by_alias=True), "brand_id": str(b)}
        )
        await svc.inject(answer(forged, "sandbox", account=days(forged, "sandbox", scale=9)))
        log = await svc.sync_log(a, request.sync_id)
        assert log["status"] == "running" and log["answers"] == {}
        rows = await as_owner(
            fresh_db,
            "SELECT brand_id, count(*) AS n FROM analytics_metrics GROUP BY brand_id",
        )
        counts = {r["brand_id"]: r["n"] for r in rows}
        assert counts[a] == 69  # A's history untouched by B's numbers
        # B's numbers stay B's (they are real numbers of B's account).
        assert counts[b] == 7

        # A CloudEvent whose brand differs from its payload's is ignored.
        mismatched = answer(request, "sandbox", account=days(request, "sandbox"))
        mismatched = mismatched.model_copy(update={"brandid": b})
        await svc.inject(mismatched)
        assert (await svc.sync_log(a, request.sync_id))["status"] == "running"

        forced = await as_owner(
            fresh_db,
            "SELECT relname FROM pg_class WHERE relname = ANY($1) "
            "AND relrowsecurity AND relforcerowsecurity",
            list(TABLES),
        )
        assert sorted(r["relname"] for r in forced) == sorted(TABLES)
