from __future__ import annotations

import asyncio
import json
import uuid

import pytest
from pressroom_contracts import CloudEvent
from pressroom_kit import cloudevents
from pressroom_kit.db import tenant_transaction
from pressroom_kit.embedded import free_port
from pressroom_webhook.handlers import enqueue
from pressroom_webhook.signing import verify
from webhook_testkit import receiver, webhook_service

pytestmark = pytest.mark.integration


def brand_event(brand: uuid.UUID, n: int = 0) -> CloudEvent:
    return CloudEvent(
        source="/pressroom/gateway",
        type="brand.member_added.v1",
        subject=str(brand),
        brandid=brand,
        data={"brand_id": str(brand), "user_id": f"u{n}", "role": "viewer"},
    )


async def make_endpoint(service, brand, url, **extra):
    status, body = await service.call(
        "POST",
        "/v1/webhooks/endpoints",
        brand,
        json={"url": url, "event_types": ["brand.*"], **extra},
    )
    assert status == 201, body
    return body


async def put_event(service, brand, event):
    async with tenant_transaction(service.pool, brand) as conn:
        return await enqueue(
            conn, event, max_attempts=service.app.state.settings.max_attempts, now=service.clock()
        )


async def deliveries(service, brand):
    status, body = await service.call("GET", "/v1/webhooks/events", brand)
    assert status == 200
    return body["items"]


async def outbox_types(service):
    rows = await service.pool.fetch("SELECT headers->>'ce_type' AS t FROM outbox ORDER BY id")
    return [r["t"] for r in rows]


async def test_a_kafka_event_becomes_one_signed_delivery_even_when_redelivered(
    fresh_db, kafka_bootstrap, topics
):
    from aiokafka import AIOKafkaProducer

    brand = uuid.uuid4()
    async with receiver() as hook, webhook_service(fresh_db, kafka_bootstrap) as service:
        endpoint = await make_endpoint(service, brand, hook.url)
        assert endpoint["secret"].startswith("whsec_")
        other_brand_endpoint = await make_endpoint(service, uuid.uuid4(), hook.url)
        event = brand_event(brand)
        # A type this build has no contract for yet is still forwarded as it is.
        unknown = CloudEvent(
            source="/pressroom/publishing",
            type="brand.renamed.v9",
            subject=str(brand),
            brandid=brand,
            data={"any": "thing"},
        )
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=False)
        await producer.start()
        try:
            for message in (event, event, unknown):  # the first one twice: a redelivery
                await producer.send_and_wait(
                    "pressroom.brands.v1",
                    key=str(brand).encode(),
                    value=cloudevents.encode_value(message),
                    headers=cloudevents.kafka_headers(cloudevents.to_headers(message)),
                )
        finally:
            await producer.stop()
        async with asyncio.timeout(30):
            while len(await deliveries(service, brand)) < 2:
                await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)
        assert len(await deliveries(service, brand)) == 2
        assert await service.worker.run_once() == 2
        assert len(hook.requests) == 2
        request = next(r for r in hook.requests if b"member_added" in r["body"])
        assert any(b"brand.renamed.v9" in r["body"] for r in hook.requests)
        verify(endpoint["secret"], request["headers"], request["body"])
        sent = json.loads(request["body"])
        assert sent["id"] == str(event.id) and sent["type"] == "brand.member_added.v1"
        assert sent["data"]["user_id"] == "u0"
        assert {d["status"] for d in await deliveries(service, brand)} == {"delivered"}
        assert "webhook.delivery.succeeded.v1" in await outbox_types(service)
        assert other_brand_endpoint["id"] != endpoint["id"]


async def test_retries_follow_the_backoff_schedule_and_honour_retry_after(
    fresh_db, kafka_bootstrap, topics
):
    brand = uuid.uuid4()
    async with receiver() as hook, webhook_service(fresh_db, kafka_bootstrap) as service:
        service.worker.random_fraction = lambda: 0.5  # no jitter
        await make_endpoint(service, brand, hook.url)
        await put_event(service, brand, brand_event(brand))
        hook.answer(500)
        hook.answer(429, {"Retry-After": "900"})
        hook.answer(503)
        hook.answer(200)
        assert await service.worker.run_once() == 1  # attempt 1: 500
        assert await service.worker.run_once() == 0  # not due yet
        service.clock.advance(5)
        assert await service.worker.run_once() == 1  # attempt 2: 429, Retry-After 900 > 300
        service.clock.advance(300)
        assert await service.worker.run_once() == 0
        service.clock.advance(600)
        assert await service.worker.run_once() == 1  # attempt 3: 503
        service.clock.advance(1800)
        assert await service.worker.run_once() == 1  # attempt 4: 200
        [delivery] = await deliveries(service, brand)
        assert delivery["status"] == "delivered" and delivery["attempts"] == 4
        _status, attempts = await service.call(
            "GET", f"/v1/webhooks/events/{delivery['id']}/attempts", brand
        )
        assert [a["response_code"] for a in attempts] == [500, 429, 503, 200]
        assert [a["backoff_ms"] for a in attempts] == [5000, 900000, 1800000, None]
        assert len(attempts[0]["response_body"]) == 4096  # first 4 KB only
        assert len({r["headers"]["webhook-id"] for r in hook.requests}) == 1


