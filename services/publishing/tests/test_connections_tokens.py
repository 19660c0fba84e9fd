"""Tokens after connecting: credentials, single-flight refresh, dead and revoked grants, the
verify and disconnect routes, and brand isolation."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest
from connections_testkit import connections_service
from pressroom_kit import projections
from pressroom_kit.db import connect, create_pool
from pressroom_publishing.connections.projections import CONNECTIONS
from pressroom_publishing.platforms.base import (
    ConnectionUnusable,
    RevokedError,
    TransientError,
)

pytestmark = pytest.mark.integration


async def test_credentials_refresh_shortly_before_expiry_and_work_on_the_platform(fresh_db):
    async with connections_service(fresh_db) as service:
        brand = uuid.uuid4()
        await service.connect(brand)
        source = service.source()
        first = await source.credentials(brand, "sandbox")
        assert service.provider.calls["refresh"] == 0
        assert "at-" not in repr(first)
        account = await service.app.state.platforms["sandbox"].verify(first)
        assert account.account_id == "acct-1"

        # Within a minute of expiry: refreshed first.
        assert first.expires_at is not None
        service.clock.now = first.expires_at - timedelta(seconds=30)
        second = await source.credentials(brand, "sandbox")
        assert second.access_token != first.access_token
        assert service.provider.calls["refresh"] == 1
        connection = await service.connection(brand)
        assert connection["last_refreshed_at"] is not None

        with pytest.raises(ConnectionUnusable) as missing:
            await source.credentials(uuid.uuid4(), "sandbox")
        assert missing.value.status == "missing"


async def test_two_replicas_refreshing_one_stale_token_call_the_platform_once(fresh_db):
    async with connections_service(fresh_db) as service:
        brand = uuid.uuid4()
        await service.connect(brand)
        other_pool = await create_pool(fresh_db.app_dsn, min_size=1, max_size=4)
        try:
            one, two = service.source(), service.source(other_pool)
            stale = await one.credentials(brand, "sandbox")
            service.provider.hold_refresh = asyncio.Event()
            racing = [
                asyncio.create_task(one.refresh_after_rejection(stale)),
                asyncio.create_task(two.refresh_after_rejection(stale)),
            ]
            async with asyncio.timeout(5):
                while service.provider.calls["refresh"] < 1:
                    await asyncio.sleep(0.01)
            await asyncio.sleep(0.2)  # the second replica is waiting on the row lock now
            service.provider.hold_refresh.set()
            a, b = await asyncio.gather(*racing)
        finally:
            await other_pool.close()
        assert service.provider.calls["refresh"] == 1
        assert a.access_token == b.access_token != stale.access_token
        rows = await service.owner("SELECT generation FROM platform_connection_tokens")
        assert rows[0]["generation"] == 2


async def test_a_passing_refresh_failure_leaves_the_connection_connected(fresh_db):
    async with connections_service(fresh_db) as service:
        brand = uuid.uuid4()
        await service.connect(brand)
        source = service.source()
        stale = await source.credentials(brand, "sandbox")
        service.provider.refresh_answers.append((503, {"error": "temporarily_unavailable"}))
        with pytest.raises(TransientError):
            await source.refresh_after_rejection(stale)
        connection = await service.connection(brand)
        assert connection["status"] == "connected"
        assert "refresh failed" in connection["last_error"]
        # The same failure again adds no event; a later success clears the error.
        service.provider.refresh_answers.append((503, {"error": "temporarily_unavailable"}))
        with pytest.raises(TransientError):
            await source.refresh_after_rejection(stale)
        events = await service.owner("SELECT type FROM events ORDER BY global_position")
        assert [e["type"] for e in events].count("ConnectionRefreshFailed") == 1
        fresh = await source.refresh_after_rejection(stale)
        assert fresh.access_token != stale.access_token
        assert (await service.connection(brand))["last_error"] is None
        assert await service.outbox_types() == ["publishing.connection.connected.v1"]


async def test_a_dead_refresh_token_expires_the_connection_with_its_event(fresh_db):
    async with connections_service(fresh_db) as service:
        brand = uuid.uuid4()
        await service.connect(brand)
        source = service.source()
        stale = await source.credentials(brand, "sandbox")
        service.provider.refresh_tokens.clear()  # the platform forgot the grant
        with pytest.raises(ConnectionUnusable) as dead:
            await source.refresh_after_rejection(stale)
        assert dead.value.status == "expired"
        connection = await service.connection(brand)
        assert connection["status"] == "expired"
        assert "refresh token is dead" in connection["last_error"]
        assert await service.outbox_types() == [
            "publishing.connection.connected.v1",
            "publishing.connection.expired.v1",
        ]
        with pytest.raises(ConnectionUnusable) as later:
            await source.credentials(brand, "sandbox")
        assert later.value.status == "expired"

        # Reconnecting brings the same connection back.
        again = await service.connect(brand)
        assert again["id"] == connection["id"] and again["status"] == "connected"


async def test_revoked_by_the_platform_is_revoked_with_its_event(fresh_db):
    async with connections_service(fresh_db) as service:
        brand = uuid.uuid4()
        await service.connect(brand)
        source = service.source()
        credentials = await source.credentials(brand, "sandbox")
        await source.mark_revoked(
            credentials, RevokedError("sandbox", "the user removed the app", status=401)
        )
        connection = await service.connection(brand)
        assert connection["status"] == "revoked"
        with pytest.raises(ConnectionUnusable) as gone:
            await source.credentials(brand, "sandbox")
        assert gone.value.status == "revoked"
        payloads = await service.owner(
            "SELECT headers->>'ce_type' AS t, payload FROM outbox ORDER BY id"
        )
        revoked = payloads[-1]
        assert revoked["t"] == "publishing.connection.revoked.v1"
        assert revoked["payload"]["reason"] == "the user removed the app"
        assert revoked["payload"]["revoked_by"] is None
        assert revoked["payload"]["platform"] == "sandbox"


async def test_verify_route_updates_and_detects_dead_tokens(fresh_db):
    async with connections_service(fresh_db) as service:
        brand = uuid.uuid4()
        connection = await service.connect(brand)
        service.clock.advance(120)
        status, body = await service.call(
            "POST", f"/v1/connections/{connection['id']}/verify", brand
        )
        assert status == 200, body
        assert body["status"] == "connected"
        assert body["last_verified_at"] > connection["last_verified_at"]
        assert "access_token" not in str(body)

        # The platform says the token expired: refreshed once and verified again.
        grant = next(iter(service.provider.grants.values()))
        grant.expires_at = grant.expires_at.replace(year=2000)
        status, body = await service.call(
            "POST", f"/v1/connections/{connection['id']}/verify", brand
        )
        assert status == 200 and body["status"] == "connected"
        assert service.provider.calls["refresh"] == 1

        # The user removed the app on the platform.
        service.provider.revoke_all()
        status, body = await service.call(
            "POST", f"/v1/connections/{connection['id']}/verify", brand
        )
        assert status == 200 and body["status"] == "revoked"
        assert "removed the app" in body["last_error"]
        assert (await service.outbox_types())[-1] == "publishing.connection.revoked.v1"


async def test_verify_while_the_platform_is_down_is_a_502(fresh_db):
    async with connections_service(fresh_db) as service:
        brand = uuid.uuid4()
        connection = await service.connect(brand)
        platform = service.app.state.platforms["sandbox"]
        platform.config["url"] = "http://127.0.0.1:9"  # nothing listens there
        status, body = await service.call(
            "POST", f"/v1/connections/{connection['id']}/verify", brand
        )
        assert status == 502 and body["type"].endswith("/platform_error")
        assert (await service.connection(brand))["status"] == "connected"


async def test_delete_revokes_on_the_platform_and_drops_the_tokens(fresh_db):
    async with connections_service(fresh_db) as service:
        brand = uuid.uuid4()
        connection = await service.connect(brand)
        credentials = await service.source().credentials(brand, "sandbox")
        status, _ = await service.call("DELETE", f"/v1/connections/{connection['id']}", brand)
        assert status == 204
        assert service.provider.calls["revoke"] == 1
        assert service.provider.grants[credentials.access_token].revoked
        assert await service.owner("SELECT * FROM platform_connection_tokens") == []
        _, listed = await service.call("GET", "/v1/connections", brand, role="viewer")
        assert listed["items"] == []
        status, _ = await service.call("DELETE", f"/v1/connections/{connection['id']}", brand)
        assert status == 404

        # A platform that cannot revoke right now: disconnected anyway.
        connection = await service.connect(brand)
        assert connection["id"] != credentials.connection_id
        service.provider.revoke_answers.append(503)
        status, _ = await service.call("DELETE", f"/v1/connections/{connection['id']}", brand)
        assert status == 204
        assert await service.owner("SELECT * FROM platform_connection_tokens") == []


async def test_another_brand_cannot_list_verify_or_delete(fresh_db):
    async with connections_service(fresh_db) as service:
        brand, intruder = uuid.uuid4(), uuid.uuid4()
        connection = await service.connect(brand)
        path = f"/v1/connections/{connection['id']}"
        status, listed = await service.call("GET", "/v1/connections", intruder, role="viewer")
        assert status == 200 and listed["items"] == []
        status, body = await service.call("POST", f"{path}/verify", intruder)
        assert status == 404 and body["type"].endswith("/no_connection")
        status, _ = await service.call("DELETE", path, intruder)
        assert status == 404
        assert (await service.connection(brand))["status"] == "connected"
        with pytest.raises(ConnectionUnusable):
            await service.source().credentials(intruder, "sandbox")
        # Roles: a viewer lists, only an admin verifies or deletes.
        status, _ = await service.call("POST", f"{path}/verify", brand, role="manager")
        assert status == 403
        status, _ = await service.call("DELETE", path, brand, role="viewer")
        assert status == 403
        status, _ = await service.call("GET", "/v1/connections", brand, role="viewer")
        assert status == 200


async def test_a_rejected_access_token_without_refresh_token_expires(fresh_db):
    async with connections_service(fresh_db) as service:
        service.provider.send_refresh_token = False
        brand = uuid.uuid4()
        await service.connect(brand)
        source = service.source()
        stale = await source.credentials(brand, "sandbox")
        assert stale.refresh_token is None
        with pytest.raises(ConnectionUnusable) as dead:
            await source.refresh_after_rejection(stale)
        assert dead.value.status == "expired"
        assert service.provider.calls["refresh"] == 0


async def test_the_projection_rebuilds_to_the_same_rows_and_leaves_the_tokens(fresh_db):
    async with connections_service(fresh_db) as service:
        live, dead, gone = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        for brand in (live, dead, gone):
            await service.connect(brand)
        source = service.source()
        stale = await source.credentials(live, "sandbox")
        await source.refresh_after_rejection(stale)
        connection = await service.connection(live)
        await service.call("POST", f"/v1/connections/{connection['id']}/verify", live)
        credentials = await source.credentials(dead, "sandbox")
        await source.mark_revoked(credentials, RevokedError("sandbox", "removed", status=401))
        connection = await service.connection(gone)
        await service.call("DELETE", f"/v1/connections/{connection['id']}", gone)
        tokens_before = await service.owner("SELECT * FROM platform_connection_tokens")

        conn = await connect(fresh_db.owner_dsn)
        try:
            await projections.rebuild(conn, CONNECTIONS)
            diffs = await projections.verify(conn, CONNECTIONS)
            assert all(d.equal for d in diffs), diffs
            await projections.swap(conn, CONNECTIONS)
        finally:
            await conn.close()
        assert await service.owner("SELECT * FROM platform_connection_tokens") == tokens_before
        assert (await service.source().credentials(live, "sandbox")).access_token


async def test_the_routes_are_in_the_openapi_document(fresh_db):
    async with connections_service(fresh_db) as service:
        async with service.http.get(f"{service.base}/schema/openapi.json") as response:
            assert response.status == 200
            document = await response.json()
        paths = document["paths"]
        assert "/v1/connections/{platform}/callback" in paths
        callback = paths["/v1/connections/{platform}/callback"]["get"]
        assert callback["security"] == [{}]
        assert {"200", "303", "400", "409", "502"} <= set(callback["responses"])
        assert "502" in paths["/v1/connections/{platform}/authorize"]["post"]["responses"]
        assert "/v1/connections/{connection_id}/verify" in paths
