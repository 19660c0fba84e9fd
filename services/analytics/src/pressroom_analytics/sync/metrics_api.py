"""Daily metrics, the summary and per-post metrics over HTTP (viewers).

Dates are the brand's local days, as publishing collected them; a range defaults to the last
30 days up to the brand's today and may span at most 366 days. Unknown platform strings are
filters like any other (they match nothing).
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Any, TypedDict

import asyncpg
from litestar import Controller, Request, get
from litestar.datastructures import State
from litestar.params import QueryParameter
from pressroom_kit.db import tenant_transaction

from pressroom_analytics.sync import store, summary
from pressroom_analytics.sync.params import (
    VIEWER,
    PlatformFilter,
    local_today,
    resolve_range,
    who,
)

DEFAULT_DAYS = 30
MAX_DAYS = 366

From = Annotated[date | None, QueryParameter(name="from", description="first local day")]
To = Annotated[date | None, QueryParameter(name="to", description="last local day (included)")]


# Answers are TypedDicts: their keys are the API's names (``from``, ``engagementRate``), in
# the JSON and in the OpenAPI document alike.
class MetricRow(TypedDict):
    date: date
    platform: str
    reach: int
    impressions: int
    engagement: int
    followers: int
    engagementRate: float  # engagement / reach; 0 when reach is 0


MetricsPage = TypedDict(
    "MetricsPage", {"from": date, "to": date, "timezone": str, "items": list[MetricRow]}
)


class Change(TypedDict):
    absolute: float
    percent: float | None  # null when the previous value is 0


class TotalsOut(TypedDict):
    reach: int
    impressions: int
    engagement: int
    followers: int
    engagementRate: float  # engagement / reach; 0 when reach is 0
    days: int


class PlatformSummary(TypedDict):
    platform: str
    totals: TotalsOut
    previous: TotalsOut
    change: dict[str, Change]


Period = TypedDict("Period", {"from": date, "to": date})
Summary = TypedDict(
    "Summary",
    {
        "from": date,
        "to": date,
        "previous_period": Period,
        "timezone": str,
        "platforms": list[PlatformSummary],
        "overall": PlatformSummary,
    },
)


class PostMetrics(TypedDict):
    post_id: uuid.UUID | None
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
    engagementRate: float  # engagement / reach; 0 when reach is 0
    days: int


PostMetricsPage = TypedDict(
    "PostMetricsPage", {"from": date, "to": date, "items": list[PostMetrics]}
)


def _totals_out(t: summary.Totals) -> TotalsOut:
    return {
        "reach": t.reach,
        "impressions": t.impressions,
        "engagement": t.engagement,
        "followers": t.followers,
        "engagementRate": t.engagement_rate,
        "days": t.days,
    }


def _platform_summary(
    name: str, current: summary.Totals, previous: summary.Totals
) -> PlatformSummary:
    return {
        "platform": name,
        "totals": _totals_out(current),
        "previous": _totals_out(previous),
        "change": {
            ("engagementRate" if k == "engagement_rate" else k): Change(
                absolute=v["absolute"] or 0.0, percent=v["percent"]
            )
            for k, v in summary.changes(current, previous).items()
        },
    }


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
    SELECT platform, platform_post_id, sum(reach)::bigint AS reach,
           sum(impressions)::bigint AS impressions, sum(engagement)::bigint AS engagement,
           sum(likes)::bigint AS likes, sum(comments)::bigint AS comments,
           sum(shares)::bigint AS shares, count(*) AS days, (array_agg(post_id))[1] AS post_id
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
        items: list[MetricRow] = [
            {
                "date": r["date"],
                "platform": r["platform"],
                "reach": r["reach"],
                "impressions": r["impressions"],
                "engagement": r["engagement"],
                "followers": r["followers"],
                "engagementRate": r["engagement_rate"],
            }
            for r in rows
        ]
        return {"from": first, "to": last, "timezone": tz, "items": items}

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
        return {
            "from": first,
            "to": last,
            "previous_period": {"from": before[0], "to": before[1]},
            "timezone": tz,
            "platforms": [
                _platform_summary(p, current.get(p, empty), previous.get(p, empty))
                for p in sorted(set(current) | set(previous))
            ],
            "overall": _platform_summary(
                "all", summary.overall(current.values()), summary.overall(previous.values())
            ),
        }

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
        items: list[PostMetrics] = [
            {
                "post_id": r["post_id"],
                "platform": r["platform"],
                "platform_post_id": r["platform_post_id"],
                "published_at": r["published_at"],
                "media_kind": r["media_kind"],
                "plan_id": r["plan_id"],
                "reach": r["reach"],
                "impressions": r["impressions"],
                "engagement": r["engagement"],
                "likes": r["likes"],
                "comments": r["comments"],
                "shares": r["shares"],
                "engagementRate": r["engagement"] / r["reach"] if r["reach"] else 0.0,
                "days": r["days"],
            }
            for r in rows
        ]
        return {"from": first, "to": last, "items": items}
