"""Without I/O: the decisions behind plan drafts, approval expiry and late approvals, the
public events' new fields, and the metrics answer's media kinds, ids and size bound."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

import pytest
from pressroom_contracts.events.publishing import PostDay
from pressroom_contracts.registry import payload_model
from pressroom_kit.eventstore import RecordedEvent
from pressroom_kit.outbox import outbox_row
from pressroom_publishing.metrics_sync import Answer, MetricsSync, answer_id, media_kind
from pressroom_publishing.plans import draft_id
from pressroom_publishing.posts.commands import _snapshot, to_public
from pressroom_publishing.posts.domain import Content, Override, PlanSlot, Post

pytestmark = pytest.mark.unit
NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def waiting_post(**kwargs) -> Post:
    post = Post.create(
        uuid.uuid4(),
        brand_id=uuid.uuid4(),
        author="a",
        content=Content(text="hi"),
        platforms=["sandbox"],
        overrides={},
        scheduled_at=NOW,
        requires_approval=True,
        **kwargs,
    )
    post.submit("a", brand_requires_approval=False, now=NOW)
    return post


def replayed(post: Post) -> Post:
    events = [(e.type_name, e.model_dump(mode="json")) for e in post.pending]
    return Post.rehydrate(post.id, events)


def test_an_expiry_is_recorded_once_and_only_for_the_waiting_submission():
    post = waiting_post()
    approval = uuid.uuid4()
    assert not post.approval_expired(approval, submission=2, missed_at=NOW, expired_at=NOW)
    assert post.approval_expired(approval, submission=1, missed_at=NOW, expired_at=NOW)
    assert not post.approval_expired(approval, submission=None, missed_at=NOW, expired_at=NOW)
    assert post.status == "awaiting_approval" and post.approval_expired_at == NOW
    assert replayed(post).approval_expired_at == NOW


def test_a_late_approval_moves_the_post_to_its_new_time():
    post = waiting_post()
    later = NOW + timedelta(days=2)
    assert post.approve(uuid.uuid4(), "boss", NOW + timedelta(days=1), scheduled_at=later)
    assert post.status == "scheduled" and post.scheduled_at == later and post.locked
    assert replayed(post).scheduled_at == later
    # Without a new time the post keeps its own (the scheduler sends it at once if past).
    kept = waiting_post()
    assert kept.approve(uuid.uuid4(), "boss", NOW + timedelta(days=1))
    assert kept.scheduled_at == NOW
    assert kept.pending[-1].scheduled_at == NOW


def test_a_new_submission_clears_the_expiry():
    post = waiting_post()
    post.approval_expired(uuid.uuid4(), submission=1, missed_at=NOW, expired_at=NOW)
    post.edit("a", {"text": "v2"})
    post.submit("a", brand_requires_approval=True, now=NOW)
    assert post.approval_expired_at is None and post.submission == 2


def test_draft_ids_are_derived_from_the_plan_and_the_slot():
    plan, slot = uuid.uuid4(), uuid.uuid4()
    assert draft_id(plan, slot) == draft_id(plan, slot)
    assert draft_id(plan, slot) != draft_id(plan, uuid.uuid4())
    assert draft_id(plan, slot) != draft_id(uuid.uuid4(), slot)


def recorded(post: Post) -> list[tuple[str, dict]]:
    out = []
    for version, event in enumerate(post.pending, start=1):
        stored = RecordedEvent(
            global_position=version,
            event_id=uuid.uuid4(),
            stream_id=post.id,
            stream_type=Post.stream_type,
            version=version,
            type=event.type_name,
            schema_version=1,
            data=event.model_dump(mode="json"),
            metadata={"actor": "m", "post": _snapshot(post)},
            brand_id=post.brand_id,
            occurred_at=NOW,
        )
        for _, public_type, data in to_public(stored):
            payload_model(public_type).model_validate(data)
            out.append((public_type, data))
    return out


def test_public_events_carry_version_texts_media_and_plan():
    plan = uuid.uuid4()
    image = uuid.uuid4()
    post = Post.create(
        uuid.uuid4(),
        brand_id=uuid.uuid4(),
        author="a",
        content=Content(text="everyone", media_ids=[image]),
        platforms=["sandbox", "x"],
        overrides={"x": Override(text="short", media_ids=[])},
        scheduled_at=None,
        requires_approval=None,
        plan_id=plan,
        plan_slot=PlanSlot(slot_id=uuid.uuid4(), reason="why"),
    )
    post.submit("a", brand_requires_approval=True, now=NOW)
    post.edit("a", {"text": "changed"})
    post.submit("a", brand_requires_approval=True, now=NOW)
    post.approve(uuid.uuid4(), "boss", NOW)
    post.start_publishing()
    post.published("x", platform_post_id="1", url=None, published_at=NOW, attempts=1)
    events = recorded(post)
    created = next(d for t, d in events if t.endswith("created.v1"))
    assert created["plan_id"] == str(plan)
    first, second = (d for t, d in events if t.endswith("submitted.v1"))
    assert (first["version"], first["submission"]) == (2, 1)
    assert (second["version"], second["submission"]) == (4, 2)
    assert second["texts"] == {"sandbox": "changed", "x": "short"}
    assert second["media_by_platform"] == {"sandbox": [str(image)], "x": []}
    updated = next(d for t, d in events if t.endswith("updated.v1"))
    assert updated["version"] == 3 and updated["submission"] == 2  # the snapshot's latest
    published = next(d for t, d in events if t.endswith("published.v1"))
    assert published["plan_id"] == str(plan)


def test_media_kinds():
    assert media_kind([], False) == "text"
    assert media_kind(["image", "image"], True) == "image"
    assert media_kind(["video"], True) == "video"
    assert media_kind(["image", "video"], True) == "mixed"
    assert media_kind(["image", None], True) == "image"  # one asset deleted since
    assert media_kind([None], True) is None


def test_answers_have_stable_ids_and_stay_inside_one_message():
    brand, sync = uuid.uuid4(), uuid.uuid4()
    assert answer_id(brand, sync, "x") == answer_id(brand, sync, "x")
    assert answer_id(brand, sync, "x") != answer_id(brand, sync, "sandbox")
    row = {
        "sync_id": sync,
        "brand_id": brand,
        "platform": "sandbox",
        "since": date(2026, 1, 1),
        "until": date(2026, 3, 31),
    }
    day = PostDay(platform_post_id="p" * 20, date=date(2026, 1, 1), impressions=10**6)
    answer, message = MetricsSync.fitted(row, Answer("ok", posts=[day] * 10), NOW)
    assert answer.status == "ok" and message.event.id == answer_id(brand, sync, "sandbox")
    outbox_row(message)
    huge, message = MetricsSync.fitted(row, Answer("ok", posts=[day] * 20_000), NOW)
    assert huge.status == "failed" and "20000 post days" in (huge.error or "")
    assert message.event.data["status"] == "failed" and message.event.data["posts"] == []
    assert message.event.data["from"] == "2026-01-01"
    outbox_row(message)  # fits
