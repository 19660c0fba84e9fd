"""Posts by day in the brand's timezone.

A day is the brand's local calendar day, whatever its length: the range's bounds are local
midnights turned into UTC through ``zoneinfo`` (so a 23- or 25-hour day around a DST change
is one day), and each post lands on the local date of its time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

EARLIEST = datetime.min.replace(tzinfo=UTC)


def brand_zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def local_range(first: date, last: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """``[first 00:00, the day after last 00:00)`` local, as UTC instants."""
    return _midnight(first, zone), _midnight(last, zone, days=1)


def _midnight(day: date, zone: ZoneInfo, *, days: int = 0) -> datetime:
    """Local midnight ``days`` after ``day`` in UTC; the ends of the calendar clamp."""
    try:
        return datetime.combine(day + timedelta(days=days), time(0), tzinfo=zone).astimezone(UTC)
    except OverflowError:
        return datetime.max.replace(tzinfo=UTC) if days or day.year > 1 else EARLIEST


def by_day(
    posts: Iterable[Mapping[str, Any]], zone: ZoneInfo, when: str = "when"
) -> list[tuple[date, list[Mapping[str, Any]]]]:
    """``posts`` grouped on the local date of ``post[when]``, days in order."""
    days: dict[date, list[Mapping[str, Any]]] = {}
    for post in sorted(posts, key=lambda p: (p[when], str(p["id"]))):
        days.setdefault(post[when].astimezone(zone).date(), []).append(post)
    return sorted(days.items())
