"""What Meta's Graph-style APIs (Facebook, Instagram, Threads) share: the error body and
its codes, times, the container publishing flow and the publishing quota.

From Meta for Developers, "Graph API: Handling Errors": ``{"error": {"message", "type",
"code", "error_subcode", "is_transient", "error_user_msg", "fbtrace_id"}}``, mostly with
HTTP 400 whatever the cause. 190 is an invalid or expired token (subcodes 458 app removed,
459 checkpoint, 460 password changed, 464 unconfirmed user: the grant is gone), 102 an
expired session, 4/17/32/613 and 80001-80004 rate limits (``X-Business-Use-Case-Usage``
gives ``estimated_time_to_regain_access`` in minutes), 1 and 2 temporary, 506 a duplicate
post, 10 and 200-299 missing permissions; Instagram's subcodes 2207027 (the container is
not ready) and 2207042 (the publishing limit is reached) are transient. Instagram and
Threads publish in two steps ("Content Publishing"): create a container, wait until its
status is ``FINISHED``, then publish it; each account may publish a quota per 24 h, read
from
``content_publishing_limit`` / ``threads_publishing_limit``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pressroom_publishing.platforms.base import (
    AuthExpiredError,
    Credentials,
    Platform,
    PlatformError,
    PublishedPost,
    PublishRequest,
    RejectedError,
    Response,
    RevokedError,
    TokenGrant,
    TransientError,
)
from pressroom_publishing.platforms.common import (
    Clock,
    as_int,
    expires_at,
    json_object,
    parse_datetime,
    pause,
)

RATE_LIMITS = {4, 17, 32, 613, 80001, 80002, 80004}
NOT_READY = 2207027  # the container is not finished yet
QUOTA_REACHED = 2207042  # the account's publishing limit for the rolling 24 h
TEMPORARY = {1, 2}
REVOKED_SUBCODES = {458, 459, 460, 464}


def graph_error(response: Response) -> dict[str, Any] | None:
    try:
        body = response.json()
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else None


def regain_access_s(response: Response) -> float | None:
    """``X-Business-Use-Case-Usage``: per business id, ``estimated_time_to_regain_access``
    in minutes; the longest wait counts."""
    raw = response.headers.get("X-Business-Use-Case-Usage")
    if not raw:
        return None
    try:
        usage = json.loads(raw)
    except ValueError:
        return None
    minutes = [
        as_int(entry.get("estimated_time_to_regain_access"))
        for entries in (usage.values() if isinstance(usage, dict) else [])
        if isinstance(entries, list)
        for entry in entries
        if isinstance(entry, dict)
    ]
    return max(minutes) * 60.0 if minutes else None


def graph_time(value: Any) -> datetime | None:
    """Graph times look like ``2026-12-01T08:00:00+0000``."""
    if isinstance(value, str) and len(value) > 5 and value[-5] in "+-" and ":" not in value[-5:]:
        value = f"{value[:-2]}:{value[-2:]}"
    return parse_datetime(value)


class GraphErrors(Platform):
    """``error_details`` and ``classify`` for a Graph-style error body."""

    def error_details(self, response: Response) -> tuple[str | None, str]:
        error = graph_error(response)
        if error is not None:
            code = error.get("code")
            return (str(code) if code is not None else None), str(
                error.get("error_user_msg") or error.get("message") or response.status
            )
        return super().error_details(response)

    def classify(self, response: Response) -> PlatformError:
        """By ``error.code``, whatever the HTTP status."""
        error = graph_error(response)
        if error is None:
            return super().classify(response)
        code, message = self.error_details(response)
        number = as_int(error.get("code"))
        subcode = as_int(error.get("error_subcode"))
        details = {"status": response.status, "subcode": subcode, "type": error.get("type")}
        status = response.status
        if number == 190 and subcode in REVOKED_SUBCODES:
            return RevokedError(self.id, message, code=code, status=status, details=details)
        if number in (190, 102):
            return AuthExpiredError(self.id, message, code=code, status=status, details=details)
        if subcode == QUOTA_REACHED:
            return TransientError(
                self.id, message, code="quota", status=status, details=details, retry_after_s=3600
            )
        if subcode == NOT_READY:
            return TransientError(self.id, message, code="processing", status=status)
        if number in RATE_LIMITS:
            return TransientError(
                self.id,
                message,
                code=code,
                status=status,
                details=details,
                retry_after_s=regain_access_s(response),
            )
        if number in TEMPORARY or error.get("is_transient") is True or status >= 500:
            return TransientError(self.id, message, code=code, status=status, details=details)
        if number == 506:
            return RejectedError(self.id, message, code="duplicate", status=status, details=details)
        return RejectedError(self.id, message, code=code, status=status, details=details)


# --- container publishing (Instagram, Threads) ------------------------------------------------


@dataclass(frozen=True)
class Quota:
    """An account's publishing quota over a rolling window."""

    used: int
    total: int
    window_s: int

    @property
    def remaining(self) -> int:
        return max(0, self.total - self.used)


async def graph_get(
    platform: Platform, url: str, token: str | None, params: Mapping[str, str] | None = None
) -> dict[str, Any]:
    answer = await platform.http.request(
        platform, "GET", url, token=token, params=params, ok=(200,)
    )
    return json_object(platform, answer)


async def graph_post(
    platform: Platform, url: str, token: str, fields: Mapping[str, Any]
) -> dict[str, Any]:
    answer = await platform.http.request(
        platform, "POST", url, token=token, json=dict(fields), ok=(200,)
    )
    return json_object(platform, answer)


