"""Checks at submit time that ask the platform about the brand's own account: the
connection's instance limits (Mastodon ``validate_for``) and the account's publishing quota
(Instagram, Threads ``publishing_quota``).

They run before the submit's transaction, not under the post's row lock: a platform call
may take seconds. They are advisory in both directions: a platform that cannot be asked
(down, the connection unusable, which ``validate_post`` reports) does not hold a submit up,
and the adapter checks again at publish time. Quotas are cached per brand and platform for
``QUOTA_TTL_S``, so a burst of submits asks once.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import asyncpg
from pressroom_kit.db import tenant_transaction
from pressroom_kit.logs import get_logger

from pressroom_publishing.platforms.base import (
    ConnectionUnusable,
    CredentialSource,
    Platform,
    PlatformError,
    PostContent,
)
from pressroom_publishing.posts.domain import Post

log = get_logger(__name__)
QUOTA_TTL_S = 60.0


@dataclass
class LiveChecks:
    platforms: Mapping[str, Platform]
    credentials: CredentialSource
    _quotas: dict[tuple[uuid.UUID, str], tuple[float, Any]] = field(default_factory=dict)

    async def problems(self, pool: asyncpg.Pool, post: Post, now: datetime) -> list[dict[str, str]]:
        """``errors`` entries (``platforms.<id>.<field>``) for the post as it would go out."""
        assert post.brand_id is not None
        errors: list[dict[str, str]] = []
        for platform in post.platforms:
            adapter = self.platforms.get(platform)
            validate_for = getattr(adapter, "validate_for", None)
            quota_of = getattr(adapter, "publishing_quota", None)
            if adapter is None or (validate_for is None and quota_of is None):
                continue
            try:
                creds = await self.credentials.credentials(post.brand_id, platform)
                if validate_for is not None:
                    content = post.content_for(platform)
                    checked = PostContent(
                        text=content.text, link=content.link, options=post.options_for(platform)
                    )
                    for problem in await validate_for(creds, checked):
                        if not problem.field.startswith("media"):  # media: validate_post's
                            errors.append(
                                {
                                    "field": f"platforms.{platform}.{problem.field}",
                                    "message": problem.message,
                                }
                            )
                if quota_of is not None:
                    problem = await self._quota_problem(pool, post, platform, creds, now, quota_of)
                    if problem is not None:
                        errors.append({"field": f"platforms.{platform}.quota", "message": problem})
            except (ConnectionUnusable, PlatformError) as exc:
                log.info("live check skipped", platform=platform, error=str(exc))
        return errors

    async def _quota_problem(
        self,
        pool: asyncpg.Pool,
        post: Post,
        platform: str,
        creds: Any,
        now: datetime,
        quota_of: Any,
    ) -> str | None:
        assert post.brand_id is not None
        key = (post.brand_id, platform)
        cached = self._quotas.get(key)
        if cached is not None and time.monotonic() - cached[0] < QUOTA_TTL_S:
            quota = cached[1]
        else:
            quota = await quota_of(creds)
            self._quotas[key] = (time.monotonic(), quota)
        if quota is None:
            return None
        window = timedelta(seconds=quota.window_s)
        at = post.scheduled_at or now
        if at >= now + window:
            return None  # goes out after the window the quota speaks of
        async with tenant_transaction(pool, post.brand_id) as conn:
            queued: int = await conn.fetchval(
                "SELECT count(*) FROM publishing_targets WHERE platform = $1 AND status IN "
                "('pending', 'publishing') AND scheduled_at < $2 AND post_id <> $3",
                platform,
                now + window,
                uuid.UUID(post.id),
            )
        if quota.remaining > queued:
            return None
        return (
            f"the account used {quota.used} of its {quota.total} posts in "
            f"{quota.window_s // 3600} h and {queued} more are scheduled in that time"
        )
