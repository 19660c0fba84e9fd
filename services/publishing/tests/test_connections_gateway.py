"""Connecting through the real gateway: the API with a token, the platform's redirect back to
the callback without one (the gateway's public path), as a browser and the sandbox see it."""

from __future__ import annotations

import uuid

import pytest
from connections_testkit import SECRET, FakeClock, connections_service, token
from pressroom_gateway.app import create_app as create_gateway
from pressroom_gateway.settings import GatewaySettings
from pressroom_kit.embedded import free_port
from pressroom_kit.testing.plugin import APP_ROLE
from pressroom_kit.testing.servers import serve_asgi
from pressroom_publishing.platforms.sandbox import SandboxPlatform
from sandbox_testkit import SandboxClient, running_sandbox, sandbox_config

pytestmark = pytest.mark.e2e


async def test_the_oauth_flow_through_the_gateway(fresh_db, kafka_bootstrap):
    clock = FakeClock()
    gateway_port = free_port()
    public = f"http://127.0.0.1:{gateway_port}"
    async with running_sandbox(clock) as (sandbox_url, _):

        def platforms(http, provider, clock):  # type: ignore[no-untyped-def]
            return {"sandbox": SandboxPlatform(http, sandbox_config(sandbox_url, clock=clock))}

        async with connections_service(
            fresh_db, platforms=platforms, clock=clock, public_url=public
        ) as service:
            gateway = create_gateway(
                GatewaySettings.model_validate(
                    {
                        "database_url": fresh_db.owner_dsn,
                        "runtime_role": APP_ROLE,
                        "routes": {"/v1/connections": service.base},
                        "jwt_secret": SECRET,
                        "kafka_bootstrap_servers": kafka_bootstrap,
                    }
                )
            )
            async with serve_asgi(gateway, port=gateway_port, proxy_headers=False):
                brand = uuid.uuid4()
                headers = {"Authorization": f"Bearer {token('admin', brand)}"}
                http = service.http
                async with http.post(
                    f"{public}/v1/connections/sandbox/authorize", headers=headers
                ) as answer:
                    assert answer.status == 200, await answer.text()
                    started = await answer.json()
                consent = await SandboxClient(sandbox_url, http).authorize(
                    started["authorization_url"]
                )
                assert consent.location.startswith(f"{public}/v1/connections/sandbox/callback?")
                async with http.get(consent.location, allow_redirects=False) as back:
                    assert back.status == 200, await back.text()
                    assert "is connected" in await back.text()
                # Without a token the gateway still guards everything else.
                async with http.get(f"{public}/v1/connections") as anonymous:
                    assert anonymous.status == 401
                async with http.get(f"{public}/v1/connections", headers=headers) as listed:
                    body = await listed.json()
                assert [c["status"] for c in body["items"]] == ["connected"]
