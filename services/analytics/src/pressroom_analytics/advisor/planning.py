"""Monthly plan slots, pure: where a month's posts go, per platform, in the brand's timezone.

- How many: the brand's usual frequency, posts per week per platform over the last 8 weeks
  (rounded, 1..14); ``DEFAULT_PER_WEEK`` when the platform has no history, with
  ``DEFAULT_CONFIDENCE``.
- Which days and hours: the advisor's shrunk (empirical-Bayes) ranking of weekdays and
  hours, then ``DEFAULT_WEEKDAYS`` / ``DEFAULT_HOURS`` for what the history does not rank.
  ``f`` posts a week go on the ``f`` best weekdays (past 7: every day, the best days twice),
  each day's posts at its best distinct hours.
- When exactly: a local wall time ``datetime(y, m, d, hour, tzinfo=ZoneInfo(tz))`` turned
  into UTC. A wall time the clocks skip (02:30 on a spring-forward night in New York) is
  read with ``fold=0``, the offset before the change, which lands the slot as far after the
  gap as it was into it (03:30 EDT): it moves forward, never back. A repeated wall time
  (autumn) is its first occurrence. Slots before ``now`` are left out.
- Confidence of a slot: ``0.5 * timing + 0.5 * frequency`` where timing is the mean of the
  best-hour and best-weekday confidences and frequency the share of the last 8 weeks that
  had posts; ``DEFAULT_CONFIDENCE`` without history.
"""

from __future__ import annotations

import calendar
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from pressroom_analytics.advisor.analysis import WEEKDAYS, PlatformAnalysis

DEFAULT_PER_WEEK = 3
MAX_PER_WEEK = 14
DEFAULT_CONFIDENCE = 0.1
HISTORY_WEEKS = 8
DEFAULT_WEEKDAYS = (1, 2, 3, 0, 4, 5, 6)  # Tuesday, Wednesday, Thursday, Monday, ...
DEFAULT_HOURS = (9, 12, 17, 19, 11, 15, 8, 20, 13, 18, 10, 16, 14, 7, 21)


@dataclass(frozen=True)
class PlatformInput:
    platform: str
    recent_posts: int  # published in the last HISTORY_WEEKS weeks
    recent_weeks: int  # of those weeks, how many had posts
    analysis: PlatformAnalysis | None


@dataclass(frozen=True)
class SlotDraft:
    id: uuid.UUID
    platform: str
    scheduled_at: datetime  # UTC
    local_time: str  # ISO, in the plan's timezone
    format: str | None
    confidence: float
    reason: str


def per_week(recent_posts: int) -> int:
    if recent_posts <= 0:
        return DEFAULT_PER_WEEK
    return max(1, min(MAX_PER_WEEK, round(recent_posts / HISTORY_WEEKS)))


def _ranking(preferred: Sequence[int], defaults: Sequence[int]) -> list[int]:
    seen = list(dict.fromkeys(preferred))
    return seen + [d for d in defaults if d not in seen]


def wall_to_utc(day: date, hour: int, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """(the UTC instant, the local time it is) for ``hour:00`` on ``day`` in ``tz``; a
    skipped wall time moves forward by the gap (see the module's docstring)."""
    wall = datetime(day.year, day.month, day.day, hour, tzinfo=tz)  # fold=0
    utc = wall.astimezone(UTC)
    return utc, utc.astimezone(tz)


def parse_month(month: str) -> tuple[int, int]:
    year, number = month.split("-")
    return int(year), int(number)


def platform_slots(
    month: str, tz: ZoneInfo, source: PlatformInput, now: datetime
) -> list[SlotDraft]:
    year, number = parse_month(month)
    analysis = source.analysis
    weekly = per_week(source.recent_posts)
    if analysis is not None and analysis.hours is not None and analysis.weekdays is not None:
        hours = _ranking([s.key for s in analysis.hours.ranked()], DEFAULT_HOURS)
        days = _ranking([s.key for s in analysis.weekdays.ranked()], DEFAULT_WEEKDAYS)
        timing = (analysis.hour_confidence + analysis.weekday_confidence) / 2
        why = f"ranks high in this brand's {source.platform} history"
    else:
        hours, days, timing = list(DEFAULT_HOURS), list(DEFAULT_WEEKDAYS), 0.0
        why = f"is a common default (too little {source.platform} history to rank times)"
    if source.recent_posts > 0:
        frequency = min(1.0, source.recent_weeks / HISTORY_WEEKS)
        confidence = round(0.5 * timing + 0.5 * frequency, 4)
        how_many = f"{weekly} a week as over the last {HISTORY_WEEKS} weeks"
    else:
        confidence = DEFAULT_CONFIDENCE
        how_many = f"{weekly} a week by default (no recent posts)"
    fmt = analysis.format_advice() if analysis is not None else None
    per_day = {wd: weekly // 7 + (1 if rank < weekly % 7 else 0) for rank, wd in enumerate(days)}
    slots = []
    for day_number in range(1, calendar.monthrange(year, number)[1] + 1):
        day = date(year, number, day_number)
        for hour in sorted(hours[: per_day[day.weekday()]]):
            utc, local = wall_to_utc(day, hour, tz)
            if utc <= now:
                continue
            slots.append(
                SlotDraft(
                    id=uuid.uuid4(),
                    platform=source.platform,
                    scheduled_at=utc,
                    local_time=local.isoformat(),
                    format=fmt,
                    confidence=confidence,
                    reason=f"{WEEKDAYS[day.weekday()]} {hour:02d}:00 {why}; {how_many}",
                )
            )
    return slots


def month_slots(
    month: str, tz: ZoneInfo, sources: Sequence[PlatformInput], now: datetime
) -> list[SlotDraft]:
    slots = [s for source in sources for s in platform_slots(month, tz, source, now)]
    return sorted(slots, key=lambda s: (s.scheduled_at, s.platform))