async def test_timeouts_refused_connections_and_the_final_failure(
    fresh_db, kafka_bootstrap, topics
):
    brand = uuid.uuid4()
    async with (
        receiver() as hook,
        webhook_service(fresh_db, kafka_bootstrap, max_attempts=3) as service,
    ):
        service.worker.random_fraction = lambda: 0.5  # no jitter
        await make_endpoint(service, brand, hook.url)
        dead = await make_endpoint(service, brand, f"http://localhost:{free_port()}/hook")
        await put_event(service, brand, brand_event(brand))
        hook.answer(200, delay=1.5)  # slower than the 1 s timeout
        for step in (0, 5, 300):
            service.clock.advance(step)
            await service.worker.run_once()
        items = {d["endpoint_id"]: d for d in await deliveries(service, brand)}
        assert items[dead["id"]]["status"] == "failed"
        assert "connection failed" in items[dead["id"]]["last_error"]
        live = next(d for e, d in items.items() if e != dead["id"])
        _status, attempts = await service.call(
            "GET", f"/v1/webhooks/events/{live['id']}/attempts", brand
        )
        assert "timed out" in attempts[0]["error"]
        assert live["status"] == "delivered"
        assert "webhook.delivery.failed.v1" in await outbox_types(service)


async def test_410_gone_disables_the_endpoint(fresh_db, kafka_bootstrap, topics):
    brand = uuid.uuid4()
    async with receiver() as hook, webhook_service(fresh_db, kafka_bootstrap) as service:
        endpoint = await make_endpoint(service, brand, hook.url)
        await put_event(service, brand, brand_event(brand))
        hook.answer(410)
        await service.worker.run_once()
        _status, body = await service.call("GET", f"/v1/webhooks/endpoints/{endpoint['id']}", brand)
        assert body["enabled"] is False and "410" in body["disabled_reason"]
        [delivery] = await deliveries(service, brand)
        assert delivery["status"] == "failed"
        assert "webhook.endpoint.disabled.v1" in await outbox_types(service)
        assert await put_event(service, brand, brand_event(brand, 1)) == 0  # no new work


async def test_replay_and_the_rotation_window(fresh_db, kafka_bootstrap, topics):
    brand = uuid.uuid4()
    async with receiver() as hook, webhook_service(fresh_db, kafka_bootstrap) as service:
        endpoint = await make_endpoint(service, brand, hook.url)
        await put_event(service, brand, brand_event(brand))
        await service.worker.run_once()
        [delivery] = await deliveries(service, brand)
        status, rotated = await service.call(
            "POST", f"/v1/webhooks/endpoints/{endpoint['id']}/rotate-secret", brand
        )
        assert status == 200 and rotated["secret"] != endpoint["secret"]
        status, _ = await service.call(
            "POST", f"/v1/webhooks/events/{delivery['id']}/replay", brand
        )
        assert status == 202
        await service.worker.run_once()
        replayed = hook.requests[-1]
        assert len(replayed["headers"]["webhook-signature"].split()) == 2
        verify(endpoint["secret"], replayed["headers"], replayed["body"])
        verify(rotated["secret"], replayed["headers"], replayed["body"])
        service.clock.advance(25 * 3600)
        await service.call("POST", f"/v1/webhooks/events/{delivery['id']}/replay", brand)
        await service.worker.run_once()
        assert len(hook.requests[-1]["headers"]["webhook-signature"].split()) == 1
        status, _ = await service.call("POST", f"/v1/webhooks/events/{uuid.uuid4()}/replay", brand)
        assert status == 404


