"""Analytics metrics at scale: upsert throughput of daily rows (a year for 1,000 brands x 5
platforms = 1.8 M rows) and the latency of ``GET /v1/analytics/summary`` over that data.

    this process: an embedded PostgreSQL with the analytics migrations and the embedded
                  broker; the upserts run ``store.upsert_account_days`` exactly as the
                  consumer does (one transaction per platform answer, as the runtime role
                  under row-level security) from ``--concurrency`` tasks; then the service
                  itself (``create_app``, uvicorn in this process) answers ``--requests``
                  summaries for random brands from 16 concurrent aiohttp clients, then a
                  quarter as many from one client (the latency without queueing)

    .venv/bin/python -m bench.analytics [--brands 1000] [--days 365] [--requests 2000]

Results go to bench/results/analytics.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import statistics
import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from pressroom_kit.auth import mint_token
from pressroom_kit.db import (
    create_pool,
    ensure_databases,
    prepare_database,
    replace_database,
    tenant_transaction,
)
from pressroom_kit.embedded import EmbeddedKafka, EmbeddedPostgres

RESULTS = Path(__file__).parent / "results" / "analytics.json"
PLATFORMS = ("sandbox", "x", "instagram", "linkedin", "mastodon")
LAST_DAY = date(2027, 3, 9)
SECRET = "bench-analytics-secret-bench-analytics-secret"


def account_days(brand: uuid.UUID, platform: str, first: date, count: int, scale: int = 1) -> Any:
    from pressroom_contracts.events.publishing import AccountDay

    rng = random.Random(f"{brand}:{platform}:{first}:{scale}")
    out = []
    for i in range(count):
        reach = rng.randint(100, 5000) * scale
        out.append(
            AccountDay(
                date=first + timedelta(days=i),
                reach=reach,
                impressions=reach + rng.randint(0, 2000),
                engagement=rng.randint(0, reach // 10),
                followers=1000 + i * 3,
            )
        )
    return out


Job = tuple[uuid.UUID, str, date, int, int]  # brand, platform, first day, days, scale


async def upsert_all(pool: Any, jobs: list[Job], tasks: int) -> float:
    """Seconds to upsert every job (one transaction each, the days built as it goes) from
    ``tasks`` workers."""
    from pressroom_analytics.sync import store

    queue: asyncio.Queue[Job] = asyncio.Queue()
    for job in jobs:
        queue.put_nowait(job)
    now = datetime.now(UTC)

    async def worker() -> None:
        while not queue.empty():
            brand, platform, first, count, scale = queue.get_nowait()
            days = account_days(brand, platform, first, count, scale)
            async with tenant_transaction(pool, brand) as conn:
                await store.upsert_account_days(
                    conn,
                    brand_id=brand,
                    platform=platform,
                    days=days,
                    collected_at=now,
                    synced_at=now,
                    sync_id=None,
                )

    start = time.perf_counter()
    await asyncio.gather(*[worker() for _ in range(tasks)])
    return time.perf_counter() - start


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {
        "p50_ms": round(pick(0.50) * 1000, 1),
        "p90_ms": round(pick(0.90) * 1000, 1),
        "p99_ms": round(pick(0.99) * 1000, 1),
        "max_ms": round(ordered[-1] * 1000, 1),
        "mean_ms": round(statistics.fmean(ordered) * 1000, 1),
    }


async def summaries(
    base: str, brands: list[uuid.UUID], requests: int, query: str, clients: int = 16
) -> dict[str, Any]:
    rng = random.Random(3)
    tokens = {b: mint_token(SECRET, sub="bench", role="viewer", brand_id=b) for b in brands}
    picks = [rng.choice(brands) for _ in range(requests)]
    samples: list[float] = []
    errors = 0

    async with aiohttp.ClientSession() as http:

        async def client(share: list[uuid.UUID]) -> None:
            nonlocal errors
            for brand in share:
                start = time.perf_counter()
                async with http.get(
                    f"{base}/v1/analytics/summary?{query}",
                    headers={"Authorization": f"Bearer {tokens[brand]}"},
                ) as answer:
                    body = await answer.read()
                    if answer.status != 200 or b'"platforms"' not in body:
                        errors += 1
                samples.append(time.perf_counter() - start)

        started = time.perf_counter()
        await asyncio.gather(*[client(picks[i::clients]) for i in range(clients)])
        elapsed = time.perf_counter() - started
    return {
        "requests": requests,
        "clients": clients,
        "errors": errors,
        "per_s": round(requests / elapsed, 1),
        **percentiles(samples),
    }


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    from pressroom_analytics.app import MIGRATIONS, create_app
    from pressroom_analytics.settings import AnalyticsSettings
    from pressroom_kit.testing.servers import serve_asgi

    folder = Path(tempfile.mkdtemp(prefix="pressroom-bench-an-"))
    postgres = EmbeddedPostgres(folder / "pg")
    kafka = EmbeddedKafka()
    results: dict[str, Any] = {
        "brands": args.brands,
        "platforms": len(PLATFORMS),
        "days": args.days,
        "concurrency": args.concurrency,
    }
    try:
        postgres.start()
        kafka.start()
        await ensure_databases(postgres.admin_dsn, ["bench_analytics"])
        owner = replace_database(postgres.admin_dsn, "bench_analytics")
        dsn = await prepare_database(
            database_url=owner,
            migrate_database_url=None,
            runtime_role="pressroom_app",
            migrations=[MIGRATIONS],
        )
        pool = await create_pool(dsn, min_size=2, max_size=args.concurrency + 2)
        brands = [uuid.uuid4() for _ in range(args.brands)]
        first = LAST_DAY - timedelta(days=args.days - 1)

        jobs: list[Job] = [(b, p, first, args.days, 1) for b in brands for p in PLATFORMS]
        rows = len(jobs) * args.days
        seconds = await upsert_all(pool, jobs, args.concurrency)
        results["insert_year_answers"] = {
            "answers": len(jobs),
            "rows": rows,
            "seconds": round(seconds, 1),
            "rows_per_s": round(rows / seconds),
            "answers_per_s": round(len(jobs) / seconds, 1),
        }
        print("insert:", results["insert_year_answers"], flush=True)

        # Daily-sync-shaped answers (7 days) over the full table: new numbers, then the same
        # answers again (a resend: the upsert's WHERE leaves the rows alone).
        week = LAST_DAY - timedelta(days=6)
        sample = brands[: max(1, args.brands // 2)]
        jobs = [(b, p, week, 7, 2) for b in sample for p in PLATFORMS]
        for name in ("update_week_answers", "resend_week_answers"):
            seconds = await upsert_all(pool, jobs, args.concurrency)
            results[name] = {
                "answers": len(jobs),
                "rows": len(jobs) * 7,
                "seconds": round(seconds, 1),
                "rows_per_s": round(len(jobs) * 7 / seconds),
                "answers_per_s": round(len(jobs) / seconds, 1),
            }
            print(name, results[name], flush=True)
        async with pool.acquire() as conn:
            size = await conn.fetchval("SELECT pg_total_relation_size('analytics_metrics')")
        results["table_mb"] = round(size / 2**20)
        await pool.close()

        settings = AnalyticsSettings.model_validate(
            {
                "database_url": owner,
                "runtime_role": "pressroom_app",
                "jwt_secret": SECRET,
                "kafka_bootstrap_servers": kafka.bootstrap_servers,
                "log_level": "WARNING",
            }
        )
        clock = lambda: datetime(2027, 3, 9, 18, tzinfo=UTC)  # noqa: E731
        app = create_app(settings, clock=clock, run_workers=False)
        async with serve_asgi(app) as base:
            await summaries(base, brands, 200, "")  # warm-up
            for name, query, clients in (
                ("summary_30_days", "", 16),
                ("summary_366_days", "from=2026-03-09&to=2027-03-09", 16),
                ("summary_30_days_one_client", "", 1),
                ("summary_366_days_one_client", "from=2026-03-09&to=2027-03-09", 1),
            ):
                count = args.requests if clients > 1 else args.requests // 4
                results[name] = await summaries(base, brands, count, query, clients)
                print(name, results[name], flush=True)
        return results
    finally:
        kafka.stop()
        postgres.stop()
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.analytics")
    parser.add_argument("--brands", type=int, default=1000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    results = asyncio.run(bench(args))
    if args.brands == 1000 and args.days == 365:
        RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
