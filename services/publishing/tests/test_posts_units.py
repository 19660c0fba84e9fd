"""The post's decisions, the backoff schedule, the calendar's days and the public events,
without I/O."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from pressroom_contracts.registry import payload_model
from pressroom_kit.errors import Conflict, NotFound
from pressroom_kit.eventstore import RecordedEvent
from pressroom_publishing.posts import calendar
from pressroom_publishing.posts.commands import _snapshot, to_public
from pressroom_publishing.posts.domain import Content, Override, Post, overall_status
from pressroom_publishing.scheduler import backoff_s
from pressroom_publishing.settings import PublishingSettings

pytestmark = pytest.mark.unit
NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def new_post(**kwargs: Any) -> Post:
    values: dict[str, Any] = {
        "brand_id": uuid.uuid4(),
        "author": "author",
        "content": Content(text="hi", media_ids=[uuid.uuid4()]),
        "platforms": ["sandbox", "x"],
        "overrides": {"x": Override(text="short", media_ids=[])},
        "scheduled_at": None,
        "requires_approval": None,
    }
    values.update(kwargs)
    return Post.create(uuid.uuid4(), **values)


def test_overrides_replace_only_what_they_name():
    post = new_post()
    assert post.content_for("x") == Content(text="short", media_ids=[], link=None)
    assert post.content_for("sandbox") == post.content
    assert post.media_ids_for("x") == [] and post.all_media_ids() == post.content.media_ids


def test_the_status_machine_through_approval():
    post = new_post()
    assert post.status == "draft"
    assert post.submit("m", brand_requires_approval=True, now=NOW) is True
    assert post.status == "awaiting_approval"
    with pytest.raises(Conflict):
        post.submit("m", brand_requires_approval=True, now=NOW)
    approval = uuid.uuid4()
    assert post.approve(approval, "boss", NOW) and post.status == "scheduled" and post.locked
    assert post.approve(approval, "boss", NOW) is False  # a duplicate changes nothing
    with pytest.raises(Conflict) as locked:
        post.edit("m", {"text": "new"})
    assert locked.value.code == "locked_by_approval"
    assert post.unlock(approval, "admin") and post.status == "draft" and not post.locked
    assert post.edit("m", {"text": "new"}) == ["text"]
    assert post.edit("m", {"text": "new"}) == []  # nothing changed, nothing recorded
    post.submit("m", brand_requires_approval=True, now=NOW)
    assert post.reject(approval, "boss", "no") and post.status == "rejected"
    post.edit("m", {"text": "again"})
    assert post.status == "draft"


def test_the_posts_own_setting_wins_and_no_time_means_now():
    post = new_post(requires_approval=False)
    assert post.submit("m", brand_requires_approval=True, now=NOW) is False
    assert post.status == "scheduled" and not post.locked
    assert post.pending[-1].scheduled_at == NOW  # type: ignore[attr-defined]


def test_outcomes_per_platform_decide_the_post():
    post = new_post()
    post.submit("m", brand_requires_approval=False, now=NOW)
    post.start_publishing()
    assert post.status == "publishing"
    post.published("sandbox", platform_post_id="1", url=None, published_at=NOW, attempts=1)
    assert post.status == "publishing"
    post.failed("x", error_code="rejected", error="no", attempts=1, failed_at=NOW)
    assert post.status == "partially_published"
    assert (
        post.published("sandbox", platform_post_id="2", url=None, published_at=NOW, attempts=2)
        is False
    )
    with pytest.raises(Conflict):
        post.edit("m", {"text": "late"})
    with pytest.raises(Conflict):
        post.cancel("m", NOW)
    assert post.retry("m") == ["x"] and post.status == "publishing" and post.retry_count == 1
    with pytest.raises(Conflict):
        post.retry("m")


def test_unconfirmed_is_settled_by_a_person_only():
    post = new_post(platforms=["sandbox"], overrides={})
    post.submit("m", brand_requires_approval=False, now=NOW)
    post.start_publishing()
    post.unconfirmed("sandbox", attempt=1, client_reference="r", attempted_at=NOW)
    assert post.status == "publishing" and post.results["sandbox"]["status"] == "unconfirmed"
    with pytest.raises(NotFound):
        post.resolve_retry("x", by="p")
    post.resolve_published("sandbox", by="p", platform_post_id="9", url=None, attempts=1, now=NOW)
    assert post.status == "published"
    with pytest.raises(Conflict) as settled:
        post.resolve_retry("sandbox", by="p")
    assert settled.value.code == "not_unconfirmed"


def test_overall_status():
    def of(*statuses: str) -> str:
        return overall_status({str(i): {"status": s} for i, s in enumerate(statuses)})

    assert of("published", "published") == "published"
    assert of("published", "failed") == "partially_published"
    assert of("failed", "failed") == "failed"
    assert of("published", "unconfirmed") == "publishing"
    assert of("pending", "failed") == "publishing"


def test_the_post_replays_to_the_same_state():
    post = new_post()
    post.submit("m", brand_requires_approval=False, now=NOW)
    post.start_publishing()
    post.published("x", platform_post_id="1", url="u", published_at=NOW, attempts=1)
    events = [(e.type_name, e.model_dump(mode="json")) for e in post.pending]
    again = Post.rehydrate(post.id, events)
    assert (again.status, again.results, again.platforms) == (
        post.status,
        post.results,
        post.platforms,
    )


def test_backoff_is_exponential_capped_jittered_and_honours_retry_after():
    settings = PublishingSettings(retry_base_s=30, retry_max_s=100, retry_jitter=0.2)
    assert [backoff_s(settings, n, None, 0.0) for n in (1, 2, 3, 4)] == [30, 60, 100, 100]
    assert backoff_s(settings, 1, None, 1.0) == pytest.approx(24)
    assert backoff_s(settings, 1, 500, 0.5) == 500


def test_calendar_days_are_local_whatever_their_length():
    zone = calendar.brand_zone("America/New_York")
    # 2026-11-01: New York falls back, a 25-hour day.
    start, end = calendar.local_range(date(2026, 11, 1), date(2026, 11, 1), zone)
    assert end - start == timedelta(hours=25)
    posts = [
        {"id": 1, "when": datetime(2026, 11, 2, 4, 59, tzinfo=UTC)},  # 23:59 EST on the 1st
        {"id": 2, "when": datetime(2026, 11, 1, 4, 0, tzinfo=UTC)},  # 00:00 EDT on the 1st
        {"id": 3, "when": datetime(2026, 11, 2, 5, 0, tzinfo=UTC)},  # 00:00 EST on the 2nd
    ]
    days = calendar.by_day(posts, zone)
    assert [(d, [p["id"] for p in ps]) for d, ps in days] == [
        (date(2026, 11, 1), [2, 1]),
        (date(2026, 11, 2), [3]),
    ]
    assert calendar.brand_zone("Not/AZone").key == "UTC"
    first, last = calendar.local_range(date.min, date.max, calendar.brand_zone("Asia/Tokyo"))
    assert first.year == 1 and last.year == 9999


def test_public_events_match_their_contracts():
    post = new_post(scheduled_at=NOW + timedelta(hours=1))
    post.submit("m", brand_requires_approval=True, now=NOW)
    post.approve(uuid.uuid4(), "boss", NOW)
    post.start_publishing()
    post.published("sandbox", platform_post_id="1", url=None, published_at=NOW, attempts=1)
    post.failed("x", error_code="rejected", error="no", attempts=1, failed_at=NOW)
    types = []
    for version, event in enumerate(post.pending, start=1):
        recorded = RecordedEvent(
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
        for _, public_type, data in to_public(recorded):
            payload_model(public_type).model_validate(data)
            types.append(public_type)
    assert types == [
        "publishing.post.created.v1",
        "publishing.post.submitted.v1",
        "publishing.post.scheduled.v1",
        "publishing.post.published.v1",
        "publishing.post.failed.v1",
    ]
