"""What a client of the gateway sees: proxied answers carry each header once, and the API
docs page and everything it loads come from the gateway itself (it works offline)."""

from __future__ import annotations

import re

import aiohttp
import pytest
from contract_stack import running_stack

pytestmark = [pytest.mark.e2e]

ONCE = [
    "date",
    "x-request-id",
    "x-content-type-options",
    "x-frame-options",
    "referrer-policy",
    "cross-origin-resource-policy",
]


async def test_proxied_answers_carry_each_header_once_and_the_docs_page_is_self_contained(
    fresh_db, kafka_bootstrap, topics, tmp_path
):
    async with running_stack(fresh_db, kafka_bootstrap, tmp_path) as stack:
        headers = {"Authorization": f"Bearer {stack.token('admin')}", "X-Request-ID": "rid-7"}
        async with aiohttp.ClientSession() as http:
            for path in ("/v1/media", "/v1/webhooks/endpoints", "/v1/brands/current"):
                async with http.get(stack.base + path, headers=headers) as response:
                    assert response.status == 200, await response.text()
                    for name in ONCE:
                        values = response.headers.getall(name, [])
                        assert len(values) == 1, (path, name, values)
                        assert "," not in values[0] or name == "date", (path, name, values)
                    assert response.headers["x-request-id"] == "rid-7"

            async with http.get(f"{stack.base}/schema") as response:
                assert response.status == 200
                page = await response.text()
            assets = re.findall(r'(?:src|href)="([^"]+)"', page)
            assert assets and not re.search(r"https?://", page), page
            for asset in assets:
                async with http.get(stack.base + asset) as response:
                    assert response.status == 200, asset
                    assert len(await response.read()) > 100, asset
            async with http.get(f"{stack.base}/schema/openapi.json") as response:
                document = await response.json()
            assert document["openapi"].startswith("3.1")
