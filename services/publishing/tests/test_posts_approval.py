"""Approval gating driven by real events over the broker: the brand's setting and the post's
own, approved (locked, published at once when due), unlocked (back to draft), rejected;
media known from media events; the calendar by local day across a DST change."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from pressroom_contracts.topics import Topic
from publishing_testkit import (
    as_owner,
    connect_platform,
    event,
    eventually,
    fake_platform,
    outbox,
    publish_events,
    publishing_service,
    targets,
)

pytestmark = pytest.mark.integration


@pytest.fixture
async def service(fresh_db, kafka_bootstrap, topics):
    async with (
        fake_platform() as platform,
        publishing_service(fresh_db, kafka_bootstrap, platform) as service,
    ):
        service.platform = platform
        service.kafka = kafka_bootstrap
        yield service


async def brand_with(service, *, approval_required: bool, timezone: str = "UTC") -> uuid.UUID:
    brand = uuid.uuid4()
    await publish_events(
        service.kafka,
        Topic.BRANDS.value,
        event(
            "brand.created.v1",
            brand,
            brand,
            brand_id=brand,
            name="Brand",
            timezone=timezone,
            settings={"approval_required": approval_required},
            created_by="founder",
        ),
    )

    async def known():
        return await as_owner(
            service.db, "SELECT 1 FROM publishing_brands WHERE brand_id = $1", brand
        )

    await eventually(known)
    await connect_platform(service.db, brand, "sandbox")
    return brand


def decision(kind: str, brand: uuid.UUID, post_id: str, **extra):
    data = {
        "approval_id": uuid.uuid4(),
        "post_id": post_id,
        "brand_id": brand,
        **extra,
    }
    return event(f"approval.{kind}.v1", brand, post_id, **data)


async def status_is(service, brand, post_id, status):
    async def check():
        post = await service.post(brand, post_id)
        return post if post["status"] == status else None

    return await eventually(check)


async def test_approval_gates_scheduling_and_locks_the_post(service):
    brand = await brand_with(service, approval_required=True)
    later = service.clock() + timedelta(days=1)
    post = await service.create(brand, scheduled_at=later.isoformat())
    pid = post["id"]
    status, submitted = await service.call("POST", f"/v1/posts/{pid}/submit", brand)
    assert status == 200 and submitted["status"] == "awaiting_approval"
    assert await targets(service.db, pid) == {}
    submitted_events = [d for t, d in await outbox(service.db) if t.endswith("submitted.v1")]
    assert submitted_events[0]["author"] == "user-manager"

    now = datetime.now(UTC).isoformat()
    await publish_events(
        service.kafka,
        Topic.APPROVAL.value,
        decision("approved", brand, pid, decided_by="boss", decided_at=now),
    )
    approved = await status_is(service, brand, pid, "scheduled")
    assert approved["approval_locked"] is True
    assert (await targets(service.db, pid))["sandbox"]["due_at"] == later

    status, body = await service.call(
        "PATCH", f"/v1/posts/{pid}", brand, json={"content": {"text": "sneaky"}}
    )
    assert status == 409 and body["type"].endswith("/locked_by_approval")

    await publish_events(
        service.kafka,
        Topic.APPROVAL.value,
        decision("unlocked", brand, pid, unlocked_by="admin", unlocked_at=now),
    )
    unlocked = await status_is(service, brand, pid, "draft")
    assert unlocked["approval_locked"] is False
    assert await targets(service.db, pid) == {}
    status, _ = await service.call(
        "PATCH", f"/v1/posts/{pid}", brand, json={"content": {"text": "fixed"}}
    )
    assert status == 200
    status, again = await service.call("POST", f"/v1/posts/{pid}/submit", brand)
    assert again["status"] == "awaiting_approval"
    await publish_events(
        service.kafka,
        Topic.APPROVAL.value,
        decision("rejected", brand, pid, decided_by="boss", reason="off brand", decided_at=now),
    )
    await status_is(service, brand, pid, "rejected")
    types = [t for t, _ in await outbox(service.db)]
    assert types.count("publishing.post.submitted.v1") == 2
    assert types.count("publishing.post.scheduled.v1") == 1


async def test_an_approval_after_the_scheduled_time_publishes_at_once(service):
    brand = await brand_with(service, approval_required=True)
    past = service.clock() - timedelta(hours=1)
    post = await service.create(brand, scheduled_at=past.isoformat())
    await service.call("POST", f"/v1/posts/{post['id']}/submit", brand)
    # A duplicate delivery of the decision changes nothing.
    approved = decision(
        "approved", brand, post["id"], decided_by="boss", decided_at=datetime.now(UTC).isoformat()
    )
    await publish_events(service.kafka, Topic.APPROVAL.value, approved, approved)
    await status_is(service, brand, post["id"], "scheduled")
    await service.drain()
    published = await service.post(brand, post["id"])
    assert published["status"] == "published"
    assert len(service.platform.created) == 1
    assert [t for t, _ in await outbox(service.db)].count("publishing.post.scheduled.v1") == 1


async def test_the_posts_own_setting_wins_over_the_brands(service):
    strict = await brand_with(service, approval_required=True)
    relaxed = await brand_with(service, approval_required=False)
    for brand, own, expected in (
        (strict, False, "scheduled"),
        (strict, None, "awaiting_approval"),
        (relaxed, True, "awaiting_approval"),
        (relaxed, None, "scheduled"),
    ):
        post = await service.create(brand, requires_approval=own)
        status, answer = await service.call("POST", f"/v1/posts/{post['id']}/submit", brand)
        assert status == 200 and answer["status"] == expected, (own, answer)


async def test_media_events_make_assets_usable_and_deleted_ones_refused(service):
    brand = await brand_with(service, approval_required=False)
    asset = uuid.uuid4()
    await publish_events(
        service.kafka,
        Topic.MEDIA.value,
        event(
            "media.asset.uploaded.v1",
            brand,
            asset,
            asset_id=asset,
            brand_id=brand,
            kind="image",
            filename="a.jpg",
            content_type="image/jpeg",
            size_bytes=1234,
            hash="0" * 64,
            width=100,
            height=80,
        ),
    )

    async def known():
        return await as_owner(
            service.db, "SELECT 1 FROM publishing_media WHERE asset_id = $1", asset
        )

    await eventually(known)
    post = await service.create(brand, content={"text": "pic", "media_ids": [str(asset)]})
    assert post["content"]["media_ids"] == [str(asset)]
    await publish_events(
        service.kafka,
        Topic.MEDIA.value,
        event(
            "media.asset.deleted.v1",
            brand,
            asset,
            asset_id=asset,
            brand_id=brand,
            size_bytes=1234,
            forced=True,
        ),
    )

    async def gone():
        rows = await as_owner(
            service.db, "SELECT 1 FROM publishing_media WHERE asset_id = $1", asset
        )
        return not rows

    await eventually(gone)
    status, body = await service.call("POST", f"/v1/posts/{post['id']}/submit", brand)
    assert status == 422
    assert [e["field"] for e in body["errors"]] == ["content.media_ids[0]"]


async def test_the_calendar_groups_by_local_day_across_a_dst_change(service):
    # Europe/Berlin leaves CET (+1) for CEST (+2) at 2026-03-29 01:00 UTC: that day has 23 h.
    brand = await brand_with(service, approval_required=False, timezone="Europe/Berlin")
    times = {
        "sat_late": "2026-03-28T22:59:00+00:00",  # 23:59 CET on the 28th
        "sun_first": "2026-03-28T23:30:00+00:00",  # 00:30 CET on the 29th
        "sun_last": "2026-03-29T21:59:00+00:00",  # 23:59 CEST on the 29th
        "mon_first": "2026-03-29T22:00:00+00:00",  # 00:00 CEST on the 30th
    }
    ids = {}
    for name, when in times.items():
        ids[(await service.create(brand, scheduled_at=when))["id"]] = name
    status, cal = await service.call(
        "GET", "/v1/calendar?from=2026-03-29&to=2026-03-29", brand, role="viewer"
    )
    assert status == 200, cal
    assert cal["timezone"] == "Europe/Berlin"
    assert [d["date"] for d in cal["days"]] == ["2026-03-29"]
    assert [ids[p["id"]] for p in cal["days"][0]["posts"]] == ["sun_first", "sun_last"]
    status, cal = await service.call(
        "GET", "/v1/calendar?from=2026-03-28&to=2026-03-30", brand, role="viewer"
    )
    assert {d["date"]: [ids[p["id"]] for p in d["posts"]] for d in cal["days"]} == {
        "2026-03-28": ["sat_late"],
        "2026-03-29": ["sun_first", "sun_last"],
        "2026-03-30": ["mon_first"],
    }
    status, cal = await service.call(
        "GET", "/v1/calendar?from=2026-03-30&to=2026-03-29", brand, role="viewer"
    )
    assert status == 200 and cal["days"] == []
    status, cal = await service.call(
        "GET", "/v1/calendar?from=0001-01-01&to=9999-12-31", brand, role="viewer"
    )
    assert status == 200 and sum(len(d["posts"]) for d in cal["days"]) == 4
    for query in ("from=x&to=y", "from=2026-03-01", "from=2026-02-30&to=2026-03-01"):
        status, body = await service.call("GET", f"/v1/calendar?{query}", brand, role="viewer")
        assert status == 422, (query, body)
    for query in ("to=0.5", "from=2026-03-29", "from=2026-02-30T00:00:00Z"):
        status, body = await service.call("GET", f"/v1/posts?{query}", brand, role="viewer")
        assert status == 422, (query, body)
    status, page = await service.call(
        "GET",
        "/v1/posts?from=2026-03-28T23:00:00%2B00:00&to=2026-03-29T22:00:00%2B00:00",
        brand,
        role="viewer",
    )
    assert {ids[p["id"]] for p in page["items"]} == {"sun_first", "sun_last"}
