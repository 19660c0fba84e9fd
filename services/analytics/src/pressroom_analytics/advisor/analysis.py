"""What a brand's own post history says, per platform: pure functions of the posts.

The outcome of a post is its engagement summed over every day it was measured
(``analytics_post_metrics``); posts never measured are left out (no outcome is not a zero).
Times are read in the brand's timezone. The insights (``insights.py``) and the monthly plans
(``plans.py``) both read this one analysis, so a plan follows what the insights say.

Minimums (below them an insight says ``insufficient_data`` and guesses nothing):
``MIN_POSTS`` posts on a platform for timing, ``MIN_GROUP`` posts on each side of a format
comparison, ``MIN_WEEKS`` weeks with posts for frequency.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from pressroom_analytics.advisor import stats

MIN_POSTS = 10
MIN_GROUP = 5
MIN_WEEKS = 4
# Below this confidence a comparison names no winner (and a plan advises no format).
CLEAR = 0.3
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
TEXT_KINDS = {None, "", "text", "none"}
VIDEO_KINDS = {"video", "reel", "short"}


@dataclass(frozen=True)
class PostOutcome:
    platform: str
    published_at: datetime
    media_kind: str | None
    engagement: float


def media_class(kind: str | None) -> str:
    """``text`` (no media), ``video`` or ``image`` (any other media: photo, carousel, gif)."""
    value = kind.lower() if kind else None
    if value in TEXT_KINDS:
        return "text"
    return "video" if value in VIDEO_KINDS else "image"


@dataclass
class Insight:
    """An insight before it is stored (``id``, weight and score come with storage)."""

    category: str
    type: str
    platform: str
    kind: str
    title: str
    explanation: str
    evidence: dict[str, Any]
    sample_size: int
    confidence: float


@dataclass
class PlatformAnalysis:
    platform: str
    posts: int
    hours: stats.Shrunk[int] | None = None
    weekdays: stats.Shrunk[int] | None = None
    hour_confidence: float = 0.0
    weekday_confidence: float = 0.0
    media_vs_text: stats.Comparison | None = None
    video_vs_image: stats.Comparison | None = None
    insights: list[Insight] = field(default_factory=list)

    def format_advice(self) -> str | None:
        """The format the comparisons favour (with at least some confidence), else None."""
        mvt = self.media_vs_text
        if mvt is None or mvt.confidence < CLEAR:
            return None
        if mvt.lift < 0:
            return "text"
        vvi = self.video_vs_image
        if vvi is not None and vvi.confidence >= CLEAR:
            return "video" if vvi.lift > 0 else "image"
        return "image"


def _insufficient(
    category: str, type_: str, platform: str, what: str, have: int, need: int
) -> Insight:
    return Insight(
        category=category,
        type=type_,
        platform=platform,
        kind="insufficient_data",
        title=f"Not enough data yet for {what} on {platform}",
        explanation=f"{what.capitalize()} needs at least {need} measured posts on {platform}; "
        f"there are {have}. No guess is made until then.",
        evidence={"have": have, "need": need},
        sample_size=have,
        confidence=0.0,
    )


def _slot_evidence(shrunk: stats.Shrunk[int], names: Sequence[str] | None) -> dict[str, Any]:
    ranked = shrunk.ranked()
    return {
        "brand_mean": round(shrunk.grand_mean, 2),
        "prior_weight_posts": None if shrunk.k == float("inf") else round(shrunk.k, 2),
        "slots": [
            {
                "slot": names[s.key] if names else s.key,
                "posts": s.n,
                "raw_mean": round(s.raw_mean, 2),
                "shrunk_mean": round(s.posterior_mean, 2),
            }
            for s in ranked
        ],
    }


def _timing(
    platform: str, type_: str, groups: dict[int, list[float]], names: Sequence[str] | None
) -> tuple[stats.Shrunk[int], float, Insight]:
    shrunk = stats.shrink(groups)
    confidence = stats.best_slot_confidence(shrunk)
    best = shrunk.ranked()[0]
    label = names[best.key] if names else f"{best.key:02d}:00"
    what = "hour" if names is None else "weekday"
    evidence = _slot_evidence(shrunk, names)
    if shrunk.between_var <= 0:
        title = f"No {what} stands out on {platform}"
        explanation = (
            f"Across {shrunk.n} posts the differences between {what}s on {platform} are no "
            f"larger than chance would make them (brand mean {shrunk.grand_mean:.1f} "
            f"engagements per post)."
        )
    else:
        lift = (best.posterior_mean / shrunk.grand_mean - 1) * 100 if shrunk.grand_mean else 0.0
        title = (
            f"Post on {platform} at {label}" if names is None else f"Post on {platform} on {label}s"
        )
        explanation = (
            f"{best.n} posts at {label} averaged {best.raw_mean:.1f} engagements; shrunk towards "
            f"the brand's mean of {shrunk.grand_mean:.1f} (the prior weighs as {shrunk.k:.1f} "
            f"posts) that is {best.posterior_mean:.1f}, {lift:+.0f}% over the mean, from "
            f"{shrunk.n} posts in all."
        )
    insight = Insight(
        "timing", type_, platform, "insight", title, explanation, evidence, shrunk.n, confidence
    )
    return shrunk, confidence, insight


def _comparison(
    platform: str,
    type_: str,
    a_name: str,
    a: list[float],
    b_name: str,
    b: list[float],
) -> tuple[stats.Comparison | None, Insight]:
    if len(a) < MIN_GROUP or len(b) < MIN_GROUP:
        have = min(len(a), len(b))
        insight = _insufficient("format", type_, platform, f"{a_name} vs {b_name}", have, MIN_GROUP)
        insight.explanation = (
            f"Comparing {a_name} with {b_name} on {platform} needs at least {MIN_GROUP} "
            f"measured posts of each; there are {len(a)} and {len(b)}. No guess is made."
        )
        insight.evidence = {f"{a_name}_posts": len(a), f"{b_name}_posts": len(b), "need": MIN_GROUP}
        insight.sample_size = len(a) + len(b)
        return None, insight
    c = stats.compare(a, b)
    winner, loser = (a_name, b_name) if c.lift >= 0 else (b_name, a_name)
    if c.confidence < CLEAR:
        title = f"On {platform}, {a_name} and {b_name} posts do about as well"
    else:
        title = f"On {platform}, {winner} posts do better than {loser} posts"
    insight = Insight(
        category="format",
        type=type_,
        platform=platform,
        kind="insight",
        title=title,
        explanation=(
            f"{c.n_a} {a_name} posts averaged {c.mean_a:.1f} engagements, {c.n_b} {b_name} posts "
            f"{c.mean_b:.1f} ({c.lift * 100:+.0f}% for {a_name})."
        ),
        evidence={
            f"{a_name}_posts": c.n_a,
            f"{b_name}_posts": c.n_b,
            f"{a_name}_mean": round(c.mean_a, 2),
            f"{b_name}_mean": round(c.mean_b, 2),
            "lift": round(c.lift, 4),
        },
        sample_size=c.n_a + c.n_b,
        confidence=c.confidence,
    )
    return c, insight


def _frequency(platform: str, posts: Sequence[PostOutcome], tz: ZoneInfo) -> Insight:
    weeks: dict[tuple[int, int], list[float]] = defaultdict(list)
    for p in posts:
        iso = p.published_at.astimezone(tz).isocalendar()
        weeks[(iso.year, iso.week)].append(p.engagement)
    if len(weeks) < MIN_WEEKS:
        insight = _insufficient(
            "frequency", "frequency", platform, "posting frequency", len(weeks), MIN_WEEKS
        )
        insight.explanation = (
            f"Relating posting frequency to engagement on {platform} needs at least "
            f"{MIN_WEEKS} weeks with posts; there are {len(weeks)}. No guess is made."
        )
        insight.evidence = {"weeks": len(weeks), "need": MIN_WEEKS}
        insight.sample_size = len(posts)
        return insight
    counts = [float(len(v)) for v in weeks.values()]
    per_post = [stats.mean(v) for v in weeks.values()]
    r = stats.correlation(counts, per_post)
    usual = stats.mean(counts)
    confidence = stats.correlation_confidence(r, len(weeks))
    if confidence < CLEAR or abs(r) < 0.3:
        title = f"On {platform}, no clear link between posting frequency and engagement per post"
    elif r < 0:
        title = f"On {platform}, posting more often dilutes engagement per post"
    else:
        title = f"On {platform}, busier weeks get more engagement per post"
    return Insight(
        category="frequency",
        type="frequency",
        platform=platform,
        kind="insight",
        title=title,
        explanation=(
            f"Over {len(weeks)} weeks with posts ({usual:.1f} posts a week on average) the "
            f"correlation between posts in a week and engagement per post is {r:+.2f}."
        ),
        evidence={
            "weeks": len(weeks),
            "posts_per_week_mean": round(usual, 2),
            "correlation": round(r, 4),
            "engagement_per_post_mean": round(stats.mean(per_post), 2),
        },
        sample_size=len(posts),
        confidence=confidence,
    )


def analyse_platform(platform: str, posts: Sequence[PostOutcome], tz: ZoneInfo) -> PlatformAnalysis:
    result = PlatformAnalysis(platform, len(posts))
    if len(posts) < MIN_POSTS:
        result.insights += [
            _insufficient("timing", "best_hour", platform, "the best hour", len(posts), MIN_POSTS),
            _insufficient(
                "timing", "best_weekday", platform, "the best weekday", len(posts), MIN_POSTS
            ),
        ]
    else:
        hours: dict[int, list[float]] = defaultdict(list)
        days: dict[int, list[float]] = defaultdict(list)
        for p in posts:
            local = p.published_at.astimezone(tz)
            hours[local.hour].append(p.engagement)
            days[local.weekday()].append(p.engagement)
        result.hours, result.hour_confidence, hour_insight = _timing(
            platform, "best_hour", hours, None
        )
        result.weekdays, result.weekday_confidence, day_insight = _timing(
            platform, "best_weekday", days, WEEKDAYS
        )
        result.insights += [hour_insight, day_insight]
    by_class: dict[str, list[float]] = defaultdict(list)
    for p in posts:
        by_class[media_class(p.media_kind)].append(p.engagement)
    media = by_class["image"] + by_class["video"]
    result.media_vs_text, mvt = _comparison(
        platform, "media_vs_text", "media", media, "text", by_class["text"]
    )
    result.video_vs_image, vvi = _comparison(
        platform, "video_vs_image", "video", by_class["video"], "image", by_class["image"]
    )
    result.insights += [mvt, vvi, _frequency(platform, posts, tz)]
    return result


def analyse(posts: Iterable[PostOutcome], tz: ZoneInfo) -> dict[str, PlatformAnalysis]:
    """One analysis per platform with posts; ``{}`` for a brand without any."""
    by_platform: dict[str, list[PostOutcome]] = defaultdict(list)
    for p in posts:
        by_platform[p.platform].append(p)
    return {
        platform: analyse_platform(platform, items, tz)
        for platform, items in sorted(by_platform.items())
    }


def no_history_insights() -> list[Insight]:
    """What a brand without a single measured post is told (platform ``all``)."""
    return [
        _insufficient("timing", "best_hour", "all", "the best hour", 0, MIN_POSTS),
        _insufficient("timing", "best_weekday", "all", "the best weekday", 0, MIN_POSTS),
        _insufficient("format", "media_vs_text", "all", "media vs text", 0, MIN_GROUP),
        _insufficient("format", "video_vs_image", "all", "video vs image", 0, MIN_GROUP),
        _insufficient("frequency", "frequency", "all", "posting frequency", 0, MIN_WEEKS),
    ]


def local_date(moment: datetime, tz: ZoneInfo) -> date:
    return moment.astimezone(tz).date()
