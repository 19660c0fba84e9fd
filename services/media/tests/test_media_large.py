"""Large files stream: server memory stays flat in the file size."""

from __future__ import annotations

import asyncio
import uuid

import aiohttp
import psutil
import pytest
from media_samples import write_padded_mp4
from media_testkit import media_service

pytestmark = pytest.mark.slow


async def test_a_300_mb_video_streams_with_bounded_memory_and_gets_a_poster(
    fresh_db, kafka_bootstrap, topics, tmp_path
):
    video = tmp_path / "big.mp4"
    write_padded_mp4(str(video), 300 * 1024 * 1024)
    process = psutil.Process()
    async with media_service(fresh_db, kafka_bootstrap, tmp_path / "data") as media:
        brand = uuid.uuid4()
        peak = baseline = process.memory_info().rss

        async def watch() -> None:
            nonlocal peak
            while True:
                peak = max(peak, process.memory_info().rss)
                await asyncio.sleep(0.02)

        watcher = asyncio.create_task(watch())
        try:
            with open(video, "rb") as handle:  # noqa: ASYNC230 (aiohttp streams it)
                body = aiohttp.FormData()
                body.add_field("file", handle, filename="big.mp4", content_type="video/mp4")
                status, asset = await media.call("POST", "/v1/media", brand, data=body)
        finally:
            watcher.cancel()
        assert status == 201, asset
        assert asset["size_bytes"] == 300 * 1024 * 1024
        assert asset["kind"] == "video" and asset["metadata"]["duration_s"] > 0
        # Client and server share this process: both stream, so growth stays small.
        assert (peak - baseline) / 2**20 < 64, f"RSS grew {(peak - baseline) / 2**20:.0f} MB"
        status, headers, poster = await media.fetch(asset["thumbnail_url"])
        assert status == 200 and headers["Content-Type"].startswith("image/") and poster
        # The video itself is served in ranges, as players ask for it.
        status, headers, part = await media.fetch(asset["url"], Range="bytes=0-1023")
        assert status == 206 and len(part) == 1024
        assert headers["Content-Range"].endswith(f"/{asset['size_bytes']}")
