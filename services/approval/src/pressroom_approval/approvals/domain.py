"""The approval aggregate: one per post, opened by the post's submission and decided once
per submission. Pure Python: it replays its events and decides; the commands keep the
projection (``post_approvals``), the audit log and the escalations in step in the same
transaction.

Status machine: ``pending`` -> ``approved`` (locked) | ``rejected`` | ``expired`` (the
post's time passed undecided; a late decision is still taken) | ``voided`` (the post was
edited or cancelled). ``unlock`` takes an approved approval back to ``pending`` (unlocked:
a new decision is needed). A newer submission reopens any of them as ``pending``. Every
event carries the status it leaves the approval in, so the projection never re-derives it.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal
from uuid import UUID, uuid5

from pressroom_kit.domain import Aggregate, DomainEvent
from pressroom_kit.errors import Conflict, Forbidden, Invalid

Status = Literal["pending", "approved", "rejected", "expired", "voided"]
STATUSES: tuple[Status, ...] = ("pending", "approved", "rejected", "expired", "voided")
DECIDABLE: tuple[Status, ...] = ("pending", "expired")
# A stable namespace: an approval's id is derived from its brand and post, so two copies
# of one submission can only ever open the same stream (the event store's version then
# turns a race into one clean conflict).
APPROVAL_NAMESPACE = UUID("6b1f4c3e-51c9-4a8e-9a57-2f0f3d6d1a40")


def approval_id_for(brand_id: UUID, post_id: UUID) -> UUID:
    return uuid5(APPROVAL_NAMESPACE, f"{brand_id}:{post_id}")


class Submission(DomainEvent):
    """What was submitted: the content the decision is about."""

    submission: int | None
    post_version: int | None
    author: str | None
    submitted_by: str | None
    platforms: list[str]
    texts: dict[str, str]
    media_by_platform: dict[str, list[UUID]]
    scheduled_at: datetime | None


class ApprovalRequested(Submission):
    """Opened (``reopened`` false) or reopened by a newer submission."""

    type_name: ClassVar[str] = "ApprovalRequested"
    brand_id: UUID
    post_id: UUID
    requested_at: datetime
    reopened: bool = False
    status: Status = "pending"


class ApprovalApproved(DomainEvent):
    type_name: ClassVar[str] = "ApprovalApproved"
    by: str
    comment: str | None
    decided_at: datetime
    scheduled_at: datetime | None = None  # a new time, given with a late decision
    submission: int | None
    status: Status = "approved"


class ApprovalRejected(DomainEvent):
    type_name: ClassVar[str] = "ApprovalRejected"
    by: str
    reason: str
    decided_at: datetime
    submission: int | None
    status: Status = "rejected"


class ApprovalUnlocked(DomainEvent):
    type_name: ClassVar[str] = "ApprovalUnlocked"
    by: str
    reason: str | None
    unlocked_at: datetime
    status: Status = "pending"


class ApprovalExpired(DomainEvent):
    type_name: ClassVar[str] = "ApprovalExpired"
    expired_at: datetime
    status: Status = "expired"


class ApprovalVoided(DomainEvent):
    """The post changed under the approval (``edited``, with its new version) or was
    ``cancelled``: nothing is left to decide until it is submitted again."""

    type_name: ClassVar[str] = "ApprovalVoided"
    cause: Literal["edited", "cancelled"]
    post_version: int | None
    voided_at: datetime
    status: Status = "voided"


class PostPublished(DomainEvent):
    """The approved post went out (its first platform); nothing else changes."""

    type_name: ClassVar[str] = "PostPublished"
    published_at: datetime


def submission_key(submission: int | None, version: int | None) -> tuple[int, int]:
    """Orders submissions: by their number, then by the post's version."""
    return (submission or 0, version or 0)


