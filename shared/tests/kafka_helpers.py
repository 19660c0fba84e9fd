"""Reading topics back in tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from aiokafka.admin import AIOKafkaAdminClient, NewTopic


async def create_topics(bootstrap: str, *topics: str, partitions: int = 1) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(t, partitions, 1) for t in topics])
    finally:
        await admin.close()


async def read_until(
    bootstrap: str,
    topic: str,
    done: Callable[[list[ConsumerRecord]], bool],
    timeout: float = 30.0,
) -> list[ConsumerRecord]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
        fetch_max_wait_ms=10,
    )
    await consumer.start()
    records: list[ConsumerRecord] = []
    try:
        async with asyncio.timeout(timeout):
            while not done(records):
                batch = await consumer.getmany(timeout_ms=200)
                for items in batch.values():
                    records.extend(items)
    except TimeoutError:
        pass
    finally:
        await consumer.stop()
    return records


async def produce(bootstrap: str, topic: str, messages) -> None:  # type: ignore[no-untyped-def]
    """Send (key, value, headers) records one by one, each acknowledged."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        for key, value, headers in messages:
            await producer.send_and_wait(topic, value=value, key=key, headers=headers)
    finally:
        await producer.stop()


def encoded(event):  # type: ignore[no-untyped-def]
    """A CloudEvent as the relay puts it on Kafka: (key, value, binary-mode headers)."""
    from pressroom_kit import cloudevents

    return (
        event.subject.encode(),
        cloudevents.encode_value(event),
        cloudevents.kafka_headers(cloudevents.to_headers(event)),
    )