async def test_a_receiver_down_for_a_while_gets_everything_once(fresh_db, kafka_bootstrap, topics):
    brand = uuid.uuid4()
    port = free_port()
    url = f"http://localhost:{port}/hook"
    async with webhook_service(fresh_db, kafka_bootstrap, max_attempts=3) as service:
        service.worker.random_fraction = lambda: 0.5
        endpoint = await make_endpoint(service, brand, url)
        for n in range(20):
            await put_event(service, brand, brand_event(brand, n))
        for step in (0, 5, 300):  # three attempts each, four at a time per endpoint
            service.clock.advance(step)
            while await service.worker.run_once():
                pass
        assert {d["status"] for d in await deliveries(service, brand)} == {"failed"}
        from aiohttp import web

        seen = []

        async def hook(request):
            seen.append(request.headers["webhook-id"])
            return web.Response(text="ok")

        app = web.Application()
        app.router.add_post("/hook", hook)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            status, body = await service.call(
                "POST",
                f"/v1/webhooks/endpoints/{endpoint['id']}/recover",
                brand,
                json={"since": "2020-01-01T00:00:00Z"},
            )
            assert status == 200 and body == {"requeued": 20}
            while await service.worker.run_once():
                pass
        finally:
            await runner.cleanup()
        assert len(seen) == 20 and len(set(seen)) == 20
        assert {d["status"] for d in await deliveries(service, brand)} == {"delivered"}


async def test_two_replicas_deliver_each_event_once(fresh_db, kafka_bootstrap, topics):
    from pressroom_webhook.delivery import DeliveryWorker

    brand = uuid.uuid4()
    async with (
        receiver() as hook,
        webhook_service(fresh_db, kafka_bootstrap, per_endpoint_concurrency=20) as service,
    ):
        await make_endpoint(service, brand, hook.url)
        for n in range(60):
            await put_event(service, brand, brand_event(brand, n))
        first = service.worker
        second = DeliveryWorker(first.pool, first.box, first.settings, clock=service.clock)

        async def drain(worker):
            total = 0
            while claimed := await worker.run_once():
                total += claimed
            return total

        counts = await asyncio.gather(drain(first), drain(second), drain(first))
        await second.close()
        assert sum(counts) == 60
        assert len(hook.requests) == 60
        assert len({r["headers"]["webhook-id"] for r in hook.requests}) == 60


async def test_dns_rebinding_is_refused_at_delivery_time(fresh_db, kafka_bootstrap, topics):
    brand = uuid.uuid4()
    dns = {"hooks.partner.example": "93.184.216.34"}
    async with webhook_service(
        fresh_db, kafka_bootstrap, dns=dns, allow_private_targets=False, max_attempts=1
    ) as service:
        status, body = await service.call(
            "POST",
            "/v1/webhooks/endpoints",
            brand,
            json={"url": "http://localhost:9/hook", "event_types": ["*"]},
        )
        assert status == 422 and "forbidden address" in body["detail"]
        await make_endpoint(service, brand, "http://hooks.partner.example/hook")
        dns["hooks.partner.example"] = "127.0.0.1"  # the name now points inside
        await put_event(service, brand, brand_event(brand))
        await service.worker.run_once()
        [delivery] = await deliveries(service, brand)
        assert delivery["status"] == "failed"
        assert "refused target" in delivery["last_error"]


async def test_the_running_worker_delivers_new_work_at_once(fresh_db, kafka_bootstrap, topics):
    import time
    from datetime import UTC, datetime

    brand = uuid.uuid4()
    async with (
        receiver() as hook,
        webhook_service(
            fresh_db, kafka_bootstrap, run_delivery=True, poll_interval_s=30
        ) as service,
    ):
        await make_endpoint(service, brand, hook.url)
        started = time.monotonic()
        async with tenant_transaction(service.pool, brand) as conn:
            await enqueue(conn, brand_event(brand), max_attempts=5, now=datetime.now(UTC))
        async with asyncio.timeout(5):
            while not hook.requests:
                await asyncio.sleep(0.01)
        # Woken by NOTIFY, not by the 30 s poll.
        assert time.monotonic() - started < 2


async def test_redirects_are_failures_and_long_failure_disables_the_endpoint(
    fresh_db, kafka_bootstrap, topics
):
    brand = uuid.uuid4()
    async with (
        receiver() as hook,
        webhook_service(fresh_db, kafka_bootstrap, max_attempts=2, disable_after_s=3600) as service,
    ):
        service.worker.random_fraction = lambda: 0.5
        endpoint = await make_endpoint(service, brand, hook.url)
        await put_event(service, brand, brand_event(brand, 1))
        hook.answer(302, {"Location": "https://elsewhere.example/"})
        await service.worker.run_once()
        [delivery] = await deliveries(service, brand)
        assert delivery["status"] == "pending" and "not followed" in delivery["last_error"]
        assert len(hook.requests) == 1  # the redirect was not followed
        # The receiver keeps failing for over an hour: the endpoint gets disabled.
        hook.script[:] = [(500, {}, 0.0)] * 10
        service.clock.advance(4000)
        await put_event(service, brand, brand_event(brand, 2))
        while await service.worker.run_once():
            pass
        _, body = await service.call("GET", f"/v1/webhooks/endpoints/{endpoint['id']}", brand)
        assert body["enabled"] is False and "failing continuously" in body["disabled_reason"]
        assert "webhook.endpoint.disabled.v1" in await outbox_types(service)
        # Re-enabling it is a plain PATCH.
        status, body = await service.call(
            "PATCH", f"/v1/webhooks/endpoints/{endpoint['id']}", brand, json={"enabled": True}
        )
        assert status == 200 and body["enabled"] is True and body["disabled_reason"] is None


