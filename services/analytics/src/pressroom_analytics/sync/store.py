"""The SQL of the sync feature's tables (``migrations/0001_metrics.sql``).

Every function runs on a connection whose transaction has the brand set (a
``tenant_transaction`` or the consumer's), so row-level security confines it to that brand;
none opens a transaction of its own.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import TypeVar
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import asyncpg
from pressroom_contracts.events.publishing import AccountDay, PostDay

Day = TypeVar("Day", AccountDay, PostDay)

# A platform's count is whatever its API said (publishing passes any integer on): one past
# PostgreSQL's bigint would fail the whole answer in the driver (and dead-letter it, leaving
# the sync to time out), and sums of near-bigint days overflow the API's ``::bigint`` sums.
# Counts are stored within ``0..MAX_COUNT``: far above any real audience, and a year of
# days of every platform still sums inside a bigint. A negative count means nothing.
MAX_COUNT = 10**15


def _counts(values: Sequence[int]) -> list[int]:
    return [min(max(int(v), 0), MAX_COUNT) for v in values]


# PostgreSQL refuses U+0000 in text and jsonb, and a lone surrogate cannot be encoded at all:
# a platform's text (an error, a post id) holding one would fail the whole answer.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


# A platform's post id is an index key (``analytics_post_metrics``' unique key, the posts'
# lookup index): btree refuses a key past ~2.7 kB, which would fail the whole answer. Real
# ids are tens of characters; a longer one names nothing we can match, and is not stored.
MAX_POST_ID = 512


def _keyable(platform_post_id: str | None) -> bool:
    return platform_post_id is None or len(platform_post_id) <= MAX_POST_ID


def storable(value: str | None) -> str | None:
    """``value`` with what PostgreSQL cannot store replaced by U+FFFD."""
    return None if value is None else _UNSTORABLE.sub("\ufffd", value)


def zone(name: str | None) -> ZoneInfo:
    """The brand's timezone; UTC for a brand we have not heard of (or a name this machine's
    tz database does not know)."""
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


async def brand_zone(conn: asyncpg.Connection) -> ZoneInfo:
    return zone(await conn.fetchval("SELECT timezone FROM analytics_brands"))


async def upsert_brand(
    conn: asyncpg.Connection, brand_id: UUID, name: str, timezone: str, at: datetime
) -> None:
    """An older event delivered late does not undo a newer one."""
    await conn.execute(
        "INSERT INTO analytics_brands (brand_id, name, timezone, updated_at) "
        "VALUES ($1, $2, $3, $4) ON CONFLICT (brand_id) DO UPDATE "
        "SET name = EXCLUDED.name, timezone = EXCLUDED.timezone, updated_at = EXCLUDED.updated_at "
        "WHERE analytics_brands.updated_at <= EXCLUDED.updated_at",
        brand_id,
        name,
        timezone,
        at,
    )


async def set_connection(
    conn: asyncpg.Connection, brand_id: UUID, platform: str, status: str, at: datetime
) -> None:
    await conn.execute(
        "INSERT INTO analytics_connections (brand_id, platform, status, updated_at) "
        "VALUES ($1, $2, $3, $4) ON CONFLICT (brand_id, platform) DO UPDATE "
        "SET status = EXCLUDED.status, updated_at = EXCLUDED.updated_at "
        "WHERE analytics_connections.updated_at <= EXCLUDED.updated_at",
        brand_id,
        platform,
        status,
        at,
    )


async def connected_platforms(conn: asyncpg.Connection) -> list[str]:
    rows = await conn.fetch(
        "SELECT platform FROM analytics_connections WHERE status = 'connected' ORDER BY platform"
    )
    return [r["platform"] for r in rows]


async def record_published(
    conn: asyncpg.Connection,
    *,
    brand_id: UUID,
    post_id: UUID,
    platform: str,
    platform_post_id: str | None,
    published_at: datetime | None,
    media_kind: str | None,
    plan_id: UUID | None,
    at: datetime,
) -> None:
    """A published post (or what a metrics answer tells of one): known fields are kept when a
    later source does not know them."""
    if not _keyable(platform_post_id):
        platform_post_id = None
    await conn.execute(
        "INSERT INTO analytics_posts (brand_id, post_id, platform, platform_post_id, "
        "published_at, media_kind, plan_id, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) "
        "ON CONFLICT (brand_id, post_id, platform) DO UPDATE SET "
        "platform_post_id = coalesce(EXCLUDED.platform_post_id, analytics_posts.platform_post_id), "
        "published_at = coalesce(EXCLUDED.published_at, analytics_posts.published_at), "
        "media_kind = coalesce(EXCLUDED.media_kind, analytics_posts.media_kind), "
        "plan_id = coalesce(EXCLUDED.plan_id, analytics_posts.plan_id), "
        "updated_at = EXCLUDED.updated_at",
        brand_id,
        post_id,
        platform,
        platform_post_id,
        published_at,
        media_kind,
        plan_id,
        at,
    )
    # Numbers that came before the post was known get their post id now.
    if platform_post_id is not None:
        await conn.execute(
            "UPDATE analytics_post_metrics SET post_id = $3 WHERE platform = $1 "
            "AND platform_post_id = $2 AND post_id IS NULL",
            platform,
            platform_post_id,
            post_id,
        )


# The upserts write one statement per answer (unnest of column arrays). A row changes only
# when the answer is at least as recent as what the row holds *and* its numbers differ, so a
# resent answer changes nothing (not even synced_at) and a late answer of an older sync does
# not overwrite newer numbers.
_UPSERT_DAYS = """
INSERT INTO analytics_metrics (brand_id, platform, date, reach, impressions, engagement,
    followers, collected_at, synced_at, sync_id)