def long_lived_grant(
    platform: Platform, clock: Clock, body: Mapping[str, Any], scopes: Sequence[str]
) -> TokenGrant:
    """Instagram's and Threads' 60-day token. There is no separate refresh token: the
    long-lived token renews itself, so it is handed back as the refresh token too — the vault
    then keeps the connection refreshable and the connection worker renews it in time."""
    token = body.get("access_token")
    if not isinstance(token, str) or not token:
        raise RejectedError(platform.id, "the token answer has no access_token")
    return TokenGrant(
        access_token=token,
        refresh_token=token,
        expires_at=expires_at(clock, body.get("expires_in")),
        scopes=tuple(scopes),
    )


async def exchange_long_lived(
    platform: Platform, root: str, grant_type: str, client_secret: str, short: str
) -> dict[str, Any]:
    """The short-lived token for a 60-day one (``ig_exchange_token``/``th_exchange_token``)."""
    return await graph_get(
        platform,
        f"{root}/access_token",
        None,
        {"grant_type": grant_type, "client_secret": client_secret, "access_token": short},
    )


async def refresh_long_lived(
    platform: Platform, root: str, grant_type: str, credentials: Credentials
) -> dict[str, Any]:
    """A fresh 60-day token from the current one (``ig_refresh_token``/``th_refresh_token``)."""
    return await graph_get(
        platform,
        f"{root}/refresh_access_token",
        None,
        {
            "grant_type": grant_type,
            "access_token": credentials.refresh_token or credentials.access_token,
        },
    )


def carousel_size(item: Mapping[str, Any]) -> int | None:
    """How many children a ``CAROUSEL_ALBUM`` listing names (2 when it names none); None for
    anything else."""
    if item.get("media_type") != "CAROUSEL_ALBUM":
        return None
    children = item.get("children")
    data = children.get("data") if isinstance(children, dict) else None
    return len(data) if isinstance(data, list) else 2


def match_recent(
    listing: Mapping[str, Any],
    request: PublishRequest,
    *,
    text_field: str,
    media_count: Callable[[Mapping[str, Any]], int],
) -> PublishedPost | None:
    """Reconciliation where the API keeps no reference of ours: the recent post (from a
    Graph ``data`` listing) with the same text, whitespace aside, and as many media."""
    wanted = " ".join(request.content.text.split())
    for item in listing.get("data") or []:
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            continue
        text = " ".join(str(item.get(text_field) or "").split())
        if text == wanted and media_count(item) == len(request.content.media):
            link = item.get("permalink")
            return PublishedPost(
                platform_post_id=item["id"],
                url=link if isinstance(link, str) else None,
                published_at=graph_time(item.get("timestamp")),
            )
    return None


async def published_after(
    platform: Platform, url: str, token: str, media_id: str, now: datetime
) -> PublishedPost:
    """The ``PublishedPost`` once ``media_publish``/``threads_publish`` answered its id
    (``url`` is the media's Graph node): the post is live from that answer on, so the
    permalink read that follows is best effort. A failure there (a 500 "retry later", a
    rate limit, a timeout) gives the post without its URL rather than an error the
    scheduler would retry into a second post."""
    try:
        details = await graph_get(platform, url, token, {"fields": "permalink,timestamp"})
    except PlatformError:
        return PublishedPost(platform_post_id=media_id, url=None, published_at=now)
    link = details.get("permalink")
    return PublishedPost(
        platform_post_id=media_id,
        url=link if isinstance(link, str) else None,
        published_at=graph_time(details.get("timestamp")) or now,
    )


def graph_id(platform: Platform, body: Mapping[str, Any]) -> str:
    value = body.get("id")
    if not isinstance(value, str) or not value:
        raise TransientError(platform.id, "the answer has no id")
    return value


async def read_quota(platform: Platform, url: str, token: str) -> Quota | None:
    """``content_publishing_limit`` / ``threads_publishing_limit`` as a ``Quota``."""
    body = await graph_get(platform, url, token, {"fields": "quota_usage,config"})
    data = body.get("data")
    row = data[0] if isinstance(data, list) and data and isinstance(data[0], dict) else None
    if row is None:
        return None
    found = row.get("config")
    config: dict[str, Any] = found if isinstance(found, dict) else {}
    total = as_int(config.get("quota_total"))
    if total <= 0:
        return None
    return Quota(
        used=as_int(row.get("quota_usage")),
        total=total,
        window_s=as_int(config.get("quota_duration")) or 86400,
    )


async def wait_until_finished(
    platform: Platform,
    url: str,
    token: str,
    *,
    field: str,
    poll_s: float,
    timeout_s: float,
) -> None:
    """Poll a container until ``FINISHED`` (``PUBLISHED`` too: a retry after an unknown
    outcome); ``ERROR`` is the platform refusing the media, ``EXPIRED`` transient (a new
    attempt makes a new container)."""
    deadline = time.monotonic() + timeout_s
    while True:
        body = await graph_get(platform, url, token, {"fields": f"{field},error_message"})
        status = body.get(field)
        if status in ("FINISHED", "PUBLISHED"):
            return
        if status == "ERROR":
            raise RejectedError(
                platform.id,
                str(body.get("error_message") or "the platform could not process the media"),
                code="media_error",
            )
        if status == "EXPIRED":
            raise TransientError(platform.id, "the media container expired", code="expired")
        if time.monotonic() > deadline:
            raise TransientError(platform.id, "the media is still processing", code="processing")
        await pause(poll_s)
