from __future__ import annotations

import asyncio
import json
import uuid

import pytest
from gateway_testkit import (
    MEDIA_OPENAPI,
    bearer,
    call,
    create_brand,
    echo_backend,
    gateway_settings,
    running_gateway,
    token,
)
from litestar import get
from litestar.params import FromPath
from pressroom_kit.auth import JWTSettings, JWTVerifier
from pressroom_kit.http import create_service_app, requires_role
from pressroom_kit.testing.servers import serve_asgi

pytestmark = pytest.mark.integration


def posts_service():
    """A real kit-built service publishing its own OpenAPI document."""

    @get("/v1/posts", guards=[requires_role("viewer")])
    async def list_posts() -> dict[str, list[str]]:
        return {"items": []}

    @get("/v1/posts/{post_id:uuid}", guards=[requires_role("viewer")])
    async def get_post(post_id: FromPath[uuid.UUID]) -> dict[str, str]:
        return {"id": str(post_id)}

    from gateway_testkit import SECRET

    return create_service_app(
        name="publishing",
        route_handlers=[list_posts, get_post],
        verifier=JWTVerifier(JWTSettings(secret=SECRET)),
    )


async def test_merged_openapi_lists_routes_of_several_services_and_validates(
    fresh_db, kafka_bootstrap, http
):
    from openapi_spec_validator import validate

    async with echo_backend(MEDIA_OPENAPI) as media, serve_asgi(posts_service()) as posts:
        routes = {"/v1/media": media, "/v1/posts": posts}
        async with running_gateway(gateway_settings(fresh_db, kafka_bootstrap, routes)) as base:
            document = None
            for _ in range(50):
                status, _, document = await call(http, "GET", f"{base}/schema/openapi.json")
                assert status == 200
                if "/v1/posts" in document["paths"] and "/v1/media" in document["paths"]:
                    break
                await asyncio.sleep(0.1)
            paths = document["paths"]
            assert "/v1/brands" in paths and "/v1/brands/current" in paths
            assert "/v1/media" in paths and "/v1/posts/{post_id}" in paths
            # A service cannot publish paths it does not own.
            assert paths["/v1/brands/current"]["get"].get("summary") != "not media's to publish"
            assert "BearerAuth" in document["components"]["securitySchemes"]
            validate(json.loads(json.dumps(document)))
            status, headers, _page = await call(http, "GET", f"{base}/schema")
            assert status == 200 and headers["Content-Type"].startswith("text/html")


async def test_brand_created_reaches_kafka_as_a_cloudevent(gateway, http, kafka_bootstrap):
    from aiokafka import AIOKafkaConsumer

    brand = await create_brand(http, gateway, sub="kafka-founder", name="Streamed")
    consumer = AIOKafkaConsumer(
        "pressroom.brands.v1",
        bootstrap_servers=kafka_bootstrap,
        auto_offset_reset="earliest",
        group_id=None,
        fetch_max_wait_ms=10,
    )
    await consumer.start()
    found = None
    try:
        async with asyncio.timeout(20):
            while found is None:
                batch = await consumer.getmany(timeout_ms=200)
                for records in batch.values():
                    for record in records:
                        headers = {k: v.decode() for k, v in record.headers}
                        if headers.get("ce_subject") == str(brand):
                            found = (record, headers)
    finally:
        await consumer.stop()
    record, headers = found
    assert headers["ce_type"] == "brand.created.v1"
    assert headers["ce_specversion"] == "1.0"
    assert headers["ce_source"] == "/pressroom/gateway"
    assert headers["ce_brandid"] == str(brand)
    assert headers["content-type"] == "application/json"
    assert record.key == str(brand).encode()
    payload = json.loads(record.value)
    assert payload["name"] == "Streamed" and payload["created_by"] == "kafka-founder"


async def test_the_gateway_span_is_the_parent_of_the_service_span(fresh_db, kafka_bootstrap, http):
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from pressroom_kit.telemetry import configure_tracing

    exporter = InMemorySpanExporter()
    configure_tracing("gateway-test", extra_processor=SimpleSpanProcessor(exporter))
    async with serve_asgi(posts_service()) as posts:
        settings = gateway_settings(fresh_db, kafka_bootstrap, {"/v1/posts": posts})
        async with running_gateway(settings) as base:
            brand = uuid.uuid4()
            status, _, _ = await call(
                http, "GET", f"{base}/v1/posts", headers=bearer(token("viewer", brand))
            )
            assert status == 200
    server_spans = [
        s
        for s in exporter.get_finished_spans()
        if s.kind.name == "SERVER" and "/v1/posts" in s.name
    ]
    assert len(server_spans) == 2, [s.name for s in exporter.get_finished_spans()]
    outer = next(s for s in server_spans if s.parent is None or not s.parent.is_remote)
    inner = next(s for s in server_spans if s is not outer)
    assert inner.context.trace_id == outer.context.trace_id
    assert inner.parent is not None and inner.parent.span_id == outer.context.span_id


async def test_a_service_that_comes_up_later_appears_in_the_merged_document(
    fresh_db, kafka_bootstrap, http
):
    from pressroom_kit.embedded import free_port

    port = free_port()
    routes = {"/v1/media": f"http://127.0.0.1:{port}"}
    async with running_gateway(gateway_settings(fresh_db, kafka_bootstrap, routes)) as base:
        _, _, document = await call(http, "GET", f"{base}/schema/openapi.json")
        assert "/v1/media" not in document["paths"]
        async with echo_backend(MEDIA_OPENAPI, port=port):
            for _ in range(60):
                _, _, document = await call(http, "GET", f"{base}/schema/openapi.json")
                if "/v1/media" in document["paths"]:
                    break
                await asyncio.sleep(0.1)
            assert "/v1/media" in document["paths"]
            assert "Asset" in document["components"]["schemas"]
