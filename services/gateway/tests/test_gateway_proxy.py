from __future__ import annotations

import asyncio
import time
import uuid

import jwt
import pytest
from gateway_testkit import (
    SECRET,
    bearer,
    call,
    echo_backend,
    gateway_settings,
    running_gateway,
    token,
)
from pressroom_kit.embedded import free_port

pytestmark = pytest.mark.integration
BRAND = uuid.uuid4()


def _claims(**overrides):
    claims = {"sub": "u1", "brand_id": str(BRAND), "role": "manager", "exp": int(time.time()) + 600}
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


REFUSED = {
    "expired": (jwt.encode(_claims(exp=int(time.time()) - 60), SECRET, "HS256"), 401),
    "bad signature": (jwt.encode(_claims(), "x" * 40, "HS256"), 401),
    "alg none": (jwt.encode(_claims(), None, "none"), 401),
    "missing brand_id": (jwt.encode(_claims(brand_id=None), SECRET, "HS256"), 403),
    "unknown role": (jwt.encode(_claims(role="root"), SECRET, "HS256"), 403),
    "no token": (None, 401),
}


@pytest.mark.parametrize("case", list(REFUSED))
async def test_jwt_matrix_through_the_gateway(gateway, http, case):
    value, status = REFUSED[case]
    headers = bearer(value) if value else {}
    got, response_headers, body = await call(http, "GET", f"{gateway}/v1/media", headers=headers)
    assert got == status, body
    assert response_headers["Content-Type"].startswith("application/problem+json")
    assert "X-Backend" not in response_headers  # never reached the service


async def test_a_valid_request_is_forwarded_with_its_headers(gateway, http):
    from pressroom_kit.telemetry import configure_tracing

    # As the gateway's __main__ does: without a tracer provider nothing is propagated (this
    # test passed only when an earlier test in the process had installed one).
    configure_tracing("gateway-test")
    manager = token("manager", BRAND)
    status, headers, body = await call(
        http,
        "GET",
        f"{gateway}/v1/media/abc?tag=x&tag=y",
        headers={
            **bearer(manager),
            "X-Request-ID": "rid-1",
            "User-Agent": "tests/1.0",
            "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "Connection": "keep-alive, X-Secret-Hop",
            "X-Secret-Hop": "drop me",
        },
    )
    assert status == 200
    assert body["path"] == "/v1/media/abc" and body["query"] == "tag=x&tag=y"
    sent = {k.lower(): v for k, v in body["headers"].items()}
    assert sent["authorization"] == f"Bearer {manager}"
    assert sent["x-request-id"] == "rid-1"
    assert sent["user-agent"] == "tests/1.0"
    assert sent["x-forwarded-for"] == "127.0.0.1"
    assert sent["traceparent"].split("-")[1] == "0af7651916cd43dd8448eb211c80319c"
    assert "x-secret-hop" not in sent
    assert headers["X-Backend"] == "echo"
    assert headers["X-Request-ID"] == "rid-1"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert "RateLimit-Remaining" in headers


async def test_status_and_body_pass_through_and_public_paths_need_no_token(gateway, http):
    status, _, body = await call(
        http,
        "POST",
        f"{gateway}/v1/media?status=418",
        data=b"abc",
        headers=bearer(token("manager", BRAND)),
    )
    assert status == 418 and body["body_bytes"] == 3 and body["method"] == "POST"
    status, _, body = await call(http, "GET", f"{gateway}/media-files/signed/x.jpg")
    assert status == 200 and body["path"] == "/media-files/signed/x.jpg"
    async with http.get(f"{gateway}/media-files/download?mb=5") as response:
        assert len(await response.read()) == 5 * 1024 * 1024


async def test_backend_down_is_503_and_slow_backend_is_504(fresh_db, kafka_bootstrap, http):
    async with echo_backend() as slow:
        routes = {"/v1/media": f"http://127.0.0.1:{free_port()}", "/v1/posts": slow}
        settings = gateway_settings(fresh_db, kafka_bootstrap, routes, read_timeout_s=0.5)
        async with running_gateway(settings) as base:
            manager = bearer(token("manager", BRAND))
            started = time.monotonic()
            status, headers, body = await call(http, "GET", f"{base}/v1/media", headers=manager)
            assert status == 503 and body["status"] == 503
            assert headers["Content-Type"].startswith("application/problem+json")
            assert time.monotonic() - started < 3
            started = time.monotonic()
            status, _, body = await call(
                http, "GET", f"{base}/v1/posts/slow?sleep=1.5", headers=manager
            )
            assert status == 504, body
            assert time.monotonic() - started < 3
            status, _, body = await call(http, "GET", f"{base}/readyz")
            assert status == 503
            checks = body["checks"]
            assert not checks[f"backend {routes['/v1/media']}"]["ok"]
            assert checks[f"backend {slow}"]["ok"]


