"""The post aggregate: content for several platforms, its way through approval, and each
platform's outcome. Pure Python: it replays its events and decides; the handlers keep the
work rows (``publishing_targets``) in step in the same transaction.

Status machine: ``draft`` -> ``awaiting_approval`` -> ``scheduled`` -> ``publishing`` ->
``published`` | ``partially_published`` | ``failed``; ``cancelled`` and ``rejected`` on the
side; an unlocked approval sends a scheduled post back to ``draft``. Every event carries the
status it leaves the post in, so the projection never re-derives a decision.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal
from uuid import UUID

from pressroom_kit.domain import Aggregate, DomainEvent
from pressroom_kit.errors import Conflict, NotFound
from pydantic import BaseModel, ConfigDict

PostStatus = Literal[
    "draft",
    "awaiting_approval",
    "scheduled",
    "publishing",
    "published",
    "partially_published",
    "failed",
    "cancelled",
    "rejected",
]
ResultStatus = Literal["pending", "publishing", "published", "failed", "unconfirmed", "cancelled"]
EDITABLE = ("draft", "awaiting_approval", "scheduled", "rejected")
CANCELLABLE = ("draft", "awaiting_approval", "scheduled", "rejected")


class Override(BaseModel):
    """One platform's own text and/or media instead of the post's."""

    model_config = ConfigDict(frozen=True)
    text: str | None = None
    media_ids: list[UUID] | None = None
    # Platform-specific choices (Pinterest ``board_id``, YouTube ``title``...), checked by
    # the adapter's ``validate`` and handed to it as ``PostContent.options``.
    options: dict[str, Any] | None = None


class Content(BaseModel):
    model_config = ConfigDict(frozen=True)
    text: str = ""
    media_ids: list[UUID] = []
    link: str | None = None


class PlanSlot(BaseModel):
    """The analytics plan's advice a draft was made from (shown with the post; the draft's
    text stays empty for a person to write)."""

    model_config = ConfigDict(frozen=True)
    slot_id: UUID
    format: str | None = None
    reason: str | None = None
    confidence: float | None = None


class PostCreated(DomainEvent):
    type_name: ClassVar[str] = "PostCreated"
    brand_id: UUID
    text: str
    media_ids: list[UUID]
    link: str | None
    platforms: list[str]
    overrides: dict[str, Override]
    scheduled_at: datetime | None
    requires_approval: bool | None
    author: str | None
    status: PostStatus = "draft"
    plan_id: UUID | None = None  # the analytics plan the draft was made from
    plan_slot: PlanSlot | None = None


class PostEdited(DomainEvent):
    type_name: ClassVar[str] = "PostEdited"
    text: str
    media_ids: list[UUID]
    link: str | None
    platforms: list[str]
    overrides: dict[str, Override]
    scheduled_at: datetime | None
    requires_approval: bool | None
    changed: list[str]
    by: str | None
    status: PostStatus


class PostSubmitted(DomainEvent):
    """Sent for approval. ``submission`` numbers the post's submissions (1, 2, ...);
    ``submitted_at`` is the wall-clock time it was recorded, which a decision's
    ``decided_at`` (the approval service's wall clock) is compared with when the decision
    does not name its submission."""

    type_name: ClassVar[str] = "PostSubmitted"
    by: str | None
    submission: int = 0
    submitted_at: datetime | None = None
    status: PostStatus = "awaiting_approval"


class PostScheduled(DomainEvent):
    """Scheduled directly (no approval needed) or by an approval; ``scheduled_at`` is when
    it goes out (the submission time when the post had none)."""

    type_name: ClassVar[str] = "PostScheduled"
    scheduled_at: datetime
    by: str | None
    approval_id: UUID | None = None
    moved: bool = False  # a late decision gave a new time: the post's scheduled_at becomes it
    status: PostStatus = "scheduled"


class ApprovalExpired(DomainEvent):
    """The approval was still pending when the post's time passed (the approval service's
    ``approval.expired.v1``): the post keeps waiting, out of the scheduler, and says why it
    did not go out. A late decision still applies."""

    type_name: ClassVar[str] = "ApprovalExpired"
    approval_id: UUID
    submission: int | None = None
    missed_at: datetime | None = None  # the publish time that passed
    expired_at: datetime
    status: PostStatus = "awaiting_approval"


class PostRejected(DomainEvent):
    type_name: ClassVar[str] = "PostRejected"
    approval_id: UUID
    by: str
    reason: str
    status: PostStatus = "rejected"


class PostUnlocked(DomainEvent):
    type_name: ClassVar[str] = "PostUnlocked"
    approval_id: UUID
    by: str
    status: PostStatus


class PublishingStarted(DomainEvent):
    type_name: ClassVar[str] = "PublishingStarted"
    status: PostStatus = "publishing"


class PlatformPublished(DomainEvent):
    type_name: ClassVar[str] = "PlatformPublished"
    platform: str
    platform_post_id: str
    url: str | None
    published_at: datetime
    attempts: int
    by: str | None = None  # a person who settled an unconfirmed attempt; None: the scheduler
    status: PostStatus


class PlatformFailed(DomainEvent):
    type_name: ClassVar[str] = "PlatformFailed"
    platform: str
    error_code: str
    error: str
    attempts: int
    failed_at: datetime
    status: PostStatus


class PlatformUnconfirmed(DomainEvent):
    type_name: ClassVar[str] = "PlatformUnconfirmed"
    platform: str
    attempt: int
    client_reference: str
    attempted_at: datetime
    status: PostStatus


class PostCancelled(DomainEvent):
    type_name: ClassVar[str] = "PostCancelled"
    platforms: list[str]
    cancelled_at: datetime
    by: str | None
    status: PostStatus = "cancelled"


class RetryRequested(DomainEvent):
    type_name: ClassVar[str] = "RetryRequested"
    platforms: list[str]
    by: str | None
    status: PostStatus


def overall_status(results: Mapping[str, Mapping[str, Any]]) -> PostStatus:
    """The post's status once publishing has begun, from its platforms' results."""
    statuses = {r["status"] for r in results.values()}
    if statuses & {"pending", "publishing", "unconfirmed"}:
        return "publishing"
    if "published" in statuses:
        return "published" if statuses == {"published"} else "partially_published"
    return "failed"


def empty_result(status: ResultStatus = "pending") -> dict[str, Any]:
    return {"status": status, "platform_post_id": None, "url": None, "error": None}


class Post(Aggregate):
    stream_type = "publishing_post"
    event_classes = (
        PostCreated,
        PostEdited,
        PostSubmitted,
        PostScheduled,
        ApprovalExpired,
        PostRejected,
        PostUnlocked,
        PublishingStarted,
        PlatformPublished,
        PlatformFailed,
        PlatformUnconfirmed,
        PostCancelled,
        RetryRequested,
    )

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.brand_id: UUID | None = None
        self.status: PostStatus = "draft"
        self.content = Content()
        self.platforms: list[str] = []
        self.overrides: dict[str, Override] = {}
        self.scheduled_at: datetime | None = None
        self.requires_approval: bool | None = None
        self.author: str | None = None
        self.locked = False  # approved and not unlocked since
        self.results: dict[str, dict[str, Any]] = {}
        self.retry_count = 0
        self.submission = 0  # the latest submission's number
        self.submitted_at: datetime | None = None
        self.plan_id: UUID | None = None
        self.approval_expired_at: datetime | None = None  # of the submission waiting now

    # --- state -------------------------------------------------------------------------

    def apply(self, event: DomainEvent) -> None:
        match event:
            case PostCreated() | PostEdited():
                if isinstance(event, PostCreated):
                    self.brand_id, self.author = event.brand_id, event.author
                    self.plan_id = event.plan_id
                self.content = Content(
                    text=event.text, media_ids=list(event.media_ids), link=event.link
                )
                self.platforms = list(event.platforms)
                self.overrides = dict(event.overrides)
                self.scheduled_at = event.scheduled_at
                self.requires_approval = event.requires_approval
                self.results = {p: empty_result() for p in self.platforms}
            case PostSubmitted():
                self.submission = event.submission or self.submission + 1
                self.submitted_at = event.submitted_at
                self.approval_expired_at = None
            case ApprovalExpired():
                self.approval_expired_at = event.expired_at
            case PostScheduled():
                self.locked = event.approval_id is not None
                if event.moved:
                    self.scheduled_at = event.scheduled_at
            case PostUnlocked():
                self.locked = False
            case PlatformPublished():
                self.results[event.platform] = {
                    "status": "published",
                    "platform_post_id": event.platform_post_id,
                    "url": event.url,
                    "error": None,
                }
            case PlatformFailed():
                self.results[event.platform] = {
                    **empty_result("failed"),
                    "error": event.error,
                }
            case PlatformUnconfirmed():
                self.results[event.platform] = empty_result("unconfirmed")
            case PostCancelled():
                for platform in event.platforms:
                    self.results[platform] = empty_result("cancelled")
            case RetryRequested():
                self.retry_count += 1
                for platform in event.platforms:
                    self.results[platform] = empty_result()
        self.status = getattr(event, "status", self.status)

    # --- reading -----------------------------------------------------------------------

    def content_for(self, platform: str) -> Content:
        """The content ``platform`` gets: the post's, with that platform's overrides."""
        override = self.overrides.get(platform)
        if override is None:
            return self.content
        return Content(
            text=self.content.text if override.text is None else override.text,
            media_ids=self.content.media_ids if override.media_ids is None else override.media_ids,
            link=self.content.link,
        )

    def options_for(self, platform: str) -> dict[str, Any]:
        override = self.overrides.get(platform)
        return dict(override.options or {}) if override is not None else {}

    def media_ids_for(self, platform: str) -> list[UUID]:
        return list(self.content_for(platform).media_ids)

    def all_media_ids(self) -> list[UUID]:
        seen: dict[UUID, None] = {}
        for platform in self.platforms:
            for media_id in self.media_ids_for(platform):
                seen.setdefault(media_id, None)
        for media_id in self.content.media_ids:
            seen.setdefault(media_id, None)
        return list(seen)

    def needs_approval(self, brand_requires: bool) -> bool:
        return brand_requires if self.requires_approval is None else self.requires_approval

    # --- decisions -----------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        post_id: UUID,
        *,
        brand_id: UUID,
        author: str | None,
        content: Content,
        platforms: Iterable[str],
        overrides: Mapping[str, Override],
        scheduled_at: datetime | None,
        requires_approval: bool | None,
        plan_id: UUID | None = None,
        plan_slot: PlanSlot | None = None,
    ) -> Post:
        post = cls(str(post_id))
        post.record(
            PostCreated(
                brand_id=brand_id,
                text=content.text,
                media_ids=list(content.media_ids),
                link=content.link,
                platforms=list(platforms),
                overrides=dict(overrides),
                scheduled_at=scheduled_at,
                requires_approval=requires_approval,
                author=author,
                plan_id=plan_id,
                plan_slot=plan_slot,
            )
        )
        return post

    def _refuse_unless_editable(self) -> None:
        if self.locked:
            raise Conflict(
                "the post is approved and locked; unlock the approval to edit it",
                code="locked_by_approval",
            )
        if self.status in ("publishing", "published", "partially_published"):
            raise Conflict(
                f"the post is {self.status.replace('_', ' ')}; it can no longer be edited",
                code="already_published",
            )
        if self.status not in EDITABLE:
            raise Conflict(f"a {self.status} post cannot be edited", code=f"post_{self.status}")

    def edit(
        self, by: str | None, changes: Mapping[str, Any], *, brand_requires_approval: bool = False
    ) -> list[str]:
        """Apply ``changes`` (only the fields given: ``text``, ``media_ids``, ``link``,
        ``platforms``, ``overrides``, ``scheduled_at``, ``requires_approval``); return the
        names of the fields that changed. A post waiting for approval, or rejected, goes back
        to ``draft``: what a reviewer saw is not what would be published.

        A scheduled post that is edited is never approved (an approved one is locked), so if
        it needs an approval after the edit (``requires_approval: true``, or unset while the
        brand requires approvals) it goes to review instead of out: ``awaiting_approval``
        with a ``PostSubmitted``, as if it had been submitted again. Unapproved content is
        not published because its schedule was set before the rule applied to it."""
        self._refuse_unless_editable()
        current: dict[str, Any] = {
            "text": self.content.text,
            "media_ids": list(self.content.media_ids),
            "link": self.content.link,
            "platforms": list(self.platforms),
            "overrides": dict(self.overrides),
            "scheduled_at": self.scheduled_at,
            "requires_approval": self.requires_approval,
        }
        new = {**current, **changes}
        changed = [name for name in current if new[name] != current[name]]
        if not changed:
            return []
        was_scheduled = self.status == "scheduled"
        status: PostStatus = "scheduled" if was_scheduled else "draft"
        review = was_scheduled and (
            brand_requires_approval
            if new["requires_approval"] is None
            else bool(new["requires_approval"])
        )
        if review:
            status = "draft"
        self.record(PostEdited(**new, changed=changed, by=by, status=status))
        if review:
            self.record(self._submission(by))
        return changed

    def submit(self, by: str | None, *, brand_requires_approval: bool, now: datetime) -> bool:
        """Ask for approval or schedule; True when it now waits for an approval."""
        if self.status not in ("draft", "rejected"):
            raise Conflict(f"a {self.status} post cannot be submitted", code="not_a_draft")
        if self.needs_approval(brand_requires_approval):
            self.record(self._submission(by))
            return True
        self.record(PostScheduled(scheduled_at=self.scheduled_at or now, by=by))
        return False

    def _submission(self, by: str | None) -> PostSubmitted:
        return PostSubmitted(by=by, submission=self.submission + 1, submitted_at=datetime.now(UTC))

    def decides_current(self, submission: int | None, decided_at: datetime | None) -> bool:
        """Whether a decision is about the submission waiting now, not an earlier one (the
        post was edited and submitted again since; that decision arrived late). A decision
        that names its submission must name this one; else it must have been made after
        this submission was recorded."""
        if self.status != "awaiting_approval":
            return False
        if submission is not None:
            return submission == self.submission
        return decided_at is None or self.submitted_at is None or decided_at >= self.submitted_at

    def approve(
        self,
        approval_id: UUID,
        by: str,
        now: datetime,
        *,
        submission: int | None = None,
        decided_at: datetime | None = None,
        scheduled_at: datetime | None = None,
    ) -> bool:
        """An approval came in; only a post that waits for this very submission's decision
        is scheduled by it (an approval of a version since edited, or a duplicate, changes
        nothing). ``scheduled_at``: a new publish time given with a late decision; without
        it the post keeps its time, and goes out at once when that has passed."""
        if not self.decides_current(submission, decided_at):
            return False
        at = scheduled_at or self.scheduled_at or now
        self.record(
            PostScheduled(
                scheduled_at=at, by=by, approval_id=approval_id, moved=scheduled_at is not None
            )
        )
        return True

    def approval_expired(
        self,
        approval_id: UUID,
        *,
        submission: int | None,
        missed_at: datetime | None,
        expired_at: datetime,
    ) -> bool:
        """Record that the waiting submission's approval expired (once; an expiry of an
        earlier submission, or of a post no longer waiting, changes nothing)."""
        if self.status != "awaiting_approval" or self.approval_expired_at is not None:
            return False
        if submission is not None and submission != self.submission:
            return False
        self.record(
            ApprovalExpired(
                approval_id=approval_id,
                submission=submission,
                missed_at=missed_at,
                expired_at=expired_at,
            )
        )
        return True

    def reject(
        self,
        approval_id: UUID,
        by: str,
        reason: str,
        *,
        submission: int | None = None,
        decided_at: datetime | None = None,
    ) -> bool:
        if not self.decides_current(submission, decided_at):
            return False
        self.record(PostRejected(approval_id=approval_id, by=by, reason=reason))
        return True

    def unlock(self, approval_id: UUID, by: str) -> bool:
        """The approval is reopened: a post still waiting for its time goes back to draft;
        one already out only loses the lock."""
        if not self.locked:
            return False
        status: PostStatus = "draft" if self.status == "scheduled" else self.status
        self.record(PostUnlocked(approval_id=approval_id, by=by, status=status))
        return True

    def start_publishing(self) -> None:
        if self.status == "scheduled":
            self.record(PublishingStarted())

    def _after(self, platform: str, result: dict[str, Any]) -> PostStatus:
        return overall_status({**self.results, platform: result})

    def _settled(self, platform: str) -> bool:
        return self.results.get(platform, {}).get("status") in ("published", "failed", "cancelled")

    def published(
        self,
        platform: str,
        *,
        platform_post_id: str,
        url: str | None,
        published_at: datetime,
        attempts: int,
        by: str | None = None,
    ) -> bool:
        if self._settled(platform):
            return False
        self.record(
            PlatformPublished(
                platform=platform,
                platform_post_id=platform_post_id,
                url=url,
                published_at=published_at,
                attempts=attempts,
                by=by,
                status=self._after(platform, {"status": "published"}),
            )
        )
        return True

    def failed(
        self, platform: str, *, error_code: str, error: str, attempts: int, failed_at: datetime
    ) -> bool:
        if self._settled(platform):
            return False
        self.record(
            PlatformFailed(
                platform=platform,
                error_code=error_code,
                error=error,
                attempts=attempts,
                failed_at=failed_at,
                status=self._after(platform, {"status": "failed"}),
            )
        )
        return True

    def unconfirmed(
        self, platform: str, *, attempt: int, client_reference: str, attempted_at: datetime
    ) -> bool:
        if self._settled(platform) or self.results[platform]["status"] == "unconfirmed":
            return False
        self.record(
            PlatformUnconfirmed(
                platform=platform,
                attempt=attempt,
                client_reference=client_reference,
                attempted_at=attempted_at,
                status="publishing",
            )
        )
        return True

    def cancel(self, by: str | None, now: datetime) -> list[str]:
        if self.status not in CANCELLABLE:
            raise Conflict(
                f"a {self.status.replace('_', ' ')} post cannot be cancelled",
                code="not_cancellable",
            )
        self.record(PostCancelled(platforms=list(self.platforms), cancelled_at=now, by=by))
        return list(self.platforms)

    def retry(self, by: str | None) -> list[str]:
        """Publish the failed platforms again. Allowed once nothing is in flight; a platform
        left unconfirmed (for a person to settle) does not hold back the others."""
        failed = [p for p in self.platforms if self.results[p]["status"] == "failed"]
        in_flight = {self.results[p]["status"] for p in self.platforms} & {"pending", "publishing"}
        if self.status not in ("failed", "partially_published", "publishing") or not failed:
            raise Conflict("no platform of this post failed", code="nothing_to_retry")
        if in_flight:
            raise Conflict("the post is still being published", code="nothing_to_retry")
        self.record(RetryRequested(platforms=failed, by=by, status="publishing"))
        return failed

    def _unconfirmed(self, platform: str) -> None:
        if platform not in self.results:
            raise NotFound(f"the post is not for {platform}", code="no_platform")
        if self.results[platform]["status"] != "unconfirmed":
            raise Conflict(
                f"{platform} is {self.results[platform]['status']}, not unconfirmed",
                code="not_unconfirmed",
            )

    def resolve_published(
        self,
        platform: str,
        *,
        by: str,
        platform_post_id: str,
        url: str | None,
        attempts: int,
        now: datetime,
    ) -> None:
        """A person checked the platform: the unconfirmed attempt did go out."""
        self._unconfirmed(platform)
        self.published(
            platform,
            platform_post_id=platform_post_id,
            url=url,
            published_at=now,
            attempts=attempts,
            by=by,
        )

    def resolve_retry(self, platform: str, *, by: str) -> None:
        """A person checked the platform: nothing went out, publish again."""
        self._unconfirmed(platform)
        self.record(RetryRequested(platforms=[platform], by=by, status="publishing"))
