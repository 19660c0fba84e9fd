"""Fake social platforms for the adapter tests: aiohttp servers on loopback ports speaking
each platform's documented API (shapes, status codes, error bodies), written from the
documentation and checking what the real ones check. Shared here: serving an app, a media
file server (the media service's signed URLs), injected failures, and PKCE."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import random
import secrets
import unicodedata
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
from aiohttp import web
from pressroom_publishing.platforms.base import (
    Credentials,
    MediaItem,
    MediaKind,
    PlatformHTTP,
    PostContent,
    PublishRequest,
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@contextlib.asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[str]:
    """Run ``app`` on a free loopback port; yield its base URL."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def graphemes(text: str) -> int:
    """User-perceived characters, roughly (the fakes' own count): code points that do not
    extend the one before (marks, joiners and what they join, variation selectors, skin
    tones), with regional-indicator pairs as one flag."""
    count, joined, flag = 0, False, False
    for char in text:
        code = ord(char)
        if joined:
            joined = False
            continue
        if code == 0x200D:
            joined = True
            continue
        if unicodedata.category(char) in ("Mn", "Me") or 0xFE00 <= code <= 0xFE0F:
            continue
        if 0x1F3FB <= code <= 0x1F3FF:
            continue
        if 0x1F1E6 <= code <= 0x1F1FF:
            flag = not flag
            if not flag:
                continue
        else:
            flag = False
        count += 1
    return count


def s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def token() -> str:
    return secrets.token_urlsafe(24)


@dataclass
class Failure:
    """An injected answer for the next ``count`` requests whose path starts with ``path``."""

    method: str | None
    path: str
    status: int
    body: Any
    headers: dict[str, str]
    count: int


@dataclass
class FakeBase:
    """What every fake has: a call log (method, path) in order, injectable failures, and
    dropped answers (the platform does the work, then the connection breaks before its
    answer: the unknown outcome a publisher must reconcile)."""

    calls: list[tuple[str, str]] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    drops: list[Failure] = field(default_factory=list)

    def drop(self, path: str, *, method: str = "POST", count: int = 1) -> None:
        """The next ``count`` requests whose path starts with ``path`` are handled (the
        platform commits), then the connection closes without an answer."""
        self.drops.append(Failure(method, path, 0, None, {}, count))

    def fail(
        self,
        path: str,
        status: int,
        body: Any,
        *,
        method: str | None = None,
        headers: dict[str, str] | None = None,
        count: int = 1,
    ) -> None:
        self.failures.append(Failure(method, path, status, body, dict(headers or {}), count))

    def called(self, method: str, prefix: str) -> list[str]:
        return [path for m, path in self.calls if m == method and path.startswith(prefix)]

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.calls.append((request.method, request.path))
        for failure in self.failures:
            if failure.count > 0 and request.path.startswith(failure.path):
                if failure.method and failure.method != request.method:
                    continue
                failure.count -= 1
                await request.read()
                if isinstance(failure.body, str):
                    return web.Response(
                        status=failure.status, text=failure.body, headers=failure.headers
                    )
                return web.json_response(
                    failure.body, status=failure.status, headers=failure.headers
                )
        for drop in self.drops:
            if (
                drop.count > 0
                and request.path.startswith(drop.path)
                and request.method == drop.method
            ):
                drop.count -= 1
                await handler(request)  # the platform commits
                assert request.transport is not None
                request.transport.close()  # ... and the answer never arrives
                return web.Response(status=204)
        return await handler(request)

    def application(self) -> web.Application:
        return web.Application(middlewares=[self.middleware], client_max_size=64 * 1024**2)


def bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    return header[7:] if header.startswith("Bearer ") else None


@dataclass
class MediaFiles:
    """The media service's part: files at URLs, served with Content-Length."""

    files: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    gets: list[str] = field(default_factory=list)
    base_url: str = ""

    def add(self, data: bytes, content_type: str) -> str:
        name = uuid.uuid4().hex
        self.files[name] = (data, content_type)
        return f"{self.base_url}/files/{name}"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.gets.append(request.match_info["name"])
        found = self.files.get(request.match_info["name"])
        if found is None:
            return web.Response(status=404, text="no such file")
        return web.Response(body=found[0], content_type=found[1])


@contextlib.asynccontextmanager
async def media_server() -> AsyncIterator[MediaFiles]:
    media = MediaFiles()
    app = web.Application()
    app.router.add_get("/files/{name}", media.handle)
    async with serve(app) as url:
        media.base_url = url
        yield media


def image_bytes(size: int, seed: int = 1) -> bytes:
    """Deterministic bytes that start like a JPEG (the fakes check the magic)."""
    return b"\xff\xd8\xff\xe0" + random.Random(seed).randbytes(max(0, size - 4))


# --- what the tests hand the adapters ------------------------------------------------------


def credentials(
    platform: str,
    access_token: str,
    account_id: str,
    *,
    refresh_token: str | None = None,
    **extra: Any,
) -> Credentials:
    return Credentials(
        connection_id=uuid.uuid4(),
        brand_id=uuid.uuid4(),
        platform=platform,
        access_token=access_token,
        account_id=account_id,
        refresh_token=refresh_token,
        extra=extra,
    )


def media_item(
    url: str,
    data: bytes,
    *,
    kind: MediaKind = "image",
    content_type: str = "image/jpeg",
    alt_text: str | None = None,
) -> MediaItem:
    return MediaItem(
        media_id=uuid.uuid4(),
        kind=kind,
        content_type=content_type,
        size_bytes=len(data),
        url=url,
        alt_text=alt_text,
        filename="file.jpg" if kind == "image" else "clip.mp4",
    )


def publish_request(
    text: str, media: tuple[MediaItem, ...] = (), *, link: str | None = None
) -> PublishRequest:
    post_id = uuid.uuid4()
    return PublishRequest(
        post_id=post_id,
        reference=f"{post_id}:test",
        content=PostContent(text=text, media=media, link=link),
    )


@contextlib.asynccontextmanager
async def http_client(timeout_s: float = 10.0) -> AsyncIterator[PlatformHTTP]:
    async with aiohttp.ClientSession() as session:
        yield PlatformHTTP(session, timeout_s=timeout_s)


async def follow_consent(http: PlatformHTTP, url: str) -> dict[str, str]:
    """The browser's part: open the authorization URL (the fake consents at once) and read
    the redirect's query (``code``, ``state``)."""
    async with http.session.get(url, allow_redirects=False) as answer:
        assert answer.status in (302, 303), await answer.text()
        location = answer.headers["Location"]
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
