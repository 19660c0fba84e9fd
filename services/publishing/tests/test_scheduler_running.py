"""The scheduler running for real: a NOTIFY wakes it (latency is not the poll interval),
media go out with fresh signed URLs from the media service, ``/readyz`` and ``/metrics``
show it, and the posts projection rebuilds to the live table."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import jwt
import pytest
from aiohttp import web
from pressroom_kit.db import connect
from pressroom_kit.projections import rebuild, verify
from pressroom_publishing.projections import POSTS
from publishing_testkit import (
    SECRET,
    add_media,
    connect_platform,
    eventually,
    fake_platform,
    publishing_service,
)

pytestmark = pytest.mark.integration


@asynccontextmanager
async def media_service(known: dict[uuid.UUID, uuid.UUID]) -> AsyncIterator[dict]:
    """The media API's read of one asset: needs a token of the asset's brand."""
    state: dict = {"url": "", "requests": []}

    async def read(request: web.Request) -> web.Response:
        asset = uuid.UUID(request.match_info["asset_id"])
        claims = jwt.decode(
            request.headers["Authorization"].removeprefix("Bearer "), SECRET, algorithms=["HS256"]
        )
        state["requests"].append(claims)
        if known.get(asset) != uuid.UUID(claims["brand_id"]):
            return web.json_response({"title": "Not found"}, status=404)
        signed = f"{state['url']}/media-files/{asset}?sig={int(time.time())}"
        return web.json_response({"id": str(asset), "url": signed})

    app = web.Application()
    app.router.add_get("/v1/media/{asset_id}", read)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    state["url"] = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
    try:
        yield state
    finally:
        await runner.cleanup()


async def test_the_running_scheduler_publishes_with_fresh_media_urls_on_notify(
    fresh_db, kafka_bootstrap
):
    brand = uuid.uuid4()
    known: dict[uuid.UUID, uuid.UUID] = {}
    async with (
        media_service(known) as media,
        fake_platform() as platform,
        publishing_service(
            fresh_db,
            kafka_bootstrap,
            platform,
            run_scheduler=True,
            poll_interval_s=30.0,  # only a NOTIFY can make it quick
            media_url=media["url"],
        ) as service,
    ):
        await connect_platform(fresh_db, brand, "sandbox")
        image = await add_media(fresh_db, brand)
        known[image] = brand
        post = await service.create(brand, content={"text": "pic", "media_ids": [str(image)]})
        started = time.monotonic()
        status, _ = await service.call("POST", f"/v1/posts/{post['id']}/submit", brand)
        assert status == 200

        async def published():
            current = await service.post(brand, post["id"])
            return current if current["status"] == "published" else None

        await eventually(published, timeout=10)
        assert time.monotonic() - started < 5
        sent = platform.created[0]
        assert sent["media"][0]["url"].startswith(f"{media['url']}/media-files/{image}?sig=")
        assert media["requests"][0]["brand_id"] == str(brand)
        assert media["requests"][0]["role"] == "viewer"

        status, ready = await service.call("GET", "/readyz", brand)
        assert "scheduler" in str(ready), ready
        async with service.http.get(f"{service.base}/metrics") as answer:
            text = await answer.text()
        assert 'pressroom_publishing_attempts_total{outcome="published",platform="sandbox"}' in text
        assert "pressroom_publishing_delay_seconds_bucket" in text
        assert "pressroom_publishing_due_backlog" in text

        # A media asset gone from the media service fails the platform with the reason.
        other = await add_media(fresh_db, brand)
        second = await service.create(brand, content={"text": "x", "media_ids": [str(other)]})
        await service.call("POST", f"/v1/posts/{second['id']}/submit", brand)

        async def failed():
            current = await service.post(brand, second["id"])
            return current if current["status"] == "failed" else None

        gone = await eventually(failed, timeout=10)
        assert "no longer exists" in gone["last_error"]

    conn = await connect(fresh_db.owner_dsn)
    try:
        assert await rebuild(conn, POSTS) == 8  # two posts: created, scheduled, started, outcome
        diffs = await verify(conn, POSTS)
        assert diffs and all(d.equal for d in diffs), diffs
    finally:
        await conn.close()