class Approval(Aggregate):
    stream_type = "approval"
    event_classes = (
        ApprovalRequested,
        ApprovalApproved,
        ApprovalRejected,
        ApprovalUnlocked,
        ApprovalExpired,
        ApprovalVoided,
        PostPublished,
    )

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.brand_id: UUID | None = None
        self.post_id: UUID | None = None
        self.status: Status = "pending"
        self.locked = False
        self.submission: int | None = None
        self.post_version: int | None = None
        self.author: str | None = None
        self.scheduled_at: datetime | None = None
        self.published_at: datetime | None = None

    def apply(self, event: DomainEvent) -> None:
        match event:
            case ApprovalRequested():
                self.brand_id, self.post_id = event.brand_id, event.post_id
                self.submission, self.post_version = event.submission, event.post_version
                self.author, self.scheduled_at = event.author, event.scheduled_at
                self.locked = False
            case ApprovalApproved():
                self.locked = True
            case ApprovalUnlocked() | ApprovalVoided():
                self.locked = False
                if isinstance(event, ApprovalVoided) and event.post_version is not None:
                    self.post_version = event.post_version
            case PostPublished():
                self.published_at = event.published_at
        self.status = getattr(event, "status", self.status)

    # --- opening and closing (from publishing's events) ---------------------------------

    @classmethod
    def open(cls, brand_id: UUID, post_id: UUID, submitted: Submission, now: datetime) -> Approval:
        approval = cls(str(approval_id_for(brand_id, post_id)))
        approval.record(
            ApprovalRequested(
                **submitted.model_dump(), brand_id=brand_id, post_id=post_id, requested_at=now
            )
        )
        return approval

    def is_newer(self, submission: int | None, version: int | None) -> bool:
        return submission_key(submission, version) > submission_key(
            self.submission, self.post_version
        )

    def reopen(self, submitted: Submission, now: datetime) -> bool:
        """A newer submission needs a new decision; an older or repeated one changes
        nothing (False)."""
        if not self.is_newer(submitted.submission, submitted.post_version):
            return False
        assert self.brand_id is not None and self.post_id is not None
        self.record(
            ApprovalRequested(
                **submitted.model_dump(),
                brand_id=self.brand_id,
                post_id=self.post_id,
                requested_at=now,
                reopened=True,
            )
        )
        return True

    def edited(self, version: int | None, submission: int | None, now: datetime) -> bool:
        """The post was edited: an open approval (pending, expired, or approved and
        unlocked, which is pending again) no longer describes it. An edit the approval has
        already seen (its version is not newer) changes nothing."""
        if self.status not in DECIDABLE:
            return False
        if submission is not None and (self.submission or 0) > submission:
            return False  # an edit from before the submission this approval is about
        if version is not None and self.post_version is not None and version <= self.post_version:
            return False
        self.record(ApprovalVoided(cause="edited", post_version=version, voided_at=now))
        return True

    def cancelled(self, now: datetime) -> bool:
        if self.status == "voided":
            return False
        self.record(ApprovalVoided(cause="cancelled", post_version=None, voided_at=now))
        return True

    def published(self, at: datetime) -> bool:
        if self.published_at is not None:
            return False
        self.record(PostPublished(published_at=at))
        return True

    # --- decisions ---------------------------------------------------------------------

    def _check_decidable(self, actor_id: str) -> None:
        if self.author is not None and actor_id == self.author:
            raise Forbidden("the post's author cannot decide on it", code="own_post")
        if self.status not in DECIDABLE:
            raise Conflict(
                f"the approval is {self.status}, not pending",
                code="already_decided",
                status_now=self.status,
            )

    def approve(
        self,
        by: str,
        *,
        comment: str | None,
        scheduled_at: datetime | None,
        now: datetime,
    ) -> None:
        self._check_decidable(by)
        if scheduled_at is not None:
            if self.status != "expired":
                raise Invalid(
                    "a new publish time is only taken with a late decision (the approval "
                    "expired); the post keeps its own time",
                    code="not_expired",
                    errors=[{"field": "scheduled_at", "message": "only for an expired approval"}],
                )
            if scheduled_at <= now:
                raise Invalid(
                    "scheduled_at must be in the future",
                    code="scheduled_in_past",
                    errors=[{"field": "scheduled_at", "message": "must be in the future"}],
                )
        self.record(
            ApprovalApproved(
                by=by,
                comment=comment,
                decided_at=now,
                scheduled_at=scheduled_at,
                submission=self.submission,
            )
        )

    def reject(self, by: str, *, reason: str, now: datetime) -> None:
        self._check_decidable(by)
        self.record(
            ApprovalRejected(by=by, reason=reason, decided_at=now, submission=self.submission)
        )

    def unlock(self, by: str, *, reason: str | None, now: datetime) -> None:
        if not (self.status == "approved" and self.locked):
            raise Conflict(
                f"only an approved, locked approval can be unlocked; this one is {self.status}",
                code="not_locked",
            )
        self.record(ApprovalUnlocked(by=by, reason=reason, unlocked_at=now))

    def expire(self, now: datetime) -> bool:
        """Still pending when the post's time has come: expired (False when it is not
        due or not pending any more)."""
        if self.status != "pending" or self.scheduled_at is None or self.scheduled_at > now:
            return False
        self.record(ApprovalExpired(expired_at=now))
        return True
