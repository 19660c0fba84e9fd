"""Single-flight token refresh under load (review finding 7): concurrent callers in one
process share one refresh and its outcome, a hanging token endpoint does not starve the
database pool, and another replica gives up on the row lock within its bound."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import asyncpg
import pytest
from connections_testkit import Service, connections_service
from pressroom_kit.db import create_pool, tenant_transaction
from pressroom_publishing.connections.credentials import RefreshUnavailable, VaultCredentials
from pressroom_publishing.platforms.base import Credentials, RevokedError, TransientError

pytestmark = pytest.mark.integration

CALLERS = 20


def small_source(service: Service, pool: asyncpg.Pool, **kwargs: float) -> VaultCredentials:
    state = service.app.state
    return VaultCredentials(
        pool, state.box, state.platforms, state.settings, service.clock, **kwargs
    )


@asynccontextmanager
async def small_pool(service: Service, size: int = 5) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(service.db.app_dsn, min_size=1, max_size=size)
    try:
        yield pool
    finally:
        await pool.close()


async def until_refresh_calls(service: Service, count: int) -> None:
    async with asyncio.timeout(5):
        while service.provider.calls["refresh"] < count:
            await asyncio.sleep(0.01)


def callers(
    source: VaultCredentials, brand: uuid.UUID, stale: Credentials
) -> list[asyncio.Task[Credentials]]:
    """Half ask for credentials (the token is due), half report the stale token rejected."""
    tasks = []
    for i in range(CALLERS):
        call = (
            source.credentials(brand, "sandbox") if i % 2 else source.refresh_after_rejection(stale)
        )
        tasks.append(asyncio.ensure_future(call))
    return tasks


async def test_twenty_callers_in_one_process_share_one_refresh(fresh_db):
    async with connections_service(fresh_db) as service, small_pool(service) as pool:
        brand = uuid.uuid4()
        await service.connect(brand)
        source = small_source(service, pool)
        stale = await source.credentials(brand, "sandbox")
        assert stale.expires_at is not None
        service.clock.now = stale.expires_at - timedelta(seconds=30)  # due for credentials()
        service.provider.hold_refresh = asyncio.Event()
        tasks = callers(source, brand, stale)
        await until_refresh_calls(service, 1)
        await asyncio.sleep(0.1)  # every caller has reached the refresh by now
        # The 19 waiters hold no pooled connection: the pool still serves others at once.
        async with asyncio.timeout(0.5), tenant_transaction(pool, uuid.uuid4()) as conn:
            assert await conn.fetchval("SELECT 1") == 1
        service.provider.hold_refresh.set()
        async with asyncio.timeout(5):
            results = await asyncio.gather(*tasks)
        assert service.provider.calls["refresh"] == 1
        tokens = {r.access_token for r in results}
        assert len(tokens) == 1 and stale.access_token not in tokens
        rows = await service.owner("SELECT generation FROM platform_connection_tokens")
        assert rows[0]["generation"] == 2


async def test_a_transient_failure_is_shared_by_every_waiter_without_calling_again(fresh_db):
    async with connections_service(fresh_db) as service, small_pool(service) as pool:
        brand = uuid.uuid4()
        await service.connect(brand)
        source = small_source(service, pool)
        stale = await source.credentials(brand, "sandbox")
        assert stale.expires_at is not None
        service.clock.now = stale.expires_at + timedelta(seconds=1)  # no old token to fall back on
        service.provider.hold_refresh = asyncio.Event()
        service.provider.refresh_answers.append((503, {"error": "temporarily_unavailable"}))
        tasks = callers(source, brand, stale)
        await until_refresh_calls(service, 1)
        await asyncio.sleep(0.1)
        service.provider.hold_refresh.set()
        started = time.monotonic()
        async with asyncio.timeout(5):
            outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        assert time.monotonic() - started < 1.0
        assert all(isinstance(o, RefreshUnavailable) for o in outcomes), outcomes
        assert {o.status for o in outcomes if isinstance(o, TransientError)} == {503}
        assert service.provider.calls["refresh"] == 1
        connection = await service.connection(brand)
        assert connection["status"] == "connected"
        # The next attempt is a new refresh, and it works.
        fresh = await source.refresh_after_rejection(stale)
        assert fresh.access_token != stale.access_token
        assert service.provider.calls["refresh"] == 2


async def test_a_hanging_token_endpoint_does_not_exhaust_the_pool(fresh_db):
    async with connections_service(fresh_db) as service, small_pool(service, 5) as pool:
        hanging = [uuid.uuid4() for _ in range(3)]
        healthy = uuid.uuid4()
        for brand in [*hanging, healthy]:
            await service.connect(brand)
        source = small_source(service, pool)
        stale = {brand: await source.credentials(brand, "sandbox") for brand in hanging}
        # The healthy brand's token is fresh: only the hanging brands need a refresh.
        service.provider.hold_refresh = asyncio.Event()
        tasks = [asyncio.ensure_future(source.refresh_after_rejection(s)) for s in stale.values()]
        tasks += [
            asyncio.ensure_future(source.refresh_after_rejection(stale[brand]))
            for brand in hanging
            for _ in range(CALLERS)
        ]
        await until_refresh_calls(service, 1)
        await asyncio.sleep(0.2)  # 63 refreshes of 3 connections are waiting now

        # Refresh leaders hold at most a quarter of the pool: the rest still work promptly.
        started = time.monotonic()
        async with asyncio.timeout(2):
            usable = await source.credentials(healthy, "sandbox")

            async def unrelated() -> int:
                async with tenant_transaction(pool, uuid.uuid4()) as conn:
                    return int(await conn.fetchval("SELECT 1 FROM pg_sleep(0.05)") or 1)

            assert await asyncio.gather(*(unrelated() for _ in range(4))) == [1, 1, 1, 1]
            status, body = await service.call("GET", "/v1/connections", healthy, role="viewer")
        assert time.monotonic() - started < 1.0
        assert status == 200 and body["items"][0]["status"] == "connected"
        assert usable.access_token
        assert service.provider.calls["refresh"] == 1  # one slot: the others queue in memory
        assert not any(t.done() for t in tasks)

        service.provider.hold_refresh.set()
        async with asyncio.timeout(5):
            results = await asyncio.gather(*tasks)
        assert service.provider.calls["refresh"] == len(hanging)
        assert len({r.access_token for r in results}) == len(hanging)


async def test_another_replica_gives_up_on_the_lock_within_its_bound(fresh_db):
    async with (
        connections_service(fresh_db) as service,
        small_pool(service) as pool_one,
        small_pool(service) as pool_two,
    ):
        brand = uuid.uuid4()
        await service.connect(brand)
        one = small_source(service, pool_one)
        two = small_source(service, pool_two, lock_wait_s=0.3)
        stale = await one.credentials(brand, "sandbox")
        service.provider.hold_refresh = asyncio.Event()
        leading = asyncio.ensure_future(one.refresh_after_rejection(stale))
        await until_refresh_calls(service, 1)

        started = time.monotonic()
        with pytest.raises(RefreshUnavailable) as busy:
            await two.refresh_after_rejection(stale)
        waited = time.monotonic() - started
        assert 0.25 < waited < 1.5, waited
        assert "refresh in progress elsewhere" in busy.value.message
        assert busy.value.retry_after_s == 0.3
        assert not leading.done()

        service.provider.hold_refresh.set()
        fresh = await leading
        # Once the first replica's refresh landed, the second gets it without a call.
        again = await two.refresh_after_rejection(stale)
        assert again.access_token == fresh.access_token != stale.access_token
        assert service.provider.calls["refresh"] == 1
        connection = await service.connection(brand)
        assert connection["status"] == "connected" and connection["last_error"] is None


async def test_marking_a_connection_waits_for_a_refresh_without_holding_the_pool(fresh_db):
    async with (
        connections_service(fresh_db) as service,
        small_pool(service, 2) as pool_one,
        small_pool(service, 1) as pool_two,
    ):
        brand = uuid.uuid4()
        await service.connect(brand)
        one = small_source(service, pool_one, max_refreshes=1)
        two = small_source(service, pool_two, lock_wait_s=0.2)
        stale = await one.credentials(brand, "sandbox")
        service.provider.hold_refresh = asyncio.Event()
        leading = asyncio.ensure_future(one.refresh_after_rejection(stale))
        await until_refresh_calls(service, 1)
        revoked = RevokedError("sandbox", "the user removed the app")
        # This replica: waits on its own refresh in memory; the other: lock attempts of
        # 0.2 s with its one pooled connection back in the pool between them.
        here = asyncio.ensure_future(one.mark_revoked(stale, revoked))
        there = asyncio.ensure_future(two.mark_revoked(stale, revoked))
        await asyncio.sleep(0.5)
        async with asyncio.timeout(1):
            for pool in (pool_one, pool_two):
                async with tenant_transaction(pool, uuid.uuid4()) as conn:
                    assert await conn.fetchval("SELECT 1") == 1
        assert not here.done() and not there.done()

        service.provider.hold_refresh.set()
        async with asyncio.timeout(5):
            await asyncio.gather(leading, here, there)
        assert service.provider.calls["refresh"] == 1
        assert (await service.connection(brand))["status"] == "revoked"
        assert (await service.outbox_types()).count("publishing.connection.revoked.v1") == 1