SELECT $1, $2, d, r, i, e, f, $7, $8, $9
FROM unnest($3::date[], $4::bigint[], $5::bigint[], $6::bigint[], $10::bigint[]) AS u(d, r, i, e, f)
ON CONFLICT (brand_id, platform, date) DO UPDATE SET
    reach = EXCLUDED.reach, impressions = EXCLUDED.impressions,
    engagement = EXCLUDED.engagement, followers = EXCLUDED.followers,
    collected_at = EXCLUDED.collected_at, synced_at = EXCLUDED.synced_at,
    sync_id = EXCLUDED.sync_id
WHERE analytics_metrics.collected_at <= EXCLUDED.collected_at
  AND (analytics_metrics.reach, analytics_metrics.impressions, analytics_metrics.engagement,
       analytics_metrics.followers)
      IS DISTINCT FROM (EXCLUDED.reach, EXCLUDED.impressions, EXCLUDED.engagement,
                        EXCLUDED.followers)
"""


def _last_per_date(days: Sequence[Day]) -> list[Day]:
    """One entry per key (the last wins): ``ON CONFLICT`` refuses a statement that would
    touch the same row twice."""
    seen: dict[object, Day] = {}
    for day in days:
        seen[(day.date, storable(getattr(day, "platform_post_id", None)))] = day
    return list(seen.values())


async def upsert_account_days(
    conn: asyncpg.Connection,
    *,
    brand_id: UUID,
    platform: str,
    days: Sequence[AccountDay],
    collected_at: datetime,
    synced_at: datetime,
    sync_id: UUID | None,
) -> int:
    """Upsert an answer's account days; the number of days in the answer."""
    unique = _last_per_date(days)
    if unique:
        await conn.execute(
            _UPSERT_DAYS,
            brand_id,
            platform,
            [d.date for d in unique],
            _counts([d.reach for d in unique]),
            _counts([d.impressions for d in unique]),
            _counts([d.engagement for d in unique]),
            collected_at,
            synced_at,
            sync_id,
            _counts([d.followers for d in unique]),
        )
    return len(unique)


_UPSERT_POST_DAYS = """
INSERT INTO analytics_post_metrics (brand_id, post_id, platform, platform_post_id, date, reach,
    impressions, engagement, likes, comments, shares, collected_at, synced_at, sync_id)
SELECT $1, coalesce(u.p, (SELECT ap.post_id FROM analytics_posts ap
                          WHERE ap.platform = $2 AND ap.platform_post_id = u.pp LIMIT 1)),
       $2, u.pp, u.d, u.r, u.i, u.e, u.l, u.c, u.s, $12, $13, $14
FROM unnest($3::uuid[], $4::text[], $5::date[], $6::bigint[], $7::bigint[], $8::bigint[],
            $9::bigint[], $10::bigint[], $11::bigint[]) AS u(p, pp, d, r, i, e, l, c, s)
ON CONFLICT (brand_id, platform, platform_post_id, date) DO UPDATE SET
    post_id = coalesce(EXCLUDED.post_id, analytics_post_metrics.post_id),
    reach = EXCLUDED.reach, impressions = EXCLUDED.impressions,
    engagement = EXCLUDED.engagement, likes = EXCLUDED.likes, comments = EXCLUDED.comments,
    shares = EXCLUDED.shares, collected_at = EXCLUDED.collected_at,
    synced_at = EXCLUDED.synced_at, sync_id = EXCLUDED.sync_id
WHERE analytics_post_metrics.collected_at <= EXCLUDED.collected_at
  AND (analytics_post_metrics.reach, analytics_post_metrics.impressions,
       analytics_post_metrics.engagement, analytics_post_metrics.likes,
       analytics_post_metrics.comments, analytics_post_metrics.shares,
       analytics_post_metrics.post_id)
      IS DISTINCT FROM (EXCLUDED.reach, EXCLUDED.impressions, EXCLUDED.engagement,
                        EXCLUDED.likes, EXCLUDED.comments, EXCLUDED.shares,
                        coalesce(EXCLUDED.post_id, analytics_post_metrics.post_id))
"""


