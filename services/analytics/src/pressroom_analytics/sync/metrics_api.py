"""Daily metrics, the summary and per-post metrics over HTTP (viewers).

Dates are the brand's local days, as publishing collected them; a range defaults to the last
30 days up to the brand's today and may span at most 366 days. Unknown platform strings are
filters like any other (they match nothing).
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Any

import asyncpg
from litestar import Controller, Request, get
from litestar.datastructures import State
from litestar.params import QueryParameter
from pressroom_kit.db import tenant_transaction
from pydantic import BaseModel, Field

from pressroom_analytics.sync import store, summary
from pressroom_analytics.sync.params import (
    ALIASED,
    VIEWER,
    Out,
    PlatformFilter,
    local_today,
    resolve_range,
    who,
)

DEFAULT_DAYS = 30
MAX_DAYS = 366

From = Annotated[date | None, QueryParameter(name="from", description="first local day")]
To = Annotated[date | None, QueryParameter(name="to", description="last local day (included)")]


class MetricRow(Out):
    date: date
    platform: str
    reach: int
    impressions: int
    engagement: int
    followers: int
    engagement_rate: float = Field(
        alias="engagementRate", description="engagement / reach; 0 when reach is 0"
    )


class MetricsPage(Out):
    since: date = Field(alias="from")
    until: date = Field(alias="to")
    timezone: str
    items: list[MetricRow]


class Change(BaseModel):
    absolute: float
    percent: float | None = Field(description="null when the previous value is 0")


class TotalsOut(Out):
    reach: int
    impressions: int
    engagement: int
    followers: int = Field(description="the last day's value, not a sum")
    engagement_rate: float = Field(alias="engagementRate")
    days: int = Field(description="days with numbers")


class PlatformSummary(BaseModel):
    platform: str
    totals: TotalsOut
    previous: TotalsOut
    change: dict[str, Change]


class Period(Out):
    since: date = Field(alias="from")
    until: date = Field(alias="to")


class Summary(Out):
    since: date = Field(alias="from")
    until: date = Field(alias="to")
    previous_period: Period
    timezone: str
    platforms: list[PlatformSummary]
    overall: PlatformSummary


class PostMetrics(Out):
    post_id: uuid.UUID | None = Field(description="null when publishing did not know the post")
    platform: str
    platform_post_id: str
    published_at: datetime | None
    media_kind: str | None
    plan_id: uuid.UUID | None
    reach: int
    impressions: int
    engagement: int
    likes: int
    comments: int
    shares: int
    engagement_rate: float = Field(alias="engagementRate")
    days: int


class PostMetricsPage(Out):
    since: date = Field(alias="from")
    until: date = Field(alias="to")
    items: list[PostMetrics]


def _totals_out(t: summary.Totals) -> TotalsOut:
    return TotalsOut(
        reach=t.reach,
        impressions=t.impressions,
        engagement=t.engagement,
        followers=t.followers,
        engagement_rate=t.engagement_rate,
        days=t.days,
    )


def _platform_summary(
    name: str, current: summary.Totals, previous: summary.Totals
) -> PlatformSummary:
    return PlatformSummary(
        platform=name,
        totals=_totals_out(current),
        previous=_totals_out(previous),
        change={
            ("engagementRate" if k == "engagement_rate" else k): Change(**v)
            for k, v in summary.changes(current, previous).items()
        },
    )


async def read_range(
    conn: asyncpg.Connection, state: State, since: date | None, until: date | None
) -> tuple[date, date, str]:
    tz = await store.brand_zone(conn)
    first, last = resolve_range(
        since, until, local_today(state.clock(), tz), default_days=DEFAULT_DAYS, max_days=MAX_DAYS
    )
    return first, last, tz.key


_POSTS = """
WITH m AS (
    SELECT platform, platform_post_id, sum(reach) AS reach, sum(impressions) AS impressions,
           sum(engagement) AS engagement, sum(likes) AS likes, sum(comments) AS comments,
           sum(shares) AS shares, count(*) AS days, (array_agg(post_id))[1] AS post_id
    FROM analytics_post_metrics
    WHERE date BETWEEN $1 AND $2 AND ($3::text IS NULL OR platform = $3)
    GROUP BY platform, platform_post_id
), keys AS (
    SELECT platform, platform_post_id FROM m
    UNION
    SELECT platform, platform_post_id FROM analytics_posts
    WHERE platform_post_id IS NOT NULL AND published_at >= $4 AND published_at < $5
      AND ($3::text IS NULL OR platform = $3)
)
SELECT k.platform, k.platform_post_id, coalesce(p.post_id, m.post_id) AS post_id,
       p.published_at, p.media_kind, p.plan_id,
       coalesce(m.reach, 0) AS reach, coalesce(m.impressions, 0) AS impressions,
       coalesce(m.engagement, 0) AS engagement, coalesce(m.likes, 0) AS likes,
       coalesce(m.comments, 0) AS comments, coalesce(m.shares, 0) AS shares,
       coalesce(m.days, 0) AS days
