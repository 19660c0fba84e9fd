"""Fresh signed file URLs from the media service, fetched when a post is published.

The media service answers ``GET /v1/media/{id}`` to a token of the asset's brand; publishing
mints a short-lived viewer token with the shared JWT secret (``PRESSROOM_JWT_SECRET``) and
puts the asset's ``url`` into ``MediaItem.url`` for the platform to fetch. Without a shared
secret (a deployment on an identity provider's keys) the items go out without a URL, and
adapters that need one refuse the post.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from uuid import UUID

import aiohttp
from pressroom_kit.auth import mint_token

from pressroom_publishing.platforms.base import MediaItem


class MediaUnavailable(Exception):
    """An asset the post names is gone (404) or cannot be fetched for good."""


class MediaServiceDown(Exception):
    """The media service did not answer usefully; try again later."""


class MediaLinks:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        media_url: str,
        jwt_secret: str | None,
        *,
        timeout_s: float = 10.0,
    ) -> None:
        self.session = session
        self.media_url = media_url.rstrip("/")
        self.jwt_secret = jwt_secret
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def fresh(self, brand_id: UUID, items: Sequence[MediaItem]) -> list[MediaItem]:
        if not items or self.jwt_secret is None:
            return list(items)
        token = mint_token(
            self.jwt_secret,
            sub="service:publishing",
            role="viewer",
            brand_id=brand_id,
            ttl_seconds=300,
        )
        headers = {"Authorization": f"Bearer {token}"}
        linked = []
        for item in items:
            url = f"{self.media_url}/v1/media/{item.media_id}"
            try:
                async with self.session.get(url, headers=headers, timeout=self.timeout) as answer:
                    if answer.status == 404:
                        raise MediaUnavailable(f"asset {item.media_id} no longer exists")
                    if answer.status != 200:
                        raise MediaServiceDown(f"the media service answered {answer.status}")
                    body = await answer.json()
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                raise MediaServiceDown(f"the media service failed: {exc!r}") from exc
            linked.append(dataclasses.replace(item, url=body.get("url")))
        return linked
