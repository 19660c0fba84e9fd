"""The connections with the real adapters (``platforms/mastodon.py``, ``platforms/bluesky.py``)
and their fakes (``tests/fakes``): a brand connects through the service, and what the vault
hands to publishing reaches the right server with what the adapter needs."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import pytest
from connections_testkit import (
    FakeClock,
    OAuthProvider,
    ProviderPlatform,
    Service,
    connections_service,
)
from fakes import publish_request, serve
from fakes.bluesky import DID, HANDLE, PASSWORD, FakeBluesky
from fakes.mastodon import ACCOUNT_ID, FakeMastodon
from pressroom_publishing.connections.app_password import AppPasswordPlatform
from pressroom_publishing.connections.instances import InstanceAppPlatform
from pressroom_publishing.platforms.base import Platform, PlatformHTTP
from pressroom_publishing.platforms.bluesky import BlueskyPlatform
from pressroom_publishing.platforms.mastodon import MastodonPlatform

pytestmark = pytest.mark.integration


@asynccontextmanager
async def service_with_real_adapters(
    db: Any,
) -> AsyncIterator[tuple[Service, list[FakeMastodon], FakeBluesky]]:
    async with AsyncExitStack() as stack:
        instances = []
        for _ in range(2):
            fake = FakeMastodon()
            fake.base_url = await stack.enter_async_context(serve(fake.app()))
            instances.append(fake)
        pds = FakeBluesky()
        pds.base_url = await stack.enter_async_context(serve(pds.app()))

        def platforms(
            http: PlatformHTTP, provider: OAuthProvider, clock: FakeClock
        ) -> dict[str, Platform]:
            return {
                "mastodon": MastodonPlatform(http, {"media_poll_s": 0.01}),
                "bluesky": BlueskyPlatform(http, {"service_url": pds.base_url}),
                "sandbox": ProviderPlatform(http, {"url": provider.url, "clock": clock}),
            }

        service = await stack.enter_async_context(
            connections_service(db, platforms=platforms, allow_insecure_instances=True)
        )
        yield service, instances, pds


async def mastodon_connect(service: Service, brand: uuid.UUID, instance: str) -> dict[str, Any]:
    status, out = await service.call(
        "POST", "/v1/connections/mastodon/authorize", brand, json={"instance_url": instance}
    )
    assert status == 200, out
    async with service.http.get(out["authorization_url"], allow_redirects=False) as consent:
        assert consent.status == 302, await consent.text()
        callback = consent.headers["Location"]
    status, page, _ = await service.browser(callback)
    assert status == 200 and "Mastodon is connected" in page, page
    return await service.connection(brand)


async def test_mastodon_on_two_instances_publishes_to_each_ones_own(fresh_db):
    async with service_with_real_adapters(fresh_db) as (service, (one, two), _):
        a, b = uuid.uuid4(), uuid.uuid4()
        conn_a = await mastodon_connect(service, a, one.base_url)
        conn_b = await mastodon_connect(service, b, two.base_url)
        await mastodon_connect(service, uuid.uuid4(), one.base_url)
        assert (len(one.apps), len(two.apps)) == (1, 1)  # one app per instance, shared
        assert conn_a["account_id"] == ACCOUNT_ID
        assert conn_a["extra"]["instance_url"] == one.base_url
        assert conn_b["extra"]["instance_url"] == two.base_url
        assert "client_secret" not in conn_a["extra"]

        mastodon = service.app.state.platforms["mastodon"]
        assert isinstance(mastodon, InstanceAppPlatform)
        assert not isinstance(mastodon, AppPasswordPlatform)
        source = service.source()
        for brand, fake in ((a, one), (b, two)):
            credentials = await source.credentials(brand, "mastodon")
            published = await mastodon.publish(credentials, publish_request(f"hello {brand}"))
            assert published.platform_post_id in fake.statuses
        assert (len(one.statuses), len(two.statuses)) == (1, 1)

        status, verified = await service.call("POST", f"/v1/connections/{conn_b['id']}/verify", b)
        assert status == 200 and verified["status"] == "connected", verified
        tokens_before = len(two.tokens)
        status, _ = await service.call("DELETE", f"/v1/connections/{conn_b['id']}", b)
        assert status == 204
        assert len(two.tokens) == tokens_before - 1  # revoked there, with that app's secret


async def test_bluesky_connects_with_an_app_password_and_refreshes(fresh_db):
    async with service_with_real_adapters(fresh_db) as (service, _, pds):
        brand = uuid.uuid4()
        status, connection = await service.call(
            "POST",
            "/v1/connections/bluesky/app-password",
            brand,
            json={"identifier": HANDLE, "app_password": PASSWORD, "service_url": pds.base_url},
        )
        assert status == 201, connection
        assert connection["account_id"] == DID
        assert connection["extra"]["service_url"] == pds.base_url
        assert PASSWORD not in await service.database_text()

        status, body = await service.call(
            "POST",
            "/v1/connections/bluesky/app-password",
            brand,
            json={"identifier": HANDLE, "app_password": "zzzz-zzzz-zzzz-zzzz"},
        )
        assert status == 422 and "Invalid identifier or password" in body["detail"], body

        source = service.source()
        credentials = await source.credentials(brand, "bluesky")
        refreshed = await source.refresh_after_rejection(credentials)
        assert refreshed.refresh_token != credentials.refresh_token
        assert pds.refresh[credentials.refresh_token or ""] is False  # rotated away
        bluesky = service.app.state.platforms["bluesky"]
        assert isinstance(bluesky, AppPasswordPlatform)
        assert not isinstance(bluesky, InstanceAppPlatform)
        published = await bluesky.publish(refreshed, publish_request("hello from pressroom"))
        assert published.platform_post_id
        status, verified = await service.call(
            "POST", f"/v1/connections/{connection['id']}/verify", brand
        )
        assert status == 200 and verified["status"] == "connected", verified


async def test_a_threads_connection_is_renewed_by_the_worker_before_its_60_days_end(fresh_db):
    """Threads has no refresh token: the long-lived token renews itself. The vault must still
    count the connection as refreshable, or it would die after 60 days."""
    from datetime import timedelta

    from fakes.threads import APP_ID, APP_SECRET, FakeThreads
    from pressroom_publishing.platforms.threads import ThreadsPlatform

    fake = FakeThreads()
    async with serve(fake.app()) as url:
        fake.base_url = url

        def platforms(
            http: PlatformHTTP, provider: OAuthProvider, clock: FakeClock
        ) -> dict[str, Platform]:
            config = {
                "graph_url": url,
                "auth_url": f"{url}/oauth/authorize",
                "client_id": APP_ID,
                "client_secret": APP_SECRET,
                "clock": clock,
            }
            return {"threads": ThreadsPlatform(http, config)}

        async with connections_service(fresh_db, platforms=platforms) as service:
            brand = uuid.uuid4()
            status, out = await service.call("POST", "/v1/connections/threads/authorize", brand)
            assert status == 200, out
            async with service.http.get(out["authorization_url"], allow_redirects=False) as consent:
                assert consent.status == 302, await consent.text()
                callback = consent.headers["Location"].split("#", 1)[0]
            status, page, _ = await service.browser(callback)
            assert status == 200, page
            first = await service.source().credentials(brand, "threads")
            assert fake.tokens[first.access_token] == "long"

            service.clock.advance(timedelta(days=59, hours=23, minutes=30).total_seconds())
            await service.worker().step()
            renewed = await service.source().credentials(brand, "threads")
            assert renewed.access_token != first.access_token
            assert fake.tokens[renewed.access_token] == "long"
            connection = await service.connection(brand)
            assert connection["status"] == "connected", connection
