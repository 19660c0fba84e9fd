"""What publishing does with other services' events (run by the inbox consumer, each in the
consumer's transaction with the event's brand set, so a redelivery changes nothing).

- ``brand.created|updated.v1`` -> ``publishing_brands`` (timezone, ``approval_required``)
- ``media.asset.uploaded|updated|deleted.v1`` -> ``publishing_media`` (what validation and
  the scheduler know of an asset)
- ``approval.approved.v1`` schedules a post waiting for it (at the decision's
  ``scheduled_at`` when a late decision gives one, else its own time, at once when that has
  passed), ``approval.rejected.v1`` rejects it, ``approval.unlocked.v1`` reopens it,
  ``approval.expired.v1`` records on the post that its time passed without a decision
- ``analytics.plan.approved.v1`` -> one draft per slot (``plans``)
- ``analytics.sync.requested.v1`` -> a work row per platform for the metrics worker
  (``metrics_sync``; never a platform call inside this transaction)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import asyncpg
from pressroom_contracts import CloudEvent, EventPayload
from pressroom_contracts.events.analytics import PlanApproved, SyncRequested
from pressroom_contracts.events.approval import (
    ApprovalApproved,
    ApprovalExpired,
    ApprovalRejected,
    ApprovalUnlocked,
)
from pressroom_contracts.events.brands import BrandCreated, BrandUpdated
from pressroom_contracts.events.media import (
    MediaAssetDeleted,
    MediaAssetUpdated,
    MediaAssetUploaded,
)
from pressroom_kit.errors import NotFound
from pressroom_kit.logs import get_logger

from pressroom_publishing import metrics_sync, plans
from pressroom_publishing.posts import commands
from pressroom_publishing.posts.api import in_range
from pressroom_publishing.posts.domain import Post

log = get_logger(__name__)
Handler = Callable[[asyncpg.Connection, CloudEvent, EventPayload], Awaitable[None]]


def _brand_matches(event: CloudEvent, brand_id: Any) -> bool:
    if event.brandid is None or event.brandid != brand_id:
        log.warning("event without a matching brand ignored", event_id=str(event.id))
        return False
    return True


async def brand_changed(conn: asyncpg.Connection, event: CloudEvent, payload: EventPayload) -> None:
    assert isinstance(payload, BrandCreated | BrandUpdated)
    if not _brand_matches(event, payload.brand_id):
        return
    await conn.execute(
        "INSERT INTO publishing_brands (brand_id, timezone, approval_required, updated_at) "
        "VALUES ($1, $2, $3, $4) ON CONFLICT (brand_id) DO UPDATE SET timezone = $2, "
        "approval_required = $3, updated_at = $4",
        payload.brand_id,
        payload.timezone,
        payload.settings.get("approval_required") is True,
        event.time,
    )


async def media_uploaded(
    conn: asyncpg.Connection, event: CloudEvent, payload: EventPayload
) -> None:
    assert isinstance(payload, MediaAssetUploaded)
    if not _brand_matches(event, payload.brand_id):
        return
    await conn.execute(
        "INSERT INTO publishing_media (asset_id, brand_id, kind, filename, content_type, "
        "size_bytes, width, height, duration_s, updated_at) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (asset_id) DO NOTHING",
        payload.asset_id,
        payload.brand_id,
        payload.kind,
        payload.filename,
        payload.content_type,
        payload.size_bytes,
        payload.width,
        payload.height,
        payload.duration_s,
        event.time,
    )


async def media_updated(conn: asyncpg.Connection, event: CloudEvent, payload: EventPayload) -> None:
    assert isinstance(payload, MediaAssetUpdated)
    if not _brand_matches(event, payload.brand_id):
        return
    await conn.execute(
        "UPDATE publishing_media SET filename = $2, updated_at = $3 WHERE asset_id = $1",
        payload.asset_id,
        payload.filename,
        event.time,
    )


async def media_deleted(conn: asyncpg.Connection, event: CloudEvent, payload: EventPayload) -> None:
    assert isinstance(payload, MediaAssetDeleted)
    if not _brand_matches(event, payload.brand_id):
        return
    await conn.execute("DELETE FROM publishing_media WHERE asset_id = $1", payload.asset_id)


def _publish_time(payload: ApprovalApproved) -> datetime | None:
    """The decision's new publish time, if it gives a sensible one (an instant between 2000
    and 3000 UTC, as the API takes); anything else is logged and ignored (the approval then
    applies as if it gave none) rather than failing the message."""
    if payload.scheduled_at is None:
        return None
    try:
        if payload.scheduled_at.tzinfo is None:
            raise ValueError("no offset")
        return in_range(payload.scheduled_at)
    except ValueError as exc:
        log.warning(
            "an approval's scheduled_at is not a usable time; ignored",
            post_id=str(payload.post_id),
            scheduled_at=str(payload.scheduled_at),
            error=str(exc),
        )
        return None


async def _approval_post(
    conn: asyncpg.Connection,
    event: CloudEvent,
    payload: ApprovalApproved | ApprovalRejected | ApprovalUnlocked | ApprovalExpired,
    *,
    log_unknown: bool = False,
) -> Post | None:
    """The post an approval event is about, its row locked for this transaction; None when
    the event is not for its brand or the post is unknown here (nothing to apply then)."""
    if not _brand_matches(event, payload.brand_id):
        return None
    try:
        return await commands.locked_post(conn, payload.post_id)
    except NotFound:
        if log_unknown:
            log.info("approval of an unknown post ignored", post_id=str(payload.post_id))
        return None


def approval_handlers(clock: Callable[[], datetime]) -> dict[str, Handler]:
    async def approved(conn: asyncpg.Connection, event: CloudEvent, payload: EventPayload) -> None:
        assert isinstance(payload, ApprovalApproved)
        post = await _approval_post(conn, event, payload, log_unknown=True)
        if post is None:
            return
        now = clock()
        if post.approve(
            payload.approval_id,
            payload.decided_by,
            now,
            submission=payload.submission,
            decided_at=payload.decided_at,
            scheduled_at=_publish_time(payload),
        ):
            await commands.schedule_targets(conn, post, post.scheduled_at or now, now)
            await commands.save(conn, post, payload.decided_by)

    async def rejected(conn: asyncpg.Connection, event: CloudEvent, payload: EventPayload) -> None:
        assert isinstance(payload, ApprovalRejected)
        post = await _approval_post(conn, event, payload)
        if post is None:
            return
        if post.reject(
            payload.approval_id,
            payload.decided_by,
            payload.reason,
            submission=payload.submission,
            decided_at=payload.decided_at,
        ):
            await commands.save(conn, post, payload.decided_by)

    async def unlocked(conn: asyncpg.Connection, event: CloudEvent, payload: EventPayload) -> None:
        assert isinstance(payload, ApprovalUnlocked)
        post = await _approval_post(conn, event, payload)
        if post is None:
            return
        if post.unlock(payload.approval_id, payload.unlocked_by):
            if post.status == "draft":
                await commands.drop_targets(conn, payload.post_id)
            await commands.save(conn, post, payload.unlocked_by)

    async def expired(conn: asyncpg.Connection, event: CloudEvent, payload: EventPayload) -> None:
        assert isinstance(payload, ApprovalExpired)
        post = await _approval_post(conn, event, payload)
        if post is None:
            return
        # Nothing to do with the scheduler: a post awaiting approval has no targets.
        if post.approval_expired(
            payload.approval_id,
            submission=payload.submission,
            missed_at=payload.scheduled_at,
            expired_at=payload.expired_at,
        ):
            await commands.save(conn, post, None)

    return {
        ApprovalApproved.event_type: approved,
        ApprovalRejected.event_type: rejected,
        ApprovalUnlocked.event_type: unlocked,
        ApprovalExpired.event_type: expired,
    }


async def plan_approved(conn: asyncpg.Connection, event: CloudEvent, payload: EventPayload) -> None:
    assert isinstance(payload, PlanApproved)
    if not _brand_matches(event, payload.brand_id):
        return
    await plans.create_drafts(conn, payload)


def sync_requested(clock: Callable[[], datetime]) -> Handler:
    async def handle(conn: asyncpg.Connection, event: CloudEvent, payload: EventPayload) -> None:
        assert isinstance(payload, SyncRequested)
        if not _brand_matches(event, payload.brand_id):
            return
        await metrics_sync.record_request(conn, payload, clock())

    return handle


def consumer_handlers(clock: Callable[[], datetime]) -> dict[str, Handler]:
    return {
        BrandCreated.event_type: brand_changed,
        BrandUpdated.event_type: brand_changed,
        MediaAssetUploaded.event_type: media_uploaded,
        MediaAssetUpdated.event_type: media_updated,
        MediaAssetDeleted.event_type: media_deleted,
        **approval_handlers(clock),
        PlanApproved.event_type: plan_approved,
        SyncRequested.event_type: sync_requested(clock),
    }
