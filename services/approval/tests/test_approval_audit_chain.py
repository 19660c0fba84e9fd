"""The chain in the database: sealed at commit, append-only, tampering found by verify."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from pressroom_approval.audit import SYSTEM, Actor, record
from pressroom_approval.audit.chain import verify
from pressroom_kit.db import tenant_transaction
from pressroom_kit.testing.plugin import TestDatabase

from audit_testkit import AuditDb, audit_database, chain_rows

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
async def adb(fresh_db: TestDatabase) -> AsyncIterator[AuditDb]:
    async with audit_database(fresh_db) as adb:
        yield adb


async def _append(adb: AuditDb, brand: uuid.UUID, n: int, *, start: int = 0) -> list[uuid.UUID]:
    ids = []
    async with tenant_transaction(adb.pool, brand) as conn:
        for i in range(start, start + n):
            ids.append(
                await record(
                    conn,
                    brand_id=brand,
                    actor=Actor("user-1", email="ann@example.org", ip="10.0.0.1"),
                    action="approval.approved",
                    at=T0 + timedelta(seconds=i),
                    post_id=uuid.uuid4(),
                    metadata={"n": i, "note": "ok"},
                )
            )
    return ids


async def _verify(adb: AuditDb, brand: uuid.UUID):  # type: ignore[no-untyped-def]
    async with tenant_transaction(adb.pool, brand) as conn:
        return await verify(conn, brand)


async def test_entries_are_sealed_at_commit_with_gapless_seq(adb: AuditDb) -> None:
    brand = uuid.uuid4()
    ids = await _append(adb, brand, 3)
    rows = await chain_rows(adb, brand)
    assert [r["id"] for r in rows] == ids
    assert [r["seq"] for r in rows] == [1, 2, 3]
    assert bytes(rows[0]["prev_hash"]) == bytes(32)
    assert bytes(rows[1]["prev_hash"]) == bytes(rows[0]["hash"])
    result = await _verify(adb, brand)
    assert result.valid and result.checked == 3
