"""What a consumer's rest costs on the embedded broker: the delay of the first message after
an idle spell, with the broker fetch wait of each tier (the kit's consumer settings:
10 ms while records flow, 500 ms idle, 2 s at rest).

    python -m bench.rest_latency --samples 10

Tansu answers a waiting fetch some way into its wait rather than when data arrives, so the
first message after a quiet spell waits for part of one fetch; Apache Kafka answers at once.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from pressroom_kit.embedded import EmbeddedKafka

from bench.pipeline import create_topic


async def _delays(bootstrap: str, wait_ms: int, samples: int) -> list[float]:
    topic = f"bench.rest.{uuid.uuid4().hex[:8]}"
    await create_topic(bootstrap, topic, partitions=1)
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"rest-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="latest",
        fetch_max_wait_ms=wait_ms,
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await consumer.start()
    await producer.start()
    delays = []
    try:
        while not consumer.assignment():
            await consumer.getmany(timeout_ms=100)
        for _ in range(samples):
            await asyncio.sleep(random.uniform(0.5, 1.5))  # quiet: the fetch is waiting
            sent = time.monotonic()
            await producer.send_and_wait(topic, b"x")
            while not await consumer.getmany(timeout_ms=wait_ms + 1000):
                pass
            delays.append((time.monotonic() - sent) * 1000)
    finally:
        await producer.stop()
        await consumer.stop()
    return delays


async def bench(samples: int) -> None:
    kafka = EmbeddedKafka()
    kafka.start()
    try:
        for wait_ms in (10, 500, 2000):
            delays = sorted(await _delays(kafka.bootstrap_servers, wait_ms, samples))
            print(
                f"fetch wait {wait_ms:>5} ms: first-message delay median "
                f"{statistics.median(delays):.0f} ms, min {delays[0]:.0f}, max {delays[-1]:.0f}"
                f" ({samples} samples)",
                flush=True,
            )
    finally:
        kafka.stop()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.rest_latency")
    parser.add_argument("--samples", type=int, default=10)
    asyncio.run(bench(parser.parse_args().samples))


if __name__ == "__main__":
    main()
