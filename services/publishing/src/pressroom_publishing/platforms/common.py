"""Small pieces the real-platform adapters share: reading answers defensively, times, and
the clock a test can replace (``config["clock"]``)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

from pressroom_publishing.platforms.base import (
    Credentials,
    NotSupportedError,
    Platform,
    PublishedPost,
    PublishRequest,
    RejectedError,
    Response,
    TransientError,
)

Clock = Callable[[], datetime]


def pkce_challenge(verifier: str) -> str:
    """RFC 7636 S256."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def utcnow() -> datetime:
    return datetime.now(UTC)


def clock_of(config: Mapping[str, Any]) -> Clock:
    clock = config.get("clock")
    return clock if callable(clock) else utcnow


def json_object(platform: Platform, response: Response) -> dict[str, Any]:
    """The answer's JSON object; a garbled success is transient (retrying is safe where the
    publish is idempotent or reconciled first)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise TransientError(platform.id, "the platform answered something that is not an object")
    return body


def json_list(platform: Platform, response: Response) -> list[Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, list):
        raise TransientError(platform.id, "the platform answered something that is not a list")
    return body


def parse_datetime(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def expires_at(clock: Clock, expires_in: Any) -> datetime | None:
    if isinstance(expires_in, bool) or not isinstance(expires_in, int | float | str):
        return None
    try:
        seconds = float(expires_in)
    except ValueError:
        return None
    return clock() + timedelta(seconds=seconds) if seconds > 0 else None


def as_int(value: Any) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return 0


def today_within(clock: Clock, since: date, until: date) -> date | None:
    """Today, if the window holds it: platforms that report only current counts give one
    snapshot row per call, dated the day it was read."""
    today = clock().date()
    return today if since <= today <= until else None


async def pause(seconds: float) -> None:
    """Waiting between polls of a platform's processing state."""
    await asyncio.sleep(seconds)


async def create_once(
    platform: Platform,
    credentials: Credentials,
    request: PublishRequest,
    create: Callable[[], Awaitable[PublishedPost]],
    *,
    duplicate_of: Callable[[RejectedError], PublishedPost | None] | None = None,
) -> PublishedPost:
    """``create()`` the post; a duplicate refusal (X 403 "duplicate content", LinkedIn 422
    ``DUPLICATE_POST``, Graph 506: ``RejectedError`` code ``duplicate``) on a retry means an
    earlier attempt went out although its answer was lost or was an error, so the post is
    looked up (``find_published``, else what the refusal names, ``duplicate_of``) and
    returned; only when it is not found is the refusal the answer. The platforms refuse to
    hold the same text twice, so a second post of ours with the same text within their
    window is reported as the first one too."""
    try:
        return await create()
    except RejectedError as refused:
        if refused.code != "duplicate":
            raise
        try:
            found = await platform.find_published(credentials, request)
        except NotSupportedError:
            found = None
        if found is None and duplicate_of is not None:
            found = duplicate_of(refused)
        if found is None:
            raise
        return found
