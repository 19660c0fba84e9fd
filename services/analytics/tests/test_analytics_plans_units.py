"""Plan slots in the brand's timezone, across a DST change (pure, no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from pressroom_analytics.advisor import analysis, planning
from test_analytics_advisor_units import history

pytestmark = pytest.mark.unit

NY = ZoneInfo("America/New_York")
NOW = datetime(2027, 2, 15, tzinfo=UTC)


def source(
    best_hour: int, hours: tuple[int, ...], recent_posts: int = 56
) -> planning.PlatformInput:
    posts = history(420, best_hour=best_hour, hours=hours, lift=80.0, tz=NY)
    return planning.PlatformInput("x", recent_posts, 8, analysis.analyse_platform("x", posts, NY))


def by_day(slots: list[planning.SlotDraft]) -> dict[int, planning.SlotDraft]:
    return {datetime.fromisoformat(s.local_time).day: s for s in slots}


def test_slots_keep_their_local_hour_across_the_march_2027_change() -> None:
    slots = planning.month_slots("2027-03", NY, [source(18, (8, 10, 12, 14, 16, 18, 20))], NOW)
    assert len(slots) == 31  # 56 posts in 8 weeks: 7 a week, one a day
    days = by_day(slots)
    assert all(datetime.fromisoformat(s.local_time).hour == 18 for s in slots)
    assert days[13].scheduled_at == datetime(2027, 3, 13, 23, tzinfo=UTC)  # EST, UTC-5
    assert days[14].scheduled_at == datetime(2027, 3, 14, 22, tzinfo=UTC)  # EDT, UTC-4
    assert days[31].scheduled_at == datetime(2027, 3, 31, 22, tzinfo=UTC)
    assert all(0 < s.confidence <= 1 for s in slots)


def test_a_slot_at_a_skipped_local_time_moves_forward() -> None:
    slots = planning.month_slots("2027-03", NY, [source(2, (2, 9, 12, 17))], NOW)
    days = by_day(slots)
    assert days[13].scheduled_at == datetime(2027, 3, 13, 7, tzinfo=UTC)  # 02:00 EST
    # 02:00 does not exist on the 14th: the slot is 03:00 EDT, the same instant as 02:00 EST
    # would have been, an hour into the new time.
    assert days[14].scheduled_at == datetime(2027, 3, 14, 7, tzinfo=UTC)
    assert days[14].local_time.startswith("2027-03-14T03:00:00-04:00")
    assert days[15].scheduled_at == datetime(2027, 3, 15, 6, tzinfo=UTC)  # 02:00 EDT


def test_frequency_and_defaults() -> None:
    assert planning.per_week(0) == planning.DEFAULT_PER_WEEK
    assert planning.per_week(24) == 3
    assert planning.per_week(1000) == planning.MAX_PER_WEEK
    bare = planning.PlatformInput("x", 0, 0, None)
    slots = planning.month_slots("2027-03", NY, [bare], NOW)
    # 3 a week on Tuesday, Wednesday, Thursday at 09:00: March 2027 has 5 Tuesdays, 5
    # Wednesdays, 4 Thursdays.
    assert len(slots) == 14
    assert {datetime.fromisoformat(s.local_time).strftime("%A %H") for s in slots} == {
        "Tuesday 09",
        "Wednesday 09",
        "Thursday 09",
    }
    assert {s.confidence for s in slots} == {planning.DEFAULT_CONFIDENCE}
    twice = planning.month_slots("2027-03", NY, [planning.PlatformInput("x", 8 * 10, 8, None)], NOW)
    assert len(twice) == 31 + sum(
        1 for d in range(1, 32) if datetime(2027, 3, d).weekday() in (1, 2, 3)
    )


def test_slots_before_now_are_left_out() -> None:
    now = datetime(2027, 3, 20, 12, tzinfo=UTC)
    slots = planning.month_slots("2027-03", NY, [source(18, (8, 12, 18))], now)
    assert slots and all(s.scheduled_at > now for s in slots)
    assert min(by_day(slots)) == 20
