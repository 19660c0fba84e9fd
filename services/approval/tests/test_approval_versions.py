"""The aggregate alone (no I/O): which submission reopens, which edit voids, which state
takes a decision, and that replaying the events rebuilds the same approval."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from pressroom_approval.approvals.domain import Approval, Submission, approval_id_for
from pressroom_kit.errors import Conflict, Forbidden, Invalid

pytestmark = pytest.mark.unit
NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
BRAND, POST = uuid.uuid4(), uuid.uuid4()


def submission(number: int | None, version: int | None, at: datetime | None = None) -> Submission:
    return Submission(
        submission=number,
        post_version=version,
        author="ann",
        submitted_by="ann",
        platforms=["x"],
        texts={"x": "hi"},
        media_by_platform={"x": []},
        scheduled_at=at,
    )


def opened(number: int = 1, version: int = 2, at: datetime | None = None) -> Approval:
    approval = Approval.open(BRAND, POST, submission(number, version, at), NOW)
    approval.mark_saved()
    return approval


def replayed(approval: Approval) -> Approval:
    return Approval.rehydrate(
        approval.id, ((type(e).type_name, e.model_dump(mode="json")) for e in approval.pending)
    )


def test_the_id_is_the_brand_and_post() -> None:
    assert opened().id == str(approval_id_for(BRAND, POST))
    assert approval_id_for(BRAND, POST) != approval_id_for(uuid.uuid4(), POST)


@pytest.mark.parametrize(
    ("number", "version", "reopens"),
    [(1, 2, False), (0, 9, False), (1, 1, False), (1, 3, True), (2, 1, True), (None, None, False)],
)
def test_only_a_newer_submission_reopens(number, version, reopens) -> None:
    approval = opened(1, 2)
    approval.reject("bob", reason="no", now=NOW)
    assert approval.reopen(submission(number, version), NOW) is reopens
    assert approval.status == ("pending" if reopens else "rejected")


@pytest.mark.parametrize(
    ("status_before", "version", "sub", "voids"),
    [
        ("pending", 3, 1, True),
        ("pending", 2, 1, False),  # the version the approval was asked for
        ("pending", 3, 0, False),  # an edit from before this submission
        ("pending", None, None, True),
        ("expired", 3, 1, True),
        ("approved", 3, 1, False),  # locked: publishing refuses edits
        ("rejected", 3, 1, False),
    ],
)
def test_which_edit_voids(status_before, version, sub, voids) -> None:
    approval = opened(1, 2, at=NOW)
    if status_before == "expired":
        assert approval.expire(NOW)
    elif status_before == "approved":
        approval.approve("bob", comment=None, scheduled_at=None, now=NOW)
    elif status_before == "rejected":
        approval.reject("bob", reason="no", now=NOW)
    assert approval.edited(version, sub, NOW) is voids
    assert (approval.status == "voided") is voids


def test_decisions_and_their_refusals() -> None:
    approval = opened(1, 2, at=NOW + timedelta(hours=1))
    with pytest.raises(Forbidden) as own:
        approval.approve("ann", comment=None, scheduled_at=None, now=NOW)
    assert own.value.code == "own_post"
    with pytest.raises(Invalid) as not_expired:
        approval.approve("bob", comment=None, scheduled_at=NOW + timedelta(days=1), now=NOW)
    assert not_expired.value.code == "not_expired"
    assert not approval.expire(NOW)  # not due yet
    assert approval.expire(NOW + timedelta(hours=1))
    with pytest.raises(Invalid) as past:
        approval.approve("bob", comment=None, scheduled_at=NOW, now=NOW + timedelta(hours=2))
    assert past.value.code == "scheduled_in_past"
    approval.approve(
        "bob", comment="ok", scheduled_at=NOW + timedelta(hours=3), now=NOW + timedelta(hours=2)
    )
    assert approval.status == "approved" and approval.locked
    with pytest.raises(Conflict) as twice:
        approval.reject("cat", reason="no", now=NOW)
    assert twice.value.code == "already_decided"
    approval.unlock("ada", reason=None, now=NOW)
    assert approval.status == "pending" and not approval.locked
    with pytest.raises(Conflict):
        approval.unlock("ada", reason=None, now=NOW)
    assert approval.cancelled(NOW) and not approval.cancelled(NOW)
    assert approval.published(NOW) and not approval.published(NOW)


def test_replay_rebuilds_the_same_state() -> None:
    approval = Approval.open(BRAND, POST, submission(1, 2, NOW), NOW)
    approval.approve("bob", comment=None, scheduled_at=None, now=NOW)
    approval.unlock("ada", reason="typo", now=NOW)
    approval.reopen(submission(2, 5, NOW + timedelta(days=1)), NOW)
    again = replayed(approval)
    for name in (
        "status",
        "locked",
        "submission",
        "post_version",
        "author",
        "scheduled_at",
        "brand_id",
        "post_id",
    ):
        assert getattr(again, name) == getattr(approval, name), name
