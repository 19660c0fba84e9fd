"""The JWKS cache against a real identity provider stand-in: single flight, stale keys kept
through a failing or hanging refresh (within the grace), backoff, rotation."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa
from pressroom_kit.auth import JWTSettings, JWTVerifier
from pressroom_kit.errors import Unauthorized
from pressroom_kit.testing.sample.app import build_app
from pressroom_kit.testing.servers import serve_asgi

pytestmark = pytest.mark.integration

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ROTATED = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _jwk(key: rsa.RSAPrivateKey, kid: str) -> dict[str, Any]:
    entry = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    entry.update({"kid": kid, "alg": "RS256", "use": "sig"})
    return entry


def _token(sub: str, key: rsa.RSAPrivateKey = KEY, kid: Any = "k1") -> str:
    claims = {"sub": sub, "role": "viewer", "exp": int(time.time()) + 600}
    return jwt.encode(claims, key, "RS256", headers={"kid": kid})


@dataclass
class Provider:
    """A real JWKS endpoint whose answers the test steers."""

    url: str = ""
    keys: list[dict[str, Any]] = field(default_factory=lambda: [_jwk(KEY, "k1")])
    mode: str = "ok"  # "ok", "hang" (never answers), "error" (500)
    fetches: list[float] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)


@pytest.fixture
async def provider() -> AsyncIterator[Provider]:
    state = Provider()

    async def serve(_: web.Request) -> web.Response:
        state.fetches.append(time.monotonic())
        if state.mode == "hang":
            await state.release.wait()
        if state.mode == "error":
            raise web.HTTPInternalServerError()
        await asyncio.sleep(0.02)  # a real round trip, long enough for callers to pile up
        return web.json_response({"keys": state.keys})

    app = web.Application()
    app.router.add_get("/jwks.json", serve)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    state.url = f"http://127.0.0.1:{port}/jwks.json"
    try:
        yield state
    finally:
        state.release.set()
        await runner.cleanup()


def _verifier(provider: Provider, **settings: Any) -> JWTVerifier:
    return JWTVerifier(JWTSettings(jwks_url=provider.url, leeway=0, **settings))


async def _until(condition: Any, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


async def test_fifty_concurrent_first_verifications_make_one_fetch(provider):
    verifier = _verifier(provider)
    principals = await asyncio.gather(*(verifier.verify(_token(f"u{i}")) for i in range(50)))
    assert {p.sub for p in principals} == {f"u{i}" for i in range(50)}
    assert len(provider.fetches) == 1


async def test_fifty_concurrent_verifications_at_expiry_make_one_background_fetch(provider):
    verifier = _verifier(provider, jwks_ttl=0.1)
    await verifier.verify(_token("first"))
    await asyncio.sleep(0.15)  # the keys are now past their TTL
    started = time.monotonic()
    await asyncio.gather(*(verifier.verify(_token(f"u{i}")) for i in range(50)))
    elapsed = time.monotonic() - started
    await _until(lambda: len(provider.fetches) == 2)
    await asyncio.sleep(0.05)  # room for a wrongly started third fetch to show
    assert len(provider.fetches) == 2
    assert elapsed < 1.0


async def test_a_hanging_provider_does_not_hold_up_tokens_with_cached_keys(provider):
    verifier = _verifier(provider, jwks_ttl=0.1, jwks_grace=30, jwks_timeout=1.0)
    await verifier.verify(_token("first"))
    provider.mode = "hang"
    await asyncio.sleep(0.15)
    await verifier.verify(_token("starts-the-refresh"))
    await _until(lambda: len(provider.fetches) == 2)  # the refresh now hangs at the provider
    slowest = 0.0
    for i in range(20):
        started = time.monotonic()
        assert (await verifier.verify(_token(f"u{i}"))).sub == f"u{i}"
        slowest = max(slowest, time.monotonic() - started)
    assert slowest < 0.1
    assert len(provider.fetches) == 2  # one hanging refresh, not one per request


async def test_failures_back_off_exponentially_and_keys_stay_in_use(provider):
    verifier = _verifier(
        provider, jwks_ttl=0.0, jwks_grace=30, jwks_backoff=0.1, jwks_max_backoff=0.4
    )
    await verifier.verify(_token("first"))
    provider.mode = "error"
    deadline = time.monotonic() + 1.2
    count = 0
    while time.monotonic() < deadline:
        await verifier.verify(_token(f"u{count}"))
        count += 1
        await asyncio.sleep(0.005)
    attempts = provider.fetches[1:]
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    # 0.1, 0.2, 0.4, 0.4 ... (jittered down by up to 20 %) instead of one fetch per call.
    assert 3 <= len(attempts) <= 6, (count, gaps)
    assert gaps[0] >= 0.07 and gaps[1] >= 0.15 and all(g <= 0.6 for g in gaps)
    provider.mode = "ok"

    async def recovered() -> None:
        while verifier._jwks is not None and verifier._jwks._failures:
            await verifier.verify(_token("recovering"))
            await asyncio.sleep(0.01)

    await asyncio.wait_for(recovered(), timeout=2)


async def test_past_the_grace_verification_fails_clearly_with_401(provider):
    verifier = _verifier(provider, jwks_ttl=0.05, jwks_grace=0.2, jwks_timeout=0.3, jwks_backoff=5)
    token = _token("late")
    await verifier.verify(_token("first"))
    provider.mode = "hang"
    await asyncio.sleep(0.3)  # past TTL + grace
    with pytest.raises(Unauthorized) as refused:
        await verifier.verify(token)
    assert refused.value.code == "jwks_unavailable"
    started = time.monotonic()
    with pytest.raises(Unauthorized):  # backing off: refused at once, no new fetch
        await verifier.verify(_token("later"))
    assert time.monotonic() - started < 0.05
    async with (
        serve_asgi(build_app(verifier)) as base,
        aiohttp.ClientSession() as session,
        session.get(f"{base}/v1/whoami", headers={"Authorization": f"Bearer {token}"}) as r,
    ):
        assert r.status == 401
        assert r.headers["content-type"].startswith("application/problem+json")
        assert (await r.json())["status"] == 401


async def test_unknown_kids_refetch_once_per_cool_down_and_rotation_works(provider):
    verifier = _verifier(provider, jwks_min_refresh=0.3)
    await verifier.verify(_token("first"))
    await asyncio.sleep(0.3)
    forged = [_token(f"f{i}", ROTATED, kid=f"nope-{i}") for i in range(30)]
    results = await asyncio.gather(*(verifier.verify(t) for t in forged), return_exceptions=True)
    assert all(isinstance(r, Unauthorized) for r in results)
    assert len(provider.fetches) == 2  # one refetch for thirty unknown kids
    provider.keys.append(_jwk(ROTATED, "k2"))
    rotated = _token("after-rotation", ROTATED, kid="k2")
    with pytest.raises(Unauthorized):  # still inside the cool-down
        await verifier.verify(rotated)
    await asyncio.sleep(0.3)
    assert (await verifier.verify(rotated)).sub == "after-rotation"
    assert (await verifier.verify(_token("old-key-still-valid"))).sub == "old-key-still-valid"


async def test_a_broken_jwks_document_keeps_the_keys_in_hand(provider):
    verifier = _verifier(provider, jwks_ttl=0.0, jwks_grace=30)
    await verifier.verify(_token("first"))
    provider.keys = [{"kty": "RSA", "n": "garbage"}]
    await verifier.verify(_token("during"))
    await _until(lambda: len(provider.fetches) >= 2)
    await _until(lambda: verifier._jwks is not None and verifier._jwks._failures >= 1)
    assert (await verifier.verify(_token("after"))).sub == "after"
