"""A brand admin's Mastodon ``instance_url`` never receives the installation's own app
credentials: an app is registered on every other instance first, and only its credentials
are sent there."""

from __future__ import annotations

import uuid
from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp import web
from connections_testkit import connections_service
from fakes import serve
from pressroom_publishing.platforms.mastodon import MastodonPlatform

pytestmark = pytest.mark.integration

SECRET = "the-installations-mastodon-client-secret"


async def test_instance_url_of_a_brand_admin_receives_the_configured_client_secret(fresh_db):
    """connections/api.py:172 takes any http(s) instance_url (loopback and plain http
    included) into the state's extra; mastodon.py:_setting then falls back to the configured
    single-instance client_id/client_secret, and exchange_code POSTs them to that URL. Any
    brand's admin thereby reads the installation's Mastodon app secret (and makes the
    service POST/GET any internal address)."""
    seen: list[dict[str, str]] = []

    async def token(request: web.Request) -> web.Response:
        seen.append(dict(await request.post()))  # type: ignore[arg-type]
        return web.json_response({"error": "invalid_grant"}, status=400)

    async def apps(request: web.Request) -> web.Response:
        return web.json_response({"id": "1", "client_id": "its-own-id", "client_secret": "its-own"})

    attacker = web.Application()
    attacker.router.add_post("/oauth/token", token)
    attacker.router.add_post("/api/v1/apps", apps)

    def platforms(http, provider, clock):
        config = {
            "instance_url": "https://mastodon.example",
            "client_id": "pressroom-app",
            "client_secret": SECRET,
        }
        return {"mastodon": MastodonPlatform(http, config)}

    async with (
        serve(attacker) as evil,
        connections_service(
            fresh_db, platforms=platforms, allow_insecure_instances=True
        ) as service,
    ):
        brand = uuid.uuid4()
        status, out = await service.call(
            "POST", "/v1/connections/mastodon/authorize", brand, json={"instance_url": evil}
        )
        assert status == 200, out
        assert out["authorization_url"].startswith(evil)
        state = parse_qs(urlsplit(out["authorization_url"]).query)["state"][0]
        status, _text, _ = await service.browser(
            f"{service.base}/v1/connections/mastodon/callback?code=anything&state={state}"
        )
        assert status >= 400
    assert seen and all(form.get("client_secret") == "its-own" for form in seen), seen
    leaked = [form for form in seen if form.get("client_secret") == SECRET]
    assert not leaked, f"the configured client secret went to {evil}: {leaked}"
