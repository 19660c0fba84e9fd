"""The OAuth flow over real HTTP: authorize -> the provider's consent -> callback -> stored."""

from __future__ import annotations

import asyncio
import uuid
from urllib.parse import parse_qs, urlsplit

import pytest
from connections_testkit import connections_service

pytestmark = pytest.mark.integration


async def test_full_flow_connects_and_no_token_is_readable_anywhere(fresh_db):
    async with connections_service(fresh_db) as service:
        brand = uuid.uuid4()
        callback, state = await service.start_flow(brand)
        # The redirect URI is ours, through the public URL; PKCE went to the provider.
        assert callback.startswith(f"{service.base}/v1/connections/sandbox/callback?")
        assert parse_qs(urlsplit(callback).query)["state"] == [state]
        status, page, _ = await service.browser(callback)
        assert status == 200 and "Test Platform is connected" in page

        connection = await service.connection(brand)
        assert connection["status"] == "connected"
        assert connection["account_id"] == "acct-1"
        assert connection["account_name"] == "Test Account"
        assert connection["connected_by"] == "user-admin"
        assert connection["scopes"] == ["read", "write"]
        assert connection["token_expires_at"] is not None

        grant = next(iter(service.provider.grants.values()))
        secrets_ = [grant.access_token, grant.refresh_token]
        _, listed = await service.call("GET", "/v1/connections", brand, role="viewer")
        for token in secrets_:
            assert token not in str(listed)
        # The raw rows: sealed ciphertext only, which opens only with its own context.
        rows = await service.owner("SELECT * FROM platform_connection_tokens")
        assert len(rows) == 1
        raw = str(dict(rows[0]))
        for token in secrets_:
            assert token not in raw
        assert rows[0]["access_token_enc"].startswith("dev:")
        everything = await service.owner(
            "SELECT (SELECT string_agg(data::text || metadata::text, ' ') FROM events) AS e, "
            "(SELECT string_agg(payload::text, ' ') FROM outbox) AS o, "
            "(SELECT string_agg(t::text, ' ') FROM platform_connections t) AS c"
        )
        for token in secrets_:
            assert token not in str(dict(everything[0]))
        assert await service.outbox_types() == ["publishing.connection.connected.v1"]

        # A token copied onto another field does not open there.
        box = service.app.state.box
        sealed = rows[0]["access_token_enc"]
        assert box.decrypt(sealed, context=f"connection:{connection['id']}:access") == (
            grant.access_token
        )
        with pytest.raises(ValueError, match="does not decrypt"):
            box.decrypt(sealed, context=f"connection:{connection['id']}:refresh")
        with pytest.raises(ValueError, match="does not decrypt"):
            box.decrypt(sealed, context=f"connection:{uuid.uuid4()}:access")


async def test_return_url_gets_a_303_and_reconnect_keeps_the_refresh_token(fresh_db):
    async with connections_service(
        fresh_db, connect_return_url="https://app.example/settings?tab=connections"
    ) as service:
        brand = uuid.uuid4()
        callback, _ = await service.start_flow(brand)
        status, _, headers = await service.browser(callback)
        assert status == 303
        assert headers["Location"] == (
            "https://app.example/settings?tab=connections&platform=sandbox&status=connected"
        )
        first = await service.connection(brand)
        before = (await service.owner("SELECT * FROM platform_connection_tokens"))[0]

        # The platform sends no refresh token the second time: the old one stays.
        service.provider.send_refresh_token = False
        callback, _ = await service.start_flow(brand)
        status, _, _ = await service.browser(callback)
        assert status == 303
        again = await service.connection(brand)
        assert again["id"] == first["id"]
        after = (await service.owner("SELECT * FROM platform_connection_tokens"))[0]
        assert after["refresh_token_enc"] == before["refresh_token_enc"]
        assert after["access_token_enc"] != before["access_token_enc"]
        assert after["generation"] == before["generation"] + 1
        payloads = await service.owner(
            "SELECT payload->>'reconnected' AS r FROM outbox ORDER BY id"
        )
        assert [p["r"] for p in payloads] == ["false", "true"]

        # And the kept refresh token still works.
        source = service.source()
        stale = await source.credentials(brand, "sandbox")
        fresh = await source.refresh_after_rejection(stale)
        assert fresh.access_token != stale.access_token
        assert service.provider.calls["refresh"] == 1


