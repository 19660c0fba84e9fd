"""The approval service's audit chain: how fast ``verify`` walks a brand's chain, and how fast
one brand's entries are appended by concurrent writers (each append is a transaction).

    setup:   an embedded PostgreSQL (durable), the approval migrations, and ``--rows`` chained
             entries of one brand, hashed here and loaded with COPY as the owner (the sealing
             trigger is bypassed for the bulk load, the append-only triggers still run)
    verify:  ``pressroom_approval.audit.chain.verify`` as the runtime role (row-level
             security on) in one repeatable-read transaction, ``--repeat`` times
    append:  ``--writers`` tasks, each committing one ``record()`` per transaction for
             ``--seconds`` seconds, all in one brand (the head row serialises them), then
             the chain is verified again

    .venv/bin/python -m bench.approval_audit [--rows 1000000] [--repeat 3] [--writers 8]

Results go to bench/results/approval_audit.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from pressroom_approval.app import MIGRATIONS
from pressroom_approval.audit import Actor, record
from pressroom_approval.audit.chain import GENESIS, canonical, entry_hash, verify
from pressroom_approval.audit.log import pseudonym
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
from pressroom_kit.embedded import EmbeddedPostgres

RESULTS = Path(__file__).parent / "results"
ROLE = "pressroom_approval_bench"
COPY_BATCH = 50_000
ACTIONS = ("approval.requested", "comment.added", "approval.approved", "review_link.created")
COLUMNS = (
    "id",
    "brand_id",
    "seq",
    "at",
    "actor_id",
    "actor_ref",
    "action",
    "post_id",
    "approval_id",
    "metadata",
    "prev_hash",
    "hash",
)


def chained_rows(brand: uuid.UUID, start: int, count: int, prev: bytes) -> tuple[list[Any], bytes]:
    """Entries ``start+1 .. start+count`` hashed exactly as the sealing trigger would."""
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    refs = [pseudonym(f"user-{k}") for k in range(16)]
    rows = []
    for seq in range(start + 1, start + count + 1):
        entry_id, post_id = uuid.uuid4(), uuid.uuid4()
        at = t0 + timedelta(seconds=seq)
        actor = f"user-{seq % 16}"
        action = ACTIONS[seq % len(ACTIONS)]
        metadata = f'{{"n": {seq}, "submission": {seq % 7}}}'  # jsonb's own text form
        body = canonical(
            id=entry_id,
            brand_id=brand,
            seq=seq,
            at=at,
            actor_id=actor,
            actor_ref=refs[seq % 16],
            action=action,
            post_id=post_id,
            approval_id=None,
            metadata_text=metadata,
        )
        digest = entry_hash(prev, body)
        rows.append(
            (
                entry_id,
                brand,
                seq,
                at,
                actor,
                refs[seq % 16],
                action,
                post_id,
                None,
                metadata,
                prev,
                digest,
            )
        )
        prev = digest
    return rows, prev


async def load(owner_dsn: str, brand: uuid.UUID, total: int) -> dict[str, float]:
    conn = await asyncpg.connect(owner_dsn)
    hashing = copying = 0.0
    try:
        prev, done = GENESIS, 0
        while done < total:
            started = time.perf_counter()
            rows, prev = chained_rows(brand, done, min(COPY_BATCH, total - done), prev)
            hashing += time.perf_counter() - started
            started = time.perf_counter()
            await conn.copy_records_to_table("audit_logs", records=rows, columns=COLUMNS)
            copying += time.perf_counter() - started
            done += len(rows)
        await conn.execute(
            "INSERT INTO audit_heads (brand_id, seq, hash) VALUES ($1, $2, $3)", brand, total, prev
        )
        await conn.execute("VACUUM ANALYZE audit_logs")
    finally:
        await conn.close()
    return {"hash_s": round(hashing, 2), "copy_s": round(copying, 2)}


async def timed_verify(pool: asyncpg.Pool, brand: uuid.UUID) -> tuple[float, int, bool]:
    started = time.perf_counter()
    async with tenant_transaction(pool, brand) as conn:
        await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        result = await verify(conn, brand)
    return time.perf_counter() - started, result.checked, result.valid


async def appends(pool: asyncpg.Pool, brand: uuid.UUID, writers: int, seconds: float) -> int:
    deadline = time.perf_counter() + seconds
    count = 0

    async def writer(k: int) -> None:
        nonlocal count
        actor = Actor(f"writer-{k}", email=f"writer{k}@example.org", ip="192.0.2.1")
        while time.perf_counter() < deadline:
            async with tenant_transaction(pool, brand) as conn:
                await record(
                    conn,
                    brand_id=brand,
                    actor=actor,
                    action="comment.added",
                    at=datetime.now(UTC),
                    metadata={"writer": k},
                )
            count += 1

    await asyncio.gather(*(writer(k) for k in range(writers)))
    return count


async def run(args: argparse.Namespace) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="bench-audit-"))
    postgres = EmbeddedPostgres(folder / "pg")
    postgres.start()
    try:
        await ensure_databases(postgres.admin_dsn, ["bench_audit"])
        owner_dsn = replace_database(postgres.admin_dsn, "bench_audit")
        conn = await connect(owner_dsn)
        try:
            await apply_migrations(conn, [MIGRATIONS])
            await grant_runtime_role(conn, ROLE)
        finally:
            await conn.close()
        brand = uuid.uuid4()
        started = time.perf_counter()
        loading = await load(owner_dsn, brand, args.rows)
        loading["total_s"] = round(time.perf_counter() - started, 2)
        print(f"loaded {args.rows:,} rows: {loading}")
        pool = await create_pool(replace_user(owner_dsn, ROLE), min_size=2, max_size=args.writers)
        try:
            runs = []
            for _ in range(args.repeat):
                elapsed, checked, valid = await timed_verify(pool, brand)
                assert valid and checked == args.rows, (valid, checked)
                runs.append(round(checked / elapsed))
                print(
                    f"verify: {checked:,} rows in {elapsed:.2f} s = {checked / elapsed:,.0f} rows/s"
                )
            appended = await appends(pool, brand, args.writers, args.seconds)
            rate = appended / args.seconds
            print(f"append: {appended:,} entries by {args.writers} writers = {rate:,.0f}/s")
            elapsed, checked, valid = await timed_verify(pool, brand)
            assert valid and checked == args.rows + appended, (valid, checked)
        finally:
            await pool.close()
        return {
            "rows": args.rows,
            "load": loading,
            "verify_rows_per_s": runs,
            "append_writers": args.writers,
            "append_seconds": args.seconds,
            "append_per_s": round(rate),
            "chain_valid_after_appends": valid,
        }
    finally:
        postgres.stop()
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    result = asyncio.run(run(args))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "approval_audit.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
