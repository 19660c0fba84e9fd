from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from pressroom_gateway.app import create_app
from pressroom_gateway.settings import GatewaySettings
from pressroom_kit.auth import mint_token
from pressroom_kit.testing.plugin import APP_ROLE, TestDatabase
from pressroom_kit.testing.servers import serve_asgi

SECRET = "gateway-test-secret-gateway-test-secret"


def token(
    role: str = "admin", brand: uuid.UUID | None = None, sub: str | None = None, **claims: Any
) -> str:
    return mint_token(
        SECRET,
        sub=sub or f"user-{role}",
        role=role,  # type: ignore[arg-type]
        brand_id=brand,
        email=f"{role}@example.com",
        **claims,
    )


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


MEDIA_OPENAPI = {
    "openapi": "3.1.0",
    "info": {"title": "Pressroom media", "version": "0.1.0"},
    "paths": {
        "/v1/media": {
            "get": {
                "summary": "List media",
                "operationId": "ListMedia",
                "responses": {
                    "200": {
                        "description": "ok",
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/Asset"}}
                        },
                    }
                },
            }
        },
        "/v1/brands/current": {
            "get": {
                "summary": "not media's to publish",
                "responses": {"200": {"description": "ok"}},
            }
        },
    },
    "components": {
        "schemas": {"Asset": {"type": "object", "properties": {"id": {"type": "string"}}}}
    },
}


@asynccontextmanager
async def echo_backend(openapi: dict[str, Any] | None = None, port: int = 0) -> AsyncIterator[str]:
    """A real HTTP service standing in for a Pressroom service behind the gateway."""

    async def echo(request: web.Request) -> web.StreamResponse:
        if request.path.endswith("/slow"):
            await asyncio.sleep(float(request.query.get("sleep", "5")))
        if request.path.endswith("/upload"):
            digest, size = hashlib.sha256(), 0
            async for chunk in request.content.iter_chunked(256 * 1024):
                digest.update(chunk)
                size += len(chunk)
            return web.json_response({"bytes": size, "sha256": digest.hexdigest()})
        if request.path.endswith("/download"):
            response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
            await response.prepare(request)
            for _ in range(int(request.query.get("mb", "1"))):
                await response.write(b"x" * 1024 * 1024)
            await response.write_eof()
            return response
        body = await request.read()
        return web.json_response(
            {
                "method": request.method,
                "path": request.path,
                "query": request.query_string,
                "headers": dict(request.headers),
                "body_bytes": len(body),
            },
            status=int(request.query.get("status", "200")),
            headers={"X-Backend": "echo", "Connection": "keep-alive"},
        )

    async def ready(_: web.Request) -> web.Response:
        return web.json_response({"status": "ready"})

    async def schema(_: web.Request) -> web.Response:
        if openapi is None:
            raise web.HTTPNotFound()
        return web.json_response(openapi)

    app = web.Application(client_max_size=1024**3)
    app.router.add_get("/readyz", ready)
    app.router.add_get("/schema/openapi.json", schema)
    app.router.add_route("*", "/{tail:.*}", echo)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def gateway_settings(
    db: TestDatabase, kafka: str, routes: dict[str, str], **overrides: Any
) -> GatewaySettings:
    values: dict[str, Any] = {
        "database_url": db.owner_dsn,
        "runtime_role": APP_ROLE,
        "routes": routes,
        "jwt_secret": SECRET,
        "kafka_bootstrap_servers": kafka,
        "read_timeout_s": 1.0,
        "connect_timeout_s": 1.0,
        "openapi_refresh_s": 0.5,
        **overrides,
    }
    return GatewaySettings.model_validate(values)


@asynccontextmanager
async def running_gateway(settings: GatewaySettings) -> AsyncIterator[str]:
    # As in production (``__main__``): uvicorn must not rewrite the peer from X-Forwarded-For.
    async with serve_asgi(create_app(settings), proxy_headers=False) as base:
        yield base


@pytest.fixture
async def backend() -> AsyncIterator[str]:
    async with echo_backend(MEDIA_OPENAPI) as url:
        yield url


@pytest.fixture
async def gateway(fresh_db: TestDatabase, kafka_bootstrap: str, backend: str) -> AsyncIterator[str]:
    routes = {"/v1/media": backend, "/media-files": backend}
    async with running_gateway(gateway_settings(fresh_db, kafka_bootstrap, routes)) as base:
        yield base


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def call(
    session: aiohttp.ClientSession, method: str, url: str, **kwargs: Any
) -> tuple[int, Any, Any]:
    async with session.request(method, url, **kwargs) as response:
        raw = await response.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw
        return response.status, response.headers.copy(), body


async def create_brand(
    session: aiohttp.ClientSession, base: str, sub: str = "founder", name: str = "Acme"
) -> uuid.UUID:
    status, _, body = await call(
        session,
        "POST",
        f"{base}/v1/brands",
        json={"name": name, "timezone": "Europe/Paris"},
        headers=bearer(token("viewer", sub=sub)),
    )
    assert status == 201, body
    return uuid.UUID(body["id"])
