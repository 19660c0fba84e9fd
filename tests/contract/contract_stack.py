"""The gateway with media, publishing and webhook behind it, on real ports, with one brand
and tokens."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from analytics_testkit import analytics_settings
from approval_testkit import approval_settings
from gateway_testkit import gateway_settings, running_gateway
from media_testkit import media_service
from pressroom_analytics.app import create_app as create_analytics
from pressroom_analytics.service import SERVICE as ANALYTICS
from pressroom_approval.app import create_app as create_approval
from pressroom_approval.service import SERVICE as APPROVAL
from pressroom_kit.auth import mint_token
from pressroom_kit.embedded import free_port
from pressroom_kit.testing.plugin import TestDatabase
from pressroom_kit.testing.servers import serve_asgi
from pressroom_publishing.app import create_app as create_publishing
from publishing_testkit import publishing_settings
from webhook_testkit import webhook_service

SECRET = "contract-test-secret-contract-test-secret"


class EveryNameIsLocal(dict[str, str]):
    """DNS for the webhook service: every host name resolves to 127.0.0.1, so an endpoint
    URL that the document allows is never refused for a name this offline machine cannot
    resolve (the tests never deliver to it)."""

    def get(self, key: str, default: str | None = None) -> str:  # type: ignore[override]
        return "127.0.0.1"

    def __bool__(self) -> bool:
        return True  # the testkit takes an empty table as "none given"


@dataclass
class Stack:
    base: str
    brand_id: uuid.UUID
    admin_sub: str

    def token(self, role: str = "admin", brand: uuid.UUID | None = None) -> str:
        return mint_token(
            SECRET,
            sub=self.admin_sub,
            role=role,  # type: ignore[arg-type]
            brand_id=brand or self.brand_id,
        )


@asynccontextmanager
async def running_stack(db: TestDatabase, kafka: str, data_dir: Path) -> AsyncIterator[Stack]:
    port = free_port()
    publishing = create_publishing(
        publishing_settings(
            db,
            kafka,
            port=port,
            jwt_secret=SECRET,
            public_url=f"http://127.0.0.1:{port}",
            sandbox_enabled=True,  # as make run has it: the sandbox is a connectable platform
        )
    )
    approval = create_approval(approval_settings(db, kafka, jwt_secret=SECRET))
    analytics = create_analytics(analytics_settings(db, kafka, jwt_secret=SECRET))
    async with (
        media_service(db, kafka, data_dir, jwt_secret=SECRET) as media,
        webhook_service(db, kafka, dns=EveryNameIsLocal(), jwt_secret=SECRET) as webhook,
        serve_asgi(publishing, port=port) as publishing_base,
        serve_asgi(approval) as approval_base,
        serve_asgi(analytics) as analytics_base,
    ):
        routes = {
            "/v1/media": media.base,
            "/media-files": media.base,
            "/v1/posts": publishing_base,
            "/v1/connections": publishing_base,
            "/v1/calendar": publishing_base,
            "/sandbox-platform": publishing_base,
            "/v1/webhooks": webhook.base,
            **{prefix: approval_base for prefix in APPROVAL.prefixes},
            **{prefix: analytics_base for prefix in ANALYTICS.prefixes},
        }
        settings = gateway_settings(
            db,
            kafka,
            routes,
            jwt_secret=SECRET,
            read_timeout_s=15.0,
            rate_limit_user=100_000,
            rate_limit_brand=100_000,
        )
        async with running_gateway(settings) as base, aiohttp.ClientSession() as http:
            admin = str(uuid.uuid4())
            onboarding = mint_token(SECRET, sub=admin, role="viewer")  # type: ignore[arg-type]
            async with http.post(
                f"{base}/v1/brands",
                json={"name": "Contract"},
                headers={"Authorization": f"Bearer {onboarding}"},
            ) as response:
                assert response.status == 201, await response.text()
                brand_id = uuid.UUID((await response.json())["id"])
            await _merged(http, base, expected=6)
            yield Stack(base, brand_id, admin)


async def _merged(http: aiohttp.ClientSession, base: str, expected: int) -> None:
    """Wait until the gateway's document has every service's routes."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        async with http.get(f"{base}/schema/openapi.json") as response:
            paths = (await response.json())["paths"]
        owners = {p.split("/")[2] if p.startswith("/v1/") else p.split("/")[1] for p in paths}
        wanted = {"media", "webhooks", "media-files", "posts", "connections", "calendar"}
        if wanted | {"approvals", "audit-logs", "analytics", "review"} <= owners:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"the merged document never had every service ({expected})")
