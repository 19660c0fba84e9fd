"""The partner example (examples/partner_consumer.py) run as a partner runs it, against the
embedded broker, reading events our outbox relay publishes (the kit's Relay over a real
outbox in PostgreSQL): the lifecycle is printed in order, a resent event once, a payload
that breaks its schema is rejected, and acknowledged offsets are not read again after a
restart of the consumer group."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from pressroom_contracts import CloudEvent, EventPayload
from pressroom_contracts.events.publishing import (
    PostCancelled,
    PostCreated,
    PostPublished,
    PostScheduled,
    PostUpdated,
)
from pressroom_kit import cloudevents
from pressroom_kit.db import tenant_transaction
from pressroom_kit.outbox import OutboxMessage, Relay, RelaySettings, write_outbox

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "partner_consumer.py"
SOURCE = "/pressroom/publishing"


def event(payload: EventPayload, post_id: uuid.UUID, brand: uuid.UUID, seq: int) -> CloudEvent:
    """A CloudEvent as publishing builds it (source, subject = the post, brand, version)."""
    return CloudEvent(
        source=SOURCE,
        type=payload.event_type,
        subject=str(post_id),
        brandid=brand,
        sequence=seq,
        data=payload.model_dump(mode="json"),
    )


async def publish(pool: asyncpg.Pool, topic: str, brand: uuid.UUID, events: Sequence[CloudEvent]):
    """Write the events to the outbox, one transaction each, as the services do."""
    for item in events:
        async with tenant_transaction(pool, brand) as conn:
            await write_outbox(
                conn, [OutboxMessage(topic=topic, key=item.subject or "", event=item)]
            )


async def drained(pool: asyncpg.Pool, brand: uuid.UUID) -> None:
    """Until the relay has published every outbox row."""
    for _ in range(200):
        async with tenant_transaction(pool, brand) as conn:
            if await conn.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL") == 0:
                return
        await asyncio.sleep(0.05)
    raise AssertionError("the relay did not publish the outbox")


@asynccontextmanager
async def relay(dsn: str, bootstrap: str) -> AsyncIterator[None]:
    runner = Relay(
        service="publishing",
        dsn=dsn,
        bootstrap_servers=bootstrap,
        settings=RelaySettings(poll_interval=0.05),
    )
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    try:
        yield
    finally:
        stop.set()
        await task


class Partner:
    """The example as a child process; its stdout read line by line."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    async def lines(self, count: int, timeout: float = 30.0) -> list[str]:
        out = []
        async with asyncio.timeout(timeout):
            while len(out) < count:
                assert self.proc.stdout is not None
                raw = await self.proc.stdout.readline()
                assert raw, f"the consumer exited early: {out}"
                line = raw.decode().strip()
                if line:
                    out.append(line)
        return out


@asynccontextmanager
async def partner(bootstrap: str, topic: str, group: str, log: Path) -> AsyncIterator[Partner]:
    env = {
        **os.environ,
        "PARTNER_BOOTSTRAP": bootstrap,
        "PARTNER_TOPIC": topic,
        "PARTNER_GROUP": group,
        "PARTNER_SESSION_TIMEOUT_MS": "6000",  # the broker's minimum: a quicker rejoin
        "PYTHONUNBUFFERED": "1",
    }
    with log.open("ab") as errors:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(EXAMPLE), env=env, stdout=asyncio.subprocess.PIPE, stderr=errors
        )
        try:
            yield Partner(proc)
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(proc.wait(), 15)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()


def per_post(lines: list[str]) -> dict[str, list[str]]:
    posts: dict[str, list[str]] = {}
    for line in lines:
        if line.startswith("post "):
            post, what = line.removeprefix("post ").split(": ", 1)
            posts.setdefault(post, []).append(what)
    return posts


async def resend(bootstrap: str, topic: str, item: CloudEvent) -> None:
    """Send an event again exactly as the relay does (after a lost acknowledgement)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(
            topic,
            cloudevents.encode_value(item),
            key=(item.subject or "").encode(),
            headers=cloudevents.kafka_headers(cloudevents.to_headers(item)),
        )
    finally:
        await producer.stop()


async def test_the_partner_reads_the_post_lifecycle_from_our_relay(
    fresh_db: Any, kafka_bootstrap: str, unique_topic: str, tmp_path: Path
):
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(unique_topic, 3, 1)])
    finally:
        await admin.close()
    pool = await asyncpg.create_pool(fresh_db.app_dsn, min_size=1, max_size=2)
    brand, first, second = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    at = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
    created = event(
        PostCreated(post_id=first, brand_id=brand, platforms=["mastodon", "bluesky"]),
        first,
        brand,
        1,
    )
    lifecycle = [
        created,
        event(PostCreated(post_id=second, brand_id=brand, platforms=["x"]), second, brand, 1),
        event(PostScheduled(post_id=first, brand_id=brand, scheduled_at=at), first, brand, 2),
        event(
            PostCancelled(post_id=second, brand_id=brand, cancelled_at=at - timedelta(hours=1)),
            second,
            brand,
            2,
        ),
        event(
            PostPublished(
                post_id=first,
                brand_id=brand,
                platform="mastodon",
                platform_post_id="109",
                url="https://social.example/@acme/109",
                published_at=at,
            ),
            first,
            brand,
            3,
        ),
    ]
    # Not a valid published payload (no platform, a post id that is not a UUID).
    broken = CloudEvent(
        source=SOURCE,
        type="publishing.post.failed.v1",
        subject="nope",
        brandid=brand,
        data={"post_id": "nope", "brand_id": str(brand)},
    )
    log = tmp_path / "partner.log"
    group = f"partner-{uuid.uuid4().hex[:8]}"
    try:
        async with relay(fresh_db.app_dsn, kafka_bootstrap):
            await publish(pool, unique_topic, brand, [*lifecycle, broken])
            await drained(pool, brand)
            async with partner(kafka_bootstrap, unique_topic, group, log) as consumer:
                lines = await consumer.lines(len(lifecycle) + 1)
                assert per_post(lines) == {
                    str(first): [
                        "created (draft) for mastodon, bluesky",
                        "scheduled for 2026-12-03T09:00:00Z",  # as the payload carries it
                        "published on mastodon: https://social.example/@acme/109",
                    ],
                    str(second): ["created (draft) for x", "cancelled"],
                }
                (rejected,) = [line for line in lines if line.startswith("rejected")]
                assert f"rejected publishing.post.failed.v1 {broken.id}" in rejected

                await resend(kafka_bootstrap, unique_topic, created)
                (again,) = await consumer.lines(1)
                assert (
                    again == f"duplicate {created.id} (publishing.post.created.v1): already handled"
                )

            # A restart of the group reads only what came after the acknowledged offsets.
            edited = event(
                PostUpdated(post_id=first, brand_id=brand, changed=["text"], status="published"),
                first,
                brand,
                4,
            )
            await publish(pool, unique_topic, brand, [edited])
            await drained(pool, brand)
            async with partner(kafka_bootstrap, unique_topic, group, log) as consumer:
                (line,) = await consumer.lines(1)
                assert line == f"post {first}: updated (text), now published"
                with pytest.raises(TimeoutError):
                    await consumer.lines(1, timeout=1.5)
    finally:
        await pool.close()
        if log.exists() and log.stat().st_size:
            print(log.read_text()[-4000:])
