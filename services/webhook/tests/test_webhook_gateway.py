from __future__ import annotations

import uuid

import aiohttp
import pytest
from pressroom_gateway.app import create_app as create_gateway
from pressroom_gateway.settings import GatewaySettings
from pressroom_kit.testing.plugin import APP_ROLE
from pressroom_kit.testing.servers import serve_asgi
from webhook_testkit import SECRET, token, webhook_service

pytestmark = pytest.mark.e2e


async def test_brand_b_cannot_read_list_change_or_delete_brand_a_endpoints(
    fresh_db, kafka_bootstrap, topics
):
    brand_a, brand_b = uuid.uuid4(), uuid.uuid4()
    async with webhook_service(fresh_db, kafka_bootstrap) as service:
        gateway = create_gateway(
            GatewaySettings.model_validate(
                {
                    "database_url": fresh_db.owner_dsn,
                    "runtime_role": APP_ROLE,
                    "routes": {"/v1/webhooks": service.base},
                    "jwt_secret": SECRET,
                    "kafka_bootstrap_servers": kafka_bootstrap,
                }
            )
        )
        async with serve_asgi(gateway) as base, aiohttp.ClientSession() as http:

            async def call(method, path, brand, role="admin", **kwargs):
                headers = {"Authorization": f"Bearer {token(role, brand)}"}
                async with http.request(method, base + path, headers=headers, **kwargs) as r:
                    return r.status, await r.json(content_type=None)

            status, created = await call(
                "POST",
                "/v1/webhooks/endpoints",
                brand_a,
                json={"url": "http://localhost:9/h", "event_types": ["*"]},
            )
            assert status == 201
            path = f"/v1/webhooks/endpoints/{created['id']}"
            assert (await call("GET", path, brand_a))[0] == 200
            status, listing = await call("GET", "/v1/webhooks/endpoints", brand_b)
            assert status == 200 and listing["items"] == []
            assert (await call("GET", path, brand_b))[0] == 404
            assert (await call("PATCH", path, brand_b, json={"enabled": False}))[0] == 404
            assert (await call("DELETE", path, brand_b))[0] == 404
            assert (await call("POST", f"{path}/rotate-secret", brand_b))[0] == 404
            assert (await call("GET", "/v1/webhooks/endpoints", brand_a, "manager"))[0] == 403
            assert (await call("GET", path, brand_a))[1]["enabled"] is True
