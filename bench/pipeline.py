"""End-to-end benchmark of the kit's pipeline on the embedded servers.

    producer process: HTTP POST /v1/notes (uvicorn + Litestar) -> command handler appends the
                      event, projects it and writes the outbox in one transaction; the
                      outbox relay in the same process publishes to Kafka
    consumer process: inbox consumer projects each event into a second database
    this process:     the load generator (aiohttp) and the measurements

Two runs: *throughput* (as fast as the stack goes, N concurrent clients) and *lag*
(a fixed 1,000 events/s), with p50/p99 lag from commit to projection measured in the
consumer database (``projected_at - committed_at``, same machine clock).

    make bench                        # both runs, results in bench/results/pipeline.json
    python -m bench.pipeline --help
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from pressroom_kit.auth import JWTSettings, JWTVerifier, mint_token
from pressroom_kit.consumer import InboxConsumer
from pressroom_kit.db import (
    apply_migrations,
    connect,
    create_pool,
    ensure_databases,
    grant_runtime_role,
    replace_database,
    replace_user,
    tenant_transaction,
)
from pressroom_kit.embedded import EmbeddedKafka, EmbeddedPostgres, free_port
from pressroom_kit.outbox import Relay, RelaySettings
from pressroom_kit.testing.sample import domain as sample

TOPIC = "bench.notes.v1"
SECRET = "bench-secret-bench-secret-bench-secret"
RESULTS = Path(__file__).parent / "results" / "pipeline.json"
CONSUMER_SQL = """
CREATE TABLE IF NOT EXISTS projected (
    event_id     uuid PRIMARY KEY,
    note_id      text NOT NULL,
    committed_at timestamptz NOT NULL,
    projected_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
"""


async def _project(conn: asyncpg.Connection, event: Any, payload: Any) -> None:
    await conn.execute(
        "INSERT INTO projected (event_id, note_id, committed_at) VALUES ($1, $2, $3)",
        event.id,
        payload.note_id,
        event.time,
    )


async def _paced(
    seconds: float, concurrency: int, rate: float | None, one: Callable[[], Awaitable[bool]]
) -> tuple[int, int]:
    """Run ``one`` from ``concurrency`` tasks for ``seconds`` (at ``rate``/s in total if set)."""
    ok = failed = sent = 0
    start = time.monotonic()
    deadline = start + seconds

    async def worker() -> None:
        nonlocal ok, failed, sent
        while time.monotonic() < deadline:
            if rate is not None:
                due = start + sent / rate
                sent += 1
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            if await one():
                ok += 1
            else:
                failed += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return ok, failed


async def _direct_commands(pool: asyncpg.Pool) -> None:
    """Direct mode: the command handler called in-process; driven over stdin/stdout."""
    repo = sample.repository(TOPIC)
    brand = uuid.uuid4()

    async def one() -> bool:
        note = sample.Note.write(f"note-{uuid.uuid4()}", brand, "bench")
        async with tenant_transaction(pool, brand) as conn:
            await repo.save(conn, note, brand_id=brand, actor="bench")
        return True

    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        seconds, concurrency, rate = line.decode().split()
        ok, failed = await _paced(
            float(seconds), int(concurrency), None if rate == "-" else float(rate), one
        )
        print(json.dumps({"ok": ok, "failed": failed}), flush=True)


async def run_producer(dsn: str, bootstrap: str, port: int, direct: bool) -> None:
    import uvicorn
    from pressroom_kit.testing.sample.app import build_app

    pool = await create_pool(dsn, min_size=4, max_size=20)
    stop = asyncio.Event()
    relay = Relay(
        service="bench",
        dsn=dsn,
        bootstrap_servers=bootstrap,
        settings=RelaySettings(batch_size=1000, poll_interval=0.5),
    )
    relay_task = asyncio.create_task(relay.run(stop))
    if direct:
        await _direct_commands(pool)
        stop.set()
        await relay_task
        await pool.close()
        return
    app = build_app(JWTVerifier(JWTSettings(secret=SECRET)), pool=pool, topic=TOPIC)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_level="warning",
            access_log=False,
            lifespan="on",
            backlog=1024,
        )
    )
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, lambda: setattr(server, "should_exit", True))
    await server.serve()
    stop.set()
    await relay_task
    await pool.close()


async def run_consumer(dsn: str, bootstrap: str) -> None:
    pool = await create_pool(dsn, min_size=2, max_size=4)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    consumer = InboxConsumer(
        name="bench-consumer",
        dsn_or_pool=pool,
        bootstrap_servers=bootstrap,
        topics=[TOPIC],
        registry=sample.REGISTRY,
        handlers={sample.NoteChangedV1.event_type: _project},
    )
    await consumer.run(stop)
    await pool.close()


async def _http_load(
    base: str, token: str, *, seconds: float, concurrency: int, rate: float | None
) -> tuple[int, int]:
    """POST notes for ``seconds``; return (accepted, failed)."""
    headers = {"Authorization": f"Bearer {token}"}
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def one() -> bool:
            try:
                async with session.post(f"{base}/v1/notes", json={"title": "bench"}) as r:
                    await r.read()
                    return r.status == 201
            except aiohttp.ClientError:
                return False

        return await _paced(seconds, concurrency, rate, one)


def _cpu(groups: dict[str, list[int | None]]) -> dict[str, float]:
    """CPU seconds (user + system) used so far by each process group and its children."""
    import psutil

    totals = {}
    for name, pids in groups.items():
        total = 0.0
        for pid in pids:
            if pid is None:
                continue
            try:
                process = psutil.Process(pid)
                family = [process]
                if name != "load generator":
                    family += process.children(recursive=True)
                for member in family:
                    times = member.cpu_times()
                    total += times.user + times.system
            except psutil.NoSuchProcess:
                continue
        totals[name] = total
    return totals


async def _wait_projected(consumer_dsn: str, expected: int, timeout: float = 120) -> None:
    conn = await asyncpg.connect(consumer_dsn)
    try:
        deadline = time.monotonic() + timeout
        while await conn.fetchval("SELECT count(*) FROM projected") < expected:
            if time.monotonic() > deadline:
                raise TimeoutError("the consumer did not catch up")
            await asyncio.sleep(0.2)
    finally:
        await conn.close()


async def _measure(consumer_dsn: str) -> dict[str, Any]:
    conn = await asyncpg.connect(consumer_dsn)
    try:
        row = await conn.fetchrow(
            """
            SELECT count(*) AS events,
                   extract(epoch FROM max(projected_at) - min(committed_at)) AS span_s,
                   percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM
                       projected_at - committed_at)) * 1000 AS p50_ms,
                   percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM
                       projected_at - committed_at)) * 1000 AS p99_ms,
                   max(extract(epoch FROM projected_at - committed_at)) * 1000 AS max_ms
            FROM projected
            """
        )
        await conn.execute("TRUNCATE projected")
    finally:
        await conn.close()
    result = {k: (round(float(v), 1) if v is not None else None) for k, v in dict(row).items()}
    result["events_per_s"] = (
        round(result["events"] / result["span_s"], 1) if result["span_s"] else 0
    )
    return result


async def _start_processes(
    app_dsn: dict[str, str], bootstrap: str, port: int, direct: bool
) -> list[asyncio.subprocess.Process]:
    # The repository root first, then whatever the caller put on the path (a second tree's
    # kit, to measure a baseline with this same benchmark).
    path = [str(Path(__file__).parents[1]), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in path if p)}
    producer_args = [app_dsn["bench_producer"], str(port), "--bootstrap", bootstrap]
    if direct:
        producer_args.append("--direct")
    producer = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.pipeline",
        "producer",
        *producer_args,
        env=env,
        stdin=asyncio.subprocess.PIPE if direct else None,
        stdout=asyncio.subprocess.PIPE if direct else None,
    )
    consumer = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.pipeline",
        "consumer",
        app_dsn["bench_consumer"],
        "--bootstrap",
        bootstrap,
        env=env,
    )
    return [producer, consumer]


async def _stop_processes(processes: list[asyncio.subprocess.Process]) -> None:
    for process in processes:
        if process.returncode is None:
            if process.stdin is not None:
                process.stdin.close()
            process.send_signal(signal.SIGTERM)
    for process in processes:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(process.wait(), timeout=15)


async def _run_mode(
    mode: str,
    args: argparse.Namespace,
    postgres: EmbeddedPostgres,
    kafka: EmbeddedKafka,
    owner: dict[str, str],
) -> dict[str, Any]:
    direct = mode == "direct"
    app_dsn = {n: replace_user(d, "pressroom_app") for n, d in owner.items()}
    port = free_port()
    processes = await _start_processes(app_dsn, kafka.bootstrap_servers, port, direct)
    producer = processes[0]
    token = mint_token(SECRET, sub="bench", role="manager", brand_id=uuid.uuid4())
    base = f"http://127.0.0.1:{port}"

    async def load(seconds: float, concurrency: int, rate: float | None) -> tuple[int, int]:
        if not direct:
            return await _http_load(
                base, token, seconds=seconds, concurrency=concurrency, rate=rate
            )
        assert producer.stdin is not None and producer.stdout is not None
        producer.stdin.write(f"{seconds} {concurrency} {rate or '-'}\n".encode())
        await producer.stdin.drain()
        line = b""
        while not line.startswith(b'{"ok"'):  # skip the producer's log lines
            line = await producer.stdout.readline()
            if not line:
                raise RuntimeError("the producer exited")
        answer = json.loads(line)
        return int(answer["ok"]), int(answer["failed"])

    try:
        if not direct:
            async with asyncio.timeout(30):
                while True:
                    with contextlib.suppress(OSError):
                        _, writer = await asyncio.open_connection("127.0.0.1", port)
                        writer.close()
                        break
                    await asyncio.sleep(0.1)
        # Warm-up: consumer group join, connection pools.
        ok, _ = await load(3, 8, None)
        await _wait_projected(owner["bench_consumer"], ok)
        await _measure(owner["bench_consumer"])

        groups: dict[str, list[int | None]] = {
            "producer": [producer.pid],
            "consumer": [processes[1].pid],
            "postgres": [postgres.pid],
            "broker": [kafka.pid],
        }
        if not direct:
            groups["load generator"] = [os.getpid()]
        before = _cpu(groups)
        ok, failed = await load(args.seconds, args.concurrency, None)
        await _wait_projected(owner["bench_consumer"], ok)
        after = _cpu(groups)
        result: dict[str, Any] = {
            "throughput": {
                "accepted": ok,
                "failed": failed,
                "concurrency": args.concurrency,
                **await _measure(owner["bench_consumer"]),
            },
            "cpu_ms_per_event": {
                name: round((after[name] - before[name]) * 1000 / max(ok, 1), 3) for name in groups
            },
        }
        result["cpu_ms_per_event"]["total"] = round(sum(result["cpu_ms_per_event"].values()), 3)
        print(mode, "throughput:", result["throughput"], flush=True)
        print(mode, "cpu ms per event:", result["cpu_ms_per_event"], flush=True)
        ok, failed = await load(args.seconds, 64, args.rate)
        await _wait_projected(owner["bench_consumer"], ok)
        result["lag_at_rate"] = {
            "target_rate": args.rate,
            "accepted": ok,
            "failed": failed,
            **await _measure(owner["bench_consumer"]),
        }
        print(mode, "lag at rate:", result["lag_at_rate"], flush=True)
        return result
    finally:
        await _stop_processes(processes)


async def commit_floor(dsn: str, seconds: float = 5.0) -> float:
    """Single-connection commit-each inserts per second on this server: the floor the
    pipeline is measured against, since absolute figures differ several-fold between
    machines while the ratio to this floor, measured in the same run, does not."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS bench_floor (id bigserial PRIMARY KEY, data jsonb)"
        )
        insert = await conn.prepare("INSERT INTO bench_floor (data) VALUES ($1::jsonb)")
        done = 0
        start = time.monotonic()
        deadline = start + seconds
        while time.monotonic() < deadline:
            await insert.fetch('{"title": "bench"}')
            done += 1
        rate = done / (time.monotonic() - start)
        await conn.execute("DROP TABLE bench_floor")
    finally:
        await conn.close()
    return round(rate, 1)


