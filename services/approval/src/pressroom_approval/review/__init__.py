"""Review links: a signed link per reviewer without an account, the public review page
that shows the post and takes their decision, and the media lookup for its thumbnails.

Contract with ``app.py``: ``CONTROLLERS`` and ``install(rt, settings, clock, run_workers=...)``,
which opens the HTTP session the thumbnail lookups use (``app.state.review_media``) and
closes it when the app stops. The feature has no background work.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

import aiohttp
from pressroom_kit.wiring import Runtime

from pressroom_approval.review.api import ReviewLinkController
from pressroom_approval.review.media import MediaThumbnails
from pressroom_approval.review.public import ReviewPageController
from pressroom_approval.settings import ApprovalSettings

CONTROLLERS: list[Any] = [ReviewLinkController, ReviewPageController]


@contextlib.asynccontextmanager
async def install(
    rt: Runtime,
    settings: ApprovalSettings,
    clock: Callable[[], datetime],
    *,
    run_workers: bool = True,
) -> AsyncIterator[None]:
    session = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar())
    secret = settings.jwt_secret.get_secret_value() if settings.jwt_secret else None
    rt.app.state.update(
        review_media=MediaThumbnails(
            session, settings.media_url, secret, timeout_s=settings.review_media_timeout_s
        )
    )
    try:
        yield
    finally:
        await session.close()
