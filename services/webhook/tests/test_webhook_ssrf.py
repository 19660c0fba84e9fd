from __future__ import annotations

import uuid

import pytest
from pressroom_kit.db import tenant_transaction
from test_webhook_delivery import brand_event, deliveries, make_endpoint, put_event
from webhook_testkit import receiver, webhook_service

pytestmark = pytest.mark.integration

# Ways to write a loopback or "any" address that some stacks connect to; aiohttp hands most of
# them to the OS without asking the resolver.
LITERAL_HOSTS = [
    "127.0.0.1",
    "[::ffff:127.0.0.1]",
    "[::ffff:7f00:1]",
    "[::1]",
    "0.0.0.0",
    "[::]",
    "2130706433",
    "0x7f.1",
    "0x7f000001",
    "0177.0.0.1",
    "127.1",
    "127.0.0.1.",
    "[64:ff9b::7f00:1]",
    "[2002:7f00:1::]",
    "[::127.0.0.1]",
]


async def test_literal_private_hosts_stored_on_an_endpoint_are_refused_at_delivery(
    fresh_db, kafka_bootstrap, topics
):
    brand = uuid.uuid4()
    dns = {"hooks.partner.example": "93.184.216.34"}
    async with (
        receiver() as hook,
        webhook_service(
            fresh_db, kafka_bootstrap, dns=dns, allow_private_targets=False, max_attempts=1
        ) as service,
    ):
        port = hook.url.split(":")[2].split("/")[0]
        urls = {}
        for n, host in enumerate(LITERAL_HOSTS):
            endpoint = await make_endpoint(service, brand, f"http://hooks.partner.example/{n}")
            urls[endpoint["id"]] = f"http://{host}:{port}/hooks/{n}"
        # Stored before the check existed (or written by hand): the URL is checked again.
        async with tenant_transaction(service.pool, brand) as conn:
            await conn.executemany(
                "UPDATE webhook_endpoints SET url = $2 WHERE id = $1::uuid",
                list(urls.items()),
            )
        await put_event(service, brand, brand_event(brand))
        while await service.worker.run_once():
            pass
        items = await deliveries(service, brand)
        assert len(items) == len(LITERAL_HOSTS)
        for item in items:
            assert item["status"] == "failed", urls[item["endpoint_id"]]
            assert "refused target" in item["last_error"], (urls[item["endpoint_id"]], item)
        assert hook.requests == []  # nothing reached the receiver
