"""Thumbnails for the review page, from the media service.

The approval service cannot sign file URLs (the media service does), so it asks the media
service for each asset (``GET {media_url}/v1/media/{id}``) with a short-lived viewer token of
the approval's brand, minted with the shared JWT secret, and shows the asset's
``thumbnail_url`` (else its ``url``). The page must render whatever the media service does:
every lookup has a short timeout, and an asset that is gone, slow, or answered oddly is a
placeholder (``Thumbnail.url is None``). Without a shared secret (a deployment on an identity
provider's keys) every asset is a placeholder.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit
from uuid import UUID

import aiohttp
from pressroom_kit.auth import mint_token
from pressroom_kit.logs import get_logger

log = get_logger(__name__)


@dataclass(frozen=True)
class Thumbnail:
    media_id: UUID
    url: str | None  # None: show a placeholder
    label: str


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _usable(url: object) -> str | None:
    """Only absolute http(s) URLs go into the page (an ``img`` with ``javascript:`` or a
    relative path would be the media service's mistake shown to a client)."""
    if not isinstance(url, str) or len(url) > 4096:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return url


class MediaThumbnails:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        media_url: str,
        jwt_secret: str | None,
        *,
        timeout_s: float = 2.0,
    ) -> None:
        self.session = session
        self.media_url = media_url.rstrip("/")
        self.jwt_secret = jwt_secret
        self.timeout_s = timeout_s

    async def lookup(self, brand_id: UUID, media_ids: Iterable[UUID]) -> dict[UUID, Thumbnail]:
        """One thumbnail per distinct id; all fetched at once, all within ``timeout_s``."""
        ids = list(dict.fromkeys(media_ids))
        if not ids:
            return {}
        if self.jwt_secret is None:
            return {i: Thumbnail(i, None, "preview unavailable") for i in ids}
        token = mint_token(
            self.jwt_secret,
            sub="service:approval",
            role="viewer",
            brand_id=brand_id,
            ttl_seconds=120,
        )
        headers = {"Authorization": f"Bearer {token}"}
        found = await asyncio.gather(*(self._one(i, headers) for i in ids))
        return {t.media_id: t for t in found}

    async def _one(self, media_id: UUID, headers: dict[str, str]) -> Thumbnail:
        url = f"{self.media_url}/v1/media/{media_id}"
        limit = aiohttp.ClientTimeout(total=self.timeout_s)
        try:
            async with self.session.get(url, headers=headers, timeout=limit) as answer:
                if answer.status == 404:
                    return Thumbnail(media_id, None, "this file was deleted")
                if answer.status != 200:
                    log.warning("media lookup failed", media_id=str(media_id), status=answer.status)
                    return Thumbnail(media_id, None, "preview unavailable")
                body = await answer.json()
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.warning("media lookup failed", media_id=str(media_id), error=repr(exc))
            return Thumbnail(media_id, None, "preview unavailable")
        if not isinstance(body, dict):
            return Thumbnail(media_id, None, "preview unavailable")
        link = _usable(body.get("thumbnail_url")) or _usable(body.get("url"))
        filename = body.get("filename")
        label = filename if isinstance(filename, str) and filename else str(media_id)
        return Thumbnail(media_id, link, label[:200])
