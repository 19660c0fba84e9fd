"""The connection worker, stepped on a controllable clock: refresh ahead of expiry, periodic
verification, the expiring warning, and two replicas tending one connection once."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta

import pytest
from connections_testkit import Service, connections_service
from pressroom_kit.db import create_pool, tenant_transaction
from pressroom_kit.health import Heartbeats
from pressroom_publishing.platforms.base import ConnectionUnusable

pytestmark = pytest.mark.integration


async def expiry(service: Service) -> datetime:
    rows = await service.owner("SELECT expires_at FROM platform_connection_tokens")
    value: datetime = rows[0]["expires_at"]
    return value


async def test_the_worker_refreshes_before_expiry_and_not_earlier(fresh_db):
    async with connections_service(fresh_db) as service:
        brand = uuid.uuid4()
        await service.connect(brand)
        worker = service.worker()
        assert await worker.step() == 0  # 2 h left, refresh_ahead is 1 h
        expires = await expiry(service)
        service.clock.now = expires - timedelta(minutes=59)
        assert await worker.step() == 1
        assert service.provider.calls["refresh"] == 1
        assert await expiry(service) > expires
        connection = await service.connection(brand)
        assert connection["status"] == "connected"
        assert connection["last_refreshed_at"] is not None
        assert await worker.step() == 0  # the new token is not due
        lease = await service.owner("SELECT lease_token FROM platform_connection_tokens")
        assert lease[0]["lease_token"] is None  # released after tending


async def test_worker_refresh_failures_transient_then_dead(fresh_db):
    async with connections_service(fresh_db) as service:
        brand = uuid.uuid4()
        await service.connect(brand)
        worker = service.worker()
        service.clock.now = await expiry(service) - timedelta(minutes=30)
        service.provider.refresh_answers.append((500, {"error": "server_error"}))
        assert await worker.step() == 1
        connection = await service.connection(brand)
        assert connection["status"] == "connected" and "server_error" in connection["last_error"]
        # The next pass tries again; now the platform says the grant is gone.
        service.provider.refresh_answers.append(
            (400, {"error": "invalid_grant", "error_description": "grant revoked"})
        )
        assert await worker.step() == 1
        connection = await service.connection(brand)
        assert connection["status"] == "expired"
        assert (await service.outbox_types())[-1] == "publishing.connection.expired.v1"
        assert await worker.step() == 0  # a dead connection is not tended


async def test_the_worker_verifies_connections_not_checked_for_a_while(fresh_db):
    async with connections_service(fresh_db, verify_interval_s=3600) as service:
        service.provider.lifetime_s = 10 * 24 * 3600  # no refresh gets in the way
        brand = uuid.uuid4()
        connection = await service.connect(brand)
        worker = service.worker()
        service.clock.advance(1800)
        assert await worker.step() == 0
        service.clock.advance(1801)
        assert await worker.step() == 1
        assert service.provider.calls["me"] == 2  # the connect's and this one
        after = await service.connection(brand)
        assert after["last_verified_at"] > connection["last_verified_at"]
        assert await worker.step() == 0

        service.provider.revoke_all()
        service.clock.advance(3601)
        assert await worker.step() == 1
        assert (await service.connection(brand))["status"] == "revoked"


async def test_two_replicas_stepping_at_once_refresh_once(fresh_db):
    async with connections_service(fresh_db) as service:
        brands = [uuid.uuid4() for _ in range(3)]
        for brand in brands:
            await service.connect(brand)
        # Each replica may claim all three: both pools have room for three refreshes at once
        # (a quarter of the pool each), so the held refreshes all reach the platform.
        other_pool = await create_pool(fresh_db.app_dsn, min_size=1, max_size=12)
        try:
            one, two = service.worker(), service.worker(other_pool)
            service.clock.now = await expiry(service) - timedelta(minutes=10)
            service.provider.hold_refresh = asyncio.Event()
            steps = [asyncio.create_task(one.step()), asyncio.create_task(two.step())]
            async with asyncio.timeout(5):
                while service.provider.calls["refresh"] < 3:
                    await asyncio.sleep(0.01)
            await asyncio.sleep(0.2)
            service.provider.hold_refresh.set()
            counts = await asyncio.gather(*steps)
        finally:
            await other_pool.close()
        assert sum(counts) == 3
        assert service.provider.calls["refresh"] == 3  # once per connection
        rows = await service.owner("SELECT generation FROM platform_connection_tokens")
        assert [r["generation"] for r in rows] == [2, 2, 2]


async def test_heartbeat_and_run_loop(fresh_db):
    async with connections_service(fresh_db, connections_interval_s=0.05) as service:
        beats = Heartbeats()
        worker = service.worker()
        worker.heartbeats = beats
        beats.register(worker.beat_name, max_age=5)
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        async with asyncio.timeout(5):
            while not beats.healthy():
                await asyncio.sleep(0.01)
        stop.set()
        await task
        assert beats.status()["connections"]["ok"]


async def add_target(service: Service, brand: uuid.UUID, at: datetime) -> None:
    async with tenant_transaction(service.pool, brand) as conn:
        await conn.execute(
            "INSERT INTO publishing_targets (post_id, platform, brand_id, status, scheduled_at, "
            "due_at, client_reference, created_at, updated_at) "
            "VALUES ($1, 'sandbox', $2, 'pending', $3, $3, 'ref', now(), now())",
            uuid.uuid4(),
            brand,
            at,
        )


async def test_expiring_is_announced_once_when_scheduled_posts_would_fail(fresh_db):
    async with connections_service(fresh_db) as service:
        service.provider.send_refresh_token = False  # this token cannot be renewed
        brand = uuid.uuid4()
        await service.connect(brand)
        worker = service.worker()
        usable_until = await expiry(service)
        # Without scheduled posts there is nothing to warn about.
        assert await worker.step() == 1
        assert await service.outbox_types() == ["publishing.connection.connected.v1"]

        await add_target(service, brand, usable_until - timedelta(minutes=5))  # goes out in time
        assert await worker.step() == 1
        assert await service.outbox_types() == ["publishing.connection.connected.v1"]

        await add_target(service, brand, usable_until + timedelta(hours=5))
        await add_target(service, brand, usable_until + timedelta(hours=1))
        await add_target(service, brand, usable_until + timedelta(days=10))  # past the horizon
        other = uuid.uuid4()
        await add_target(service, other, usable_until + timedelta(hours=1))  # another brand's
        assert await worker.step() == 1
        service.clock.advance(60)
        assert await worker.step() == 1
        rows = await service.owner("SELECT headers->>'ce_type' AS t, payload FROM outbox")
        expiring = [r["payload"] for r in rows if r["t"] == "publishing.connection.expiring.v1"]
        assert len(expiring) == 1
        assert expiring[0]["affected_posts"] == 2
        assert datetime.fromisoformat(expiring[0]["usable_until"]) == usable_until
        assert datetime.fromisoformat(expiring[0]["first_affected_post_at"]) == (
            usable_until + timedelta(hours=1)
        )

        # Once the token has passed its expiry, the connection is expired.
        service.clock.now = usable_until + timedelta(seconds=1)
        assert await worker.step() == 1
        assert (await service.connection(brand))["status"] == "expired"
        assert (await service.outbox_types())[-1] == "publishing.connection.expired.v1"


async def test_a_replica_that_died_holding_the_lease_is_taken_over_when_it_ends(fresh_db):
    async with connections_service(fresh_db) as service:
        brand = uuid.uuid4()
        await service.connect(brand)
        service.clock.now = await expiry(service) - timedelta(minutes=30)
        dead, alive = service.worker(), service.worker()
        # The dead replica claimed (the lease is committed) and never tended or released.
        now = service.clock()
        claimed = await dead.leases.claim(
            service.pool,
            "SELECT * FROM publishing_connections_claim($1, $2, $3, $4, $5, $6)",
            10,
            now + timedelta(hours=1),
            now - timedelta(hours=6),
            now,
        )
        assert len(claimed) == 1
        assert await alive.step() == 0  # leased
        service.clock.advance(dead.leases.duration.total_seconds() + 1)
        assert await alive.step() == 1
        assert service.provider.calls["refresh"] == 1
        assert (await service.connection(brand))["status"] == "connected"


async def test_a_replica_dying_mid_refresh_releases_its_lock(fresh_db):
    async with connections_service(fresh_db) as service:
        brand = uuid.uuid4()
        await service.connect(brand)
        source = service.source()
        stale = await source.credentials(brand, "sandbox")
        service.provider.hold_refresh = asyncio.Event()
        dying = asyncio.create_task(source.refresh_after_rejection(stale))
        async with asyncio.timeout(5):
            while service.provider.calls["refresh"] < 1:
                await asyncio.sleep(0.01)
        dying.cancel()  # the process dies while the platform works on the refresh
        with pytest.raises(asyncio.CancelledError):
            await dying
        # The platform finishes it anyway: it rotated the tokens nobody stored.
        service.provider.hold_refresh.set()
        async with asyncio.timeout(5):
            while stale.refresh_token in service.provider.refresh_tokens:
                await asyncio.sleep(0.01)
        service.provider.hold_refresh = None
        # Another replica is not blocked by the dead one's lock; the stored refresh token is
        # dead now, so the connection is expired (documented), never used with a stale token.
        other_pool = await create_pool(fresh_db.app_dsn, min_size=1, max_size=2)
        try:
            other = service.source(other_pool)
            async with asyncio.timeout(5):
                with pytest.raises(ConnectionUnusable) as dead:
                    await other.refresh_after_rejection(stale)
        finally:
            await other_pool.close()
        assert dead.value.status == "expired"
        assert (await service.outbox_types())[-1] == "publishing.connection.expired.v1"


async def test_a_token_living_no_longer_than_the_refresh_horizon_is_not_refreshed_every_pass(
    fresh_db,
):
    """A 1-hour token against the 1-hour REFRESH_AHEAD_S: refreshed once it has lived half its
    life, not on every pass (it was, once a minute, in the local stack)."""
    async with connections_service(fresh_db) as service:
        service.provider.lifetime_s = 3600
        brand = uuid.uuid4()
        await service.connect(brand)
        worker = service.worker()
        expires = await expiry(service)
        for minutes in (0, 1, 10, 29):
            service.clock.now = expires - timedelta(minutes=60 - minutes)
            assert await worker.step() == 0, minutes
        assert service.provider.calls["refresh"] == 0
        service.clock.now = expires - timedelta(minutes=29)
        assert await worker.step() == 1
        assert service.provider.calls["refresh"] == 1
        renewed = await expiry(service)
        assert renewed > expires
        service.clock.now += timedelta(minutes=1)
        assert await worker.step() == 0  # the new token is young again
        assert service.provider.calls["refresh"] == 1
