"""An idle stack costs next to nothing (issue #9, item 11): the workers' polls double while
they find nothing, and a consumer at rest fetches rarely; the first record or wake-up
brings each back to its short interval at once."""

from __future__ import annotations

import asyncio
import time
import uuid
from types import SimpleNamespace

import pytest
from kafka_helpers import create_topics
from pressroom_kit.consumer import ConsumerSettings, InboxConsumer
from pressroom_kit.db import tenant_transaction
from pressroom_kit.health import Heartbeats
from pressroom_kit.outbox import Relay, RelaySettings
from pressroom_kit.runtime import BackgroundWorkers, idle_poll
from pressroom_kit.settings import ServiceSettings
from pressroom_kit.testing.sample import domain as sample
from pressroom_kit.wiring import Runtime


@pytest.mark.unit
def test_the_idle_poll_doubles_per_quiet_round_up_to_its_ceiling():
    assert [idle_poll(0.25, q, 2.0) for q in range(6)] == [0.25, 0.5, 1.0, 2.0, 2.0, 2.0]
    assert idle_poll(0.25, 10_000, 2.0) == 2.0  # no overflow after a long quiet
    assert idle_poll(0.5, -1, 2.0) == 0.5
    assert idle_poll(3.0, 4, 2.0) == 3.0  # a ceiling below the base never shortens it


def _consumer(settings: ConsumerSettings) -> tuple[InboxConsumer, SimpleNamespace]:
    inbox = InboxConsumer(
        name="idle",
        dsn_or_pool=None,  # type: ignore[arg-type]  # never connected here
        bootstrap_servers="127.0.0.1:1",
        topics=["t"],
        handlers={},
        settings=settings,
    )
    kafka = SimpleNamespace(_fetcher=SimpleNamespace(_fetch_max_wait_ms=10))
    return inbox, kafka


@pytest.mark.unit
def test_a_consumer_at_rest_fetches_rarely_and_wakes_with_the_first_record():
    inbox, kafka = _consumer(ConsumerSettings(rest_after_s=20.0))
    waits = []
    for second in range(0, 30):
        inbox._adapt_fetch_wait(kafka, got_records=False, now=float(second))  # type: ignore[arg-type]
        waits.append(kafka._fetcher._fetch_max_wait_ms)
    # Idle: 10 ms doubling to 500 ms; at rest (20 s without records) on to 2 s.
    assert waits[:7] == [20, 40, 80, 160, 320, 500, 500]
    assert set(waits[7:20]) == {500}
    assert waits[20:23] == [1000, 2000, 2000]
    assert inbox._poll_timeout_ms() == 3_000
    inbox._adapt_fetch_wait(kafka, got_records=True, now=30.0)  # type: ignore[arg-type]
    assert kafka._fetcher._fetch_max_wait_ms == 10 and inbox._poll_timeout_ms() == 200
    # The rest starts over: 20 s of nothing again before the long wait.
    for second in range(31, 45):
        inbox._adapt_fetch_wait(kafka, got_records=False, now=float(second))  # type: ignore[arg-type]
    assert kafka._fetcher._fetch_max_wait_ms == 500 and inbox._poll_timeout_ms() == 1_000


@pytest.mark.unit
def test_rest_after_zero_never_rests_and_the_service_setting_reaches_the_consumer(monkeypatch):
    inbox, kafka = _consumer(ConsumerSettings(rest_after_s=0))
    for second in range(0, 600, 10):
        inbox._adapt_fetch_wait(kafka, got_records=False, now=float(second))  # type: ignore[arg-type]
    assert kafka._fetcher._fetch_max_wait_ms == 500

    monkeypatch.setenv("PRESSROOM_CONSUMER_REST_AFTER_S", "45")
    assert ServiceSettings().consumer_rest_after_s == 45
    monkeypatch.delenv("PRESSROOM_CONSUMER_REST_AFTER_S")
    assert ServiceSettings().consumer_rest_after_s == 20
    settings = ConsumerSettings.with_session_timeout(10_000, rest_after_s=45)
    assert settings.rest_after_s == 45 and settings.heartbeat_interval_ms == 1_000


@pytest.mark.unit
def test_a_services_consumers_get_its_rest_setting():
    runtime = Runtime(
        app=None,  # type: ignore[arg-type]  # not served here
        settings=ServiceSettings(consumer_rest_after_s=45),
        pool=None,  # type: ignore[arg-type]  # never connected here
        dsn="postgresql://unused",
        heartbeats=Heartbeats(),
        workers=BackgroundWorkers(),
    )
    consumer = runtime.consume("inbox", topics=["t"], handlers={})
    assert consumer.settings.rest_after_s == 45


@pytest.mark.integration
async def test_an_idle_relay_polls_less_and_less_and_still_publishes_at_once(
    app_pool, sample_db, kafka_bootstrap, unique_topic
):
    await create_topics(kafka_bootstrap, unique_topic)
    repo = sample.repository(unique_topic)
    brand = uuid.uuid4()
    relay = Relay(
        service="sample",
        dsn=sample_db.app_dsn,
        bootstrap_servers=kafka_bootstrap,
        settings=RelaySettings(poll_interval=0.05, idle_poll_max=3.0, backlog_every=0),
    )
    rounds = 0
    beat = relay._beat

    def counted(**kwargs: object) -> None:
        nonlocal rounds
        rounds += 1
        beat(**kwargs)  # type: ignore[arg-type]

    relay._beat = counted  # type: ignore[method-assign]
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    try:
        async with asyncio.timeout(20):
            while not relay.is_leader:
                await asyncio.sleep(0.02)
        await asyncio.sleep(0.5)
        rounds = 0
        await asyncio.sleep(3.0)
        # A fixed 50 ms poll would have made ~60 rounds; doubling makes ~6.
        assert rounds <= 15, rounds
        # A commit still wakes it at once (NOTIFY), however long it had been idle.
        async with tenant_transaction(app_pool, brand) as conn:
            (event,) = await repo.save(
                conn, sample.Note.write(f"idle-{uuid.uuid4()}", brand, "t"), brand_id=brand
            )
        started = time.monotonic()
        async with asyncio.timeout(5):
            while await app_pool.fetchval(
                "SELECT sent_at IS NULL FROM outbox WHERE event_id = $1", event.event_id
            ):
                await asyncio.sleep(0.005)
        assert time.monotonic() - started < 1.0  # the backed-off poll would be later
        # Idle again, a stop ends its wait at once (not after the backed-off poll).
        await asyncio.sleep(2.0)
        stopping = time.monotonic()
        stop.set()
        await asyncio.wait_for(task, timeout=5)
        assert time.monotonic() - stopping < 0.3
    finally:
        stop.set()
        await task
