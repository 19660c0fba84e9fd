"""The summary's arithmetic: sums of flows, followers as the last day's level, the rate from
totals (never an average of daily rates), changes with a null percent against zero, and the
previous period of the same length; ranges and their splitting."""

from __future__ import annotations

from datetime import date

import pytest
from pressroom_analytics.sync import requests, summary
from pressroom_analytics.sync.params import resolve_range
from pressroom_kit.errors import Invalid

pytestmark = pytest.mark.unit


def test_rate_is_from_totals_zero_without_reach_and_overall_adds_platforms() -> None:
    assert summary.Totals(engagement=5).engagement_rate == 0.0
    # 19 / 1000, whatever the daily rates were (their mean could be anything).
    assert summary.Totals(reach=1000, engagement=19).engagement_rate == pytest.approx(0.019)
    current, previous = summary.split_periods(
        [
            {
                "platform": "x",
                "current": True,
                "reach": 100,
                "impressions": 1,
                "engagement": 10,
                "followers": 500,
                "days": 1,
            },
            {
                "platform": "sandbox",
                "current": True,
                "reach": 400,
                "impressions": 2,
                "engagement": 32,
                "followers": 75,
                "days": 2,
            },
            {
                "platform": "x",
                "current": False,
                "reach": 50,
                "impressions": 0,
                "engagement": 1,
                "followers": 490,
                "days": 1,
            },
        ]
    )
    assert set(current) == {"x", "sandbox"} and set(previous) == {"x"}
    everything = summary.overall(current.values())
    assert (everything.reach, everything.engagement, everything.followers) == (500, 42, 575)
    assert everything.days == 2
    assert everything.engagement_rate == pytest.approx(42 / 500)


def test_changes_against_the_previous_period() -> None:
    now = summary.Totals(reach=150, impressions=0, engagement=15, followers=110, days=7)
    before = summary.Totals(reach=100, impressions=0, engagement=5, followers=100, days=7)
    got = summary.changes(now, before)
    assert got["reach"] == {"absolute": 50, "percent": 50.0}
    assert got["followers"] == {"absolute": 10, "percent": 10.0}
    assert got["impressions"] == {"absolute": 0, "percent": None}  # previous 0
    assert got["engagement_rate"]["absolute"] == pytest.approx(0.1 - 0.05)
    assert got["engagement_rate"]["percent"] == 100.0
    assert summary.change(3, 0) == {"absolute": 3, "percent": None}
    assert summary.change(0, 4) == {"absolute": -4, "percent": -100.0}


def test_previous_period_has_the_same_length() -> None:
    assert summary.previous_period(date(2027, 3, 1), date(2027, 3, 31)) == (
        date(2027, 1, 29),
        date(2027, 2, 28),
    )
    assert summary.previous_period(date(2027, 3, 5), date(2027, 3, 5)) == (
        date(2027, 3, 4),
        date(2027, 3, 4),
    )


def test_ranges_default_and_refuse() -> None:
    today = date(2027, 3, 10)
    assert resolve_range(None, None, today, default_days=7, max_days=366) == (
        date(2027, 3, 4),
        today,
    )
    assert resolve_range(None, date(2027, 1, 31), today, default_days=30, max_days=366) == (
        date(2027, 1, 2),
        date(2027, 1, 31),
    )
    assert resolve_range(date(2027, 3, 1), None, today, default_days=7, max_days=366) == (
        date(2027, 3, 1),
        today,
    )
    # A from after today with no to: the range is that one day, not an error.
    assert resolve_range(date(2027, 4, 1), None, today, default_days=7, max_days=366) == (
        date(2027, 4, 1),
        date(2027, 4, 1),
    )
    with pytest.raises(Invalid, match="after"):
        resolve_range(date(2027, 3, 2), date(2027, 3, 1), today, default_days=7, max_days=366)
    with pytest.raises(Invalid, match="367 days"):
        resolve_range(date(2026, 1, 1), date(2027, 1, 2), today, default_days=7, max_days=366)
    resolve_range(date(2026, 1, 1), date(2027, 1, 1), today, default_days=7, max_days=366)
    with pytest.raises(Invalid, match="between"):
        resolve_range(date(1999, 12, 31), None, today, default_days=7, max_days=366)


def test_a_long_range_splits_into_consecutive_pieces() -> None:
    pieces = requests.split_range(date(2025, 1, 1), date(2026, 12, 31), 366)
    assert pieces == [
        (date(2025, 1, 1), date(2026, 1, 1)),
        (date(2026, 1, 2), date(2026, 12, 31)),
    ]
    monthly = requests.split_range(date(2027, 1, 1), date(2027, 3, 10), 31)
    assert [p[0] for p in monthly] == [date(2027, 1, 1), date(2027, 2, 1), date(2027, 3, 4)]
    assert monthly[-1][1] == date(2027, 3, 10)
    assert requests.split_range(date(2027, 1, 1), date(2027, 1, 1), 31) == [
        (date(2027, 1, 1), date(2027, 1, 1))
    ]
    with pytest.raises(ValueError):
        requests.split_range(date(2027, 1, 1), date(2027, 1, 2), 0)
