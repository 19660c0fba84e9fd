from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest
from pressroom_kit.db import tenant_transaction
from pressroom_webhook.delivery import DeliveryWorker
from pressroom_webhook.handlers import enqueue
from test_webhook_delivery import brand_event, deliveries, make_endpoint, outbox_types, put_event
from webhook_testkit import receiver, webhook_service

pytestmark = pytest.mark.integration


def utcnow() -> datetime:
    return datetime.now(UTC)


async def attempts_of(service, brand, delivery_id):
    status, body = await service.call("GET", f"/v1/webhooks/events/{delivery_id}/attempts", brand)
    assert status == 200
    return body


async def test_a_worker_stalled_past_its_lease_does_not_record_its_late_outcome(
    fresh_db, kafka_bootstrap, topics
):
    brand = uuid.uuid4()
    async with (
        receiver() as hook,
        webhook_service(fresh_db, kafka_bootstrap, lease_s=60, timeout_s=5) as service,
    ):
        service.worker.random_fraction = lambda: 0.5
        await make_endpoint(service, brand, hook.url)
        await put_event(service, brand, brand_event(brand))
        first = service.worker
        second = DeliveryWorker(first.pool, first.box, first.settings, clock=service.clock)
        held = asyncio.Event()
        hook.answer(500, delay=held)  # the first worker's send hangs, then fails
        hook.answer(200)  # the second worker's send succeeds
        stalled = asyncio.create_task(first.run_once())
        await hook.wait_for_requests(1)
        # The first worker stalls past its lease (its keeper with it: the clock jumps by more
        # than a lease before its first renewal); the second one takes the delivery over.
        service.clock.advance(61)
        assert await second.run_once() == 1
        await second.close()
        held.set()
        assert await stalled == 1
        [delivery] = await deliveries(service, brand)
        assert delivery["status"] == "delivered" and delivery["attempts"] == 1
        attempts = await attempts_of(service, brand, delivery["id"])
        assert [(a["attempt"], a["status"], a["response_code"]) for a in attempts] == [
            (1, "succeeded", 200)
        ]
        # The receiver saw the same message twice (it dedupes on webhook-id), nothing more.
        assert len(hook.requests) == 2
        assert len({r["headers"]["webhook-id"] for r in hook.requests}) == 1
        service.clock.advance(3600)
        assert await service.worker.run_once() == 0  # no third send scheduled
        assert len(hook.requests) == 2
        types = await outbox_types(service)
        assert types.count("webhook.delivery.succeeded.v1") == 1
        assert "webhook.delivery.failed.v1" not in types


async def test_a_send_longer_than_the_lease_is_not_taken_over_while_renewed(
    fresh_db, kafka_bootstrap, topics
):
    brand = uuid.uuid4()
    async with (
        receiver() as hook,
        webhook_service(fresh_db, kafka_bootstrap, lease_s=0.6, timeout_s=10) as service,
    ):
        await make_endpoint(service, brand, hook.url)
        app_worker = service.worker
        first, second = (
            DeliveryWorker(app_worker.pool, app_worker.box, app_worker.settings, clock=utcnow)
            for _ in range(2)
        )
        async with tenant_transaction(service.pool, brand) as conn:
            await enqueue(conn, brand_event(brand), max_attempts=5, now=utcnow())
        held = asyncio.Event()
        hook.answer(200, delay=held)
        sending = asyncio.create_task(first.run_once())
        await hook.wait_for_requests(1)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 2.0  # over three lease lengths
        while loop.time() < deadline:
            assert await second.run_once() == 0  # still leased: renewed by the first worker
            await asyncio.sleep(0.1)
        held.set()
        assert await sending == 1
        await first.close()
        await second.close()
        [delivery] = await deliveries(service, brand)
        assert delivery["status"] == "delivered" and delivery["attempts"] == 1
        assert len(hook.requests) == 1
        assert len(await attempts_of(service, brand, delivery["id"])) == 1
