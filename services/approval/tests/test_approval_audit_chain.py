"""The chain in the database: sealed at commit, append-only, tampering found by verify."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from audit_testkit import AuditDb, audit_database, chain_rows
from pressroom_approval.audit import SYSTEM, Actor, pseudonym, record
from pressroom_approval.audit.chain import verify
from pressroom_kit.db import tenant_transaction
from pressroom_kit.testing.plugin import TestDatabase

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


async def _in_brand(conn: Any, brand: uuid.UUID, sql: str, *args: Any) -> None:
    async with conn.transaction():
        await conn.execute("SELECT set_config('app.brand_id', $1, true)", str(brand))
        await conn.execute(sql, *args)


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


async def test_a_rolled_back_transaction_leaves_no_entry_and_no_gap(adb: AuditDb) -> None:
    brand = uuid.uuid4()
    await _append(adb, brand, 1)

    async def crash() -> None:
        async with tenant_transaction(adb.pool, brand) as conn:
            await record(conn, brand_id=brand, actor=SYSTEM, action="approval.expired", at=T0)
            raise RuntimeError("crash before commit")

    with pytest.raises(RuntimeError):
        await crash()
    await _append(adb, brand, 1, start=1)
    rows = await chain_rows(adb, brand)
    assert [r["seq"] for r in rows] == [1, 2]
    assert [r["action"] for r in rows] == ["approval.approved", "approval.approved"]
    owner = await adb.owner()
    try:
        assert await owner.fetchval("SELECT count(*) FROM audit_pending") == 0
    finally:
        await owner.close()


async def test_update_delete_truncate_are_refused_for_the_app_role_and_the_owner(
    adb: AuditDb,
) -> None:
    brand = uuid.uuid4()
    await _append(adb, brand, 2)
    async with adb.pool.acquire() as app:
        async with app.transaction():
            await app.execute("SELECT set_config('app.brand_id', $1, true)", str(brand))
            assert await app.fetchval("SELECT count(*) FROM audit_logs") == 2
        for sql in (
            "UPDATE audit_logs SET action = 'x'",
            "DELETE FROM audit_logs",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
                await _in_brand(app, brand, sql)
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await app.execute("TRUNCATE audit_logs")
        # Nor can the runtime role forge a chained row.
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="record"):
            await _in_brand(
                app,
                brand,
                "INSERT INTO audit_logs (id, brand_id, seq, at, actor_id, actor_ref, "
                "action, prev_hash, hash) VALUES (gen_random_uuid(), $1, 3, now(), "
                "'x', 'x', 'x', '\\x00', '\\x00')",
                brand,
            )
    owner = await adb.owner()
    try:
        for sql in (
            "UPDATE audit_logs SET action = 'x'",
            "DELETE FROM audit_logs",
            "TRUNCATE audit_logs",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
                await owner.execute(sql)
        assert await owner.fetchval("SELECT count(*) FROM audit_logs") == 2
    finally:
        await owner.close()
    assert (await _verify(adb, brand)).valid


async def test_tampering_by_a_superuser_is_found_at_the_changed_row(adb: AuditDb) -> None:
    brand = uuid.uuid4()
    ids = await _append(adb, brand, 5)
    owner = await adb.owner()
    try:
        await owner.execute("ALTER TABLE audit_logs DISABLE TRIGGER audit_logs_append_only")
        await owner.execute("UPDATE audit_logs SET metadata = '{\"n\": 99}' WHERE id = $1", ids[2])
        await owner.execute("ALTER TABLE audit_logs ENABLE TRIGGER audit_logs_append_only")
    finally:
        await owner.close()
    result = await _verify(adb, brand)
    assert not result.valid
    assert result.first_bad_id == ids[2]
    assert result.checked == 3


async def test_a_recomputed_hash_breaks_the_next_link(adb: AuditDb) -> None:
    brand = uuid.uuid4()
    ids = await _append(adb, brand, 4)
    owner = await adb.owner()
    try:
        # A careful forger rewrites the row and its hash; the next row still names the old one.
        await owner.execute("ALTER TABLE audit_logs DISABLE TRIGGER audit_logs_append_only")
        await owner.execute(
            """UPDATE audit_logs SET action = 'approval.rejected',
                   hash = sha256(prev_hash || audit_canonical(id, brand_id, seq, at, actor_id,
                       actor_ref, 'approval.rejected', post_id, approval_id, metadata))
               WHERE id = $1""",
            ids[1],
        )
        await owner.execute("ALTER TABLE audit_logs ENABLE TRIGGER audit_logs_append_only")
    finally:
        await owner.close()
    result = await _verify(adb, brand)
    assert not result.valid and result.first_bad_id == ids[2]


async def test_a_deleted_row_and_a_deleted_tail_are_found(adb: AuditDb) -> None:
    brand = uuid.uuid4()
    ids = await _append(adb, brand, 5)
    owner = await adb.owner()
    try:
        await owner.execute(
            "BEGIN; SET LOCAL pressroom.audit_maintenance = 'on'; "
            f"DELETE FROM audit_logs WHERE id = '{ids[1]}'; COMMIT"
        )
    finally:
        await owner.close()
    result = await _verify(adb, brand)
    assert not result.valid and result.first_bad_id == ids[2] and result.checked == 2

    other = uuid.uuid4()
    ids = await _append(adb, other, 3)
    owner = await adb.owner()
    try:
        await owner.execute("ALTER TABLE audit_logs DISABLE TRIGGER audit_logs_append_only")
        await owner.execute("DELETE FROM audit_logs WHERE id = $1", ids[2])
        await owner.execute("ALTER TABLE audit_logs ENABLE TRIGGER audit_logs_append_only")
    finally:
        await owner.close()
    result = await _verify(adb, other)
    assert not result.valid and result.checked == 2 and result.first_bad_id == ids[1]


async def test_maintenance_needs_a_superuser_session(adb: AuditDb) -> None:
    brand = uuid.uuid4()
    await _append(adb, brand, 1)
    async with adb.pool.acquire() as app:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await app.execute(
                "BEGIN; SET LOCAL pressroom.audit_maintenance = 'on'; "
                f"SET LOCAL app.brand_id = '{brand}'; DELETE FROM audit_logs; COMMIT"
            )
        await app.execute("ROLLBACK")


async def test_concurrent_appends_of_one_brand_make_one_valid_chain(adb: AuditDb) -> None:
    brand = uuid.uuid4()

    async def writer(k: int) -> None:
        for j in range(5):
            await _append(adb, brand, 2, start=k * 100 + j * 2)

    await asyncio.gather(*(writer(k) for k in range(10)))
    rows = await chain_rows(adb, brand)
    assert [r["seq"] for r in rows] == list(range(1, 101))
    result = await _verify(adb, brand)
    assert result.valid and result.checked == 100


async def test_one_transaction_of_several_brands_against_another_in_reverse_order(
    adb: AuditDb,
) -> None:
    """A consumer batch records for several brands; sealing takes heads in id order, so two
    batches naming the same brands in opposite orders never deadlock."""
    a, b = sorted([uuid.uuid4(), uuid.uuid4()])

    async def batch(order: list[uuid.UUID]) -> None:
        for _ in range(10):
            async with adb.pool.acquire() as conn, conn.transaction():
                for brand in order:
                    await conn.execute("SELECT set_config('app.brand_id', $1, true)", str(brand))
                    await record(conn, brand_id=brand, actor=SYSTEM, action="x", at=T0)
                    await asyncio.sleep(0)

    await asyncio.gather(batch([a, b]), batch([b, a]), batch([a, b]), batch([b, a]))
    for brand in (a, b):
        result = await _verify(adb, brand)
        assert result.valid and result.checked == 40


async def test_one_brand_never_sees_another_brands_log(adb: AuditDb) -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    await _append(adb, a, 2)
    await _append(adb, b, 3)
    async with tenant_transaction(adb.pool, a) as conn:
        assert await conn.fetchval("SELECT count(*) FROM audit_logs") == 2
        assert await conn.fetchval("SELECT count(*) FROM audit_personal_data") == 2
        assert await conn.fetchval("SELECT count(*) FROM audit_heads") == 1
        assert (await verify(conn, b)).checked == 0
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await record(conn, brand_id=b, actor=SYSTEM, action="x", at=T0)


async def test_personal_data_in_metadata_is_pseudonymised(adb: AuditDb) -> None:
    brand = uuid.uuid4()
    async with tenant_transaction(adb.pool, brand) as conn:
        await record(
            conn,
            brand_id=brand,
            actor=SYSTEM,
            action="review_link.created",
            at=T0,
            metadata={"to": ["Ann@Example.org"], "note": "sent to bob@x.org\x00", "name": "Bob"},
        )
    (row,) = await chain_rows(adb, brand)
    meta = row["metadata"]
    assert "@" not in str(meta) and "Bob" not in str(meta)
    assert meta["to"][0] == "~" + pseudonym("ann@example.org")[:20]
    assert meta["note"].startswith("sent to ~")
    assert (await _verify(adb, brand)).valid


async def test_odd_text_and_numbers_hash_the_same_in_sql_and_python(adb: AuditDb) -> None:
    brand = uuid.uuid4()
    async with tenant_transaction(adb.pool, brand) as conn:
        await record(
            conn,
            brand_id=brand,
            actor=Actor("ü😀|7:x|-\udfff", name="Zoë\x00", user_agent="\ud83d"),
            action="comment.added|😀",
            at=datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
            post_id=uuid.uuid4(),
            metadata={
                "k": '😀\n"\\\t',
                "lone": "\ud800x",
                "nan": float("nan"),
                "float": 1.5e300,
                "small": 0.1,
                "big": 10**30,
                "nested": {"b": [1, {"a": None}], "a": False},
                "": "",
            },
        )
    result = await _verify(adb, brand)
    assert result.valid and result.checked == 1