async def create_topic(bootstrap: str, topic: str, partitions: int = 3) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        await admin.close()


async def _reset_statements(postgres: EmbeddedPostgres) -> None:
    conn = await asyncpg.connect(postgres.admin_dsn)
    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        await conn.execute("SELECT pg_stat_statements_reset()")
    finally:
        await conn.close()


async def _print_statements(postgres: EmbeddedPostgres, mode: str) -> None:
    conn = await asyncpg.connect(postgres.admin_dsn)
    try:
        rows = await conn.fetch(
            "SELECT calls, round(total_exec_time::numeric, 0) AS ms, "
            "left(regexp_replace(query, '\\s+', ' ', 'g'), 90) AS query "
            "FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 15"
        )
    finally:
        await conn.close()
    print(f"{mode}: costliest statements")
    for row in rows:
        print(f"  {row['calls']:>8} calls {row['ms']:>8} ms  {row['query']}")


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="pressroom-bench-"))
    postgres = EmbeddedPostgres(
        folder / "pg",
        durable=not args.no_fsync,
        settings=(
            {"shared_preload_libraries": "pg_stat_statements", "pg_stat_statements.track": "all"}
            if args.statements
            else {}
        ),
    )
    kafka = EmbeddedKafka()
    try:
        postgres.start()
        kafka.start()
        await ensure_databases(postgres.admin_dsn, ["bench_producer", "bench_consumer"])
        owner = {
            n: replace_database(postgres.admin_dsn, n) for n in ("bench_producer", "bench_consumer")
        }
        for name, dsn in owner.items():
            conn = await connect(dsn)
            try:
                if name == "bench_producer":
                    await apply_migrations(conn, [sample.MIGRATIONS])
                else:
                    await apply_migrations(conn, [])
                    await conn.execute(CONSUMER_SQL)
                await grant_runtime_role(conn, "pressroom_app")
            finally:
                await conn.close()
        await create_topic(kafka.bootstrap_servers, TOPIC)

        results: dict[str, Any] = {
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "durable_postgres": not args.no_fsync,
                "seconds": args.seconds,
            },
        }
        # The floor is measured before and after each mode: on a shared virtual machine the
        # fsync latency it mostly measures drifts within minutes, so the ratio is taken
        # against the mean of the two and both are kept.
        floor = await commit_floor(owner["bench_producer"])
        results["commit_floor_per_s"] = floor
        print("floor: single-connection commit-each inserts/s:", floor, flush=True)
        for mode in args.modes:
            if args.statements:
                await _reset_statements(postgres)
            results[mode] = await _run_mode(mode, args, postgres, kafka, owner)
            if args.statements:
                await _print_statements(postgres, mode)
            after = await commit_floor(owner["bench_producer"])
            mean = (floor + after) / 2
            rate = results[mode]["throughput"]["events_per_s"]
            results[mode]["commit_floor_per_s"] = {"before": floor, "after": after}
            results[mode]["ratio_to_floor"] = round(rate / mean, 2) if mean else None
            print(
                mode,
                f"floor before/after: {floor}/{after}; ratio to their mean:",
                results[mode]["ratio_to_floor"],
                flush=True,
            )
            floor = after
        return results
    finally:
        kafka.stop()
        postgres.stop()
        shutil.rmtree(folder, ignore_errors=True)


