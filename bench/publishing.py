"""Scheduled posts published per second, and the delay from ``scheduled_at`` to the platform
call, with two scheduler replicas; duplicates counted by the platform.

    platform process:  the built-in sandbox platform (``python -m pressroom_publishing.sandbox``,
                       ``--platform sandbox``, the default: one platform per post, OAuth tokens
                       from its consent flow), or a bare aiohttp server of a platform's shape
                       (``--platform fake``: two platforms per post, ``POST /<platform>/v1/posts``
                       with a client reference); each counts what it creates per reference
    replica processes: two ``pressroom_publishing.scheduler.Scheduler`` on their own pools,
                       as the service runs them (claims, leases, fenced records, NOTIFY)
    this process:      creates the posts through the post commands (validated, submitted),
                       spreads their ``scheduled_at`` over the run at ``--rate`` posts per
                       second, waits, then reads the attempt log from PostgreSQL

    .venv/bin/python -m bench.publishing [--platform sandbox|fake] [--rate 100] [--seconds 60]

Results go to bench/results/publishing-<platform>.json.
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
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import aiohttp
import asyncpg
from pressroom_kit.db import create_pool, ensure_databases, prepare_database, replace_database
from pressroom_kit.embedded import EmbeddedPostgres, free_port, terminate, wait_for_port
from pressroom_publishing.platforms.base import (
    Account,
    Capabilities,
    Credentials,
    MetricsReport,
    OAuthContext,
    Platform,
    PlatformHTTP,
    PublishedPost,
    PublishRequest,
    TokenGrant,
)

RESULTS = Path(__file__).parent / "results"
FAKE_PLATFORMS = ("sandbox", "x")
BRANDS = 10
REDIRECT_URI = "http://127.0.0.1/callback"


def bench_settings(dsn: str) -> Any:
    from pressroom_publishing.settings import PublishingSettings

    return PublishingSettings.model_validate(
        {
            "database_url": dsn,
            "runtime_role": None,
            "log_level": "WARNING",
            "poll_interval_s": 0.25,
            "claim_batch": 100,
            "publish_concurrency": 64,
            "platform_timeout_s": 10.0,
        }
    )


class BenchPlatform(Platform):
    """The platform process's API, for both platform ids."""

    capabilities: ClassVar[Capabilities] = Capabilities(
        platform="sandbox", display_name="Sandbox", text_limit=500, lookup_by_reference=True
    )

    async def authorization_url(self, context: OAuthContext) -> str:
        return f"{self.config['api_url']}/authorize"

    async def exchange_code(self, code: str, context: OAuthContext) -> TokenGrant:
        return TokenGrant(access_token=code)

    async def refresh(self, credentials: Credentials) -> TokenGrant:
        return TokenGrant(access_token=credentials.access_token)

    async def verify(self, credentials: Credentials) -> Account:
        return Account(account_id=credentials.account_id)

    async def publish(self, credentials: Credentials, request: PublishRequest) -> PublishedPost:
        answer = await self.http.request(
            self,
            "POST",
            f"{self.config['api_url']}/{self.id}/v1/posts",
            token=credentials.access_token,
            json={"text": request.content.text, "client_reference": request.reference},
        )
        data = answer.json()["data"]
        return PublishedPost(platform_post_id=data["id"], url=data["url"])

    async def find_published(
        self, credentials: Credentials, request: PublishRequest
    ) -> PublishedPost | None:
        answer = await self.http.request(
            self,
            "GET",
            f"{self.config['api_url']}/{self.id}/v1/posts",
            token=credentials.access_token,
            params={"client_reference": request.reference},
        )
        found = answer.json()["data"]
        return PublishedPost(found[0]["id"], found[0]["url"]) if found else None

    async def delete(self, credentials: Credentials, platform_post_id: str) -> None:
        return None

    async def fetch_metrics(
        self,
        credentials: Credentials,
        since: date,
        until: date,
        platform_post_ids: Sequence[str] = (),
    ) -> MetricsReport:
        return MetricsReport()


class BenchX(BenchPlatform):
    capabilities = Capabilities(
        platform="x", display_name="X", text_limit=280, lookup_by_reference=True
    )


def adapters(http: PlatformHTTP, mode: str, api_url: str) -> dict[str, Platform]:
    if mode == "sandbox":
        from pressroom_publishing.platforms.sandbox import SandboxPlatform

        return {"sandbox": SandboxPlatform(http, {"api_url": api_url})}
    return {
        "sandbox": BenchPlatform(http, {"api_url": api_url}),
        "x": BenchX(http, {"api_url": api_url}),
    }


