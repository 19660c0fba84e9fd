"""Reading the numbers over HTTP: daily rows (camelCase ``engagementRate``, a platform filter,
local-day defaults), the summary with its change against the previous period, per-post
metrics, and 422s for bad ranges and dates (never a 500)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

import pytest
from analytics_testkit import analytics_service, as_owner, brand_created, insert_history

pytestmark = pytest.mark.integration


async def put_days(db, brand, platform, rows):  # type: ignore[no-untyped-def]
    """rows: (date, reach, impressions, engagement, followers)."""
    now = datetime.now(UTC)
    for day, reach, impressions, engagement, followers in rows:
        await as_owner(
            db,
            "INSERT INTO analytics_metrics (brand_id, platform, date, reach, impressions, "
            "engagement, followers, collected_at, synced_at) VALUES ($1, $2, $3, $4, $5, $6, "
            "$7, $8, $8)",
            brand,
            platform,
            day,
            reach,
            impressions,
            engagement,
            followers,
            now,
        )


async def test_daily_rows_with_filters_and_defaults(fresh_db, kafka_bootstrap, topics):
    brand = uuid.uuid4()
    async with analytics_service(fresh_db, kafka_bootstrap) as svc:
        await svc.inject(brand_created(brand, "Asia/Tokyo"))
        await put_days(
            fresh_db,
            brand,
            "x",
            [(date(2027, 3, 10), 200, 300, 30, 1000), (date(2027, 3, 11), 0, 0, 0, 1001)],
        )
        await put_days(fresh_db, brand, "sandbox", [(date(2027, 2, 1), 100, 100, 5, 50)])
        # 12:00 UTC on 10 March is 21:00 in Tokyo; tomorrow there has not begun.
        status, body = await svc.call("GET", "/v1/analytics/metrics", brand, role="viewer")
        assert status == 200, body
        assert (body["from"], body["to"], body["timezone"]) == (
            "2027-02-09",
            "2027-03-10",
            "Asia/Tokyo",
        )
        assert body["items"] == [
            {
                "date": "2027-03-10",
                "platform": "x",
                "reach": 200,
                "impressions": 300,
                "engagement": 30,
                "followers": 1000,
                "engagementRate": 0.15,
            }
        ]
        status, body = await svc.call(
            "GET", "/v1/analytics/metrics?from=2027-01-01&to=2027-03-31", brand, role="viewer"
        )
        assert [(i["platform"], i["date"]) for i in body["items"]] == [
            ("sandbox", "2027-02-01"),
            ("x", "2027-03-10"),
            ("x", "2027-03-11"),
        ]
        assert body["items"][-1]["engagementRate"] == 0  # no reach: 0, not a division error
        status, body = await svc.call(
            "GET",
            "/v1/analytics/metrics?platform=sandbox&from=2027-01-01&to=2027-03-31",
            brand,
            role="viewer",
        )
        assert [i["platform"] for i in body["items"]] == ["sandbox"]
        for unknown in ("nowhere", "Bad%20Platform", "%27%3B%20DROP", "x" * 100):
            status, body = await svc.call(
                "GET", f"/v1/analytics/metrics?platform={unknown}", brand, role="viewer"
            )
            assert status == 200 and body["items"] == [], (unknown, body)


BAD_QUERIES = [
    "from=2027-03-10&to=2027-03-01",
    "from=2026-01-01&to=2027-01-02",
    "from=2027-02-30",
    "from=yesterday",
    "to=1700000000",
    "from=0001-01-01",
    "to=9999-12-31",
    "platform=" + "x" * 101,
    "platform=a%00b",
]


async def test_bad_queries_are_422(fresh_db, kafka_bootstrap, topics):
    brand = uuid.uuid4()
    async with analytics_service(fresh_db, kafka_bootstrap) as svc:
        for path in ("metrics", "summary", "posts", "charts/reach.png"):
            for query in BAD_QUERIES:
                if path == "summary" and query.startswith("platform"):
                    continue  # the summary has no platform filter: ignored
                status, body = await svc.call(
                    "GET", f"/v1/analytics/{path}?{query}", brand, role="viewer"
                )
                assert status in (400, 422), (path, query, status, body)
        status, _ = await svc.call("GET", "/v1/analytics/posts?limit=0", brand, role="viewer")
        assert status in (400, 422)
        status, _ = await svc.call("GET", "/v1/analytics/sync-logs?cursor=zzz", brand)
        assert status in (400, 422)
        status, _ = await svc.call("GET", f"/v1/analytics/sync-logs/{uuid.uuid4()}", brand)
        assert status == 404


async def test_summary_totals_and_change_against_the_previous_period(
    fresh_db, kafka_bootstrap, topics
):
    brand = uuid.uuid4()
    async with analytics_service(fresh_db, kafka_bootstrap) as svc:
        await svc.inject(brand_created(brand))
        # Previous period 22..28 Feb; current 1..7 March.
        await put_days(
            fresh_db,
            brand,
            "x",
            [
                (date(2027, 2, 22), 100, 200, 10, 900),
                (date(2027, 2, 28), 100, 200, 10, 950),
                (date(2027, 3, 1), 300, 500, 30, 1000),
                (date(2027, 3, 7), 100, 100, 2, 1100),
            ],
        )
        await put_days(fresh_db, brand, "sandbox", [(date(2027, 3, 3), 600, 700, 60, 40)])
        status, body = await svc.call(
            "GET", "/v1/analytics/summary?from=2027-03-01&to=2027-03-07", brand, role="viewer"
        )
        assert status == 200, body
        assert body["previous_period"] == {"from": "2027-02-22", "to": "2027-02-28"}
        by = {p["platform"]: p for p in body["platforms"]}
        x = by["x"]
        assert x["totals"] == {
            "reach": 400,
            "impressions": 600,
            "engagement": 32,
            "followers": 1100,
            "engagementRate": 0.08,
            "days": 2,
        }
        assert x["previous"]["followers"] == 950 and x["previous"]["reach"] == 200
        assert x["change"]["reach"] == {"absolute": 200, "percent": 100.0}
        assert x["change"]["followers"] == {"absolute": 150, "percent": 15.79}
        assert x["change"]["engagementRate"]["absolute"] == pytest.approx(0.08 - 0.1)
        assert x["change"]["engagementRate"]["percent"] == -20.0
        sandbox = by["sandbox"]
        assert sandbox["change"]["reach"] == {"absolute": 600, "percent": None}  # was 0
        overall = body["overall"]
        assert overall["platform"] == "all"
        assert overall["totals"]["reach"] == 1000
        assert overall["totals"]["followers"] == 1140  # each platform's last day, added
        assert overall["totals"]["engagementRate"] == pytest.approx(92 / 1000)
        assert overall["change"]["reach"] == {"absolute": 800, "percent": 400.0}

        status, body = await svc.call(
            "GET", "/v1/analytics/summary?from=2020-01-01&to=2020-01-31", brand, role="viewer"
        )
        assert status == 200 and body["platforms"] == []
        assert body["overall"]["totals"]["reach"] == 0
        assert body["overall"]["change"]["reach"] == {"absolute": 0, "percent": None}


async def test_per_post_metrics(fresh_db, kafka_bootstrap, topics):
    brand = uuid.uuid4()
    async with analytics_service(fresh_db, kafka_bootstrap) as svc:
        counts = await insert_history(
            fresh_db, brand, "sandbox", date(2027, 1, 1), date(2027, 2, 28), posts_per_week=2
        )
        assert counts["days"] == 59 and counts["posts"] > 10
        status, body = await svc.call(
            "GET", "/v1/analytics/posts?from=2027-01-01&to=2027-03-10&limit=500", brand, "viewer"
        )
        assert status == 200, body
        items = body["items"]
        assert len(items) == counts["posts"]
        totals = await as_owner(
            fresh_db,
            "SELECT sum(reach) AS reach, sum(engagement) AS engagement "
            "FROM analytics_post_metrics WHERE brand_id = $1",
            brand,
        )
        assert sum(i["reach"] for i in items) == totals[0]["reach"]
        engagement = [i["engagement"] for i in items]
        assert engagement == sorted(engagement, reverse=True)
        first = items[0]
        assert first["post_id"] and first["media_kind"] in ("text", "image", "video")
        assert first["engagementRate"] == pytest.approx(first["engagement"] / first["reach"])
        assert first["days"] == 3
        status, body = await svc.call(
            "GET", "/v1/analytics/posts?platform=x&from=2027-01-01&to=2027-03-10", brand, "viewer"
        )
        assert status == 200 and body["items"] == []
        status, body = await svc.call(
            "GET", "/v1/analytics/posts?from=2027-01-01&to=2027-03-10&limit=3", brand, "viewer"
        )
        assert len(body["items"]) == 3

        when = datetime(2027, 3, 9, 10, tzinfo=UTC)
        await as_owner(
            fresh_db,
            "INSERT INTO analytics_posts (brand_id, post_id, platform, platform_post_id, "
            "published_at, updated_at) VALUES ($1, $2, 'x', 'x-new', $3, $3)",
            brand,
            uuid.uuid4(),
            when,
        )
        status, body = await svc.call(
            "GET",
            f"/v1/analytics/posts?from={when.date()}&to={when.date() + timedelta(days=1)}",
            brand,
            "viewer",
        )
        assert [(i["platform_post_id"], i["reach"], i["days"]) for i in body["items"]] == [
            ("x-new", 0, 0)
        ]
