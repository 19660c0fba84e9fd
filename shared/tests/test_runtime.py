from __future__ import annotations

import asyncio

import pytest
from pressroom_kit.runtime import BackgroundWorkers
from pressroom_kit.settings import ServiceSettings

pytestmark = pytest.mark.unit


async def test_a_crashing_worker_is_restarted_and_all_stop_together():
    runs = []

    async def flaky(stop: asyncio.Event) -> None:
        runs.append(1)
        if len(runs) < 3:
            raise RuntimeError("boom")
        await stop.wait()

    async def steady(stop: asyncio.Event) -> None:
        await stop.wait()

    workers = BackgroundWorkers(max_backoff=0.05)
    workers.add("flaky", flaky)
    workers.add("steady", steady)
    async with workers.lifespan():
        for _ in range(100):
            if len(runs) >= 3:
                break
            await asyncio.sleep(0.02)
    assert len(runs) == 3
    assert workers.restarts == {"flaky": 2}


async def test_a_worker_that_ignores_stop_is_cancelled():
    async def stubborn(stop: asyncio.Event) -> None:
        await asyncio.sleep(3600)

    workers = BackgroundWorkers(shutdown_timeout=0.1)
    workers.add("stubborn", stubborn)
    await workers.start()
    await asyncio.sleep(0)
    await asyncio.wait_for(workers.stop(), timeout=2)


def test_service_settings_read_shared_and_prefixed_names(monkeypatch):
    class MediaSettings(ServiceSettings):
        model_config = ServiceSettings.model_config | {"env_prefix": "PRESSROOM_MEDIA_"}

    monkeypatch.setenv("PRESSROOM_JWT_SECRET", "s3cret")
    monkeypatch.setenv("PRESSROOM_KAFKA_BOOTSTRAP_SERVERS", "kafka:9092")
    monkeypatch.setenv("PRESSROOM_MEDIA_DATABASE_URL", "postgresql://m@db/media")
    monkeypatch.setenv("PRESSROOM_MEDIA_PORT", "8101")
    settings = MediaSettings()
    assert settings.database_url == "postgresql://m@db/media"
    assert settings.port == 8101
    assert settings.kafka_bootstrap_servers == "kafka:9092"
    assert settings.jwt().secret == "s3cret"
    assert "s3cret" not in repr(settings)


def test_the_public_url_defaults_to_the_local_gateway_on_its_port(monkeypatch):
    monkeypatch.delenv("PRESSROOM_PUBLIC_URL", raising=False)
    monkeypatch.delenv("PRESSROOM_GATEWAY_PORT", raising=False)
    assert ServiceSettings().public_url == "http://127.0.0.1:8000"
    monkeypatch.setenv("PRESSROOM_GATEWAY_PORT", "9000")
    assert ServiceSettings().public_url == "http://127.0.0.1:9000"
    monkeypatch.setenv("PRESSROOM_PUBLIC_URL", "https://social.example.com/")
    assert ServiceSettings().public_url == "https://social.example.com"  # no trailing slash