def platform_ids(mode: str) -> tuple[str, ...]:
    return ("sandbox",) if mode == "sandbox" else FAKE_PLATFORMS


class StaticCredentials:
    """Each brand's token, got once before the run (tokens are not what is measured; the
    sandbox's last an hour)."""

    def __init__(self, tokens: dict[str, tuple[str, str]]) -> None:
        self.tokens = tokens  # brand id -> (access token, account id)

    async def credentials(self, brand_id: uuid.UUID, platform: str) -> Credentials:
        token, account = self.tokens.get(str(brand_id), ("bench-token", "bench"))
        return Credentials(
            connection_id=uuid.UUID(int=0),
            brand_id=brand_id,
            platform=platform,
            access_token=token,
            account_id=account,
        )

    async def refresh_after_rejection(self, stale: Credentials) -> Credentials:
        return stale

    async def mark_revoked(self, credentials: Credentials, error: Exception) -> None:
        return None


def run_platform(port: int) -> None:
    from aiohttp import web

    created: Counter[str] = Counter()

    async def create(request: web.Request) -> web.Response:
        body = await request.json()
        created[body["client_reference"]] += 1
        post_id = uuid.uuid4().hex[:12]
        return web.json_response(
            {"data": {"id": post_id, "url": f"http://platform/p/{post_id}"}}, status=201
        )

    async def find(request: web.Request) -> web.Response:
        reference = request.query["client_reference"]
        found = [{"id": reference, "url": ""}] if created[reference] else []
        return web.json_response({"data": found})

    async def stats(_: web.Request) -> web.Response:
        return web.json_response(
            {
                "created": sum(created.values()),
                "references": len(created),
                "duplicates": sum(n - 1 for n in created.values() if n > 1),
            }
        )

    app = web.Application()
    app.router.add_post("/{platform}/v1/posts", create)
    app.router.add_get("/{platform}/v1/posts", find)
    app.router.add_get("/stats", stats)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


def run_replica(dsn: str, mode: str, api_url: str, tokens_file: str) -> None:
    from pressroom_publishing.scheduler import Scheduler

    tokens = json.loads(Path(tokens_file).read_text())

    async def main() -> None:
        settings = bench_settings(dsn)
        pool = await create_pool(dsn, min_size=4, max_size=40)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=256, limit_per_host=128)
        ) as session:
            http = PlatformHTTP(session, timeout_s=settings.platform_timeout_s)
            scheduler = Scheduler(
                pool, settings, adapters(http, mode, api_url), StaticCredentials(tokens)
            )
            await scheduler.run(stop)
        await pool.close()

    asyncio.run(main())


async def sandbox_tokens(api_url: str, brands: list[uuid.UUID]) -> dict[str, tuple[str, str]]:
    """Each brand connects an account of the sandbox through its consent flow (PKCE)."""
    import secrets
    from urllib.parse import parse_qs, urlsplit

    from pressroom_publishing.platforms.base import OAuthContext

    tokens: dict[str, tuple[str, str]] = {}
    async with aiohttp.ClientSession() as session:
        platform = adapters(PlatformHTTP(session), "sandbox", api_url)["sandbox"]
        for brand in brands:
            context = OAuthContext(
                state=secrets.token_urlsafe(16),
                redirect_uri=REDIRECT_URI,
                code_verifier=secrets.token_urlsafe(48),
            )
            url = await platform.authorization_url(context)
            form = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
            form.update(decision="allow", username=f"bench-{brand.hex[:8]}")
            async with session.post(
                url.split("?", 1)[0], data=form, allow_redirects=False
            ) as answer:
                location = answer.headers["Location"]
            code = parse_qs(urlsplit(location).query)["code"][0]
            grant = await platform.exchange_code(code, context)
            probe = Credentials(uuid.UUID(int=0), brand, "sandbox", grant.access_token, "")
            account = await platform.verify(probe)
            tokens[str(brand)] = (grant.access_token, account.account_id)
    return tokens


