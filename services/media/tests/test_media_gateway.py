"""Through the gateway: uploads stream through, files are served without a token, and one
brand can never see or touch another's media."""

from __future__ import annotations

import uuid

import aiohttp
import pytest
from media_samples import jpeg_bytes
from media_testkit import SECRET, form, media_service, token
from pressroom_gateway.app import create_app as create_gateway
from pressroom_gateway.settings import GatewaySettings
from pressroom_kit.testing.plugin import APP_ROLE
from pressroom_kit.testing.servers import serve_asgi

pytestmark = pytest.mark.e2e


async def test_brand_b_cannot_read_list_patch_or_delete_brand_a_media(
    fresh_db, kafka_bootstrap, topics, tmp_path
):
    brand_a, brand_b = uuid.uuid4(), uuid.uuid4()
    async with media_service(fresh_db, kafka_bootstrap, tmp_path) as media:
        gateway = create_gateway(
            GatewaySettings.model_validate(
                {
                    "database_url": fresh_db.owner_dsn,
                    "runtime_role": APP_ROLE,
                    "routes": {"/v1/media": media.base, "/media-files": media.base},
                    "jwt_secret": SECRET,
                    "kafka_bootstrap_servers": kafka_bootstrap,
                }
            )
        )
        async with serve_asgi(gateway) as base, aiohttp.ClientSession() as http:

            async def call(method, path, brand, role="manager", **kwargs):
                headers = {"Authorization": f"Bearer {token(role, brand)}"}
                async with http.request(method, base + path, headers=headers, **kwargs) as r:
                    return r.status, await r.json(content_type=None)

            data = jpeg_bytes(640, 480)
            status, asset = await call("POST", "/v1/media", brand_a, data=form(data, "a.jpg"))
            assert status == 201, asset
            path = f"/v1/media/{asset['id']}"

            # The signed URL works through the gateway without a token.
            url = asset["url"].replace(media.settings.public_base_url, base)
            async with http.get(url) as response:
                assert response.status == 200
                assert response.headers["Content-Type"] == "image/jpeg"
                assert int(response.headers["Content-Length"]) > 0

            assert (await call("GET", path, brand_a, "viewer"))[0] == 200
            status, listing = await call("GET", "/v1/media", brand_b, "viewer")
            assert status == 200 and listing["items"] == []
            assert (await call("GET", path, brand_b, "viewer"))[0] == 404
            assert (await call("GET", f"{path}/usage", brand_b, "viewer"))[0] == 404
            assert (await call("PATCH", path, brand_b, json={"filename": "x.jpg"}))[0] == 404
            assert (await call("DELETE", path, brand_b))[0] == 404
            assert (await call("DELETE", f"{path}?force=true", brand_b))[0] == 404
            # The same bytes in brand B are B's own asset: nothing says A has them.
            status, twin = await call("POST", "/v1/media", brand_b, data=form(data, "b.jpg"))
            assert status == 201 and twin["duplicate"] is False and twin["id"] != asset["id"]
            _, quota_b = await call("GET", "/v1/media/quota", brand_b, "viewer")
            assert quota_b["used_bytes"] == len(data)

            _, still = await call("GET", path, brand_a, "viewer")
            assert still["filename"] == "a.jpg"
            assert (await call("POST", "/v1/media", brand_a, "viewer", data=form(data)))[0] == 403
            async with http.get(f"{base}/v1/media") as response:
                assert response.status == 401
