"""Totals of a period and their change against the previous period of the same length
(pure: the route reads the rows, this adds them up).

- reach, impressions and engagement are sums over the days;
- followers is a level, not a flow: a platform's followers are its value on the last day
  that has a row in the period (never a sum); overall followers add each platform's;
  (the sums and the last day are taken in SQL, ``store.period_totals``: one row per
  platform and period instead of every day through the driver);
- the engagement rate is computed from the totals (engagement / reach, 0 when reach is 0),
  never an average of daily rates, so a quiet day weighs what it weighs;
- a change is ``{absolute, percent}``; percent is null when the previous value is 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any


@dataclass(frozen=True)
class Totals:
    reach: int = 0
    impressions: int = 0
    engagement: int = 0
    followers: int = 0
    days: int = 0

    @property
    def engagement_rate(self) -> float:
        return self.engagement / self.reach if self.reach else 0.0

    def value(self, name: str) -> float:
        return self.engagement_rate if name == "engagement_rate" else float(getattr(self, name))


METRICS = ("reach", "impressions", "engagement", "followers", "engagement_rate")


def previous_period(since: date, until: date) -> tuple[date, date]:
    """The period of the same length that ends the day before ``since``."""
    length = (until - since).days + 1
    return since - timedelta(days=length), since - timedelta(days=1)


def split_periods(
    rows: Iterable[Mapping[str, Any]],
) -> tuple[dict[str, Totals], dict[str, Totals]]:
    """The current and previous periods' totals per platform from ``store.period_totals``
    rows (``platform, current, reach, impressions, engagement, followers, days``)."""
    periods: tuple[dict[str, Totals], dict[str, Totals]] = ({}, {})
    for row in rows:
        periods[0 if row["current"] else 1][row["platform"]] = Totals(
            reach=int(row["reach"]),
            impressions=int(row["impressions"]),
            engagement=int(row["engagement"]),
            followers=int(row["followers"]),
            days=int(row["days"]),
        )
    return periods


def overall(totals: Iterable[Totals]) -> Totals:
    items = list(totals)
    return Totals(
        reach=sum(t.reach for t in items),
        impressions=sum(t.impressions for t in items),
        engagement=sum(t.engagement for t in items),
        followers=sum(t.followers for t in items),
        days=max((t.days for t in items), default=0),
    )


def change(current: float, previous: float) -> dict[str, float | None]:
    absolute = current - previous
    return {
        "absolute": absolute,
        "percent": None if previous == 0 else round(absolute / previous * 100, 2),
    }


def changes(current: Totals, previous: Totals) -> dict[str, dict[str, float | None]]:
    return {name: change(current.value(name), previous.value(name)) for name in METRICS}
