"""Connections against the built-in sandbox platform (a real OAuth 2 server with a consent
page, PKCE, rotating refresh tokens and revocation), driven over HTTP."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from connections_testkit import FakeClock, Service, connections_service
from pressroom_kit.db import create_pool
from pressroom_kit.testing.plugin import TestDatabase
from pressroom_publishing.platforms.base import AuthExpiredError, ConnectionUnusable, RevokedError
from pressroom_publishing.platforms.sandbox import SandboxPlatform
from sandbox_testkit import SandboxClient, running_sandbox, sandbox_config

pytestmark = pytest.mark.integration


@asynccontextmanager
async def with_sandbox(
    db: TestDatabase, **overrides: object
) -> AsyncIterator[tuple[Service, SandboxClient]]:
    clock = FakeClock()
    async with running_sandbox(clock) as (sandbox_url, _):

        def platforms(http, provider, clock):  # type: ignore[no-untyped-def]
            return {"sandbox": SandboxPlatform(http, sandbox_config(sandbox_url, clock=clock))}

        async with connections_service(db, platforms=platforms, clock=clock, **overrides) as s:
            yield s, SandboxClient(sandbox_url, s.http)


async def connect(service: Service, client: SandboxClient, brand: uuid.UUID) -> dict:
    status, out = await service.call("POST", "/v1/connections/sandbox/authorize", brand)
    assert status == 200, out
    consent = await client.authorize(out["authorization_url"], username=f"u{brand.hex[:6]}")
    assert consent.location.startswith(f"{service.base}/v1/connections/sandbox/callback?")
    status, page, _ = await service.browser(consent.location)
    assert status == 200, page
    return await service.connection(brand)


async def test_sandbox_consent_connects_and_the_token_works(fresh_db):
    async with with_sandbox(fresh_db) as (service, client):
        brand = uuid.uuid4()
        connection = await connect(service, client, brand)
        assert connection["status"] == "connected"
        assert connection["account_id"]
        assert connection["extra"]["username"] == f"u{brand.hex[:6]}"
        credentials = await service.source().credentials(brand, "sandbox")
        _, listed = await service.call("GET", "/v1/connections", brand, role="viewer")
        assert credentials.access_token not in str(listed)
        assert str(credentials.refresh_token) not in str(listed)
        account = await service.app.state.platforms["sandbox"].verify(credentials)
        assert account.account_id == connection["account_id"]
        raw = str(
            [dict(r) for r in await service.owner("SELECT * FROM platform_connection_tokens")]
        )
        assert credentials.access_token not in raw
        assert credentials.refresh_token and credentials.refresh_token not in raw

        # Denied consent comes back as access_denied: a clear 400.
        status, out = await service.call("POST", "/v1/connections/sandbox/authorize", brand)
        denied = await client.authorize(out["authorization_url"], decision="deny")
        status, body, _ = await service.browser(denied.location)
        assert status == 400 and "access_denied" in body


async def test_sandbox_rotation_refreshes_once_across_two_replicas(fresh_db):
    async with with_sandbox(fresh_db, refresh_ahead_s=600) as (service, client):
        brand = uuid.uuid4()
        await connect(service, client, brand)
        other_pool = await create_pool(fresh_db.app_dsn, min_size=1, max_size=4)
        try:
            before = (await client.calls()).get("token", 0)
            service.clock.advance(3600 - 300)  # five minutes before expiry
            counts = await asyncio.gather(
                service.worker().step(), service.worker(other_pool).step()
            )
            assert sorted(counts) == [0, 1]
            assert (await client.calls()).get("token", 0) == before + 1
            # The rotated token works; the stale one from before was replaced.
            one, two = service.source(), service.source(other_pool)
            stale = await one.credentials(brand, "sandbox")
            a, b = await asyncio.gather(
                one.refresh_after_rejection(stale), two.refresh_after_rejection(stale)
            )
            assert a.access_token == b.access_token != stale.access_token
            assert (await client.calls()).get("token", 0) == before + 2
        finally:
            await other_pool.close()
        assert (await service.connection(brand))["status"] == "connected"


async def test_sandbox_revoked_and_expired_grants(fresh_db):
    async with with_sandbox(fresh_db) as (service, client):
        brand = uuid.uuid4()
        connection = await connect(service, client, brand)
        await client.revoke_tokens()
        status, body = await service.call(
            "POST", f"/v1/connections/{connection['id']}/verify", brand
        )
        assert status == 200 and body["status"] == "revoked"

        other = uuid.uuid4()
        await connect(service, client, other)
        await client.expire_tokens(refresh=True)
        stale = await service.source().credentials(other, "sandbox")
        with pytest.raises(ConnectionUnusable) as dead:
            await service.source().refresh_after_rejection(stale)
        assert dead.value.status == "expired"
        assert (await service.outbox_types())[-2:] == [
            "publishing.connection.connected.v1",
            "publishing.connection.expired.v1",
        ]


async def test_sandbox_disconnect_revokes_the_grant(fresh_db):
    async with with_sandbox(fresh_db) as (service, client):
        brand = uuid.uuid4()
        connection = await connect(service, client, brand)
        credentials = await service.source().credentials(brand, "sandbox")
        status, _ = await service.call("DELETE", f"/v1/connections/{connection['id']}", brand)
        assert status == 204
        assert (await client.calls()).get("revoke", 0) == 1
        platform = service.app.state.platforms["sandbox"]
        with pytest.raises((RevokedError, AuthExpiredError)):
            await platform.verify(credentials)
