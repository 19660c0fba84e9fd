"""``ServiceWiring``: a service's lifespan from migrations to workers, through real servers."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import pytest
from kafka_helpers import create_topics
from litestar import Request, post
from litestar.params import JSONBody
from pressroom_contracts import CloudEvent, EventPayload
from pressroom_kit.auth import Principal, mint_token
from pressroom_kit.db import tenant_transaction
from pressroom_kit.http import requires_role
from pressroom_kit.settings import ServiceSettings
from pressroom_kit.testing.plugin import APP_ROLE, TestDatabase
from pressroom_kit.testing.sample import domain as sample
from pressroom_kit.testing.servers import serve_asgi
from pressroom_kit.wiring import Runtime, ServiceWiring
from pydantic_settings import SettingsConfigDict

pytestmark = pytest.mark.integration

SECRET = "wiring-test-secret-wiring-test-secret"


class SampleSettings(ServiceSettings):
    model_config = SettingsConfigDict(
        env_prefix="PRESSROOM_SAMPLE_", extra="ignore", populate_by_name=True
    )


def settings_for(db: TestDatabase, kafka: str) -> SampleSettings:
    return SampleSettings(
        database_url=db.owner_dsn,
        runtime_role=APP_ROLE,
        jwt_secret=SECRET,
        kafka_bootstrap_servers=kafka,
        consumer_group=f"wiring-{uuid.uuid4().hex[:8]}",
        consumer_session_timeout_ms=2000,
    )


def notes_route(topic: str) -> Any:
    @post("/v1/notes", guards=[requires_role("manager")])
    async def create_note(
        request: Request[Principal, Any, Any], data: JSONBody[dict[str, str]]
    ) -> dict:
        brand = request.user.brand_id
        assert brand is not None
        note = sample.Note.write(f"note-{uuid.uuid4()}", brand, data["title"])
        async with tenant_transaction(request.app.state.pool, brand) as conn:
            await sample.repository(topic).save(conn, note, brand_id=brand, actor="u")
        return {"id": note.id}

    return create_note


async def test_a_service_is_migrated_served_and_stopped_in_order(
    fresh_db, kafka_bootstrap, unique_topic
):
    """A note written over HTTP reaches the broker through the wiring's relay and comes back
    through the consumer its setup added; readiness covers database, broker, the extra check
    and the workers; on the way out the workers stop, then setup closes, then the pool."""
    await create_topics(kafka_bootstrap, unique_topic)
    settings = settings_for(fresh_db, kafka_bootstrap)
    seen: asyncio.Queue[str] = asyncio.Queue()
    order: list[str] = []
    runtimes: list[Runtime] = []

    async def handle(conn: asyncpg.Connection, event: CloudEvent, payload: EventPayload) -> None:
        assert isinstance(payload, sample.NoteChangedV1)
        await seen.put(payload.title)

    async def steady(stop: asyncio.Event) -> None:
        await stop.wait()
        order.append("workers stopped")

    checked: list[str] = []

    async def storage_ready() -> None:
        checked.append("storage")

    @contextlib.asynccontextmanager
    async def setup(rt: Runtime) -> AsyncIterator[None]:
        runtimes.append(rt)
        rt.app.state.marker = "set by setup"
        rt.consume(
            "notes",
            topics=[unique_topic],
            handlers={},
            default_handler=handle,
            registry=sample.REGISTRY,
        )
        rt.workers.add("steady", steady)
        try:
            yield
        finally:
            assert await rt.pool.fetchval("SELECT 1") == 1  # the pool outlives setup
            order.append("setup closed")

    wiring = ServiceWiring(
        "sample",
        settings,
        migrations=[sample.MIGRATIONS],
        setup=setup,
        readiness={"storage": storage_ready},
    )
    app = wiring.app(description="the sample", route_handlers=[notes_route(unique_topic)])
    brand = uuid.uuid4()
    token = mint_token(SECRET, sub="u", role="manager", brand_id=brand)
    async with serve_asgi(app) as base, aiohttp.ClientSession() as http:
        (rt,) = runtimes
        assert app.state.marker == "set by setup" and app.state.settings is settings
        assert rt.dsn != settings.database_url and f"{APP_ROLE}@" in rt.dsn  # runtime role
        assert await rt.pool.fetchval("SELECT current_user") == APP_ROLE
        assert rt.pool is app.state.pool is wiring.pool
        async with asyncio.timeout(30):
            while True:
                async with http.get(f"{base}/readyz") as response:
                    body = await response.json()
                if response.status == 200:
                    break
                await asyncio.sleep(0.05)
        consumer = f"consumer:{settings.consumer_group}"
        assert {"database", "broker", "storage", "relay:sample", consumer} <= set(body["checks"])
        assert body["service"] == "sample" and checked
        async with http.post(
            f"{base}/v1/notes",
            json={"title": "through the wiring"},
            headers={"Authorization": f"Bearer {token}"},
        ) as response:
            assert response.status == 201, await response.text()
        async with http.post(f"{base}/v1/notes", json={"title": "x"}) as response:
            assert response.status == 401  # the wiring's app verifies tokens
        assert await asyncio.wait_for(seen.get(), 30) == "through the wiring"
    assert order[-2:] == ["workers stopped", "setup closed"]
    assert wiring.pool is None and rt.pool.is_closing()


async def test_a_setup_that_fails_leaves_no_pool_open(fresh_db, kafka_bootstrap):
    pools: list[asyncpg.Pool] = []

    @contextlib.asynccontextmanager
    async def setup(rt: Runtime) -> AsyncIterator[None]:
        pools.append(rt.pool)
        raise RuntimeError("storage is unreachable")
        yield

    wiring = ServiceWiring(
        "sample",
        settings_for(fresh_db, kafka_bootstrap),
        migrations=[sample.MIGRATIONS],
        setup=setup,
    )
    app = wiring.app(description="", route_handlers=[])
    with pytest.raises(RuntimeError, match="storage is unreachable"):
        async with wiring.lifespan(app):
            pass
    assert pools[0].is_closing() and wiring.pool is None
    with pytest.raises(ConnectionError, match="not prepared"):
        await wiring.readiness["database"]()