async def create_posts(
    pool: asyncpg.Pool,
    owner: str,
    brands: list[uuid.UUID],
    count: int,
    mode: str,
    api_url: str,
) -> list[uuid.UUID]:
    """``count`` scheduled posts, far in the future for now (their times are set later)."""
    from pressroom_publishing.posts import commands
    from pressroom_publishing.posts.domain import Content

    conn = await asyncpg.connect(owner)
    try:
        for brand in brands:
            for platform in platform_ids(mode):
                await conn.execute(
                    "INSERT INTO platform_connections (id, brand_id, platform, status, "
                    "account_id, created_at, updated_at) "
                    "VALUES ($1, $2, $3, 'connected', 'bench', now(), now())",
                    uuid.uuid4(),
                    brand,
                    platform,
                )
    finally:
        await conn.close()
    async with aiohttp.ClientSession() as session:
        available = adapters(PlatformHTTP(session), mode, api_url)
        far = datetime.now(UTC) + timedelta(days=30)
        queue = list(range(count))
        ids: list[uuid.UUID] = []

        async def worker() -> None:
            while queue:
                n = queue.pop()
                brand = brands[n % len(brands)]
                post_id = await commands.create_post(
                    pool,
                    available,
                    brand_id=brand,
                    actor="bench",
                    content=Content(text=f"bench post {n}"),
                    platforms=list(platform_ids(mode)),
                    overrides={},
                    scheduled_at=far,
                    requires_approval=False,
                )
                await commands.submit_post(
                    pool,
                    available,
                    brand_id=brand,
                    post_id=post_id,
                    actor="bench",
                    now=datetime.now(UTC),
                )
                ids.append(post_id)

        await asyncio.gather(*(worker() for _ in range(16)))
    return ids


async def spread(owner: str, ids: list[uuid.UUID], start: datetime, rate: float) -> None:
    """Post n becomes due at ``start + n / rate`` (as if scheduled that way from the start)."""
    conn = await asyncpg.connect(owner)
    try:
        await conn.execute("SELECT set_config('app.all_brands', 'on', false)")
        times = [start + timedelta(seconds=n / rate) for n in range(len(ids))]
        await conn.execute(
            "WITH s AS (SELECT * FROM unnest($1::uuid[], $2::timestamptz[]) AS s(id, at)) "
            "UPDATE publishing_targets t SET scheduled_at = s.at, due_at = s.at "
            "FROM s WHERE t.post_id = s.id",
            ids,
            times,
        )
        await conn.execute(
            "WITH s AS (SELECT * FROM unnest($1::uuid[], $2::timestamptz[]) AS s(id, at)) "
            "UPDATE publishing_jobs j SET scheduled_at = s.at FROM s WHERE j.id = s.id",
            ids,
            times,
        )
    finally:
        await conn.close()


async def measure(owner: str) -> dict[str, Any]:
    conn = await asyncpg.connect(owner)
    try:
        await conn.execute("SELECT set_config('app.all_brands', 'on', false)")
        row = await conn.fetchrow(
            """
            SELECT count(*) AS published,
                   count(DISTINCT l.post_id) AS posts,
                   extract(epoch FROM max(l.finished_at) - min(t.scheduled_at)) AS span_s,
                   percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM
                       l.started_at - t.scheduled_at)) * 1000 AS delay_p50_ms,
                   percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM
                       l.started_at - t.scheduled_at)) * 1000 AS delay_p99_ms,
                   max(extract(epoch FROM l.started_at - t.scheduled_at)) * 1000 AS delay_max_ms,
                   count(*) FILTER (WHERE l.started_at - t.scheduled_at > interval '100 ms')
                       AS delayed_over_100ms,
                   max(l.attempt) AS max_attempt
            FROM publishing_logs l
            JOIN publishing_targets t ON t.post_id = l.post_id AND t.platform = l.platform
            WHERE l.status = 'published'
            """
        )
        jobs = await conn.fetch("SELECT status, count(*) AS n FROM publishing_jobs GROUP BY 1")
    finally:
        await conn.close()
    result = {k: round(float(v), 1) if v is not None else None for k, v in dict(row).items()}
    span = result["span_s"] or 0
    result["posts_per_s"] = round(result["posts"] / span, 1) if span else 0
    result["platform_posts_per_s"] = round(result["published"] / span, 1) if span else 0
    result["post_statuses"] = {r["status"]: r["n"] for r in jobs}
    return result


async def wait_published(owner: str, expected: int, timeout: float) -> None:
    conn = await asyncpg.connect(owner)
    deadline = time.monotonic() + timeout
    try:
        await conn.execute("SELECT set_config('app.all_brands', 'on', false)")
        while time.monotonic() < deadline:
            done = await conn.fetchval(
                "SELECT count(*) FROM publishing_targets WHERE status = 'published'"
            )
            if done >= expected:
                return
            await asyncio.sleep(0.5)
    finally:
        await conn.close()