async def test_forged_expired_replayed_and_mismatched_states_are_refused(fresh_db):
    async with connections_service(fresh_db) as service:
        brand = uuid.uuid4()
        callback, state = await service.start_flow(brand)
        code = parse_qs(urlsplit(callback).query)["code"][0]
        cb = f"{service.base}/v1/connections/sandbox/callback"

        forged = state[:-2] + ("AA" if not state.endswith("AA") else "BB")
        status, body, headers = await service.browser(f"{cb}?code={code}&state={forged}")
        assert status == 400 and "not one this service issued" in body
        assert headers["Content-Type"].startswith("application/problem+json")

        other_brand = state.split(".")
        other_brand[1] = uuid.uuid4().hex  # a signed part changed
        status, _, _ = await service.browser(f"{cb}?code={code}&state={'.'.join(other_brand)}")
        assert status == 400

        status, body, _ = await service.browser(
            f"{service.base}/v1/connections/mastodon/callback?code={code}&state={state}"
        )
        assert status == 400 and "issued for sandbox" in body

        status, body, _ = await service.browser(f"{cb}?state={state}")
        assert status == 400 and "code and state" in body

        status, _, _ = await service.browser(callback)
        assert status == 200
        status, body, _ = await service.browser(callback)  # replay
        assert status == 409 and "already used" in body
        assert service.provider.calls["exchange"] == 1

        # Expired: the clock passes the state's lifetime before the browser comes back.
        callback, _ = await service.start_flow(brand)
        service.clock.advance(service.app.state.settings.state_ttl_s + 1)
        status, body, _ = await service.browser(callback)
        assert status == 400 and "expired" in body
        assert service.provider.calls["exchange"] == 1


async def test_two_callbacks_with_one_state_make_one_connection(fresh_db):
    async with connections_service(fresh_db) as service:
        brand = uuid.uuid4()
        callback, _ = await service.start_flow(brand)
        results = await asyncio.gather(*(service.browser(callback) for _ in range(4)))
        statuses = sorted(r[0] for r in results)
        assert statuses == [200, 409, 409, 409]
        assert service.provider.calls["exchange"] == 1
        rows = await service.owner("SELECT id FROM platform_connections")
        assert len(rows) == 1
        assert await service.outbox_types() == ["publishing.connection.connected.v1"]


async def test_two_flows_racing_for_one_brand_end_in_one_connection(fresh_db):
    async with connections_service(fresh_db) as service:
        brand = uuid.uuid4()
        first, _ = await service.start_flow(brand)
        second, _ = await service.start_flow(brand)
        results = await asyncio.gather(service.browser(first), service.browser(second))
        assert [r[0] for r in results] == [200, 200]
        rows = await service.owner("SELECT id FROM platform_connections")
        assert len(rows) == 1
        assert len(await service.owner("SELECT * FROM platform_connection_tokens")) == 1


async def test_denied_consent_unknown_platforms_and_platform_errors(fresh_db):
    async with connections_service(fresh_db) as service:
        brand = uuid.uuid4()
        service.provider.deny = True
        callback, _ = await service.start_flow(brand)
        status, body, _ = await service.browser(callback)
        assert status == 400 and "not granted (access_denied): the user said no" in body
        service.provider.deny = False

        status, body = await service.call("POST", "/v1/connections/myspace/authorize", brand)
        assert status == 404 and body["type"].endswith("/unknown_platform")
        status, body = await service.call("POST", "/v1/connections/mastodon/authorize", brand)
        assert status == 422 and "not available" in body["detail"]
        status, body = await service.call("POST", "/v1/connections/bluesky/authorize", brand)
        assert status == 422 and "app password" in body["detail"]
        status, body = await service.call(
            "POST", "/v1/connections/sandbox/authorize", brand, role="manager"
        )
        assert status == 403
        # An instance is only for platforms that have instances (mastodon).
        status, body = await service.call(
            "POST",
            "/v1/connections/sandbox/authorize",
            brand,
            json={"instance_url": "https://social.example/"},
        )
        assert status == 422 and "leave out instance_url" in body["detail"], body
        rows = await service.owner("SELECT extra, code_verifier_enc FROM oauth_states")
        assert rows and all(r["extra"] == {} for r in rows)
        assert all(r["code_verifier_enc"].startswith("dev:") for r in rows)

        # The provider refuses the code (already used elsewhere): a 502 with its words.
        callback, _ = await service.start_flow(brand)
        service.provider.codes.clear()
        status, body, _ = await service.browser(callback)
        assert status == 502 and "unknown or used code" in body
        assert await service.owner("SELECT id FROM platform_connections") == []
