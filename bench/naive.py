"""The naive prototype the kit is measured against, on the same embedded servers and floor.

Issue #9 says a naive pipeline — event and outbox rows inserted per request, a 10 ms
polling relay, a batching consumer — reached 0.55 of the single-commit floor on the machine
where the kit reached 0.18. This is that prototype, written plainly so the two can be run
back to back on one machine: if it reaches a much higher ratio here too, the kit's own
overhead is the bound; if not, the machine is.

    producer process: 64 tasks, each ``BEGIN; INSERT event; INSERT outbox; COMMIT``
                      (asyncpg, no row-level security, no writers' lock, no savepoint);
                      a relay polling every 10 ms: select up to 500 unsent rows, send them,
                      mark them sent
    consumer process: aiokafka ``getmany`` and one transaction per poll: inbox rows and
                      projections inserted with ``executemany``, offsets committed after

    python -m bench.naive --seconds 8
    python -m bench.naive --seconds 8 --kit-shape   # + what the kit's pipeline does besides

``--kit-shape`` adds, one at a time measurable, the work the kit's sample command and
consumer do that the prototype does not: a projection row per command (the kit's ``notes``
table, written inside a savepoint) and one handler statement per consumed event (the kit's
handlers run per event, so the consumer cannot fold a poll's projections into one
``executemany``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import signal
import sys
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
from pressroom_kit.db import ensure_databases, replace_database
from pressroom_kit.embedded import EmbeddedKafka, EmbeddedPostgres

from bench.pipeline import (
    CONSUMER_SQL,
    _cpu,
    _measure,
    _paced,
    _wait_projected,
    commit_floor,
    create_topic,
)

TOPIC = "bench.naive.v1"
PRODUCER_SQL = """
CREATE TABLE events (
    position   bigserial PRIMARY KEY,
    event_id   uuid NOT NULL UNIQUE,
    stream_id  text NOT NULL,
    payload    jsonb NOT NULL,
    created_at timestamptz NOT NULL
);
CREATE TABLE outbox (
    id       bigserial PRIMARY KEY,
    event_id uuid NOT NULL,
    key      text NOT NULL,
    payload  jsonb NOT NULL,
    sent     boolean NOT NULL DEFAULT false
);
CREATE INDEX outbox_unsent ON outbox (id) WHERE NOT sent;
CREATE TABLE notes (id text PRIMARY KEY, title text NOT NULL, version integer NOT NULL);
"""
INBOX_SQL = "CREATE TABLE inbox (event_id uuid PRIMARY KEY, seen_at timestamptz DEFAULT now());"


async def _relay(pool: asyncpg.Pool, bootstrap: str, stop: asyncio.Event) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all")
    await producer.start()
    try:
        while not stop.is_set():
            async with pool.acquire() as conn:
                rows = await conn.fetch(
                    "SELECT id, key, payload FROM outbox WHERE NOT sent ORDER BY id LIMIT 500"
                )
                if rows:
                    sends = [
                        await producer.send(TOPIC, r["payload"].encode(), key=r["key"].encode())
                        for r in rows
                    ]
                    await asyncio.gather(*sends)
                    await conn.execute(
                        "UPDATE outbox SET sent = true WHERE id = ANY($1::bigint[])",
                        [r["id"] for r in rows],
                    )
            if not rows:
                await asyncio.sleep(0.01)
    finally:
        await producer.stop()


async def run_producer(dsn: str, bootstrap: str, kit_shape: bool) -> None:
    pool = await asyncpg.create_pool(dsn, min_size=4, max_size=20)
    stop = asyncio.Event()
    relay = asyncio.create_task(_relay(pool, bootstrap, stop))

    async def one() -> bool:
        event_id, stream = uuid.uuid4(), f"note-{uuid.uuid4()}"
        now = datetime.now(UTC)
        payload = json.dumps(
            {"id": str(event_id), "note_id": stream, "title": "bench", "time": now.isoformat()}
        )
        async with pool.acquire() as conn, conn.transaction():
            if kit_shape:
                await conn.execute("SAVEPOINT projection")
                await conn.execute(
                    "INSERT INTO notes (id, title, version) VALUES ($1, 'bench', 1)", stream
                )
            await conn.execute(
                "INSERT INTO events (event_id, stream_id, payload, created_at) "
                "VALUES ($1, $2, $3::jsonb, $4)",
                event_id,
                stream,
                payload,
                now,
            )
            await conn.execute(
                "INSERT INTO outbox (event_id, key, payload) VALUES ($1, $2, $3::jsonb)",
                event_id,
                stream,
                payload,
            )
        return True

    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        seconds, concurrency = line.decode().split()
        ok, failed = await _paced(float(seconds), int(concurrency), None, one)
        print(json.dumps({"ok": ok, "failed": failed}), flush=True)
    stop.set()
    await relay
    await pool.close()


async def run_consumer(dsn: str, bootstrap: str, kit_shape: bool) -> None:
    from aiokafka import AIOKafkaConsumer

    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    consumer = AIOKafkaConsumer(
        TOPIC,
        bootstrap_servers=bootstrap,
        group_id="naive",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=10,
    )
    await consumer.start()
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=200, max_records=500)
            records = [r for rs in batches.values() for r in rs]
            if not records:
                continue
            events = [json.loads(r.value) for r in records]
            async with pool.acquire() as conn, conn.transaction():
                fresh = await conn.fetch(
                    "INSERT INTO inbox (event_id) SELECT unnest($1::uuid[]) "
                    "ON CONFLICT DO NOTHING RETURNING event_id",
                    [e["id"] for e in events],
                )
                new = {str(r["event_id"]) for r in fresh}
                rows = [
                    (uuid.UUID(e["id"]), e["note_id"], datetime.fromisoformat(e["time"]))
                    for e in events
                    if e["id"] in new
                ]
                insert = (
                    "INSERT INTO projected (event_id, note_id, committed_at) VALUES ($1, $2, $3)"
                )
                if kit_shape:
                    for row in rows:  # one statement per event, as the kit's handlers do
                        await conn.execute(insert, *row)
                else:
                    await conn.executemany(insert, rows)
            await consumer.commit()
    finally:
        await consumer.stop()
        await pool.close()


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="pressroom-naive-"))
    postgres = EmbeddedPostgres(folder / "pg", durable=True)
    kafka = EmbeddedKafka()
    processes: list[asyncio.subprocess.Process] = []
    try:
        postgres.start()
        kafka.start()
        names = ("naive_producer", "naive_consumer")
        await ensure_databases(postgres.admin_dsn, list(names))
        dsn = {n: replace_database(postgres.admin_dsn, n) for n in names}
        for name, sql in zip(names, (PRODUCER_SQL, CONSUMER_SQL + INBOX_SQL), strict=True):
            conn = await asyncpg.connect(dsn[name])
            try:
                await conn.execute(sql)
            finally:
                await conn.close()
        await create_topic(kafka.bootstrap_servers, TOPIC)

        before_floor = await commit_floor(dsn["naive_producer"])
        print("floor before:", before_floor, flush=True)
        common = [sys.executable, "-m", "bench.naive"] + (["--kit-shape"] if args.kit_shape else [])
        producer = await asyncio.create_subprocess_exec(
            *common,
            "producer",
            dsn["naive_producer"],
            "--bootstrap",
            kafka.bootstrap_servers,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        consumer = await asyncio.create_subprocess_exec(
            *common, "consumer", dsn["naive_consumer"], "--bootstrap", kafka.bootstrap_servers
        )
        processes = [producer, consumer]
        assert producer.stdin is not None and producer.stdout is not None

        async def load(seconds: float, concurrency: int) -> int:
            assert producer.stdin is not None and producer.stdout is not None
            producer.stdin.write(f"{seconds} {concurrency}\n".encode())
            await producer.stdin.drain()
            line = b""
            while not line.startswith(b'{"ok"'):
                line = await producer.stdout.readline()
                if not line:
                    raise RuntimeError("the producer exited")
            return int(json.loads(line)["ok"])

        ok = await load(3, 8)  # warm-up
        await _wait_projected(dsn["naive_consumer"], ok)
        await _measure(dsn["naive_consumer"])
        groups: dict[str, list[int | None]] = {
            "producer": [producer.pid],
            "consumer": [consumer.pid],
            "postgres": [postgres.pid],
            "broker": [kafka.pid],
        }
        started = _cpu(groups)
        ok = await load(args.seconds, args.concurrency)
        await _wait_projected(dsn["naive_consumer"], ok)
        ended = _cpu(groups)
        throughput = await _measure(dsn["naive_consumer"])
        cpu = {n: round((ended[n] - started[n]) * 1000 / max(ok, 1), 3) for n in groups}
        cpu["total"] = round(sum(cpu.values()), 3)
        after_floor = await commit_floor(dsn["naive_producer"])
        mean = (before_floor + after_floor) / 2
        result = {
            "kit_shape": args.kit_shape,
            "floor_per_s": {"before": before_floor, "after": after_floor},
            "throughput": throughput,
            "cpu_ms_per_event": cpu,
            "ratio_to_floor": round(throughput["events_per_s"] / mean, 2),
        }
        print(json.dumps(result), flush=True)
        return result
    finally:
        for process in processes:
            if process.returncode is None:
                if process.stdin is not None:
                    process.stdin.close()
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                await asyncio.wait_for(process.wait(), timeout=15)
            except TimeoutError:
                process.kill()
        kafka.stop()
        postgres.stop()
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.naive")
    sub = parser.add_subparsers(dest="role")
    for role in ("producer", "consumer"):
        p = sub.add_parser(role)
        p.add_argument("dsn")
        p.add_argument("--bootstrap", required=True)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument(
        "--kit-shape",
        action="store_true",
        help="a projection per command and a statement per consumed event, as the kit does",
    )
    args = parser.parse_args()
    if args.role == "producer":
        asyncio.run(run_producer(args.dsn, args.bootstrap, args.kit_shape))
    elif args.role == "consumer":
        asyncio.run(run_consumer(args.dsn, args.bootstrap, args.kit_shape))
    else:
        asyncio.run(bench(args))


if __name__ == "__main__":
    main()
