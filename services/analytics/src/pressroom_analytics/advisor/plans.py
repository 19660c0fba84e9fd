"""Monthly plans in the database: generate (one per brand and month), approve, and count
the posts publishing made of them.

Generation takes a transaction-level advisory lock on (brand, month), so two requests for
one month are decided one after the other: the second sees the first's plan (409
``plan_exists``, or replaces it with ``regenerate``). The unique (brand_id, month) key stays
as the last word. An approved plan is never replaced (409 ``plan_approved``).

``published_count`` is the number of distinct post ids publishing announced as published
with the plan's id (``auto_plan_posts``, keyed by plan and post): a post published on three
platforms, or an event resent, counts once.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
from pressroom_contracts import CloudEvent, EventPayload
from pressroom_contracts.events.analytics import PlanApproved, PlanGenerated, PlanSlot
from pressroom_contracts.events.publishing import PostCreated, PostPublished
from pressroom_kit.errors import Conflict, NotFound
from pressroom_kit.logs import get_logger

from pressroom_analytics.advisor import planning
from pressroom_analytics.advisor.events import emit
from pressroom_analytics.advisor.insights import analyse_brand

log = get_logger(__name__)

PLAN_COLUMNS = (
    "p.id, p.brand_id, p.month, p.status, p.timezone, p.summary, p.generated_by, "
    "p.generated_at, p.approved_by, p.approved_at, "
    "(SELECT count(*) FROM auto_plan_slots s WHERE s.plan_id = p.id) AS slot_count, "
    "(SELECT count(*) FROM auto_plan_posts x WHERE x.plan_id = p.id "
    " AND x.created_at IS NOT NULL) AS created_count, "
    "(SELECT count(*) FROM auto_plan_posts x WHERE x.plan_id = p.id "
    " AND x.published_at IS NOT NULL) AS published_count"
)


async def _platforms(conn: asyncpg.Connection, since: datetime) -> list[str]:
    """The connected platforms; a brand whose connections are not known yet: those it
    posted on in the history window."""
    rows = await conn.fetch("SELECT platform, status FROM analytics_connections")
    if rows:
        return sorted(r["platform"] for r in rows if r["status"] == "connected")
    rows = await conn.fetch(
        "SELECT DISTINCT platform FROM analytics_posts WHERE published_at >= $1", since
    )
    return sorted(r["platform"] for r in rows)


async def _recent(
    conn: asyncpg.Connection, since: datetime, now: datetime, tz: ZoneInfo
) -> dict[str, tuple[int, int]]:
    """Per platform: (posts, weeks with posts) published in [since, now). Weeks are counted
    in Python with zoneinfo (PostgreSQL's zone names may lag behind Python's)."""
    rows = await conn.fetch(
        "SELECT platform, published_at FROM analytics_posts "
        "WHERE published_at >= $1 AND published_at < $2",
        since,
        now,
    )
    weeks: dict[str, set[tuple[int, int]]] = defaultdict(set)
    posts: dict[str, int] = defaultdict(int)
    for r in rows:
        iso = r["published_at"].astimezone(tz).isocalendar()
        weeks[r["platform"]].add((iso.year, iso.week))
        posts[r["platform"]] += 1
    return {p: (posts[p], len(weeks[p])) for p in posts}


async def generate(
    conn: asyncpg.Connection,
    brand_id: uuid.UUID,
    month: str,
    *,
    regenerate: bool,
    actor: str,
    now: datetime,
) -> uuid.UUID:
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"auto_plan:{brand_id}:{month}"
    )
    existing = await conn.fetchrow(
        "SELECT id, status FROM auto_plans WHERE month = $1 FOR UPDATE", month
    )
    if existing is not None:
        if existing["status"] == "approved":
            raise Conflict(
                f"the plan for {month} is approved and cannot be regenerated",
                code="plan_approved",
                plan_id=str(existing["id"]),
            )
        if not regenerate:
            raise Conflict(
                f"a plan for {month} exists; send regenerate: true to replace it",
                code="plan_exists",
                plan_id=str(existing["id"]),
            )
        await conn.execute("DELETE FROM auto_plans WHERE id = $1", existing["id"])
    since = now - timedelta(weeks=planning.HISTORY_WEEKS)
    platforms = await _platforms(conn, since)
    if not platforms:
        raise Conflict(
            "the brand has no connected platform and no recent posts to plan for",
            code="no_platforms",
        )
    tz, analyses = await analyse_brand(conn, brand_id)
    recent = await _recent(conn, since, now, tz)
    sources = [
        planning.PlatformInput(
            platform=p,
            recent_posts=recent.get(p, (0, 0))[0],
            recent_weeks=recent.get(p, (0, 0))[1],
            analysis=analyses.get(p),
        )
        for p in platforms
    ]
    slots = planning.month_slots(month, tz, sources, now)
    plan_id = uuid.uuid4()
    summary = {
        s.platform: {
            "posts_per_week": planning.per_week(s.recent_posts),
            "recent_posts": s.recent_posts,
        }
        for s in sources
    }
    await conn.execute(
        "INSERT INTO auto_plans (id, brand_id, month, status, timezone, summary, generated_by, "
        "generated_at) VALUES ($1, $2, $3, 'draft', $4, $5, $6, $7)",
        plan_id,
        brand_id,
        month,
        tz.key,
        summary,
        actor,
        now,
    )
    await conn.executemany(
        "INSERT INTO auto_plan_slots (id, plan_id, brand_id, platform, scheduled_at, local_time, "
        "format, confidence, reason) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        [
            (
                s.id,
                plan_id,
                brand_id,
                s.platform,
                s.scheduled_at,
                s.local_time,
                s.format,
                s.confidence,
                s.reason,
            )
            for s in slots
        ],
    )
    await emit(
        conn,
        PlanGenerated(
            plan_id=plan_id,
            brand_id=brand_id,
            month=month,
            slots=len(slots),
            generated_by=actor,
            generated_at=now,
        ),
        brand_id=brand_id,
        subject=plan_id,
        now=now,
    )
    return plan_id


async def slots_of(conn: asyncpg.Connection, plan_id: uuid.UUID) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            "SELECT id, platform, scheduled_at, local_time, format, confidence, reason "
            "FROM auto_plan_slots WHERE plan_id = $1 ORDER BY scheduled_at, platform",
            plan_id,
        )
    )


async def approve(
    conn: asyncpg.Connection, brand_id: uuid.UUID, plan_id: uuid.UUID, *, actor: str, now: datetime
) -> None:
    row = await conn.fetchrow(
        "UPDATE auto_plans SET status = 'approved', approved_by = $2, approved_at = $3 "
        "WHERE id = $1 AND status = 'draft' RETURNING month",
        plan_id,
        actor,
        now,
    )
    if row is None:
        if await conn.fetchval("SELECT 1 FROM auto_plans WHERE id = $1", plan_id) is None:
            raise NotFound(f"no plan {plan_id}", code="no_plan")
        raise Conflict(f"plan {plan_id} is already approved", code="plan_approved")
    slots = [
        PlanSlot(
            slot_id=s["id"],
            platform=s["platform"],
            scheduled_at=s["scheduled_at"],
            format=s["format"],
            confidence=s["confidence"],
            reason=s["reason"],
        )
        for s in await slots_of(conn, plan_id)
    ]
    await emit(
        conn,
        PlanApproved(
            plan_id=plan_id,
            brand_id=brand_id,
            month=row["month"],
            slots=slots,
            approved_by=actor,
            approved_at=now,
        ),
        brand_id=brand_id,
        subject=plan_id,
        now=now,
    )


async def read(conn: asyncpg.Connection, plan_id: uuid.UUID) -> asyncpg.Record:
    row = await conn.fetchrow(f"SELECT {PLAN_COLUMNS} FROM auto_plans p WHERE p.id = $1", plan_id)
    if row is None:
        raise NotFound(f"no plan {plan_id}", code="no_plan")
    return row


async def listing(conn: asyncpg.Connection, month: str | None) -> list[asyncpg.Record]:
    if month is None:
        return list(
            await conn.fetch(f"SELECT {PLAN_COLUMNS} FROM auto_plans p ORDER BY p.month DESC")
        )
    return list(
        await conn.fetch(f"SELECT {PLAN_COLUMNS} FROM auto_plans p WHERE p.month = $1", month)
    )


def plan_out(row: asyncpg.Record, slots: list[asyncpg.Record] | None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": row["id"],
        "month": row["month"],
        "status": row["status"],
        "timezone": row["timezone"],
        "summary": row["summary"],
        "generated_by": row["generated_by"],
        "generated_at": row["generated_at"],
        "approved_by": row["approved_by"],
        "approved_at": row["approved_at"],
        "slot_count": row["slot_count"],
        "created_count": row["created_count"],
        "published_count": row["published_count"],
    }
    if slots is not None:
        out["slots"] = [
            {
                "id": s["id"],
                "platform": s["platform"],
                "scheduled_at": s["scheduled_at"],
                "local_time": s["local_time"],
                "format": s["format"],
                "confidence": s["confidence"],
                "reason": s["reason"],
            }
            for s in slots
        ]
    return out


# --- publishing's posts made from a plan (inbox consumer handlers) --------------------------


async def _record_post(
    conn: asyncpg.Connection,
    event: CloudEvent,
    *,
    brand_id: uuid.UUID,
    plan_id: uuid.UUID,
    post_id: uuid.UUID,
    column: str,
    at: datetime,
) -> None:
    if event.brandid != brand_id:
        log.warning("plan post event without a matching brand ignored", event_id=str(event.id))
        return
    # Only a plan of this brand (row-level security) gets the post; a set, so once per post.
    status = await conn.execute(
        f"INSERT INTO auto_plan_posts (plan_id, post_id, brand_id, {column}) "
        "SELECT id, $2, brand_id, $3 FROM auto_plans WHERE id = $1 "
        f"ON CONFLICT (plan_id, post_id) DO UPDATE SET {column} = "
        f"coalesce(auto_plan_posts.{column}, EXCLUDED.{column})",
        plan_id,
        post_id,
        at,
    )
    if status.endswith(" 0"):
        log.info("post of an unknown plan ignored", plan_id=str(plan_id), post_id=str(post_id))


async def post_created(conn: asyncpg.Connection, event: CloudEvent, payload: EventPayload) -> None:
    assert isinstance(payload, PostCreated)
    if payload.plan_id is None:
        return
    await _record_post(
        conn,
        event,
        brand_id=payload.brand_id,
        plan_id=payload.plan_id,
        post_id=payload.post_id,
        column="created_at",
        at=event.time,
    )


async def post_published(
    conn: asyncpg.Connection, event: CloudEvent, payload: EventPayload
) -> None:
    assert isinstance(payload, PostPublished)
    if payload.plan_id is None:
        return
    await _record_post(
        conn,
        event,
        brand_id=payload.brand_id,
        plan_id=payload.plan_id,
        post_id=payload.post_id,
        column="published_at",
        at=payload.published_at,
    )
