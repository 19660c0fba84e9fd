"""Webhook deliveries per second, and the delay from queueing to delivery.

    receiver process: an aiohttp server; /fast answers at once, /slow never within the
                      timeout (10 % of the endpoints point there)
    worker process:   pressroom_webhook's DeliveryWorker, as the service runs it
    this process:     creates 50 endpoints and queues events (each event fans out to every
                      endpoint of the brand), then reads the results from PostgreSQL

    .venv/bin/python -m bench.webhook [--seconds 20]

Results go to bench/results/webhook.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
from pressroom_contracts import CloudEvent
from pressroom_kit.db import (
    create_pool,
    ensure_databases,
    prepare_database,
    replace_database,
    tenant_transaction,
)
from pressroom_kit.embedded import EmbeddedPostgres, free_port, terminate, wait_for_port

RESULTS = Path(__file__).parent / "results" / "webhook.json"
ENDPOINTS = 50


def bench_settings(dsn: str) -> Any:
    from pressroom_webhook.settings import WebhookSettings

    return WebhookSettings.model_validate(
        {
            "database_url": dsn,
            "runtime_role": None,
            "allow_private_targets": True,  # the receivers are local
            "per_endpoint_rate": 200.0,
            "per_endpoint_concurrency": 4,
            "timeout_s": 10.0,
            "poll_interval_s": 0.5,
            "log_level": "WARNING",
        }
    )


def run_receiver(port: int) -> None:
    from aiohttp import web

    async def fast(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def slow(_: web.Request) -> web.Response:
        await asyncio.sleep(60)
        return web.Response(text="late")

    app = web.Application()
    app.router.add_post("/fast", fast)
    app.router.add_post("/slow", slow)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


def run_worker(dsn: str) -> None:
    from pressroom_webhook.delivery import DeliveryWorker
    from pressroom_webhook.secrets import SecretBox

    async def main() -> None:
        settings = bench_settings(dsn)
        pool = await create_pool(dsn, min_size=4, max_size=40)
        box = SecretBox(settings.encryption_keys, settings.encryption_key_id)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await DeliveryWorker(pool, box, settings).run(stop)
        await pool.close()

    asyncio.run(main())


async def queue_events(pool: asyncpg.Pool, brand: uuid.UUID, count: int) -> None:
    from pressroom_webhook.handlers import enqueue

    async with tenant_transaction(pool, brand) as conn:
        for n in range(count):
            event = CloudEvent(
                source="/bench",
                type="publishing.post.published.v1",
                subject=f"post-{n}",
                brandid=brand,
                data={"platform": "instagram", "url": f"https://x/{n}"},
            )
            await enqueue(conn, event, max_attempts=5, now=datetime.now(UTC))


async def measure(
    pool: asyncpg.Pool, brand: uuid.UUID, slow_ids: list[uuid.UUID], since: datetime
) -> dict[str, Any]:
    async with tenant_transaction(pool, brand) as conn:
        row = await conn.fetchrow(
            """
            SELECT count(*) AS delivered,
                   extract(epoch FROM max(a.attempted_at + a.duration_ms * interval '1 ms')
                                      - min(e.created_at)) AS span_s,
                   percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM
                       a.attempted_at + a.duration_ms * interval '1 ms' - e.created_at)) * 1000
                       AS p50_ms,
                   percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM
                       a.attempted_at + a.duration_ms * interval '1 ms' - e.created_at)) * 1000
                       AS p99_ms
            FROM webhook_attempts a JOIN webhook_events e ON e.id = a.webhook_event_id
            WHERE a.status = 'succeeded' AND NOT (e.endpoint_id = ANY($1::uuid[]))
              AND e.created_at >= $2
            """,
            slow_ids,
            since,
        )
    result = {k: round(float(v), 1) if v is not None else None for k, v in dict(row).items()}
    span = result["span_s"] or 0
    result["deliveries_per_s"] = round(result["delivered"] / span, 1) if span else 0
    return result


async def wait_delivered(
    pool: asyncpg.Pool, brand: uuid.UUID, healthy: int, since: datetime, timeout: float = 300
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        async with tenant_transaction(pool, brand) as conn:
            done = await conn.fetchval(
                "SELECT count(*) FROM webhook_events WHERE status = 'delivered' "
                "AND created_at >= $1",
                since,
            )
        if done >= healthy or time.monotonic() > deadline:
            return
        await asyncio.sleep(0.2)


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    from pressroom_webhook.app import MIGRATIONS
    from pressroom_webhook.handlers import create_endpoint
    from pressroom_webhook.secrets import SecretBox

    folder = Path(tempfile.mkdtemp(prefix="pressroom-bench-wh-"))
    postgres = EmbeddedPostgres(folder / "pg")
    processes: list[subprocess.Popen[bytes]] = []
    try:
        postgres.start()
        await ensure_databases(postgres.admin_dsn, ["bench_webhook"])
        owner = replace_database(postgres.admin_dsn, "bench_webhook")
        dsn = await prepare_database(
            database_url=owner,
            migrate_database_url=None,
            runtime_role="pressroom_app",
            migrations=[MIGRATIONS],
        )
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
        port = free_port()
        processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "bench.webhook", "receiver", str(port)], env=env
            )
        )
        wait_for_port("127.0.0.1", port, 30)
        pool = await create_pool(dsn, min_size=2, max_size=10)
        settings = bench_settings(dsn)
        box = SecretBox(settings.encryption_keys, settings.encryption_key_id)
        brand = uuid.uuid4()
        slow_ids = []
        for n in range(ENDPOINTS):
            slow = n < ENDPOINTS * args.slow_share
            endpoint_id, _ = await create_endpoint(
                pool,
                box,
                brand_id=brand,
                actor="bench",
                url=f"http://localhost:{port}/{'slow' if slow else 'fast'}",
                provider="generic",
                event_types=["publishing.*"],
                description="",
                enabled=True,
            )
            if slow:
                slow_ids.append(endpoint_id)
        healthy_per_event = ENDPOINTS - len(slow_ids)
        processes.append(
            subprocess.Popen([sys.executable, "-m", "bench.webhook", "worker", dsn], env=env)
        )
        await asyncio.sleep(2)
        results: dict[str, Any] = {"endpoints": ENDPOINTS, "slow_endpoints": len(slow_ids)}

        burst = 200
        since = datetime.now(UTC)
        await queue_events(pool, brand, burst)
        await wait_delivered(pool, brand, burst * healthy_per_event, since)
        results["burst"] = {"events": burst, **await measure(pool, brand, slow_ids, since)}
        print("burst:", results["burst"], flush=True)

        rate = args.events_per_s
        since = datetime.now(UTC)
        start = time.monotonic()
        sent = 0
        while time.monotonic() - start < args.seconds:
            await queue_events(pool, brand, 1)
            sent += 1
            delay = start + sent / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        await wait_delivered(pool, brand, sent * healthy_per_event, since)
        results["steady"] = {
            "events_per_s": rate,
            "healthy_deliveries_per_s_offered": rate * healthy_per_event,
            **await measure(pool, brand, slow_ids, since),
        }
        print("steady:", results["steady"], flush=True)
        await pool.close()
        return results
    finally:
        for process in processes:
            terminate(process, timeout=15)
        postgres.stop()
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.webhook")
    sub = parser.add_subparsers(dest="role")
    receiver = sub.add_parser("receiver")
    receiver.add_argument("port", type=int)
    worker = sub.add_parser("worker")
    worker.add_argument("dsn")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument(
        "--slow-share",
        type=float,
        default=0.1,
        help="share of endpoints that never answer within the timeout",
    )
    parser.add_argument(
        "--events-per-s", type=float, default=10, help="each event fans out to every endpoint (50)"
    )
    args = parser.parse_args()
    if args.role == "receiver":
        run_receiver(args.port)
    elif args.role == "worker":
        run_worker(args.dsn)
    else:
        results = asyncio.run(bench(args))
        target = RESULTS.with_name(f"webhook-slow{int(args.slow_share * 100)}.json")
        target.write_text(json.dumps(results, indent=2) + "\n")
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
