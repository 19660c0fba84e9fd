"""Media bytes for platforms that want an upload rather than a URL they fetch themselves
(X, LinkedIn, Bluesky, Mastodon): the file is read from the media service's signed URL as a
stream and handed on chunk by chunk, so a video never sits whole in memory.

    async with open_media(platform, item) as media:
        async for chunk in media.chunks(4 * 1024 * 1024):  # exact sizes, the last shorter
            ...
        # or: data=media.payload() on PlatformHTTP.request, streamed as it is read, with
        # an exact Content-Length (also inside a multipart form)

A failed download is the platform attempt's failure: a missing file (404/410) is
``RejectedError`` (retrying cannot bring it back), anything else ``TransientError`` (the next
attempt gets a fresh signed URL).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp.payload import AsyncIterablePayload

from pressroom_publishing.platforms.base import (
    MediaItem,
    Platform,
    RejectedError,
    TransientError,
)

READ_SIZE = 256 * 1024


class SizedStream(AsyncIterablePayload):
    """An async-iterable body whose length is known beforehand: aiohttp then sends
    ``Content-Length`` (for a multipart form too, which sums its parts) and still streams
    it. ``MediaDownload`` checks the bytes read against that length."""

    def __init__(self, value: AsyncIterator[bytes], size: int | None, **kwargs: Any) -> None:
        super().__init__(value, **kwargs)
        self._size = size


@dataclass
class MediaDownload:
    """An open download of one media item."""

    platform: str
    item: MediaItem
    size: int | None  # from Content-Length, else the media projection's size
    content_type: str
    _response: aiohttp.ClientResponse
    _used: bool = False

    async def chunks(self, size: int) -> AsyncIterator[bytes]:
        """The file in chunks of exactly ``size`` bytes (the last one shorter); one pass."""
        if self._used:
            raise RuntimeError("a media download is read once")
        self._used = True
        buffer = bytearray()
        async for piece in self._pieces():
            buffer.extend(piece)
            while len(buffer) >= size:
                yield bytes(buffer[:size])
                del buffer[:size]
        if buffer:
            yield bytes(buffer)

    def body(self) -> AsyncIterator[bytes]:
        """The file as a request body aiohttp streams while it reads."""
        return self.chunks(READ_SIZE)

    def payload(self) -> AsyncIterablePayload:
        """The file as a streamed payload that knows its size, so the request (or a
        multipart form around it) carries an exact ``Content-Length`` instead of
        ``Transfer-Encoding: chunked``, which S3 upload URLs refuse (501) and some upload
        endpoints want. Without a known size it is sent chunked."""
        return SizedStream(self.body(), self.size, content_type=self.content_type)

    async def _pieces(self) -> AsyncIterator[bytes]:
        received = 0
        try:
            async for piece in self._response.content.iter_chunked(READ_SIZE):
                received += len(piece)
                yield piece
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TransientError(
                self.platform, f"reading media {self.item.media_id} failed: {exc!r}"
            ) from exc
        if self.size is not None and received != self.size:
            raise TransientError(
                self.platform,
                f"media {self.item.media_id}: {received} bytes read, {self.size} announced",
            )


def upload_timeout(platform: Platform) -> aiohttp.ClientTimeout:
    """For a request carrying a file: no total limit, but connecting and every read
    bounded by the platform timeout (a stalled upload still fails)."""
    bound = platform.http.timeout.total
    return aiohttp.ClientTimeout(total=None, sock_connect=bound, sock_read=bound)


@contextlib.asynccontextmanager
async def open_media(platform: Platform, item: MediaItem) -> AsyncIterator[MediaDownload]:
    """GET ``item.url`` with the platform's HTTP session; no total timeout (a large video
    takes its time), but connecting and every read are bounded by the platform timeout."""
    name = platform.id
    if not item.url:
        raise RejectedError(name, f"media {item.media_id} has no URL to read", code="no_url")
    try:
        response = await platform.http.session.get(item.url, timeout=upload_timeout(platform))
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise TransientError(name, f"media {item.media_id} could not be read: {exc!r}") from exc
    try:
        if response.status in (404, 410):
            raise RejectedError(
                name, f"media {item.media_id} is gone (HTTP {response.status})", code="media_gone"
            )
        if response.status != 200:
            raise TransientError(
                name, f"media {item.media_id} could not be read (HTTP {response.status})"
            )
        length = response.headers.get("Content-Length")
        size = int(length) if length and length.isdigit() else item.size_bytes
        content_type = item.content_type or response.content_type
        yield MediaDownload(name, item, size, content_type, response)
    finally:
        response.release()