def _profiled(role: str, main: Any) -> None:
    """Run a bench process, under cProfile when PRESSROOM_BENCH_PROFILE names a folder (the
    stats go to <folder>/<role>.prof; ``python -m pstats`` reads them)."""
    folder = os.environ.get("PRESSROOM_BENCH_PROFILE")
    if not folder:
        asyncio.run(main)
        return
    import cProfile

    # The benchmark ends its processes with SIGTERM: exit through the finally below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    profile = cProfile.Profile()
    profile.enable()
    try:
        asyncio.run(main)
    finally:
        profile.disable()
        Path(folder).mkdir(parents=True, exist_ok=True)
        profile.dump_stats(str(Path(folder) / f"{role}.prof"))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.pipeline")
    sub = parser.add_subparsers(dest="role")
    producer = sub.add_parser("producer")
    producer.add_argument("dsn")
    producer.add_argument("port", type=int)
    producer.add_argument("--bootstrap", required=True)
    producer.add_argument("--direct", action="store_true")
    consumer = sub.add_parser("consumer")
    consumer.add_argument("dsn")
    consumer.add_argument("--bootstrap", required=True)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rate", type=float, default=1000)
    parser.add_argument("--no-fsync", action="store_true", help="non-durable PostgreSQL")
    parser.add_argument(
        "--statements",
        action="store_true",
        help="print PostgreSQL's costliest statements (pg_stat_statements)",
    )
    parser.add_argument(
        "--modes", nargs="+", default=["direct", "http"], choices=["direct", "http"]
    )
    args = parser.parse_args()
    if args.role == "producer":
        _profiled("producer", run_producer(args.dsn, args.bootstrap, args.port, args.direct))
    elif args.role == "consumer":
        _profiled("consumer", run_consumer(args.dsn, args.bootstrap))
    else:
        results = asyncio.run(bench(args))
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=2) + "\n")
        print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
