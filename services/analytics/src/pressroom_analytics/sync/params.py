"""What the sync feature's routes share: the caller, the platform id shape, and date ranges
(bounds checked, defaults in the brand's timezone)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Annotated, Any

from litestar import Request
from litestar.params import QueryParameter
from pressroom_kit.auth import Principal
from pressroom_kit.errors import Invalid
from pressroom_kit.http import requires_role
from pydantic import BeforeValidator, Field

VIEWER = [requires_role("viewer")]
MANAGER = [requires_role("manager")]
PLATFORM_PATTERN = r"^[a-z0-9_-]+$"
PlatformId = Annotated[str, Field(min_length=1, max_length=40, pattern=PLATFORM_PATTERN)]
# As a filter any string is fine (an unknown platform matches nothing).
PlatformFilter = Annotated[
    str | None, QueryParameter(max_length=100, description="a platform id; all when absent")
]
# Days a range may name: the numbers start long after 2000, and a previous period (the
# summary's) must still be a date.
EARLIEST = date(2000, 1, 1)
LATEST = date(2999, 12, 31)
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _iso_day(value: Any) -> Any:
    """Only ``YYYY-MM-DD`` is a day (pydantic would take a number as seconds since 1970)."""
    if isinstance(value, str) and not _DAY.match(value):
        raise ValueError("a date is YYYY-MM-DD")
    if not isinstance(value, str | date):
        raise ValueError("a date is a YYYY-MM-DD string")
    return value


Day = Annotated[date, BeforeValidator(_iso_day), Field(json_schema_extra={"pattern": _DAY.pattern})]


@dataclass(frozen=True)
class Caller:
    sub: str
    brand_id: Any


def who(request: Request[Any, Any, Any]) -> Caller:
    principal = request.user
    assert isinstance(principal, Principal) and principal.brand_id is not None
    return Caller(principal.sub, principal.brand_id)


def check_bounds(**days: date | None) -> None:
    for name, day in days.items():
        if day is not None and not EARLIEST <= day <= LATEST:
            raise Invalid(
                f"{name} must be between {EARLIEST} and {LATEST}",
                errors=[{"field": name, "message": f"between {EARLIEST} and {LATEST}"}],
            )


def resolve_range(
    since: date | None, until: date | None, today: date, *, default_days: int, max_days: int
) -> tuple[date, date]:
    """``since..until`` with the missing ends filled (the last ``default_days`` days up to
    ``today``, the brand's local day), checked: 422 when ``from`` is after ``to`` or the
    range is longer than ``max_days``."""
    check_bounds(**{"from": since, "to": until})
    until = until or (max(today, since) if since else today)
    since = since or until - timedelta(days=default_days - 1)
    if since > until:
        raise Invalid(
            "from must not be after to",
            errors=[{"field": "from", "message": f"{since} is after to ({until})"}],
        )
    if (until - since).days + 1 > max_days:
        raise Invalid(
            f"the range is {(until - since).days + 1} days; at most {max_days}",
            errors=[{"field": "to", "message": f"at most {max_days} days after from"}],
        )
    return since, until


def local_today(now: datetime, tz: Any) -> date:
    return now.astimezone(tz).date()
