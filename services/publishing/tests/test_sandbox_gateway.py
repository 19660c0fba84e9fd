"""The sandbox behind the real gateway with its default public paths: a browser reaches the
consent page without a Pressroom token, and the whole OAuth flow works through it."""

from __future__ import annotations

import uuid

import aiohttp
import pytest
from pressroom_gateway.app import create_app as create_gateway
from pressroom_gateway.settings import DEFAULT_PUBLIC, DEFAULT_ROUTES, GatewaySettings
from pressroom_kit.testing.plugin import APP_ROLE
from pressroom_kit.testing.servers import serve_asgi
from pressroom_publishing.platforms.base import PostContent, PublishRequest
from pressroom_publishing.sandbox import DEFAULT_CLIENT_ID
from sandbox_testkit import REDIRECT_URI, SandboxClient, connect, running_sandbox, sandbox_platform

pytestmark = pytest.mark.e2e

SECRET = "sandbox-gateway-test-secret-sandbox-gateway"


def test_the_gateway_defaults_send_the_sandbox_to_publishing_publicly():
    assert DEFAULT_ROUTES["/sandbox-platform"] == "http://127.0.0.1:8102"
    assert r"^/sandbox-platform/(?!_control(/|$))" in DEFAULT_PUBLIC


async def test_the_consent_page_and_the_flow_through_the_gateway(fresh_db, kafka_bootstrap):
    async with running_sandbox() as (sandbox_base, state):
        backend = sandbox_base.removesuffix("/sandbox-platform")
        gateway = create_gateway(
            GatewaySettings.model_validate(
                {
                    "database_url": fresh_db.owner_dsn,
                    "runtime_role": APP_ROLE,
                    "routes": {"/sandbox-platform": backend},
                    "jwt_secret": SECRET,
                    "kafka_bootstrap_servers": kafka_bootstrap,
                }
            )
        )
        async with serve_asgi(gateway) as public, aiohttp.ClientSession() as session:
            browser_base = f"{public}/sandbox-platform"
            async with session.get(
                f"{browser_base}/oauth/authorize",
                params={"client_id": DEFAULT_CLIENT_ID, "redirect_uri": REDIRECT_URI},
            ) as page:
                assert page.status == 200
                assert "Authorize" in await page.text()
            # Browser through the gateway, server-to-server calls straight to the sandbox.
            platform = sandbox_platform(sandbox_base, session, auth_url=browser_base)
            credentials = await connect(platform, SandboxClient(sandbox_base, session))
            assert state.call_counts()["authorize"] == 3  # the page twice, the decision once
            published = await platform.publish(
                credentials,
                PublishRequest(post_id=uuid.uuid4(), reference="g1", content=PostContent("hi")),
            )
            async with session.get(f"{browser_base}/v1/posts/{published.platform_post_id}") as r:
                assert r.status == 401  # not the gateway's 401: the sandbox wants its token
                assert (await r.json())["error"]["code"] == "unauthorized"
            # The control API (make calls fail, expire tokens) is not public at the gateway.
            async with session.get(f"{browser_base}/_control/posts") as r:
                assert r.status == 401
                assert r.headers["Content-Type"].startswith("application/problem+json")
            async with session.post(f"{browser_base}/_control/reset") as r:
                assert r.status == 401
