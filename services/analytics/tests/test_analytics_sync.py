"""Syncs end to end over Kafka: a request is logged and announced in one transaction,
publishing's answers (published here as publishing would) are upserted once per date, a
resent or duplicated answer changes nothing, a later sync overwrites with newer numbers, the
log ends with counts and ``analytics.metrics.synced.v1``; bad requests are 422s."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

import pytest
from analytics_testkit import (
    analytics_service,
    answer,
    as_owner,
    brand_created,
    connected,
    days,
    disconnected,
    outbox,
    published,
)
from pressroom_contracts.events.analytics import MetricsSynced, SyncRequested
from pressroom_contracts.events.publishing import PostDay

pytestmark = pytest.mark.integration


async def metric_rows(db, brand):  # type: ignore[no-untyped-def]
    return await as_owner(
        db,
        "SELECT platform, date, reach, engagement, followers, engagement_rate, synced_at, "
        "sync_id FROM analytics_metrics WHERE brand_id = $1 ORDER BY platform, date",
        brand,
    )


async def test_sync_twice_keeps_one_row_per_date_and_overwrites_with_newer_numbers(
    fresh_db, kafka_bootstrap, topics
):
    brand = uuid.uuid4()
    async with analytics_service(fresh_db, kafka_bootstrap) as svc:
        await svc.inject(
            brand_created(brand, "America/New_York"),
            connected(brand, "sandbox"),
            connected(brand, "mastodon"),
        )
        first = await svc.sync(brand)
        assert first.platforms == ["mastodon", "sandbox"]
        # 12:00 UTC is 08:00 in New York: the last 7 local days end on the local today.
        assert (first.since, first.until) == (date(2027, 3, 4), date(2027, 3, 10))
        assert first.timezone == "America/New_York"
        log = await svc.sync_log(brand, first.sync_id)
        assert log["status"] == "running" and log["from"] == "2027-03-04"

        svc.clock.advance(2.5)
        await svc.answer_all(first)
        log = await svc.sync_log(brand, first.sync_id)
        assert log["status"] == "completed"
        assert log["items_synced"] == 14 and log["items_failed"] == 0
        assert log["duration_ms"] == 2500
        assert log["answers"]["sandbox"]["status"] == "ok"
        rows = await metric_rows(fresh_db, brand)
        assert len(rows) == 14
        for row in rows:
            expected = row["engagement"] / row["reach"] if row["reach"] else 0
            assert row["engagement_rate"] == pytest.approx(expected)

        second = await svc.sync(brand, {"platforms": ["sandbox"]})
        await svc.inject(answer(second, "sandbox", account=days(second, "sandbox", scale=2)))
        rows = await metric_rows(fresh_db, brand)
        assert len(rows) == 14  # one row per platform and date, still
        sandbox = [r for r in rows if r["platform"] == "sandbox"]
        originals = {d.date: d for d in days(first, "sandbox")}
        assert all(r["reach"] == originals[r["date"]].reach * 2 for r in sandbox)
        assert {r["sync_id"] for r in sandbox} == {second.sync_id}

        synced = await outbox(fresh_db, MetricsSynced.event_type)
        assert [(s["sync_id"], s["status"]) for s in synced] == [
            (str(first.sync_id), "completed"),
            (str(second.sync_id), "completed"),
        ]
        assert synced[0]["items_synced"] == 14 and synced[0]["duration_ms"] == 2500


async def test_duplicate_and_resent_answers_change_nothing(fresh_db, kafka_bootstrap, topics):
    brand = uuid.uuid4()
    async with analytics_service(fresh_db, kafka_bootstrap) as svc:
        await svc.inject(brand_created(brand), connected(brand, "sandbox"))
        request = await svc.sync(brand, {"from": "2027-02-01", "to": "2027-02-10"})
        post = uuid.uuid4()
        post_days = [
            PostDay(post_id=post, platform_post_id="sb-1", date=date(2027, 2, d), reach=100 * d)
            for d in (2, 3)
        ]
        first = answer(request, "sandbox", account=days(request, "sandbox"), posts=post_days)
        await svc.inject(first)
        before = await metric_rows(fresh_db, brand)
        log_before = await svc.sync_log(brand, request.sync_id)
        assert log_before["status"] == "completed" and log_before["items_synced"] == 12

        svc.clock.advance(60)
        # The same CloudEvent again (a redelivery), and publishing resending the same answer
        # under a new event id (with a later collection time).
        resent = answer(
            request,
            "sandbox",
            account=days(request, "sandbox"),
            posts=post_days,
            collected_at=datetime.now(UTC) + timedelta(minutes=1),
        )
        await svc.inject(first, resent)
        assert await metric_rows(fresh_db, brand) == before  # not even synced_at moved
        assert await svc.sync_log(brand, request.sync_id) == log_before
        assert len(await outbox(fresh_db, MetricsSynced.event_type)) == 1
        posts = await as_owner(
            fresh_db,
            "SELECT post_id, platform_post_id, date, reach FROM analytics_post_metrics "
            "WHERE brand_id = $1 ORDER BY date",
            brand,
        )
        assert [(r["post_id"], r["reach"]) for r in posts] == [(post, 200), (post, 300)]


async def test_an_older_answer_delivered_late_does_not_overwrite_newer_numbers(
    fresh_db, kafka_bootstrap, topics
):
    brand = uuid.uuid4()
    async with analytics_service(fresh_db, kafka_bootstrap) as svc:
        await svc.inject(brand_created(brand), connected(brand, "sandbox"))
        old = await svc.sync(brand)
        new = await svc.sync(brand)
        now = datetime.now(UTC)
        await svc.inject(
            answer(new, "sandbox", account=days(new, "sandbox", scale=3), collected_at=now)
        )
        await svc.inject(
            answer(
                old,
                "sandbox",
                account=days(old, "sandbox"),
                collected_at=now - timedelta(minutes=5),
            )
        )
        rows = await metric_rows(fresh_db, brand)
        originals = {d.date: d for d in days(new, "sandbox")}
        assert all(r["reach"] == originals[r["date"]].reach * 3 for r in rows)
        assert (await svc.sync_log(brand, old.sync_id))["status"] == "completed"


async def test_failed_and_unsupported_platforms_make_a_partial_or_failed_sync(
    fresh_db, kafka_bootstrap, topics
):
    brand = uuid.uuid4()
    async with analytics_service(fresh_db, kafka_bootstrap) as svc:
        await svc.inject(brand_created(brand))
        request = await svc.sync(brand, {"platforms": ["sandbox", "x"]})
        await svc.inject(answer(request, "x", status="failed", error="rate limited (429)"))
        assert (await svc.sync_log(brand, request.sync_id))["status"] == "running"
        await svc.inject(answer(request, "sandbox", account=days(request, "sandbox")))
        log = await svc.sync_log(brand, request.sync_id)
        assert log["status"] == "partial"
        assert (log["items_synced"], log["items_failed"]) == (7, 1)
        assert "x: rate limited (429)" in log["error"]

        request = await svc.sync(brand, {"platforms": ["x"]})
        await svc.inject(answer(request, "x", status="not_supported"))
        log = await svc.sync_log(brand, request.sync_id)
        assert (log["status"], log["items_failed"]) == ("failed", 1)


async def test_platforms_default_to_the_connected_ones(fresh_db, kafka_bootstrap, topics):
    brand = uuid.uuid4()
    async with analytics_service(fresh_db, kafka_bootstrap) as svc:
        status, body = await svc.call("POST", "/v1/analytics/sync", brand)
        assert status == 422 and body["type"].endswith("/no_platforms"), body
        await svc.inject(connected(brand, "sandbox"), connected(brand, "x"))
        await svc.inject(disconnected(brand, "x", "expired"))
        request = await svc.sync(brand)
        assert request.platforms == ["sandbox"]
        assert request.timezone == "UTC"  # no brand event yet
        await svc.inject(disconnected(brand, "sandbox"))
        status, body = await svc.call("POST", "/v1/analytics/sync", brand, json={})
        assert status == 422, body


async def test_published_posts_have_a_home_before_any_sync(fresh_db, kafka_bootstrap, topics):
    brand = uuid.uuid4()
    post, plan = uuid.uuid4(), uuid.uuid4()
    async with analytics_service(fresh_db, kafka_bootstrap) as svc:
        await svc.inject(
            brand_created(brand), published(brand, "x", "x-77", post_id=post, plan_id=plan)
        )
        rows = await as_owner(fresh_db, "SELECT * FROM analytics_posts WHERE brand_id = $1", brand)
        assert [(r["post_id"], r["platform_post_id"], r["plan_id"]) for r in rows] == [
            (post, "x-77", plan)
        ]
        request = await svc.sync(
            brand, {"platforms": ["x"], "from": "2027-03-01", "to": "2027-03-02"}
        )
        # publishing does not always know our post id: the platform's id finds it.
        await svc.inject(
            answer(
                request,
                "x",
                posts=[
                    PostDay(
                        platform_post_id="x-77", date=date(2027, 3, 1), reach=50, media_kind="image"
                    )
                ],
            )
        )
        status, body = await svc.call(
            "GET", "/v1/analytics/posts?from=2027-03-01&to=2027-03-02", brand, role="viewer"
        )
        assert status == 200, body
        assert [(i["post_id"], i["reach"], i["plan_id"]) for i in body["items"]] == [
            (str(post), 50, str(plan))
        ]


BAD_BODIES = [
    ({"from": "2027-03-05", "to": "2027-03-01"}, "from"),
    ({"from": "2026-01-01", "to": "2027-01-02"}, "to"),
    ({"from": "2027-02-30"}, "from"),
    ({"from": 1700000000}, "from"),
    ({"from": "1999-12-31"}, "from"),
    ({"to": "3000-01-01"}, "to"),
    ({"platforms": []}, "platforms"),
    ({"platforms": ["Not A Platform"]}, "platforms"),
    ({"platforms": "sandbox"}, "platforms"),
    ({"extra": 1}, "extra"),
]


async def test_bad_sync_requests_are_422(fresh_db, kafka_bootstrap, topics):
    brand = uuid.uuid4()
    async with analytics_service(fresh_db, kafka_bootstrap) as svc:
        for body, field in BAD_BODIES:
            status, got = await svc.call(
                "POST", "/v1/analytics/sync", brand, json={"platforms": ["sandbox"], **body}
            )
            assert status == 422, (body, got)
            assert field in str(got.get("errors") or got), (body, got)
        for raw in (b"[1]", b"not json", b'"x"'):
            status, got = await svc.call(
                "POST",
                "/v1/analytics/sync",
                brand,
                data=raw,
                headers={"Content-Type": "application/json"},
            )
            assert 400 <= status < 500, (raw, status, got)
        status, got = await svc.call("POST", "/v1/analytics/sync", brand, role="viewer", json={})
        assert status == 403
        assert await outbox(fresh_db, SyncRequested.event_type) == []