async def platform_counts(mode: str, api_url: str) -> dict[str, Any]:
    """What the platform saw: posts created, distinct references, duplicates."""
    async with aiohttp.ClientSession() as session:
        if mode != "sandbox":
            async with session.get(f"{api_url}/stats") as answer:
                return dict(await answer.json())
        async with session.get(f"{api_url}/_control/posts") as answer:
            posts = (await answer.json())["data"]
        async with session.get(f"{api_url}/_control/calls") as answer:
            calls = (await answer.json())["calls"]
    keys = Counter(p["idempotency_key"] for p in posts)
    return {
        "created": len(posts),
        "references": len(keys),
        "duplicates": sum(n - 1 for n in keys.values() if n > 1),
        # The sandbox answers a repeated key with the first post, so duplicates would only
        # show as publish calls beyond one per reference.
        "publish_calls": calls.get("publish", 0),
    }


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    from pressroom_publishing.app import MIGRATIONS

    folder = Path(tempfile.mkdtemp(prefix="pressroom-bench-pub-"))
    postgres = EmbeddedPostgres(folder / "pg")
    processes: list[subprocess.Popen[bytes]] = []
    try:
        postgres.start()
        await ensure_databases(postgres.admin_dsn, ["bench_publishing"])
        owner = replace_database(postgres.admin_dsn, "bench_publishing")
        dsn = await prepare_database(
            database_url=owner,
            migrate_database_url=None,
            runtime_role="pressroom_app",
            migrations=[MIGRATIONS],
        )
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
        port = free_port()
        mode = args.platform
        if mode == "sandbox":
            api_url = f"http://127.0.0.1:{port}/sandbox-platform"
            command = ["-m", "pressroom_publishing.sandbox", "--port", str(port)]
        else:
            api_url = f"http://127.0.0.1:{port}"
            command = ["-m", "bench.publishing", "platform", str(port)]
        processes.append(
            subprocess.Popen(
                [sys.executable, *command],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        wait_for_port("127.0.0.1", port, 30)
        count = int(args.rate * args.seconds)
        pool = await create_pool(dsn, min_size=4, max_size=20)
        brands = [uuid.uuid4() for _ in range(BRANDS)]
        tokens = await sandbox_tokens(api_url, brands) if mode == "sandbox" else {}
        tokens_file = folder / "tokens.json"
        tokens_file.write_text(json.dumps(tokens))
        started = time.monotonic()
        ids = await create_posts(pool, owner, brands, count, mode, api_url)
        print(f"created {count} posts in {time.monotonic() - started:.1f} s", flush=True)
        await pool.close()
        for _ in range(args.replicas):
            processes.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "bench.publishing",
                        "replica",
                        dsn,
                        mode,
                        api_url,
                        str(tokens_file),
                    ],
                    env=env,
                )
            )
        await asyncio.sleep(3)  # replicas up and listening
        # The first post falls due once the spreading update has surely committed.
        await spread(owner, ids, datetime.now(UTC) + timedelta(seconds=5), args.rate)
        publications = count * len(platform_ids(mode))
        await wait_published(owner, publications, timeout=args.seconds + 120)
        results: dict[str, Any] = {
            "platform": mode,
            "rate": args.rate,
            "seconds": args.seconds,
            "replicas": args.replicas,
            "platforms_per_post": len(platform_ids(mode)),
            **await measure(owner),
        }
        results["platform_counts"] = await platform_counts(mode, api_url)
        return results
    finally:
        for process in processes:
            terminate(process, timeout=15)
        postgres.stop()
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.publishing")
    sub = parser.add_subparsers(dest="role")
    platform = sub.add_parser("platform")
    platform.add_argument("port", type=int)
    replica = sub.add_parser("replica")
    replica.add_argument("dsn")
    replica.add_argument("mode")
    replica.add_argument("api_url")
    replica.add_argument("tokens_file")
    parser.add_argument("--rate", type=float, default=100, help="posts due per second")
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--platform", choices=["sandbox", "fake"], default="sandbox")
    args = parser.parse_args()
    if args.role == "platform":
        run_platform(args.port)
    elif args.role == "replica":
        run_replica(args.dsn, args.mode, args.api_url, args.tokens_file)
    else:
        results = asyncio.run(bench(args))
        target = RESULTS / f"publishing-{args.platform}.json"
        target.write_text(json.dumps(results, indent=2) + "\n")
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