FROM keys k
LEFT JOIN m ON m.platform = k.platform AND m.platform_post_id = k.platform_post_id
LEFT JOIN LATERAL (
    SELECT post_id, published_at, media_kind, plan_id FROM analytics_posts ap
    WHERE ap.platform = k.platform AND ap.platform_post_id = k.platform_post_id
    LIMIT 1
) p ON TRUE
ORDER BY engagement DESC, reach DESC, p.published_at DESC NULLS LAST, k.platform_post_id
LIMIT $6
"""


class MetricsController(Controller):
    path = "/v1/analytics"
    tags = ["analytics"]
    guards = VIEWER
    type_encoders = ALIASED

    @get("/metrics")
    async def metrics(
        self,
        request: Request[Any, Any, Any],
        state: State,
        platform: PlatformFilter = None,
        since: From = None,
        until: To = None,
    ) -> MetricsPage:
        """One row per platform and local day, oldest first."""
        async with tenant_transaction(state.pool, who(request).brand_id) as conn:
            first, last, tz = await read_range(conn, state, since, until)
            rows = await store.daily_rows(conn, first, last, platform)
        return MetricsPage(
            since=first, until=last, timezone=tz, items=[MetricRow(**dict(r)) for r in rows]
        )

    @get("/summary")
    async def summary(
        self,
        request: Request[Any, Any, Any],
        state: State,
        since: From = None,
        until: To = None,
    ) -> Summary:
        """Totals per platform and overall, and the change against the previous period of
        the same length."""
        async with tenant_transaction(state.pool, who(request).brand_id) as conn:
            first, last, tz = await read_range(conn, state, since, until)
            before = summary.previous_period(first, last)
            rows = await store.period_totals(conn, before[0], first, last)
        current, previous = summary.split_periods(dict(r) for r in rows)
        empty = summary.Totals()
        return Summary(
            since=first,
            until=last,
            previous_period=Period(since=before[0], until=before[1]),
            timezone=tz,
            platforms=[
                _platform_summary(p, current.get(p, empty), previous.get(p, empty))
                for p in sorted(set(current) | set(previous))
            ],
            overall=_platform_summary(
                "all", summary.overall(current.values()), summary.overall(previous.values())
            ),
        )

    @get("/posts")
    async def posts(
        self,
        request: Request[Any, Any, Any],
        state: State,
        platform: PlatformFilter = None,
        since: From = None,
        until: To = None,
        limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 100,
    ) -> PostMetricsPage:
        """Per published post: its numbers summed over the range's days, the most engaging
        first. A post published in the range with no numbers yet is listed with zeros."""
        async with tenant_transaction(state.pool, who(request).brand_id) as conn:
            first, last, zone_name = await read_range(conn, state, since, until)
            start, end = store.local_bounds(first, last, store.zone(zone_name))
            rows = await conn.fetch(_POSTS, first, last, platform, start, end, limit)
        items = [
            PostMetrics(
                **dict(r),
                engagement_rate=r["engagement"] / r["reach"] if r["reach"] else 0.0,
            )
            for r in rows
        ]
        return PostMetricsPage(since=first, until=last, items=items)
