"""Idle keep-alive connections: a service keeps one open longer than its clients keep one
for reuse, so a client (the gateway, a load balancer, a test) never sends a request on a
connection the server is just closing — a POST sent on one is reset, not retried."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from pressroom_kit import runtime
from pressroom_kit.settings import ServiceSettings
from pressroom_kit.testing.servers import serve_asgi


async def _client_port(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    body = str(scope["client"][1]).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


@pytest.mark.integration
async def test_an_idle_connection_outlives_uvicorns_five_second_default():
    async with (
        serve_asgi(_client_port) as base,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(keepalive_timeout=60)) as http,
    ):
        async with http.post(base) as first:
            port = await first.text()
        await asyncio.sleep(6)  # past uvicorn's default keep-alive of 5 s
        async with http.post(base) as second:
            assert await second.text() == port  # the same connection, still open


@pytest.mark.unit
def test_the_service_entry_point_serves_with_the_keep_alive_setting(monkeypatch):
    seen: dict[str, Any] = {}
    monkeypatch.setattr("uvicorn.run", lambda app, **options: seen.update(options))
    monkeypatch.setattr("pressroom_kit.logs.configure_logging", lambda *a, **k: None)
    monkeypatch.setattr("pressroom_kit.telemetry.configure_tracing", lambda *a, **k: None)
    monkeypatch.setenv("PRESSROOM_SAMPLE_HTTP_KEEP_ALIVE_S", "90")

    class SampleSettings(ServiceSettings):
        model_config = {**ServiceSettings.model_config, "env_prefix": "PRESSROOM_SAMPLE_"}

    runtime.serve("sample", SampleSettings(), lambda settings: object())
    assert seen["timeout_keep_alive"] == 90
    assert ServiceSettings.model_fields["http_keep_alive_s"].default == 75
