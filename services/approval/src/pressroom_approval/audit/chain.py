"""The hash chain: the canonical bytes of an entry and the check of a brand's whole chain.

``hash = SHA-256(prev_hash || canonical(entry))``, where ``canonical`` joins the chained
fields with ``|``, each as ``<length in characters>:<text>`` (``-`` for NULL): id, brand_id,
seq, at (whole microseconds since 1970 UTC), actor_id, actor_ref, action, post_id,
approval_id and metadata (jsonb's own text form, which the database gives us, so no JSON
re-encoding can disagree with what was hashed). The sealing trigger (``audit_seal`` in
migration 0002) computes the same bytes in SQL; the first entry's ``prev_hash`` is 32 zero
bytes. Verification recomputes every hash here, in Python, so it does not trust the
database's functions.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID

import asyncpg

GENESIS = bytes(32)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICRO = timedelta(microseconds=1)
VERIFY_BATCH = 10_000


def _field(value: str | None) -> str:
    return "-" if value is None else f"{len(value)}:{value}"


def canonical(
    *,
    id: UUID,
    brand_id: UUID,
    seq: int,
    at: datetime,
    actor_id: str,
    actor_ref: str,
    action: str,
    post_id: UUID | None,
    approval_id: UUID | None,
    metadata_text: str,
) -> bytes:
    """The bytes an entry's hash covers after ``prev_hash`` (see the module docstring)."""
    parts = (
        str(id),
        str(brand_id),
        str(seq),
        str((at - EPOCH) // MICRO),
        actor_id,
        actor_ref,
        action,
        None if post_id is None else str(post_id),
        None if approval_id is None else str(approval_id),
        metadata_text,
    )
    return "|".join(_field(p) for p in parts).encode()


def entry_hash(prev_hash: bytes, body: bytes) -> bytes:
    return hashlib.sha256(prev_hash + body).digest()


@dataclass(frozen=True)
class Verification:
    valid: bool
    checked: int
    first_bad_id: UUID | None = None
    first_bad_seq: int | None = None
    problem: str | None = None
    last_seq: int = 0  # of the last entry checked and found intact
    last_hash: bytes = GENESIS


# The chained fields as text (the database only formats them: a changed value is a changed
# text; the brand and seq, known here, and the time as an integer are formatted in Python),
# then prev_hash and hash; Python joins and hashes them.
_BATCH_SQL = """
SELECT id, seq, prev_hash, hash, id::text AS t_id,
       floor(extract(epoch FROM at) * 1000000)::bigint AS micros,
       actor_id, actor_ref, action, post_id::text AS t_post, approval_id::text AS t_approval,
       metadata::text AS t_metadata
FROM audit_logs
WHERE brand_id = $1 AND seq > $2
ORDER BY seq
LIMIT $3
"""
_TAIL = slice(6, 12)


async def _batches(
    conn: asyncpg.Connection, brand_id: UUID, batch: int
) -> AsyncGenerator[list[asyncpg.Record], None]:
    """Pages of the chain; the next page is fetched while the caller hashes this one (the
    database and Python work at the same time). Closing the iterator early waits for the
    fetch in flight, so the connection is free again for the caller."""
    pending: asyncio.Task[list[asyncpg.Record]] | None = asyncio.ensure_future(
        conn.fetch(_BATCH_SQL, brand_id, 0, batch)
    )
    try:
        while pending is not None:
            rows = await pending
            pending = None
            if len(rows) == batch:
                pending = asyncio.ensure_future(
                    conn.fetch(_BATCH_SQL, brand_id, rows[-1][1], batch)
                )
            if rows:
                yield rows
    finally:
        if pending is not None:
            with contextlib.suppress(Exception):
                await pending


async def verify(
    conn: asyncpg.Connection, brand_id: UUID, *, batch: int = VERIFY_BATCH
) -> Verification:
    """Walk the brand's chain in ``seq`` order, recomputing each hash.

    Finds a changed field (the row's hash no longer matches), a changed hash (the next row's
    ``prev_hash`` no longer matches), a deleted row (a gap in ``seq``: the row after it is
    reported) and a deleted tail (the head row is ahead of the last entry). Runs in the
    caller's transaction (one snapshot: a repeatable-read transaction for a consistent view
    while others append); pages of ``batch`` rows on the ``(brand_id, seq)`` key.

    ``last_seq``/``last_hash`` name the last intact entry: kept outside the database (a
    ticket, a signed note), they anchor the chain, since someone with superuser rights who
    deletes the newest entries *and* rewinds the head leaves nothing inside the database
    to find.
    """
    prev = GENESIS
    expected_seq = 1
    checked = 0
    last_id: UUID | None = None
    sha256 = hashlib.sha256
    brand_part = _field(str(brand_id))
    async with contextlib.aclosing(_batches(conn, brand_id, batch)) as pages:
        async for rows in pages:
            for row in rows:
                checked += 1
                problem = None
                if row[1] != expected_seq:
                    problem = f"seq {expected_seq} is missing"
                elif row[2] != prev:
                    problem = "prev_hash does not match the previous entry's hash"
                else:
                    seq, micros = str(row[1]), str(row[5])
                    tail = "|".join("-" if p is None else f"{len(p)}:{p}" for p in row[_TAIL])
                    body = (
                        f"36:{row[4]}|{brand_part}|{len(seq)}:{seq}|{len(micros)}:{micros}|{tail}"
                    ).encode()
                    if sha256(prev + body).digest() != row[3]:
                        problem = "the entry does not match its hash"
                if problem is not None:
                    return Verification(
                        False, checked, row[0], row[1], problem, expected_seq - 1, prev
                    )
                prev = row[3]
                expected_seq += 1
                last_id = row[0]
    head = await conn.fetchrow("SELECT seq, hash FROM audit_heads WHERE brand_id = $1", brand_id)
    if head is not None and (head["seq"] != expected_seq - 1 or bytes(head["hash"]) != prev):
        return Verification(
            False,
            checked,
            last_id,
            expected_seq - 1,
            "entries after the last one are missing",
            expected_seq - 1,
            prev,
        )
    return Verification(True, checked, last_seq=expected_seq - 1, last_hash=prev)
