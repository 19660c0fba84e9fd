"""How long the advisor takes for a brand with 10,000 posts: insight regeneration (what
``after_sync`` does in the sync's transaction), split into loading the posts (SQL), the
analysis (Python) and storing the insights, plus the whole ``after_sync`` with active goals
and a monthly plan's generation.

    this process: an embedded PostgreSQL with the analytics migrations, one brand with
                  ``--posts`` posts over three platforms and two years (each with
                  ``--days`` days of post metrics), as the runtime role under row-level
                  security; each step runs ``--runs`` times

    .venv/bin/python -m bench.analytics_advisor [--posts 10000] [--days 3] [--runs 10]

Results go to bench/results/analytics-advisor.json.
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
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from pressroom_kit.db import create_pool, ensure_databases, prepare_database, replace_database
from pressroom_kit.embedded import EmbeddedPostgres

RESULTS = Path(__file__).parent / "results"
PLATFORMS = ("x", "instagram", "linkedin")
NOW = datetime(2027, 3, 10, 12, tzinfo=UTC)


async def seed(owner_dsn: str, brand: uuid.UUID, posts: int, days: int) -> None:
    import asyncpg

    rng = random.Random(7)
    conn = await asyncpg.connect(owner_dsn)
    try:
        async with conn.transaction():
            await conn.execute("SELECT set_config('app.all_brands', 'on', true)")
            await conn.execute(
                "INSERT INTO analytics_brands (brand_id, name, timezone, updated_at) "
                "VALUES ($1, 'Bench', 'Europe/Berlin', now())",
                brand,
            )
            await conn.executemany(
                "INSERT INTO analytics_connections (brand_id, platform, status, updated_at) "
                "VALUES ($1, $2, 'connected', now())",
                [(brand, p) for p in PLATFORMS],
            )
            post_rows, metric_rows = [], []
            for i in range(posts):
                platform = PLATFORMS[i % len(PLATFORMS)]
                when = NOW - timedelta(minutes=rng.randint(60, 2 * 365 * 24 * 60))
                kind = rng.choice([None, "image", "video", "carousel"])
                post_id = uuid.uuid4()
                ppid = f"{platform}-{post_id.hex[:12]}"
                post_rows.append((brand, post_id, platform, ppid, when, kind))
                base = 100 + (60 if when.hour in (12, 18) else 0) + (40 if kind == "video" else 0)
                for d in range(days):
                    value = max(0, int(rng.gauss(base, 50)))
                    metric_rows.append(
                        (brand, post_id, platform, ppid, when.date() + timedelta(days=d), value)
                    )
            await conn.copy_records_to_table(
                "analytics_posts",
                records=[(*r, NOW) for r in post_rows],
                columns=[
                    "brand_id",
                    "post_id",
                    "platform",
                    "platform_post_id",
                    "published_at",
                    "media_kind",
                    "updated_at",
                ],
            )
            await conn.copy_records_to_table(
                "analytics_post_metrics",
                records=[(*r, r[-1] * 10, NOW, NOW) for r in metric_rows],
                columns=[
                    "brand_id",
                    "post_id",
                    "platform",
                    "platform_post_id",
                    "date",
                    "engagement",
                    "reach",
                    "collected_at",
                    "synced_at",
                ],
            )
            start = date(2027, 3, 1)
            await conn.executemany(
                "INSERT INTO analytics_metrics (brand_id, platform, date, reach, impressions, "
                "engagement, followers, collected_at, synced_at) "
                "VALUES ($1, $2, $3, 1000, 2000, 50, 5000, now(), now())",
                [(brand, p, start + timedelta(days=d)) for p in PLATFORMS for d in range(10)],
            )
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


async def timed(runs: int, step: Callable[[], Awaitable[Any]]) -> dict[str, float]:
    await step()  # warm-up: plans, caches
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        await step()
        samples.append((time.perf_counter() - started) * 1000)
    return {
        "p50_ms": round(statistics.median(samples), 1),
        "min_ms": round(min(samples), 1),
        "max_ms": round(max(samples), 1),
    }


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    from pressroom_analytics import advisor
    from pressroom_analytics.advisor import analysis, insights, plans
    from pressroom_analytics.app import MIGRATIONS
    from pressroom_kit.db import tenant_transaction

    folder = Path(tempfile.mkdtemp(prefix="pressroom-bench-advisor-"))
    postgres = EmbeddedPostgres(folder / "pg")
    try:
        postgres.start()
        await ensure_databases(postgres.admin_dsn, ["bench_analytics"])
        owner = replace_database(postgres.admin_dsn, "bench_analytics")
        dsn = await prepare_database(
            database_url=owner,
            migrate_database_url=None,
            runtime_role="pressroom_app",
            migrations=[MIGRATIONS],
        )
        brand = uuid.uuid4()
        await seed(owner, brand, args.posts, args.days)
        pool = await create_pool(dsn, min_size=1, max_size=2)
        try:
            async with tenant_transaction(pool, brand) as conn:
                for metric in ("reach", "engagement", "followers", "impressions", "engagementRate"):
                    await conn.execute(
                        "INSERT INTO analytics_goals (id, brand_id, metric, target, start_date, "
                        "deadline, due_at, status, created_at, updated_at) VALUES ($1, $2, $3, "
                        "1e12, '2027-03-01', '2027-03-31', '2027-04-01', 'active', now(), now())",
                        uuid.uuid4(),
                        brand,
                        metric,
                    )

            loaded: list[analysis.PostOutcome] = []

            async def load() -> None:
                async with tenant_transaction(pool, brand) as conn:
                    loaded[:] = await insights.load_posts(conn)

            async def analyse() -> None:
                from zoneinfo import ZoneInfo

                analysis.analyse(loaded, ZoneInfo("Europe/Berlin"))

            async def regenerate() -> None:
                async with tenant_transaction(pool, brand) as conn:
                    await insights.regenerate(conn, brand, NOW)

            async def after_sync() -> None:
                async with tenant_transaction(pool, brand) as conn:
                    await advisor.after_sync(conn, brand_id=brand, now=NOW)

            async def plan() -> None:
                async with tenant_transaction(pool, brand) as conn:
                    await plans.generate(
                        conn, brand, "2027-04", regenerate=True, actor="bench", now=NOW
                    )

            results: dict[str, Any] = {
                "posts": args.posts,
                "post_metric_rows": args.posts * args.days,
                "runs": args.runs,
                "load_posts_sql": await timed(args.runs, load),
                "analyse_python": await timed(args.runs, analyse),
                "regenerate_insights": await timed(args.runs, regenerate),
                "after_sync_with_5_goals": await timed(args.runs, after_sync),
                "generate_month_plan": await timed(args.runs, plan),
            }
            async with tenant_transaction(pool, brand) as conn:
                results["insights"] = len(await insights.ranked(conn))
                results["plan_slots"] = await conn.fetchval("SELECT count(*) FROM auto_plan_slots")
            results["measured_posts"] = len(loaded)
            return results
        finally:
            await pool.close()
    finally:
        postgres.stop()
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.analytics_advisor")
    parser.add_argument("--posts", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=3, help="days of metrics per post")
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    results = asyncio.run(bench(args))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "analytics-advisor.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
