from __future__ import annotations

import asyncio
import uuid

import pytest
from aiohttp import ClientSession
from kafka_helpers import create_topics
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pressroom_kit.auth import JWTSettings, JWTVerifier, mint_token
from pressroom_kit.consumer import ConsumerSettings, InboxConsumer
from pressroom_kit.outbox import Relay, RelaySettings
from pressroom_kit.telemetry import configure_tracing
from pressroom_kit.testing.sample import domain as sample
from pressroom_kit.testing.sample.app import build_app
from pressroom_kit.testing.servers import serve_asgi

pytestmark = pytest.mark.integration

SECRET = "trace-secret-trace-secret-trace-secret"


async def test_one_trace_id_from_http_request_through_outbox_and_kafka_into_the_consumer(
    app_pool, owner_pool, sample_db, kafka_bootstrap, unique_topic
):
    exporter = InMemorySpanExporter()
    configure_tracing("sample", extra_processor=SimpleSpanProcessor(exporter))
    await create_topics(kafka_bootstrap, unique_topic)
    brand = uuid.uuid4()
    consumed = asyncio.Event()

    async def on_note(conn, event, payload):
        consumed.set()

    stop = asyncio.Event()
    relay = Relay(
        service="sample",
        dsn=sample_db.app_dsn,
        bootstrap_servers=kafka_bootstrap,
        settings=RelaySettings(poll_interval=0.1),
    )
    consumer = InboxConsumer(
        name="tracing-test",
        dsn_or_pool=app_pool,
        bootstrap_servers=kafka_bootstrap,
        topics=[unique_topic],
        registry=sample.REGISTRY,
        handlers={"sample.note.changed.v1": on_note},
        settings=ConsumerSettings(session_timeout_ms=2000, heartbeat_interval_ms=300),
    )
    tasks = [asyncio.create_task(relay.run(stop)), asyncio.create_task(consumer.run(stop))]
    app = build_app(JWTVerifier(JWTSettings(secret=SECRET)), pool=app_pool, topic=unique_topic)
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    try:
        async with serve_asgi(app) as base, ClientSession() as http:
            token = mint_token(SECRET, sub="u1", role="manager", brand_id=brand)
            async with http.post(
                f"{base}/v1/notes",
                json={"title": "traced"},
                headers={
                    "Authorization": f"Bearer {token}",
                    "traceparent": f"00-{trace_id}-00f067aa0ba902b7-01",
                },
            ) as response:
                assert response.status == 201, await response.text()
            await asyncio.wait_for(consumed.wait(), timeout=20)
    finally:
        stop.set()
        await asyncio.gather(*tasks)

    spans = exporter.get_finished_spans()
    consumer_spans = [s for s in spans if s.name == "consume sample.note.changed.v1"]
    server_spans = [s for s in spans if s.kind.name == "SERVER"]
    assert consumer_spans and server_spans
    assert format(consumer_spans[0].context.trace_id, "032x") == trace_id
    assert {format(s.context.trace_id, "032x") for s in server_spans} == {trace_id}
    stored = await owner_pool.fetchval("SELECT metadata->>'traceparent' FROM events LIMIT 1")
    assert stored.split("-")[1] == trace_id
