"""Review (issue #11): an approval decided on an earlier version schedules the edited one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pressroom_contracts.topics import Topic
from publishing_testkit import eventually, fake_platform, publish_events, publishing_service
from test_posts_approval import brand_with, decision

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


async def test_a_decision_on_an_earlier_submission_does_not_approve_the_edited_post(service):
    """handlers.py:110 / domain.py:301 Post.approve checks only ``awaiting_approval``: the
    approval id is never matched to a submission and ``decided_at`` is not compared with
    it. Submit v1, edit under review (back to draft), submit v2: a reviewer's approval of
    v1, decided before v2 was submitted and delivered late, schedules v2 unreviewed."""
    brand = await brand_with(service, approval_required=True)
    later = service.clock() + timedelta(days=1)
    post = await service.create(brand, scheduled_at=later.isoformat())
    pid = post["id"]
    status, _ = await service.call("POST", f"/v1/posts/{pid}/submit", brand)
    assert status == 200
    first_decided = datetime.now(UTC).isoformat()  # the reviewer approves version 1 here
    status, edited = await service.call(
        "PATCH", f"/v1/posts/{pid}", brand, json={"content": {"text": "never reviewed"}}
    )
    assert status == 200 and edited["status"] == "draft", edited
    status, again = await service.call("POST", f"/v1/posts/{pid}/submit", brand)
    assert again["status"] == "awaiting_approval"
    stale = decision("approved", brand, pid, decided_by="boss", decided_at=first_decided)
    # The real review of version 2, behind the stale one on the post's partition.
    verdict = decision(
        "rejected", brand, pid, decided_by="boss", reason="no", decided_at=datetime.now(UTC)
    )
    await publish_events(service.kafka, Topic.APPROVAL.value, stale, verdict)

    async def settled():
        answer = await service.post(brand, pid)
        return answer if answer["status"] in ("scheduled", "rejected") else None

    final = await eventually(settled)
    assert final["status"] == "rejected", final


async def test_requiring_approval_on_a_scheduled_post_sends_it_for_approval(service):
    """domain.py:289: an edit of a scheduled post keeps it ``scheduled`` whatever changed,
    ``requires_approval`` included: switching it on leaves the post to go out unreviewed."""
    brand = await brand_with(service, approval_required=False)
    later = service.clock() + timedelta(days=1)
    post = await service.create(brand, scheduled_at=later.isoformat())
    pid = post["id"]
    status, scheduled = await service.call("POST", f"/v1/posts/{pid}/submit", brand)
    assert scheduled["status"] == "scheduled"
    status, edited = await service.call(
        "PATCH", f"/v1/posts/{pid}", brand, json={"requires_approval": True}
    )
    assert status == 200 and edited["requires_approval"] is True, edited
    assert edited["status"] != "scheduled", edited