async def test_lists_are_cursor_paginated_and_bad_input_is_a_problem(
    fresh_db, kafka_bootstrap, topics
):
    brand = uuid.uuid4()
    async with webhook_service(fresh_db, kafka_bootstrap) as service:
        for n in range(3):
            await make_endpoint(service, brand, f"http://localhost:9/h{n}")
        status, first = await service.call("GET", "/v1/webhooks/endpoints?limit=2", brand)
        assert status == 200 and len(first["items"]) == 2 and first["next_cursor"]
        _, second = await service.call(
            "GET", f"/v1/webhooks/endpoints?limit=2&cursor={first['next_cursor']}", brand
        )
        assert len(second["items"]) == 1 and second["next_cursor"] is None
        ids = {e["id"] for e in first["items"] + second["items"]}
        assert len(ids) == 3
        assert "secret" not in first["items"][0]  # shown at creation only
        status, problem = await service.call("GET", "/v1/webhooks/endpoints?cursor=nope", brand)
        assert status == 422 and problem["status"] == 422
        for body in (
            {"url": "http://localhost:9/h", "event_types": []},
            {"url": "http://localhost:9/h", "event_types": ["*"], "provider": "teams"},
            {"url": "not a url", "event_types": ["*"]},
        ):
            status, problem = await service.call("POST", "/v1/webhooks/endpoints", brand, json=body)
            assert status in (400, 422), problem
        status, _ = await service.call("GET", f"/v1/webhooks/endpoints/{uuid.uuid4()}", brand)
        assert status == 404


async def test_the_test_button_sends_a_webhook_test_event(fresh_db, kafka_bootstrap, topics):
    brand = uuid.uuid4()
    async with receiver() as hook, webhook_service(fresh_db, kafka_bootstrap) as service:
        endpoint = await make_endpoint(service, brand, hook.url, provider="slack")
        status, body = await service.call(
            "POST", f"/v1/webhooks/endpoints/{endpoint['id']}/test", brand
        )
        assert status == 202 and body["event_id"]
        assert await service.worker.run_once() == 1
        message = json.loads(hook.requests[0]["body"])
        assert message["text"].startswith("Test event from Pressroom")
        verify(endpoint["secret"], hook.requests[0]["headers"], hook.requests[0]["body"])
        await service.call(
            "PATCH", f"/v1/webhooks/endpoints/{endpoint['id']}", brand, json={"enabled": False}
        )
        status, _ = await service.call(
            "POST", f"/v1/webhooks/endpoints/{endpoint['id']}/test", brand
        )
        assert status == 409


async def test_the_running_worker_sleeps_until_the_next_retry_is_due(
    fresh_db, kafka_bootstrap, topics
):
    """Idle, the worker sleeps until its next attempt is due (``webhook_next_due``), not for
    a fixed poll: with a 30 s poll a retry due in 1 s goes out about a second later."""
    import time
    from datetime import UTC, datetime

    brand = uuid.uuid4()
    async with (
        receiver() as hook,
        webhook_service(
            fresh_db,
            kafka_bootstrap,
            run_delivery=True,
            poll_interval_s=30,
            idle_poll_max_s=60,
            schedule_s=[0.0, 1.0, 300.0],
            jitter=0.0,
        ) as service,
    ):
        await make_endpoint(service, brand, hook.url)
        hook.script[:] = [(500, {}, 0.0)]
        async with tenant_transaction(service.pool, brand) as conn:
            await enqueue(conn, brand_event(brand), max_attempts=3, now=datetime.now(UTC))
        async with asyncio.timeout(5):
            while not hook.requests:
                await asyncio.sleep(0.01)
        failed_at = time.monotonic()
        async with asyncio.timeout(10):
            while len(hook.requests) < 2:
                await asyncio.sleep(0.01)
        waited = time.monotonic() - failed_at
        assert 0.7 < waited < 4, waited
        [delivery] = await deliveries(service, brand)
        assert delivery["status"] in {"delivering", "delivered"}
