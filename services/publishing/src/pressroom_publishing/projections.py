"""The publishing service's projections (``pressroom rebuild publishing`` replays them).

``POSTS``: post events -> ``publishing_jobs``, live in the command's transaction. Every
event names the status it leaves the post in and times come from the event, so a rebuild
equals the live table. ``publishing_targets`` and ``publishing_logs`` are work state, not
projections: a rebuild never touches them.
"""

from __future__ import annotations

from collections.abc import Mapping

import asyncpg
from pressroom_kit.eventstore import RecordedEvent
from pressroom_kit.projections import Projection

from pressroom_publishing.connections.projections import CONNECTIONS


async def _created(conn: asyncpg.Connection, event: RecordedEvent) -> None:
    d = event.data
    await conn.execute(
        "INSERT INTO publishing_jobs (id, brand_id, status, text, media_ids, link, platforms, "
        "overrides, scheduled_at, requires_approval, author, results, created_at, updated_at, "
        "plan_id, plan_slot) "
        "VALUES ($1, $2, $3, $4, $5::uuid[], $6, $7, $8, $9::text::timestamptz, $10, $11, "
        "(SELECT coalesce(jsonb_object_agg(p, jsonb_build_object('status', 'pending', "
        "'platform_post_id', NULL, 'url', NULL, 'error', NULL)), '{}') "
        "FROM unnest($7::text[]) AS p), "
        "$12, $12, $13::text::uuid, $14)",
        event.stream_id,
        event.brand_id,
        d["status"],
        d["text"],
        d["media_ids"],
        d["link"],
        d["platforms"],
        d["overrides"],
        d["scheduled_at"],
        d["requires_approval"],
        d["author"],
        event.occurred_at,
        d.get("plan_id"),
        d.get("plan_slot"),
    )


async def _edited(conn: asyncpg.Connection, event: RecordedEvent) -> None:
    d = event.data
    await conn.execute(
        "UPDATE publishing_jobs SET status = $2, text = $3, media_ids = $4::uuid[], link = $5, "
        "platforms = $6, overrides = $7, scheduled_at = $8::text::timestamptz, "
        "requires_approval = $9, "
        "results = (SELECT coalesce(jsonb_object_agg(p, jsonb_build_object('status', 'pending', "
        "'platform_post_id', NULL, 'url', NULL, 'error', NULL)), '{}') "
        "FROM unnest($6::text[]) AS p), "
        "updated_at = $10 WHERE id = $1",
        event.stream_id,
        d["status"],
        d["text"],
        d["media_ids"],
        d["link"],
        d["platforms"],
        d["overrides"],
        d["scheduled_at"],
        d["requires_approval"],
        event.occurred_at,
    )


async def _status(conn: asyncpg.Connection, event: RecordedEvent) -> None:
    await conn.execute(
        "UPDATE publishing_jobs SET status = $2, updated_at = $3 WHERE id = $1",
        event.stream_id,
        event.data["status"],
        event.occurred_at,
    )


async def _submitted(conn: asyncpg.Connection, event: RecordedEvent) -> None:
    """A new submission waits for a new decision: an earlier expiry no longer applies."""
    await conn.execute(
        "UPDATE publishing_jobs SET status = $2, approval_expired_at = NULL, updated_at = $3 "
        "WHERE id = $1",
        event.stream_id,
        event.data["status"],
        event.occurred_at,
    )


async def _approval_expired(conn: asyncpg.Connection, event: RecordedEvent) -> None:
    await conn.execute(
        "UPDATE publishing_jobs SET status = $2, approval_expired_at = $3::text::timestamptz, "
        "updated_at = $4 WHERE id = $1",
        event.stream_id,
        event.data["status"],
        event.data["expired_at"],
        event.occurred_at,
    )


