"""What the real-platform adapters share: media streamed from the media service's URL in
exact chunks without holding the file, its failures as interface errors, the registry,
and the platforms setting."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from fakes import http_client, serve
from pressroom_publishing.platforms import ADAPTERS, PLATFORM_IDS, adapter_class, build_platforms
from pressroom_publishing.platforms.base import (
    MediaItem,
    PlatformHTTP,
    RejectedError,
    TransientError,
)
from pressroom_publishing.platforms.media_stream import open_media
from pressroom_publishing.platforms.sandbox import SandboxPlatform
from pressroom_publishing.settings import PublishingSettings

pytestmark = pytest.mark.integration

PIECE = 256 * 1024


class Files:
    def __init__(self) -> None:
        self.first_chunk_taken = asyncio.Event()
        self.data = bytes(range(256)) * (3 * PIECE // 256)

    async def slow(self, request: web.Request) -> web.StreamResponse:
        """Sends a first part, then waits until the client has used it: a reader that
        buffered the whole file would never see it."""
        response = web.StreamResponse()
        response.content_length = len(self.data)
        await response.prepare(request)
        await response.write(self.data[:PIECE])
        await asyncio.wait_for(self.first_chunk_taken.wait(), 10)
        await response.write(self.data[PIECE:])
        return response

    async def truncated(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.content_length = 10_000
        await response.prepare(request)
        await response.write(b"x" * 1000)
        assert request.transport is not None
        request.transport.close()
        return response

    async def status(self, request: web.Request) -> web.Response:
        return web.Response(status=int(request.match_info["code"]), text="no")


@pytest.fixture(scope="module")
async def files() -> AsyncIterator[tuple[Files, str, PlatformHTTP]]:
    files = Files()
    app = web.Application()
    app.router.add_get("/slow", files.slow)
    app.router.add_get("/truncated", files.truncated)
    app.router.add_get("/status/{code}", files.status)
    async with serve(app) as url, http_client(timeout_s=5) as http:
        yield files, url, http


def item(url: str, size: int = 0) -> MediaItem:
    return MediaItem(
        media_id=uuid.uuid4(), kind="video", content_type="video/mp4", size_bytes=size, url=url
    )


async def test_chunks_are_exact_and_arrive_while_the_file_is_still_being_sent(files):
    served, url, http = files
    platform = SandboxPlatform(http, {"api_url": "http://127.0.0.1:9"})
    received = []
    async with open_media(platform, item(f"{url}/slow")) as media:
        assert media.size == len(served.data)
        async for chunk in media.chunks(100_000):
            received.append(chunk)
            served.first_chunk_taken.set()
    assert [len(c) for c in received[:-1]] == [100_000] * (len(served.data) // 100_000)
    assert b"".join(received) == served.data


async def read_all(platform: SandboxPlatform, url: str) -> bytes:
    async with open_media(platform, item(url)) as media:
        return b"".join([chunk async for chunk in media.chunks(4096)])


async def test_failures_are_interface_errors(files):
    _, url, http = files
    platform = SandboxPlatform(http, {"api_url": "http://127.0.0.1:9"})
    for code, error in (
        (404, RejectedError),
        (410, RejectedError),
        (403, TransientError),
        (503, TransientError),
    ):
        with pytest.raises(error):
            async with open_media(platform, item(f"{url}/status/{code}")):
                pass
    with pytest.raises(TransientError):
        await read_all(platform, f"{url}/truncated")
    with pytest.raises(TransientError):
        async with open_media(platform, item("http://127.0.0.1:9/nothing-listens")):
            pass
    with pytest.raises(RejectedError):
        async with open_media(platform, item("")):
            pass


def test_every_registered_adapter_is_a_known_id_and_builds_from_config():
    assert set(ADAPTERS) <= set(PLATFORM_IDS)
    for platform_id in ADAPTERS:
        cls = adapter_class(platform_id)
        assert cls is not None and cls.capabilities.platform == platform_id
    built = build_platforms(None, {"mastodon": {}, "x": {"client_id": "c"}})  # type: ignore[arg-type]
    assert sorted(built) == ["mastodon", "x"]
    with pytest.raises(ValueError):
        build_platforms(None, {"myspace": {}})  # type: ignore[arg-type]


def test_the_platforms_setting_reads_json(monkeypatch):
    monkeypatch.setenv(
        "PRESSROOM_PUBLISHING_PLATFORMS",
        '{"mastodon": {}, "x": {"client_id": "abc", "api_url": "https://api.x.com"}}',
    )
    settings = PublishingSettings()
    assert settings.platforms == {
        "mastodon": {},
        "x": {"client_id": "abc", "api_url": "https://api.x.com"},
    }
    monkeypatch.delenv("PRESSROOM_PUBLISHING_PLATFORMS")
    assert PublishingSettings().platforms == {}


def test_the_service_runs_every_configured_platform_beside_the_sandbox():
    from pressroom_publishing.app import configured_platforms

    settings = PublishingSettings(
        platforms={"mastodon": {}, "x": {"client_id": "abc"}}, sandbox_enabled=True
    )
    assert sorted(configured_platforms(settings)(None)) == ["mastodon", "sandbox", "x"]  # type: ignore[arg-type]
    without_sandbox = PublishingSettings(platforms={"bluesky": {}}, sandbox_enabled=False)
    assert sorted(configured_platforms(without_sandbox)(None)) == ["bluesky"]  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="myspace"):
        configured_platforms(PublishingSettings(platforms={"myspace": {}}))(None)  # type: ignore[arg-type]
