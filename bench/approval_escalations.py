"""Escalations sent per second, and the delay from an escalation's due time to the SMTP
``250``, with two scheduler replicas sending to a local SMTP server.

    setup:          an embedded PostgreSQL (durable), the approval migrations; ``--brands``
                    brands with one manager each, ``--approvals`` pending approvals spread
                    over them, each with the default rules (``on_requested``, as the
                    approvals feature calls it), working hours off (the benchmark may run at
                    night); the reminders fall due all at once (``--rate 0``, a backlog) or
                    at ``--rate`` per second from the start
    SMTP process:   an aiosmtpd server in its own process that answers ``250`` and logs the
                    Message-ID and the time of each (the Message-ID names the escalation)
    this process:   two ``EscalationScheduler`` replicas on their own pools, as the service
                    runs them (claims with leases and SKIP LOCKED, fenced marks, outbox rows),
                    until every reminder is sent; then duplicates and delays are counted

    .venv/bin/python -m bench.approval_escalations [--approvals 10000] [--rate 0]

Results go to bench/results/approval_escalations.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import shutil
import tempfile
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from pressroom_approval.app import MIGRATIONS
from pressroom_approval.escalations.delivery import Mailer, Slack
from pressroom_approval.escalations.lifecycle import on_requested
from pressroom_approval.escalations.scheduler import EscalationScheduler
from pressroom_approval.escalations.tokens import UnsubscribeTokens
from pressroom_approval.settings import ApprovalSettings
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
from pressroom_kit.embedded import EmbeddedPostgres, free_port, wait_for_port
from pressroom_kit.secrets import SecretBox

RESULTS = Path(__file__).parent / "results"
ROLE = "pressroom_approval_bench"


def smtp_process(port: int, log_path: str) -> None:
    """An SMTP server that logs ``<unix time> <Message-ID>`` for every message it accepts."""
    import email

    from aiosmtpd.smtp import SMTP, Envelope, Session

    out = open(log_path, "a", buffering=1)  # noqa: SIM115 (lives as long as the process)

    class Handler:
        async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
            raw = envelope.content if isinstance(envelope.content, bytes) else b""
            headers = email.message_from_bytes(raw.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n")
            message_id = "".join(str(headers["Message-ID"]).split())  # unfolded
            out.write(f"{time.time():.6f} {message_id}\n")
            return "250 OK"

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: SMTP(Handler()), "127.0.0.1", port)
        async with server:
            await server.serve_forever()

    asyncio.run(serve())


async def setup(
    pool: Any, brands: list[uuid.UUID], approvals: int, rate: float, t0: datetime
) -> None:
    """Approvals requested 24 h before they are due, so their reminders come due from ``t0``
    (all at once for ``rate`` 0). Working hours off: the benchmark may run at any hour."""
    per_brand = approvals // len(brands)
    for b, brand in enumerate(brands):
        async with tenant_transaction(pool, brand) as conn:
            await conn.execute(
                "INSERT INTO approval_brands (brand_id, name, timezone, updated_at) "
                "VALUES ($1, $2, 'UTC', $3)",
                brand,
                f"Brand {b}",
                t0,
            )
            await conn.execute(
                "INSERT INTO approval_members (brand_id, user_id, email, role, updated_at) "
                "VALUES ($1, $2, $3, 'manager', $4)",
                brand,
                f"manager-{b}",
                f"manager-{b}@bench.example",
                t0,
            )
            for k in range(per_brand):
                index = b * per_brand + k
                due = t0 + timedelta(seconds=index / rate if rate > 0 else 0)
                requested = due - timedelta(hours=24)
                approval_id, post_id = uuid.uuid4(), uuid.uuid4()
                await conn.execute(
                    "INSERT INTO post_approvals (id, brand_id, post_id, status, platforms, "
                    "texts, requested_at, created_at, updated_at) VALUES ($1, $2, $3, "
                    "'pending', ARRAY['x'], $4, $5, $5, $5)",
                    approval_id,
                    brand,
                    post_id,
                    {"x": f"Post {index}: the winter campaign"},
                    requested,
                )
                await on_requested(
                    conn,
                    brand_id=brand,
                    approval_id=approval_id,
                    post_id=post_id,
                    requested_at=requested,
                )
            await conn.execute("UPDATE escalation_rules SET respect_timezone = false")
            await conn.execute("UPDATE escalation_events SET respect_timezone = false")


async def run(args: argparse.Namespace) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="bench-escalations-"))
    postgres = EmbeddedPostgres(folder / "pg")
    postgres.start()
    smtp_port = free_port()
    smtp_log = folder / "smtp.log"
    smtp = multiprocessing.get_context("spawn").Process(
        target=smtp_process, args=(smtp_port, str(smtp_log)), daemon=True
    )
    smtp.start()
    try:
        await asyncio.to_thread(wait_for_port, "127.0.0.1", smtp_port, 30.0)
        await ensure_databases(postgres.admin_dsn, ["bench_escalations"])
        owner_dsn = replace_database(postgres.admin_dsn, "bench_escalations")
        conn = await connect(owner_dsn)
        try:
            await apply_migrations(conn, [MIGRATIONS])
            await grant_runtime_role(conn, ROLE)
        finally:
            await conn.close()
        dsn = replace_user(owner_dsn, ROLE)
        settings = ApprovalSettings.model_validate(
            {
                "database_url": dsn,
                "runtime_role": None,
                "log_level": "WARNING",
                "smtp_port": smtp_port,
                "escalation_poll_s": 0.2,
                "escalation_batch": args.batch,
                "public_url": "http://bench.example",
            }
        )
        brands = [uuid.uuid4() for _ in range(args.brands)]
        setup_pool = await create_pool(dsn, min_size=1, max_size=2)
        started = time.perf_counter()
        t0 = datetime.now(UTC) + timedelta(seconds=5 + args.approvals / 1000)
        try:
            await setup(setup_pool, brands, args.approvals, args.rate, t0)
        finally:
            await setup_pool.close()
        print(f"setup: {args.approvals:,} approvals in {time.perf_counter() - started:.1f} s")
        wait = (t0 - datetime.now(UTC)).total_seconds()
        if wait > 0:
            await asyncio.sleep(wait)

        box = SecretBox(settings.escalation_secret_keys, settings.escalation_secret_key_id)
        tokens = UnsubscribeTokens(settings.link_signing_key.get_secret_value())
        pools = [await create_pool(dsn, min_size=2, max_size=args.concurrency + 4) for _ in "ab"]
        stop = asyncio.Event()
        begun = time.time()
        async with aiohttp.ClientSession() as session:
            replicas = [
                EscalationScheduler(
                    pool,
                    settings,
                    mailer=Mailer(settings),
                    slack=Slack(session, 5.0),
                    box=box,
                    tokens=tokens,
                    clock=lambda: datetime.now(UTC),
                    concurrency=args.concurrency,
                )
                for pool in pools
            ]
            tasks = [asyncio.create_task(r.run(stop)) for r in replicas]
            try:
                async with asyncio.timeout(args.timeout):
                    while True:
                        await asyncio.sleep(0.5)
                        if await _pending(owner_dsn) == 0:
                            break
            finally:
                stop.set()
                await asyncio.gather(*tasks, return_exceptions=True)
        for pool in pools:
            await pool.close()

        conn = await connect(owner_dsn)
        try:
            await conn.execute("SELECT set_config('app.all_brands', 'on', false)")
            due = {
                str(r["id"]): r["due_at"].timestamp()
                for r in await conn.fetch(
                    "SELECT id, due_at FROM escalation_events WHERE rule_type = 'reminder_24h'"
                )
            }
            outbox = await conn.fetchval(
                "SELECT count(*) FROM outbox WHERE headers->>'ce_type' = 'approval.escalated.v1'"
            )
            failed = await conn.fetchval(
                "SELECT count(*) FROM escalation_events WHERE status <> 'sent' "
                "AND rule_type = 'reminder_24h'"
            )
        finally:
            await conn.close()
        received: list[tuple[float, str]] = []
        for line in smtp_log.read_text().splitlines():
            stamp, _, message_id = line.partition(" ")
            parts = message_id.split(".")
            if len(parts) < 3:
                raise AssertionError(f"a message without our Message-ID: {line!r}")
            received.append((float(stamp), parts[1]))
        counts = Counter(escalation for _, escalation in received)
        delays = sorted(at - due[esc] for at, esc in received if esc in due)
        last = max(at for at, _ in received)
        elapsed = last - max(begun, t0.timestamp())
        result = {
            "approvals": args.approvals,
            "brands": args.brands,
            "rate": args.rate,
            "replicas": 2,
            "emails_received": len(received),
            "duplicates": sum(n - 1 for n in counts.values() if n > 1),
            "not_sent": failed,
            "escalated_events": outbox,
            "seconds": round(elapsed, 2),
            "sent_per_s": round(len(counts) / elapsed, 1),
            "delay_p50_s": round(delays[len(delays) // 2], 3),
            "delay_p99_s": round(delays[int(len(delays) * 0.99) - 1], 3),
            "delay_max_s": round(delays[-1], 3),
        }
        print(json.dumps(result, indent=2))
        return result
    finally:
        smtp.terminate()
        smtp.join(5)
        postgres.stop()
        shutil.rmtree(folder, ignore_errors=True)


async def _pending(owner_dsn: str) -> int:
    conn = await connect(owner_dsn)
    try:
        await conn.execute("SELECT set_config('app.all_brands', 'on', false)")
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM escalation_events WHERE status = 'pending' "
                "AND rule_type = 'reminder_24h'"
            )
        )
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--approvals", type=int, default=10_000)
    parser.add_argument("--brands", type=int, default=10)
    parser.add_argument("--rate", type=float, default=0.0, help="reminders due per second")
    parser.add_argument("--batch", type=int, default=200, help="claims per round")
    parser.add_argument("--concurrency", type=int, default=50, help="sends per replica")
    parser.add_argument("--timeout", type=float, default=900.0)
    args = parser.parse_args()
    result = asyncio.run(run(args))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "approval_escalations.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
