"""Post commands: load the post (its row locked), let it decide, save its events, and keep
its work rows (``publishing_targets``) in step, all in one tenant transaction.

Locking the post's row first serializes every writer of one post, the scheduler's attempt
records included, and always in the same order (post row, then its targets), so a scheduled
post is either still untouched by the scheduler when a command changes it, or already
``publishing`` and refused.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import asyncpg
from pressroom_contracts.events import publishing as public
from pressroom_contracts.topics import Topic
from pressroom_kit.db import tenant_transaction
from pressroom_kit.errors import Invalid, NotFound
from pressroom_kit.eventstore import RecordedEvent
from pressroom_kit.projections import Projector
from pressroom_kit.repository import Repository, retry_on_conflict

from pressroom_publishing.platforms.base import Platform
from pressroom_publishing.posts.domain import Content, Override, Post
from pressroom_publishing.posts.live_checks import LiveChecks
from pressroom_publishing.posts.validation import validate_post
from pressroom_publishing.projections import POSTS

SOURCE = "/pressroom/publishing"
TOPIC = Topic.PUBLISHING.value


def client_reference(post_id: uuid.UUID | str, platform: str) -> str:
    """The idempotency key of a post on a platform: the same for every attempt, ever."""
    return f"pressroom-{uuid.UUID(str(post_id)).hex}-{platform}"


def _snapshot(post: Post) -> dict[str, Any]:
    """What the public events need beside the stored event (kept in its metadata)."""
    return {
        "platforms": list(post.platforms),
        "text": post.content.text,
        "media_ids": [str(m) for m in post.all_media_ids()],
        "media_by_platform": {p: [str(m) for m in post.media_ids_for(p)] for p in post.platforms},
        "texts": {p: post.content_for(p).text for p in post.platforms},
        "scheduled_at": post.scheduled_at.isoformat() if post.scheduled_at else None,
        "author": post.author,
        "submission": post.submission,
        "plan_id": str(post.plan_id) if post.plan_id else None,
    }


def to_public(event: RecordedEvent) -> list[tuple[str, str, dict[str, Any]]]:
    d, post = event.data, event.metadata.get("post", {})
    actor = event.metadata.get("actor")
    base = {"post_id": event.stream_id, "brand_id": str(event.brand_id)}
    match event.type:
        case "PostCreated":
            data: dict[str, Any] = {
                **base,
                "platforms": d["platforms"],
                "text": d["text"],
                "media_ids": post.get("media_ids", d["media_ids"]),
                "scheduled_at": d["scheduled_at"],
                "requires_approval": d["requires_approval"],
                "created_by": d["author"],
                "plan_id": d.get("plan_id"),
            }
            return [(TOPIC, public.PostCreated.event_type, data)]
        case "PostEdited" | "PostRejected" | "PostUnlocked" | "RetryRequested":
            changed = d["changed"] if event.type == "PostEdited" else ["status"]
            data = {
                **base,
                "changed": changed,
                "platforms": post.get("platforms", []),
                "media_ids": post.get("media_ids", []),
                "scheduled_at": post.get("scheduled_at"),
                "status": d["status"],
                "updated_by": actor,
                # The stream version after this change: an approval asked for an earlier
                # version is void once the post moved past it.
                "version": event.version,
                "submission": post.get("submission") or None,
            }
            return [(TOPIC, public.PostUpdated.event_type, data)]
        case "PostSubmitted":
            data = {
                **base,
                "platforms": post.get("platforms", []),
                "text": post.get("text", ""),
                "media_ids": post.get("media_ids", []),
                "scheduled_at": post.get("scheduled_at"),
                "author": post.get("author"),
                "submitted_by": d["by"],
                "submission": d.get("submission") or None,
                "version": event.version,
                "texts": post.get("texts", {}),
                "media_by_platform": post.get("media_by_platform", {}),
            }
            return [(TOPIC, public.PostSubmitted.event_type, data)]
        case "PostScheduled":
            data = {
                **base,
                "scheduled_at": d["scheduled_at"],
                "platforms": post.get("platforms", []),
                "media_ids": post.get("media_ids", []),
                "scheduled_by": d["by"],
            }
            return [(TOPIC, public.PostScheduled.event_type, data)]
        case "PlatformPublished":
            data = {
                **base,
                "platform": d["platform"],
                "platform_post_id": d["platform_post_id"],
                "url": d["url"],
                "media_ids": post.get("media_by_platform", {}).get(d["platform"], []),
                "published_at": d["published_at"],
                "published_by": d["by"],
                "plan_id": post.get("plan_id"),
            }
            return [(TOPIC, public.PostPublished.event_type, data)]
        case "PlatformFailed":
            data = {
                **base,
                "platform": d["platform"],
                "error_code": d["error_code"],
                "error": d["error"],
                "attempts": d["attempts"],
                "failed_at": d["failed_at"],
            }
            return [(TOPIC, public.PostFailed.event_type, data)]
        case "PlatformUnconfirmed":
            data = {
                **base,
                "platform": d["platform"],
                "attempt": d["attempt"],
                "client_reference": d["client_reference"],
                "attempted_at": d["attempted_at"],
            }
            return [(TOPIC, public.PostUnconfirmed.event_type, data)]
        case "PostCancelled":
            data = {
                **base,
                "platforms": d["platforms"],
                "media_ids": post.get("media_ids", []),
                "cancelled_at": d["cancelled_at"],
                "cancelled_by": d["by"],
            }
            return [(TOPIC, public.PostCancelled.event_type, data)]
    return []


REPOSITORY: Repository[Post] = Repository(
    Post, source=SOURCE, projector=Projector([POSTS]), to_public=to_public
)


async def locked_post(conn: asyncpg.Connection, post_id: uuid.UUID) -> Post:
    """The post, its row locked for this transaction; the row (under row-level security)
    also proves the post is the caller's brand's."""
    owned = await conn.fetchval("SELECT 1 FROM publishing_jobs WHERE id = $1 FOR UPDATE", post_id)
    post = await REPOSITORY.load(conn, str(post_id)) if owned else None
    if post is None:
        raise NotFound(f"no post {post_id}", code="no_post")
    return post


async def save(conn: asyncpg.Connection, post: Post, actor: str | None) -> None:
    assert post.brand_id is not None
    await REPOSITORY.save(
        conn, post, brand_id=post.brand_id, actor=actor, metadata={"post": _snapshot(post)}
    )


async def brand_requires_approval(conn: asyncpg.Connection) -> bool:
    value = await conn.fetchval("SELECT approval_required FROM publishing_brands")
    return bool(value)


# --- work rows -------------------------------------------------------------------------------


async def schedule_targets(
    conn: asyncpg.Connection, post: Post, at: datetime, now: datetime
) -> None:
    """One pending target per platform, due at ``at`` (a target left from an earlier
    schedule of the same post starts over)."""
    await conn.execute(
        "INSERT INTO publishing_targets (post_id, platform, brand_id, status, scheduled_at, "
        "due_at, client_reference, created_at, updated_at) "
        "SELECT $1, p, $2, 'pending', $3, $3, $4 || p, $5, $5 FROM unnest($6::text[]) AS p "
        "ON CONFLICT (post_id, platform) DO UPDATE SET status = 'pending', "
        "scheduled_at = EXCLUDED.scheduled_at, due_at = EXCLUDED.due_at, attempt_open = false, "
        "error_code = NULL, last_error = NULL, lease_token = NULL, lease_until = NULL, "
        "round_start = publishing_targets.attempts, checks = 0, updated_at = EXCLUDED.updated_at",
        uuid.UUID(post.id),
        post.brand_id,
        at,
        client_reference(post.id, ""),
        now,
        post.platforms,
    )


async def drop_targets(conn: asyncpg.Connection, post_id: uuid.UUID) -> None:
    """The post is not scheduled any more. Safe while a scheduler holds a claim on one of
    them: the post row is locked, so that scheduler has not recorded an attempt, and its
    fenced writes will find the lease gone."""
    await conn.execute("DELETE FROM publishing_targets WHERE post_id = $1", post_id)


async def cancel_targets(conn: asyncpg.Connection, post_id: uuid.UUID, now: datetime) -> None:
    await conn.execute(
        "UPDATE publishing_targets SET status = 'cancelled', lease_token = NULL, "
        "lease_until = NULL, updated_at = $2 WHERE post_id = $1 AND status IN "
        "('pending', 'publishing')",
        post_id,
        now,
    )


async def requeue_targets(
    conn: asyncpg.Connection,
    post_id: uuid.UUID,
    platforms: list[str],
    now: datetime,
    *,
    settled: bool = False,
) -> None:
    """Publish these platforms again now, with a fresh budget of retries. An attempt whose
    outcome is unknown stays open, so the scheduler asks the platform before posting again;
    ``settled``: a person checked that it did not go out, close it."""
    await conn.execute(
        "UPDATE publishing_targets SET status = 'pending', due_at = $3, "
        "attempt_open = attempt_open AND NOT $4, "
        "round_start = attempts, checks = 0, error_code = NULL, last_error = NULL, "
        "lease_token = NULL, lease_until = NULL, updated_at = $3 "
        "WHERE post_id = $1 AND platform = ANY($2::text[])",
        post_id,
        platforms,
        now,
        settled,
    )


# --- commands --------------------------------------------------------------------------------


async def create_post(
    pool: asyncpg.Pool,
    available: Mapping[str, Platform],
    *,
    brand_id: uuid.UUID,
    actor: str,
    content: Content,
    platforms: list[str],
    overrides: dict[str, Override],
    scheduled_at: datetime | None,
    requires_approval: bool | None,
) -> uuid.UUID:
    post_id = uuid.uuid4()
    async with tenant_transaction(pool, brand_id) as conn:
        await validate_post(
            conn, available, content=content, platforms=platforms, overrides=overrides
        )
        post = Post.create(
            post_id,
            brand_id=brand_id,
            author=actor,
            content=content,
            platforms=platforms,
            overrides=overrides,
            scheduled_at=scheduled_at,
            requires_approval=requires_approval,
        )
        await save(conn, post, actor)
    return post_id


async def edit_post(
    pool: asyncpg.Pool,
    available: Mapping[str, Platform],
    *,
    brand_id: uuid.UUID,
    post_id: uuid.UUID,
    actor: str,
    changes: dict[str, Any],
    now: datetime,
) -> None:
    async def command() -> None:
        async with tenant_transaction(pool, brand_id) as conn:
            post = await locked_post(conn, post_id)
            was_scheduled = post.status == "scheduled"
            requires = await brand_requires_approval(conn) if was_scheduled else False
            if not post.edit(actor, changes, brand_requires_approval=requires):
                return
            await validate_post(
                conn,
                available,
                content=post.content,
                platforms=post.platforms,
                overrides=post.overrides,
            )
            if was_scheduled:
                await drop_targets(conn, post_id)
            if post.status == "scheduled":
                await schedule_targets(conn, post, post.scheduled_at or now, now)
            await save(conn, post, actor)

    await retry_on_conflict(command)


async def submit_post(
    pool: asyncpg.Pool,
    available: Mapping[str, Platform],
    *,
    brand_id: uuid.UUID,
    post_id: uuid.UUID,
    actor: str,
    now: datetime,
    checks: LiveChecks | None = None,
) -> None:
    live: list[dict[str, str]] = []
    if checks is not None:  # asks platforms: before the transaction, not under the lock
        async with tenant_transaction(pool, brand_id) as conn:
            draft = await REPOSITORY.load(conn, str(post_id))
        if draft is not None and draft.status in ("draft", "rejected"):
            live = await checks.problems(pool, draft, now)

    async def command() -> None:
        async with tenant_transaction(pool, brand_id) as conn:
            post = await locked_post(conn, post_id)
            try:
                await validate_post(
                    conn,
                    available,
                    content=post.content,
                    platforms=post.platforms,
                    overrides=post.overrides,
                )
            except Invalid as invalid:
                invalid.extra["errors"] = [*invalid.extra.get("errors", []), *live]
                raise
            if live:
                raise Invalid(
                    f"the post cannot be published as it is ({len(live)} problem"
                    f"{'' if len(live) == 1 else 's'})",
                    code="invalid_post",
                    errors=live,
                )
            waits = post.submit(
                actor, brand_requires_approval=await brand_requires_approval(conn), now=now
            )
            if not waits:
                await schedule_targets(conn, post, post.scheduled_at or now, now)
            await save(conn, post, actor)

    await retry_on_conflict(command)


async def cancel_post(
    pool: asyncpg.Pool, *, brand_id: uuid.UUID, post_id: uuid.UUID, actor: str, now: datetime
) -> None:
    async def command() -> None:
        async with tenant_transaction(pool, brand_id) as conn:
            post = await locked_post(conn, post_id)
            post.cancel(actor, now)
            await cancel_targets(conn, post_id, now)
            await save(conn, post, actor)

    await retry_on_conflict(command)


async def retry_post(
    pool: asyncpg.Pool, *, brand_id: uuid.UUID, post_id: uuid.UUID, actor: str, now: datetime
) -> list[str]:
    async def command() -> list[str]:
        async with tenant_transaction(pool, brand_id) as conn:
            post = await locked_post(conn, post_id)
            platforms = post.retry(actor)
            await requeue_targets(conn, post_id, platforms, now)
            await save(conn, post, actor)
            return platforms

    return await retry_on_conflict(command)


async def resolve_platform(
    pool: asyncpg.Pool,
    *,
    brand_id: uuid.UUID,
    post_id: uuid.UUID,
    platform: str,
    actor: str,
    outcome: str,
    platform_post_id: str | None,
    url: str | None,
    now: datetime,
) -> None:
    """A person settles an unconfirmed platform: it was published (with the platform's post
    id), or it was not and is to be published again."""

    async def command() -> None:
        async with tenant_transaction(pool, brand_id) as conn:
            post = await locked_post(conn, post_id)
            if outcome == "published":
                assert platform_post_id is not None
                attempts = await conn.fetchval(
                    "SELECT attempts FROM publishing_targets WHERE post_id = $1 AND platform = $2",
                    post_id,
                    platform,
                )
                post.resolve_published(
                    platform,
                    by=actor,
                    platform_post_id=platform_post_id,
                    url=url,
                    attempts=attempts or 0,
                    now=now,
                )
                await conn.execute(
                    "UPDATE publishing_targets SET status = 'published', attempt_open = false, "
                    "platform_post_id = $3, url = $4, published_at = $5, lease_token = NULL, "
                    "lease_until = NULL, updated_at = $5 WHERE post_id = $1 AND platform = $2",
                    post_id,
                    platform,
                    platform_post_id,
                    url,
                    now,
                )
            else:
                post.resolve_retry(platform, by=actor)
                await requeue_targets(conn, post_id, [platform], now, settled=True)
            await save(conn, post, actor)

    await retry_on_conflict(command)
