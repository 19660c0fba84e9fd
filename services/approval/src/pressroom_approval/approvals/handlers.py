"""What the approvals feature does with other services' events (run by the inbox consumer,
each in the consumer's transaction with the event's brand set, so a redelivery of one event
changes nothing; a resent copy under a new id is caught by the approval itself).

- ``publishing.post.submitted.v1`` opens the post's approval, or reopens it for a newer
  submission (``approval.requested.v1``, escalations scheduled)
- ``publishing.post.updated.v1`` voids an open approval when the post's content changed
  past the version it was asked for (status-only updates are publishing's own bookkeeping)
- ``publishing.post.cancelled.v1`` voids it; ``publishing.post.published.v1`` marks it
- ``brand.created|updated.v1`` -> ``approval_brands``; ``brand.member_added|removed.v1``
  -> ``approval_members`` (a removal leaves a tombstone in ``approval_member_removals`` so
  that an older, resent ``member_added`` does not bring the member back)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import asyncpg
from pressroom_contracts import CloudEvent, EventPayload
from pressroom_contracts.events.brands import (
    BrandCreated,
    BrandMemberAdded,
    BrandMemberRemoved,
    BrandUpdated,
)
from pressroom_contracts.events.publishing import (
    PostCancelled,
    PostPublished,
    PostSubmitted,
    PostUpdated,
)
from pressroom_kit.logs import get_logger

from pressroom_approval.approvals import commands
from pressroom_approval.approvals.domain import Submission
from pressroom_approval.audit import SYSTEM, Actor

log = get_logger(__name__)
Handler = Callable[[asyncpg.Connection, CloudEvent, EventPayload], Awaitable[None]]
# Fields of publishing.post.updated.v1 that change nothing an approval is about.
BOOKKEEPING = frozenset({"status"})


def _brand_matches(event: CloudEvent, brand_id: Any) -> bool:
    if event.brandid is None or event.brandid != brand_id:
        log.warning("event without a matching brand ignored", event_id=str(event.id))
        return False
    return True


def _actor(user_id: str | None) -> Actor:
    return Actor(user_id) if user_id else SYSTEM


def consumer_handlers(clock: Callable[[], datetime]) -> dict[str, Handler]:
    async def submitted(conn: asyncpg.Connection, event: CloudEvent, payload: EventPayload) -> None:
        assert isinstance(payload, PostSubmitted)
        if not _brand_matches(event, payload.brand_id):
            return
        platforms = list(payload.platforms)
        submission = Submission(
            submission=payload.submission,
            post_version=payload.version,
            author=payload.author,
            submitted_by=payload.submitted_by,
            platforms=platforms,
            texts={p: payload.texts.get(p, payload.text) for p in platforms} or payload.texts,
            media_by_platform={
                p: list(payload.media_by_platform.get(p, payload.media_ids)) for p in platforms
            }
            or dict(payload.media_by_platform),
            scheduled_at=payload.scheduled_at,
        )
        opened = await commands.submitted(
            conn,
            brand_id=payload.brand_id,
            post_id=payload.post_id,
            submission=submission,
            actor=_actor(payload.submitted_by),
            now=clock(),
        )
        if not opened:
            log.info(
                "a submission already seen changes nothing",
                post_id=str(payload.post_id),
                submission=payload.submission,
            )

    async def updated(conn: asyncpg.Connection, event: CloudEvent, payload: EventPayload) -> None:
        assert isinstance(payload, PostUpdated)
        if not _brand_matches(event, payload.brand_id):
            return
        if payload.changed and set(payload.changed) <= BOOKKEEPING:
            return
        await commands.post_edited(
            conn,
            brand_id=payload.brand_id,
            post_id=payload.post_id,
            version=payload.version,
            submission=payload.submission,
            actor=_actor(payload.updated_by),
            now=clock(),
        )

    async def cancelled(conn: asyncpg.Connection, event: CloudEvent, payload: EventPayload) -> None:
        assert isinstance(payload, PostCancelled)
        if not _brand_matches(event, payload.brand_id):
            return
        await commands.post_cancelled(
            conn,
            brand_id=payload.brand_id,
            post_id=payload.post_id,
            actor=_actor(payload.cancelled_by),
            now=clock(),
        )

    async def published(conn: asyncpg.Connection, event: CloudEvent, payload: EventPayload) -> None:
        assert isinstance(payload, PostPublished)
        if not _brand_matches(event, payload.brand_id):
            return
        await commands.post_published(
            conn, post_id=payload.post_id, at=payload.published_at, actor=SYSTEM
        )

    return {
        PostSubmitted.event_type: submitted,
        PostUpdated.event_type: updated,
        PostCancelled.event_type: cancelled,
        PostPublished.event_type: published,
        BrandCreated.event_type: brand_changed,
        BrandUpdated.event_type: brand_changed,
        BrandMemberAdded.event_type: member_added,
        BrandMemberRemoved.event_type: member_removed,
    }


async def brand_changed(conn: asyncpg.Connection, event: CloudEvent, payload: EventPayload) -> None:
    assert isinstance(payload, BrandCreated | BrandUpdated)
    if not _brand_matches(event, payload.brand_id):
        return
    # Only a newer event overwrites (a late created.v1 after an updated.v1 is stale).
    await conn.execute(
        "INSERT INTO approval_brands (brand_id, name, timezone, updated_at) "
        "VALUES ($1, $2, $3, $4) ON CONFLICT (brand_id) DO UPDATE SET name = $2, timezone = $3, "
        "updated_at = $4 WHERE approval_brands.updated_at <= $4",
        payload.brand_id,
        payload.name,
        payload.timezone,
        event.time,
    )


async def member_added(conn: asyncpg.Connection, event: CloudEvent, payload: EventPayload) -> None:
    assert isinstance(payload, BrandMemberAdded)
    if not _brand_matches(event, payload.brand_id):
        return
    # Not over a newer removal (a resent older added.v1); a newer add clears the tombstone.
    removed_at = await conn.fetchval(
        "SELECT removed_at FROM approval_member_removals "
        "WHERE brand_id = $1 AND user_id = $2 FOR UPDATE",
        payload.brand_id,
        payload.user_id,
    )
    if removed_at is not None and removed_at >= event.time:
        log.info("a member added before their removal stays removed", user_id=payload.user_id)
        return
    await conn.execute(
        "DELETE FROM approval_member_removals WHERE brand_id = $1 AND user_id = $2",
        payload.brand_id,
        payload.user_id,
    )
    await conn.execute(
        "INSERT INTO approval_members (brand_id, user_id, email, role, updated_at) "
        "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (brand_id, user_id) DO UPDATE SET email = $3, "
        "role = $4, updated_at = $5 WHERE approval_members.updated_at <= $5",
        payload.brand_id,
        payload.user_id,
        payload.email,
        payload.role,
        event.time,
    )


async def member_removed(
    conn: asyncpg.Connection, event: CloudEvent, payload: EventPayload
) -> None:
    assert isinstance(payload, BrandMemberRemoved)
    if not _brand_matches(event, payload.brand_id):
        return
    deleted = await conn.execute(
        "DELETE FROM approval_members WHERE brand_id = $1 AND user_id = $2 AND updated_at <= $3",
        payload.brand_id,
        payload.user_id,
        event.time,
    )
    if deleted.endswith(" 0") and await conn.fetchval(
        "SELECT 1 FROM approval_members WHERE brand_id = $1 AND user_id = $2",
        payload.brand_id,
        payload.user_id,
    ):
        return  # re-added after this removal: the newer add stands
    # The removal's tombstone, so that an older added.v1 arriving later stays out.
    await conn.execute(
        "INSERT INTO approval_member_removals (brand_id, user_id, removed_at) "
        "VALUES ($1, $2, $3) ON CONFLICT (brand_id, user_id) DO UPDATE SET removed_at = $3 "
        "WHERE approval_member_removals.removed_at < $3",
        payload.brand_id,
        payload.user_id,
        event.time,
    )