# The posts an answer names, in one statement; what the published event told is kept.
_UPSERT_POSTS = """
INSERT INTO analytics_posts (brand_id, post_id, platform, platform_post_id, published_at,
    media_kind, updated_at)
SELECT $1, p, $2, pp, pa, mk, $7
FROM unnest($3::uuid[], $4::text[], $5::timestamptz[], $6::text[]) AS u(p, pp, pa, mk)
ON CONFLICT (brand_id, post_id, platform) DO UPDATE SET
    platform_post_id = coalesce(analytics_posts.platform_post_id, EXCLUDED.platform_post_id),
    published_at = coalesce(analytics_posts.published_at, EXCLUDED.published_at),
    media_kind = coalesce(EXCLUDED.media_kind, analytics_posts.media_kind)
WHERE analytics_posts.platform_post_id IS NULL OR analytics_posts.published_at IS NULL
   OR analytics_posts.media_kind IS DISTINCT FROM coalesce(EXCLUDED.media_kind,
                                                           analytics_posts.media_kind)
"""


async def upsert_post_days(
    conn: asyncpg.Connection,
    *,
    brand_id: UUID,
    platform: str,
    days: Sequence[PostDay],
    collected_at: datetime,
    synced_at: datetime,
    sync_id: UUID | None,
) -> int:
    """Upsert an answer's post days (and the posts they name); the number of post days
    stored (a day of a post id too long to be a key is left out)."""
    unique = [d for d in _last_per_date(days) if _keyable(d.platform_post_id)]
    posts = {d.post_id: d for d in unique if d.post_id is not None}
    if posts:
        await conn.execute(
            _UPSERT_POSTS,
            brand_id,
            platform,
            list(posts),
            [storable(d.platform_post_id) for d in posts.values()],
            [d.published_at for d in posts.values()],
            [storable(d.media_kind) for d in posts.values()],
            synced_at,
        )
    if unique:
        await conn.execute(
            _UPSERT_POST_DAYS,
            brand_id,
            platform,
            [d.post_id for d in unique],
            [storable(d.platform_post_id) for d in unique],
            [d.date for d in unique],
            _counts([d.reach for d in unique]),
            _counts([d.impressions for d in unique]),
            _counts([d.engagement for d in unique]),
            _counts([d.likes for d in unique]),
            _counts([d.comments for d in unique]),
            _counts([d.shares for d in unique]),
            collected_at,
            synced_at,
            sync_id,
        )
    return len(unique)


def local_day(moment: datetime, tz: ZoneInfo) -> date:
    return moment.astimezone(tz).date()


def local_bounds(first: date, last: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """``[first 00:00, the day after last 00:00)`` in ``tz``, as UTC instants (a 23- or
    25-hour day around a DST change is still one day)."""
    start = datetime.combine(first, time(0), tzinfo=tz).astimezone(UTC)
    end = datetime.combine(last + timedelta(days=1), time(0), tzinfo=tz).astimezone(UTC)
    return start, end


async def daily_rows(
    conn: asyncpg.Connection, first: date, last: date, platform: str | None
) -> list[asyncpg.Record]:
    """The brand's account days ``first..last`` (local days), oldest first; every platform
    when ``platform`` is None."""
    return list(
        await conn.fetch(
            "SELECT platform, date, reach, impressions, engagement, followers, engagement_rate "
            "FROM analytics_metrics WHERE date BETWEEN $1 AND $2 "
            "AND ($3::text IS NULL OR platform = $3) ORDER BY date, platform",
            first,
            last,
            platform,
        )
    )


async def period_totals(
    conn: asyncpg.Connection, first: date, split: date, last: date
) -> list[asyncpg.Record]:
    """Per platform, totals of ``split..last`` (``current``) and of ``first..split-1``:
    sums of the flows, the followers of the period's last day with a row, days with rows."""
    return list(
        await conn.fetch(
            "SELECT platform, date >= $2 AS current, sum(reach) AS reach, "
            "sum(impressions) AS impressions, sum(engagement) AS engagement, "
            "(array_agg(followers ORDER BY date DESC))[1] AS followers, count(*) AS days "
            "FROM analytics_metrics WHERE date BETWEEN $1 AND $3 GROUP BY 1, 2",
            first,
            split,
            last,
        )
    )
