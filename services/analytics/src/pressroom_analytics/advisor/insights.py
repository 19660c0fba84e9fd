"""Insights in the database: regenerated from the brand's post history, read ranked by
``weight x confidence``, and taught by feedback.

Regeneration runs in the caller's transaction (``after_sync``: the one that stored the
sync's rows), so the insights a reader sees always match the metrics committed with them.
It upserts on (category, type, platform), which keeps an insight's id across generations
and makes two concurrent regenerations of a brand converge instead of colliding; rows of an
older generation (a platform gone quiet) are deleted.

Weights live in ``advisor_weights`` and are applied at read time, so feedback changes the
ranking at once, without regenerating.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

import asyncpg
from pressroom_kit.errors import NotFound

from pressroom_analytics.advisor.analysis import (
    PlatformAnalysis,
    PostOutcome,
    analyse,
    no_history_insights,
)
from pressroom_analytics.advisor.events import brand_timezone

Feedback = Literal["accepted", "rejected", "dismissed"]
FACTORS: dict[str, float] = {"accepted": 1.2, "rejected": 0.7, "dismissed": 0.9}
MIN_WEIGHT, MAX_WEIGHT = 0.1, 5.0

# Each post's outcome: its engagement summed over every measured day. A post that was never
# measured has no row in the join and is left out.
POSTS_SQL = """
SELECT p.platform, p.published_at, p.media_kind, sum(m.engagement)::float8 AS engagement
FROM analytics_posts p
JOIN analytics_post_metrics m
  ON m.brand_id = p.brand_id AND m.platform = p.platform
 AND m.platform_post_id = p.platform_post_id
WHERE p.published_at IS NOT NULL {since}
GROUP BY p.brand_id, p.post_id, p.platform, p.published_at, p.media_kind
"""


async def load_posts(conn: asyncpg.Connection, since: datetime | None = None) -> list[PostOutcome]:
    """The brand's measured posts (the transaction's brand: row-level security)."""
    if since is None:
        rows = await conn.fetch(POSTS_SQL.format(since=""))
    else:
        rows = await conn.fetch(POSTS_SQL.format(since="AND p.published_at >= $1"), since)
    return [
        PostOutcome(r["platform"], r["published_at"], r["media_kind"], r["engagement"] or 0.0)
        for r in rows
    ]


async def analyse_brand(
    conn: asyncpg.Connection, brand_id: uuid.UUID
) -> tuple[ZoneInfo, dict[str, PlatformAnalysis]]:
    tz = await brand_timezone(conn, brand_id)
    return tz, analyse(await load_posts(conn), tz)


async def regenerate(conn: asyncpg.Connection, brand_id: uuid.UUID, now: datetime) -> int:
    """Replace the brand's insights with what its history says now; returns how many."""
    _, analyses = await analyse_brand(conn, brand_id)
    drafts = [i for a in analyses.values() for i in a.insights] or no_history_insights()
    generation = uuid.uuid4()
    await conn.executemany(
        "INSERT INTO analytics_insights (id, brand_id, category, type, platform, kind, title, "
        "explanation, evidence, sample_size, confidence, generation, generated_at) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) "
        "ON CONFLICT (brand_id, category, type, platform) DO UPDATE SET kind = $6, title = $7, "
        "explanation = $8, evidence = $9, sample_size = $10, confidence = $11, "
        "generation = $12, generated_at = $13",
        [
            (
                uuid.uuid4(),
                brand_id,
                d.category,
                d.type,
                d.platform,
                d.kind,
                d.title,
                d.explanation,
                d.evidence,
                d.sample_size,
                d.confidence,
                generation,
                now,
            )
            for d in drafts
        ],
    )
    await conn.execute("DELETE FROM analytics_insights WHERE generation <> $1", generation)
    return len(drafts)


@dataclass(frozen=True)
class StoredInsight:
    id: uuid.UUID
    category: str
    type: str
    platform: str
    kind: str
    title: str
    explanation: str
    evidence: dict[str, Any]
    sample_size: int
    confidence: float
    weight: float
    score: float
    generated_at: datetime


_READ = (
    "SELECT i.id, i.category, i.type, i.platform, i.kind, i.title, i.explanation, i.evidence, "
    "i.sample_size, i.confidence, i.generated_at, coalesce(w.weight, 1.0) AS weight "
    "FROM analytics_insights i LEFT JOIN advisor_weights w "
    "ON w.brand_id = i.brand_id AND w.category = i.category AND w.type = i.type"
)


def _stored(r: asyncpg.Record) -> StoredInsight:
    evidence = r["evidence"]
    if isinstance(evidence, str):
        evidence = json.loads(evidence)
    return StoredInsight(
        id=r["id"],
        category=r["category"],
        type=r["type"],
        platform=r["platform"],
        kind=r["kind"],
        title=r["title"],
        explanation=r["explanation"],
        evidence=evidence,
        sample_size=r["sample_size"],
        confidence=r["confidence"],
        weight=r["weight"],
        score=r["weight"] * r["confidence"],
        generated_at=r["generated_at"],
    )


async def ranked(conn: asyncpg.Connection, platform: str | None = None) -> list[StoredInsight]:
    """The brand's insights, best score first (ties: more posts behind it first)."""
    if platform is None:
        rows = await conn.fetch(_READ)
    else:
        rows = await conn.fetch(_READ + " WHERE i.platform = $1", platform)
    items = [_stored(r) for r in rows]
    items.sort(key=lambda i: (-i.score, -i.sample_size, i.category, i.type, i.platform))
    return items


@dataclass(frozen=True)
class FeedbackResult:
    insight_id: uuid.UUID
    feedback: str
    category: str
    type: str
    previous_weight: float
    new_weight: float


async def give_feedback(
    conn: asyncpg.Connection,
    brand_id: uuid.UUID,
    insight_id: uuid.UUID,
    feedback: Feedback,
    *,
    actor: str,
    now: datetime,
) -> FeedbackResult:
    """Multiply the weight of the insight's (category, type) by the feedback's factor,
    clamped to [0.1, 5]. The weight row is locked (``FOR UPDATE``) between reading the
    previous weight and writing the new one, so concurrent feedback loses no update."""
    row = await conn.fetchrow(
        "SELECT category, type FROM analytics_insights WHERE id = $1", insight_id
    )
    if row is None:
        raise NotFound(f"no insight {insight_id}", code="no_insight")
    category, type_ = row["category"], row["type"]
    await conn.execute(
        "INSERT INTO advisor_weights (brand_id, category, type, weight, updated_at) "
        "VALUES ($1, $2, $3, 1.0, $4) ON CONFLICT DO NOTHING",
        brand_id,
        category,
        type_,
        now,
    )
    previous = await conn.fetchval(
        "SELECT weight FROM advisor_weights WHERE brand_id = $1 AND category = $2 AND type = $3 "
        "FOR UPDATE",
        brand_id,
        category,
        type_,
    )
    new = min(MAX_WEIGHT, max(MIN_WEIGHT, previous * FACTORS[feedback]))
    await conn.execute(
        "UPDATE advisor_weights SET weight = $4, updated_at = $5 "
        "WHERE brand_id = $1 AND category = $2 AND type = $3",
        brand_id,
        category,
        type_,
        new,
        now,
    )
    await conn.execute(
        "INSERT INTO advisor_feedback (id, brand_id, insight_id, category, type, feedback, "
        "previous_weight, new_weight, given_by, created_at) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        uuid.uuid4(),
        brand_id,
        insight_id,
        category,
        type_,
        feedback,
        previous,
        new,
        actor,
        now,
    )
    return FeedbackResult(insight_id, feedback, category, type_, previous, new)
