"""The approval service's projections (``pressroom rebuild approval`` replays them).

``APPROVALS``: approval events -> ``post_approvals``, live in the command's transaction.
Every event names the status it leaves the approval in and times come from the event
(``created_at``/``updated_at`` from when it was recorded), so a rebuild equals the live
table. ``approval_comments``, ``approval_brands`` and ``approval_members`` are plain rows,
not projections: a rebuild never touches them.
"""

from __future__ import annotations

import asyncpg
from pressroom_kit.eventstore import RecordedEvent
from pressroom_kit.projections import Projection


async def _requested(conn: asyncpg.Connection, event: RecordedEvent) -> None:
    d = event.data
    await conn.execute(
        "INSERT INTO post_approvals (id, brand_id, post_id, status, locked, submission, "
        "post_version, author, submitted_by, platforms, texts, media_by_platform, scheduled_at, "
        "requested_at, created_at, updated_at) "
        "VALUES ($1, $2, $3, $4, false, $5, $6, $7, $8, $9, $10, $11, "
        "$12::text::timestamptz, $13::text::timestamptz, $14, $14) "
        "ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, locked = false, "
        "submission = EXCLUDED.submission, post_version = EXCLUDED.post_version, "
        "author = EXCLUDED.author, submitted_by = EXCLUDED.submitted_by, "
        "platforms = EXCLUDED.platforms, texts = EXCLUDED.texts, "
        "media_by_platform = EXCLUDED.media_by_platform, scheduled_at = EXCLUDED.scheduled_at, "
        "requested_at = EXCLUDED.requested_at, decided_at = NULL, decided_by = NULL, "
        "reason = NULL, comment = NULL, expired_at = NULL, voided_at = NULL, "
        "updated_at = EXCLUDED.updated_at",
        event.stream_id,
        d["brand_id"],
        d["post_id"],
        d["status"],
        d["submission"],
        d["post_version"],
        d["author"],
        d["submitted_by"],
        d["platforms"],
        d["texts"],
        d["media_by_platform"],
        d["scheduled_at"],
        d["requested_at"],
        event.occurred_at,
    )


async def _approved(conn: asyncpg.Connection, event: RecordedEvent) -> None:
    d = event.data
    await conn.execute(
        "UPDATE post_approvals SET status = $2, locked = true, decided_at = $3::text::timestamptz, "
        "decided_by = $4, comment = $5, reason = NULL, "
        "scheduled_at = coalesce($6::text::timestamptz, scheduled_at), updated_at = $7 "
        "WHERE id = $1",
        event.stream_id,
        d["status"],
        d["decided_at"],
        d["by"],
        d["comment"],
        d["scheduled_at"],
        event.occurred_at,
    )


async def _rejected(conn: asyncpg.Connection, event: RecordedEvent) -> None:
    d = event.data
    await conn.execute(
        "UPDATE post_approvals SET status = $2, locked = false, "
        "decided_at = $3::text::timestamptz, decided_by = $4, reason = $5, comment = NULL, "
        "updated_at = $6 WHERE id = $1",
        event.stream_id,
        d["status"],
        d["decided_at"],
        d["by"],
        d["reason"],
        event.occurred_at,
    )


async def _unlocked(conn: asyncpg.Connection, event: RecordedEvent) -> None:
    """Back to pending: the earlier decision stays visible (``decided_*``) until a new one."""
    await conn.execute(
        "UPDATE post_approvals SET status = $2, locked = false, updated_at = $3 WHERE id = $1",
        event.stream_id,
        event.data["status"],
        event.occurred_at,
    )


async def _expired(conn: asyncpg.Connection, event: RecordedEvent) -> None:
    await conn.execute(
        "UPDATE post_approvals SET status = $2, expired_at = $3::text::timestamptz, "
        "updated_at = $4 WHERE id = $1",
        event.stream_id,
        event.data["status"],
        event.data["expired_at"],
        event.occurred_at,
    )


async def _voided(conn: asyncpg.Connection, event: RecordedEvent) -> None:
    d = event.data
    await conn.execute(
        "UPDATE post_approvals SET status = $2, locked = false, "
        "voided_at = $3::text::timestamptz, post_version = coalesce($4, post_version), "
        "updated_at = $5 WHERE id = $1",
        event.stream_id,
        d["status"],
        d["voided_at"],
        d["post_version"],
        event.occurred_at,
    )


async def _published(conn: asyncpg.Connection, event: RecordedEvent) -> None:
    await conn.execute(
        "UPDATE post_approvals SET published_at = $2::text::timestamptz, updated_at = $3 "
        "WHERE id = $1",
        event.stream_id,
        event.data["published_at"],
        event.occurred_at,
    )


APPROVALS = Projection(
    name="post_approvals",
    tables=("post_approvals",),
    handlers={
        "ApprovalRequested": _requested,
        "ApprovalApproved": _approved,
        "ApprovalRejected": _rejected,
        "ApprovalUnlocked": _unlocked,
        "ApprovalExpired": _expired,
        "ApprovalVoided": _voided,
        "PostPublished": _published,
    },
)

PROJECTIONS: tuple[Projection, ...] = (APPROVALS,)
