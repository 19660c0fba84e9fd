"""Working hours: when a notification that falls outside them may go out instead.

A send is allowed from ``start``:00 to ``end``:00 local time, Monday to Friday, in the
recipient's timezone. Outside that it moves to the next opening: ``start``:00 local on the
next working day (or today, before opening). The opening is computed in local wall time and
converted, so it stays 09:00 across a DST change (the UTC hour moves instead). A wall time
that does not exist (the hour skipped when clocks go forward) resolves to the first instant
after the gap, an ambiguous one (clocks going back) to its first occurrence: ``fold=0`` with
``zoneinfo`` gives exactly that.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

WORKING_DAYS = range(0, 5)  # Monday .. Friday


def zone(name: str | None) -> ZoneInfo:
    """The named IANA zone, or UTC for none or a name this machine does not know."""
    if not name:
        return ZoneInfo("UTC")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def is_known_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _opening(day: date, tz: ZoneInfo, start: int) -> datetime:
    # fold=0: a skipped wall time maps past the gap, an ambiguous one to its first instant.
    return datetime.combine(day, time(start), tzinfo=tz).astimezone(UTC)


def is_open(at: datetime, tz: ZoneInfo, start: int = 9, end: int = 18) -> bool:
    local = at.astimezone(tz)
    if local.weekday() not in WORKING_DAYS:
        return False
    minutes = local.hour * 60 + local.minute
    return start * 60 <= minutes < end * 60


def next_opening(at: datetime, tz: ZoneInfo, start: int = 9, end: int = 18) -> datetime:
    """``at`` itself when it is inside working hours in ``tz``, else the next opening (UTC)."""
    if not 0 <= start < end <= 24:
        raise ValueError(f"working hours {start}-{end} are not a range within a day")
    if at.tzinfo is None:
        raise ValueError("a naive time has no zone to judge working hours by")
    if is_open(at, tz, start, end):
        return at
    local = at.astimezone(tz)
    day = local.date()
    if not (local.weekday() in WORKING_DAYS and local.hour < start):
        day += timedelta(days=1)
    while day.weekday() not in WORKING_DAYS:
        day += timedelta(days=1)
    return _opening(day, tz, start)
