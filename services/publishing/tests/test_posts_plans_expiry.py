"""What the approval and analytics services rely on, through real events over the broker:
the version, texts and media per platform on post.submitted / post.updated; drafts from an
approved plan (with plan_id, once per slot however often the plan arrives); an approval
that expired, shown on the post, and a late approval with a new time (a silly time is
ignored, never a crash)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from pressroom_contracts.topics import Topic
from pressroom_kit.db import connect
from pressroom_kit.projections import rebuild, verify
from pressroom_publishing.plans import draft_id
from pressroom_publishing.projections import POSTS
from publishing_testkit import (
    add_media,
    as_owner,
    connect_platform,
    event,
    eventually,
    outbox,
    publish_events,
    targets,
)
from test_posts_approval import brand_with, decision, service, status_is

pytestmark = pytest.mark.integration
__all__ = ["service"]  # the fixture, shared


async def submitted_post(service, brand, **body):
    post = await service.create(brand, **body)
    status, answer = await service.call("POST", f"/v1/posts/{post['id']}/submit", brand)
    assert status == 200 and answer["status"] == "awaiting_approval", answer
    return post["id"]


async def test_submitted_and_updated_carry_version_texts_and_media(service):
    brand = await brand_with(service, approval_required=True)
    await connect_platform(service.db, brand, "mastodon")
    image = await add_media(service.db, brand)
    pid = await submitted_post(
        service,
        brand,
        content={"text": "for everyone", "media_ids": [str(image)]},
        platforms=["sandbox", "mastodon"],
        overrides={"mastodon": {"text": "for the fediverse", "media_ids": []}},
    )

    def of_post(events, type_):
        # The database is shared by the module's tests: only this post's events.
        return [d for t, d in events if t == type_ and d["post_id"] == pid]

    submitted = of_post(await outbox(service.db), "publishing.post.submitted.v1")[0]
    assert submitted["version"] == 2  # created, then submitted
    assert submitted["submission"] == 1
    assert submitted["texts"] == {"sandbox": "for everyone", "mastodon": "for the fediverse"}
    assert submitted["media_by_platform"] == {"sandbox": [str(image)], "mastodon": []}

    status, _ = await service.call(
        "PATCH", f"/v1/posts/{pid}", brand, json={"content": {"text": "changed"}}
    )
    assert status == 200
    updated = of_post(await outbox(service.db), "publishing.post.updated.v1")[-1]
    assert updated["version"] == 3 and updated["submission"] == 1
    assert updated["status"] == "draft"
    (created,) = of_post(await outbox(service.db), "publishing.post.created.v1")
    assert created["plan_id"] is None


async def test_an_expired_approval_shows_and_a_late_one_schedules_at_its_new_time(service):
    brand = await brand_with(service, approval_required=True)
    missed = service.clock() - timedelta(minutes=10)
    pid = await submitted_post(service, brand, scheduled_at=missed.isoformat())
    expired_at = datetime.now(UTC)
    expiry = decision(
        "expired",
        brand,
        pid,
        submission=1,
        scheduled_at=missed.isoformat(),
        expired_at=expired_at.isoformat(),
    )
    await publish_events(service.kafka, Topic.APPROVAL.value, expiry, expiry)

    async def shown():
        post = await service.post(brand, pid)
        return post if post["approval_expired_at"] else None

    post = await eventually(shown)
    assert post["status"] == "awaiting_approval"
    assert datetime.fromisoformat(post["approval_expired_at"]) == expired_at
    assert await targets(service.db, pid) == {}  # still out of the scheduler
    assert await service.scheduler.step() == 0

    # A late approval with a silly time: the time is ignored, the decision is not (the
    # post's time has passed: it goes out at once).
    other = await submitted_post(service, brand, scheduled_at=missed.isoformat())
    silly = decision(
        "approved",
        brand,
        other,
        decided_by="boss",
        decided_at=datetime.now(UTC).isoformat(),
        submission=1,
        scheduled_at="3999-01-01T00:00:00+00:00",
    )
    await publish_events(service.kafka, Topic.APPROVAL.value, silly)
    late = service.clock() + timedelta(hours=3)
    approval = decision(
        "approved",
        brand,
        pid,
        decided_by="boss",
        decided_at=datetime.now(UTC).isoformat(),
        submission=1,
        scheduled_at=late.isoformat(),
    )
    await publish_events(service.kafka, Topic.APPROVAL.value, approval)
    post = await status_is(service, brand, pid, "scheduled")
    assert datetime.fromisoformat(post["scheduled_at"]) == late
    assert (await targets(service.db, pid))["sandbox"]["due_at"] == late
    at_once = await status_is(service, brand, other, "scheduled")
    assert (await targets(service.db, other))["sandbox"]["due_at"] <= service.clock()
    assert datetime.fromisoformat(at_once["scheduled_at"]) == missed

    assert await service.scheduler.step() == 1  # only the post without a new time
    service.clock.advance(3 * 3600)
    assert await service.scheduler.step() == 1
    assert (await service.post(brand, pid))["status"] == "published"
    scheduled = [
        d
        for t, d in await outbox(service.db)
        if t == "publishing.post.scheduled.v1" and d["post_id"] == pid
    ]
    assert [datetime.fromisoformat(d["scheduled_at"]) for d in scheduled] == [late]
    await rebuilds_equal(service)


async def test_an_expiry_of_an_earlier_submission_changes_nothing(service):
    brand = await brand_with(service, approval_required=True)
    pid = await submitted_post(service, brand)
    await service.call("PATCH", f"/v1/posts/{pid}", brand, json={"content": {"text": "v2"}})
    await service.call("POST", f"/v1/posts/{pid}/submit", brand)
    stale = decision("expired", brand, pid, submission=1, expired_at=datetime.now(UTC).isoformat())
    current = decision(
        "expired", brand, pid, submission=2, expired_at=datetime.now(UTC).isoformat()
    )
    # One key, one partition: the stale expiry is handled first.
    await publish_events(service.kafka, Topic.APPROVAL.value, stale, current)

    async def seen():
        return (await service.post(brand, pid))["approval_expired_at"]

    await eventually(seen)
    recorded = await as_owner(
        service.db,
        "SELECT data FROM events WHERE stream_id = $1 AND type = 'ApprovalExpired'",
        pid,
    )
    assert [json.loads(r["data"])["submission"] for r in recorded] == [2]


def plan_event(brand: uuid.UUID, plan_id: uuid.UUID, slots: list[dict]):
    return event(
        "analytics.plan.approved.v1",
        brand,
        plan_id,
        plan_id=plan_id,
        brand_id=brand,
        month="2027-01",
        slots=slots,
        approved_by="planner",
        approved_at=datetime.now(UTC).isoformat(),
    )


async def test_an_approved_plan_becomes_drafts_once(service):
    brand = await brand_with(service, approval_required=False)  # connected: sandbox only
    plan_id = uuid.uuid4()
    when = datetime(2027, 1, 5, 9, 30, tzinfo=UTC)
    slots = [
        {
            "slot_id": uuid.uuid4(),
            "platform": "sandbox",
            "scheduled_at": when.isoformat(),
            "format": "image",
            "confidence": 0.8,
            "reason": "Tuesdays at 09:30 reach the most people",
        },
        {  # not connected: still a draft, the user connects later
            "slot_id": uuid.uuid4(),
            "platform": "mastodon",
            "scheduled_at": (when + timedelta(days=1)).isoformat(),
            "confidence": 0.4,
        },
        {  # a time the API would refuse: a draft without a time
            "slot_id": uuid.uuid4(),
            "platform": "sandbox",
            "scheduled_at": "3100-01-01T00:00:00+00:00",
            "confidence": 0.1,
        },
    ]
    plan = plan_event(brand, plan_id, slots)
    await publish_events(service.kafka, Topic.ANALYTICS.value, plan, plan)
    ids = [str(draft_id(plan_id, s["slot_id"])) for s in slots]

    async def drafted():
        status, page = await service.call("GET", "/v1/posts", brand, role="viewer")
        assert status == 200
        return page["items"] if len(page["items"]) >= 3 else None

    items = {p["id"]: p for p in await eventually(drafted)}
    assert sorted(items) == sorted(ids)
    first, second, third = (items[i] for i in ids)
    assert {p["status"] for p in items.values()} == {"draft"}
    assert {p["plan_id"] for p in items.values()} == {str(plan_id)}
    assert first["content"]["text"] == ""
    assert first["platforms"] == ["sandbox"]
    assert datetime.fromisoformat(first["scheduled_at"]) == when
    assert first["plan_slot"]["reason"] == "Tuesdays at 09:30 reach the most people"
    assert first["plan_slot"]["format"] == "image"
    assert first["author"] == "planner"
    assert second["platforms"] == ["mastodon"]
    assert third["scheduled_at"] is None

    # Resent later (a publisher's retry): nothing new.
    await publish_events(service.kafka, Topic.ANALYTICS.value, plan)
    marker = uuid.uuid4()
    await publish_events(
        service.kafka,
        Topic.ANALYTICS.value,
        plan_event(
            brand,
            marker,
            [
                {
                    "slot_id": uuid.uuid4(),
                    "platform": "sandbox",
                    "scheduled_at": when.isoformat(),
                    "confidence": 0.5,
                }
            ],
        ),
    )

    async def four():
        _status, page = await service.call("GET", "/v1/posts", brand, role="viewer")
        return page["items"] if len(page["items"]) >= 4 else None

    assert len(await eventually(four)) == 4
    created = [d for t, d in await outbox(service.db) if t == "publishing.post.created.v1"]
    assert sorted(d["post_id"] for d in created if d["plan_id"] == str(plan_id)) == sorted(ids)

    # The draft is written and submitted like any post; plan_id goes out with it.
    status, _ = await service.call(
        "PATCH",
        f"/v1/posts/{ids[0]}",
        brand,
        json={"content": {"text": "Our news"}, "scheduled_at": None},
    )
    assert status == 200
    status, answer = await service.call("POST", f"/v1/posts/{ids[0]}/submit", brand)
    assert status == 200 and answer["status"] == "scheduled", answer
    await service.drain()
    published = [d for t, d in await outbox(service.db) if t == "publishing.post.published.v1"]
    assert [(d["post_id"], d["plan_id"]) for d in published] == [(ids[0], str(plan_id))]
    # The unconnected platform's draft cannot be submitted until the brand connects it.
    status, refused = await service.call("POST", f"/v1/posts/{ids[1]}/submit", brand)
    assert status == 422, refused
    await rebuilds_equal(service)


async def rebuilds_equal(service) -> None:
    """The projection replayed from the events equals the live table (plan_id, plan_slot,
    approval_expired_at and a moved scheduled_at included)."""
    conn = await connect(service.db.owner_dsn)
    try:
        assert await rebuild(conn, POSTS) > 0
        diffs = await verify(conn, POSTS)
        assert diffs and all(d.equal for d in diffs), diffs
    finally:
        await conn.close()
