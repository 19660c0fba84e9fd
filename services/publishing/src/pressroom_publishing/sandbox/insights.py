"""Insights that behave like a real account's: deterministic for an account and what it
published, and plausible - a post's impressions peak on its day and halve every day after,
followers grow with every post, and quiet days still see a little organic reach.

Every number is a function of (account id, post ids, day), so two calls, two processes or
two test runs agree; nothing is stored.
"""

from __future__ import annotations

import hashlib
from datetime import date, timedelta
from typing import Any

from pressroom_publishing.sandbox.state import SandboxPost, day_of

MAX_DAYS = 93


def _unit(*parts: object) -> float:
    """A stable number in [0, 1) for ``parts``."""
    digest = hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:6], "big") / float(1 << 48)


def _live_on(post: SandboxPost, day: date) -> bool:
    if day_of(post.created_at) > day:
        return False
    return post.deleted_at is None or day_of(post.deleted_at) > day


def post_day(post: SandboxPost, day: date) -> dict[str, Any] | None:
    """One post's numbers for one day; None before it was published or after deletion."""
    if not _live_on(post, day):
        return None
    age = (day - day_of(post.created_at)).days
    peak = 200 + int(800 * _unit(post.id, "peak"))
    impressions = int(peak * 0.5**age)
    reach = int(impressions * (0.6 + 0.2 * _unit(post.id, day, "reach")))
    likes = int(impressions * 0.04 * (0.5 + _unit(post.id, day, "likes")))
    comments = int(impressions * 0.01 * (0.5 + _unit(post.id, day, "comments")))
    shares = int(impressions * 0.005 * (0.5 + _unit(post.id, day, "shares")))
    return {
        "post_id": post.id,
        "day": day.isoformat(),
        "impressions": impressions,
        "reach": reach,
        "likes": likes,
        "comments": comments,
        "shares": shares,
        "engagement": likes + comments + shares,
    }


def account_day(account_id: str, posts: list[SandboxPost], day: date) -> dict[str, Any]:
    """The account's totals for one day: organic activity plus its live posts'."""
    organic = 20 + int(30 * _unit(account_id, day, "organic"))
    followers = 100 + int(900 * _unit(account_id, "followers"))
    impressions, reach, engagement = organic, int(organic * 0.8), int(organic * 0.02)
    for post in posts:
        if day_of(post.created_at) <= day:
            followers += 3 + int(20 * _unit(post.id, "followers"))
        numbers = post_day(post, day)
        if numbers is not None:
            impressions += numbers["impressions"]
            reach += numbers["reach"]
            engagement += numbers["engagement"]
    return {
        "day": day.isoformat(),
        "reach": reach,
        "impressions": impressions,
        "engagement": engagement,
        "followers": followers,
    }


def days(since: date, until: date, today: date) -> list[date]:
    """The days asked for that have happened (inclusive; nothing after today)."""
    last = min(until, today)
    return [since + timedelta(days=n) for n in range((last - since).days + 1)]
