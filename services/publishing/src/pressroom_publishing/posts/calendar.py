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

MAX_DAYS = 366


def brand_zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def local_range(first: date, last: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """``[first 00:00, the day after last 00:00)`` local, as UTC instants."""
    start = datetime.combine(first, time(0), tzinfo=zone).astimezone(UTC)
    end = datetime.combine(last + timedelta(days=1), time(0), tzinfo=zone).astimezone(UTC)
    return start, end


def by_day(
    posts: Iterable[Mapping[str, Any]], zone: ZoneInfo, when: str = "when"
) -> list[tuple[date, list[Mapping[str, Any]]]]:
    """``posts`` grouped on the local date of ``post[when]``, days in order."""
    days: dict[date, list[Mapping[str, Any]]] = {}
    for post in sorted(posts, key=lambda p: (p[when], str(p["id"]))):
        days.setdefault(post[when].astimezone(zone).date(), []).append(post)
    return sorted(days.items())