async def _scheduled(conn: asyncpg.Connection, event: RecordedEvent) -> None:
    """Scheduled; a late approval that gave a new time (``moved``) moves the post to it."""
    await conn.execute(
        "UPDATE publishing_jobs SET status = $2, approval_locked = $3, updated_at = $4, "
        "scheduled_at = CASE WHEN $5 THEN $6::text::timestamptz ELSE scheduled_at END "
        "WHERE id = $1",
        event.stream_id,
        event.data["status"],
        event.data.get("approval_id") is not None,
        event.occurred_at,
        bool(event.data.get("moved")),
        event.data["scheduled_at"],
    )


async def _unlocked(conn: asyncpg.Connection, event: RecordedEvent) -> None:
    await conn.execute(
        "UPDATE publishing_jobs SET status = $2, approval_locked = false, updated_at = $3 "
        "WHERE id = $1",
        event.stream_id,
        event.data["status"],
        event.occurred_at,
    )


async def _result(
    conn: asyncpg.Connection,
    event: RecordedEvent,
    platform: str,
    result: Mapping[str, object],
    *,
    published_at: str | None = None,
    last_error: str | None = None,
) -> None:
    await conn.execute(
        "UPDATE publishing_jobs SET status = $2, results = jsonb_set(results, ARRAY[$3], $4), "
        "published_at = coalesce($5::text::timestamptz, published_at), "
        "last_error = coalesce($6, last_error), updated_at = $7 WHERE id = $1",
        event.stream_id,
        event.data["status"],
        platform,
        result,
        published_at,
        last_error,
        event.occurred_at,
    )


async def _published(conn: asyncpg.Connection, event: RecordedEvent) -> None:
    d = event.data
    result = {
        "status": "published",
        "platform_post_id": d["platform_post_id"],
        "url": d["url"],
        "error": None,
    }
    await _result(conn, event, d["platform"], result, published_at=d["published_at"])


async def _failed(conn: asyncpg.Connection, event: RecordedEvent) -> None:
    d = event.data
    error = f"{d['platform']}: {d['error']}"
    result = {"status": "failed", "platform_post_id": None, "url": None, "error": d["error"]}
    await _result(conn, event, d["platform"], result, last_error=error)


async def _unconfirmed(conn: asyncpg.Connection, event: RecordedEvent) -> None:
    d = event.data
    error = (
        f"{d['platform']}: attempt {d['attempt']} has no known outcome and the platform "
        "cannot be asked; resolve it"
    )
    result = {"status": "unconfirmed", "platform_post_id": None, "url": None, "error": error}
    await _result(conn, event, d["platform"], result, last_error=error)


async def _many(conn: asyncpg.Connection, event: RecordedEvent, status: str) -> None:
    await conn.execute(
        "UPDATE publishing_jobs SET status = $2, results = results || (SELECT "
        "coalesce(jsonb_object_agg(p, jsonb_build_object('status', $4::text, "
        "'platform_post_id', NULL, 'url', NULL, 'error', NULL)), '{}') FROM unnest($3::text[]) "
        "AS p), retry_count = retry_count + $5, updated_at = $6 WHERE id = $1",
        event.stream_id,
        event.data["status"],
        event.data["platforms"],
        status,
        1 if event.type == "RetryRequested" else 0,
        event.occurred_at,
    )


async def _cancelled(conn: asyncpg.Connection, event: RecordedEvent) -> None:
    await _many(conn, event, "cancelled")


async def _retry(conn: asyncpg.Connection, event: RecordedEvent) -> None:
    await _many(conn, event, "pending")


POSTS = Projection(
    name="publishing_jobs",
    tables=("publishing_jobs",),
    handlers={
        "PostCreated": _created,
        "PostEdited": _edited,
        "PostSubmitted": _submitted,
        "ApprovalExpired": _approval_expired,
        "PostScheduled": _scheduled,
        "PostRejected": _status,
        "PostUnlocked": _unlocked,
        "PublishingStarted": _status,
        "PlatformPublished": _published,
        "PlatformFailed": _failed,
        "PlatformUnconfirmed": _unconfirmed,
        "PostCancelled": _cancelled,
        "RetryRequested": _retry,
    },
)

PROJECTIONS: tuple[Projection, ...] = (POSTS, CONNECTIONS)