async def test_oversized_bodies_are_413(fresh_db, kafka_bootstrap, backend, http):
    routes = {"/v1/media": backend}
    settings = gateway_settings(fresh_db, kafka_bootstrap, routes, max_body_bytes=1024)
    async with running_gateway(settings) as base:
        manager = bearer(token("manager", BRAND))
        status, _, body = await call(
            http, "POST", f"{base}/v1/media/upload", data=b"x" * 2048, headers=manager
        )
        assert status == 413 and body["limit_bytes"] == 1024

        async def chunks():
            for _ in range(4):
                yield b"y" * 512

        status, _, body = await call(
            http, "POST", f"{base}/v1/media/upload", data=chunks(), headers=manager
        )
        assert status == 413


async def test_the_101st_request_in_a_window_of_100_is_429(
    fresh_db, kafka_bootstrap, backend, http
):
    settings = gateway_settings(
        fresh_db,
        kafka_bootstrap,
        {"/v1/media": backend},
        rate_limit_user=100,
        # A token bucket refills continuously: with a 60 s window one token comes back every
        # 0.6 s, which a slow CI machine spends on the first 100 requests. An hour's window
        # refills one token per 36 s, so the 101st is refused however slow the machine is.
        rate_limit_window_s=3600,
    )
    async with running_gateway(settings) as base:
        manager = bearer(token("manager", BRAND))
        statuses = await asyncio.gather(
            *(call(http, "GET", f"{base}/v1/media", headers=manager) for _ in range(100))
        )
        assert {s for s, _, _ in statuses} == {200}
        status, headers, body = await call(http, "GET", f"{base}/v1/media", headers=manager)
        assert status == 429
        assert int(headers["Retry-After"]) >= 1
        assert headers["RateLimit-Limit"] == "100" and headers["RateLimit-Remaining"] == "0"
        assert body["status"] == 429
        other_user = bearer(token("manager", BRAND, sub="someone-else"))
        status, _, _ = await call(http, "GET", f"{base}/v1/media", headers=other_user)
        assert status == 200


async def test_with_redis_two_gateways_share_one_budget(fresh_db, kafka_bootstrap, backend, http):
    from pressroom_kit.embedded import EmbeddedRedis

    redis = EmbeddedRedis().start()
    try:
        settings = gateway_settings(
            fresh_db,
            kafka_bootstrap,
            {"/v1/media": backend},
            rate_limit_user=20,
            rate_limit_window_s=3600,  # one token back per 180 s: timing cannot matter
            redis_url=redis.url,
        )
        async with running_gateway(settings) as one, running_gateway(settings) as two:
            manager = bearer(token("manager", BRAND, sub="shared-user"))
            results = await asyncio.gather(
                *(
                    call(http, "GET", f"{base}/v1/media", headers=manager)
                    for base in [one, two] * 15
                )
            )
            statuses = sorted(s for s, _, _ in results)
            assert statuses.count(200) == 20 and statuses.count(429) == 10
            refused = next(h for s, h, _ in results if s == 429)
            assert int(refused["Retry-After"]) >= 1
    finally:
        redis.stop()


async def test_an_idempotent_get_is_retried_once_when_the_backend_drops_the_connection(
    fresh_db, kafka_bootstrap, http
):
    connections = []

    async def flaky(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        if b" /v1/media " in head.split(b"\r\n", 1)[0]:
            connections.append(1)
        else:  # the gateway's OpenAPI refresher and readiness probes
            writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            writer.close()
            return
        if len(connections) == 1:
            writer.close()  # drop the first request without an answer
            return
        body = b'{"ok": true}'
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(flaky, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        routes = {"/v1/media": f"http://127.0.0.1:{port}"}
        async with running_gateway(gateway_settings(fresh_db, kafka_bootstrap, routes)) as base:
            manager = bearer(token("manager", BRAND))
            status, _, body = await call(http, "GET", f"{base}/v1/media", headers=manager)
            assert status == 200 and body == {"ok": True}
            assert len(connections) == 2
            connections.clear()
            status, _, body = await call(
                http, "POST", f"{base}/v1/media", data=b"x", headers=manager
            )
            assert status == 502 and len(connections) == 1  # a POST is never replayed
    finally:
        server.close()
        await server.wait_closed()


async def test_cors_preflight_and_headers_for_configured_origins(
    fresh_db, kafka_bootstrap, backend, http
):
    settings = gateway_settings(
        fresh_db, kafka_bootstrap, {"/v1/media": backend}, cors_origins=["https://app.example.com"]
    )
    async with running_gateway(settings) as base:
        status, headers, _ = await call(
            http,
            "OPTIONS",
            f"{base}/v1/brands/current",
            headers={
                "Origin": "https://app.example.com",
                "Access-Control-Request-Method": "PATCH",
                "Access-Control-Request-Headers": "authorization,content-type",
            },
        )
        assert status in (200, 204)
        assert headers["Access-Control-Allow-Origin"] == "https://app.example.com"
        status, headers, _ = await call(
            http,
            "GET",
            f"{base}/v1/brands/current",
            headers={"Origin": "https://evil.example.com", **bearer(token("viewer", BRAND))},
        )
        assert "Access-Control-Allow-Origin" not in headers
