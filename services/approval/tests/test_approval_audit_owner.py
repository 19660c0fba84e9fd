"""The chain as production runs it: tables owned by a role that is no superuser (so forced
row-level security binds the owner too) and the service as a separate runtime role. The
sealing trigger must still chain entries of every brand a transaction wrote, whatever brand
the transaction is set to when it commits, and the owner must not get around append-only."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import pytest
from pressroom_approval.app import MIGRATIONS
from pressroom_approval.audit import SYSTEM, Actor, record
from pressroom_approval.audit.chain import verify
from pressroom_kit.db import (
    connect,
    create_pool,
    tenant_transaction,
)
from pressroom_kit.testing.plugin import OwnedDatabase, owned_database

pytestmark = pytest.mark.integration

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
async def owned(pg_admin_dsn: str) -> AsyncIterator[OwnedDatabase]:
    async with owned_database(pg_admin_dsn, [MIGRATIONS], prefix="a") as db:
        yield db


async def test_a_transaction_of_several_brands_is_sealed_by_a_non_superuser_owner(
    owned: OwnedDatabase,
) -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    pool = await create_pool(owned.runtime_dsn, max_size=2)
    try:
        async with pool.acquire() as conn, conn.transaction():
            for brand in (b, a, b):  # the transaction ends set to brand b
                await conn.execute("SELECT set_config('app.brand_id', $1, true)", str(brand))
                await record(
                    conn,
                    brand_id=brand,
                    actor=Actor("u1", email="u1@example.org"),
                    action="approval.approved",
                    at=T0,
                )
        for brand, count in ((a, 1), (b, 2)):
            async with tenant_transaction(pool, brand) as conn:
                result = await verify(conn, brand)
                assert result.valid and result.checked == count
                assert await conn.fetchval("SELECT count(*) FROM audit_pending") == 0
    finally:
        await pool.close()

    owner = await connect(owned.owner_dsn)
    try:
        async with owner.transaction():
            await owner.execute("SELECT set_config('app.all_brands', 'on', true)")
            assert await owner.fetchval("SELECT count(*) FROM audit_logs") == 3
        for sql in ("UPDATE audit_logs SET action = 'x'", "DELETE FROM audit_logs"):
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
                await owner.execute(
                    "BEGIN; SET LOCAL app.all_brands = 'on'; "
                    f"SET LOCAL pressroom.audit_maintenance = 'on'; {sql}; COMMIT"
                )
            await owner.execute("ROLLBACK")
    finally:
        await owner.close()


async def test_the_runtime_role_cannot_seal_or_forge_for_another_brand(
    owned: OwnedDatabase,
) -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    pool = await create_pool(owned.runtime_dsn, max_size=2)
    try:
        async with tenant_transaction(pool, a) as conn:
            await record(conn, brand_id=a, actor=SYSTEM, action="approval.expired", at=T0)
        async with pool.acquire() as conn:
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(
                    f"BEGIN; SET LOCAL app.brand_id = '{a}'; UPDATE audit_heads SET seq = 0; COMMIT"
                )
            await conn.execute("ROLLBACK")
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(
                    f"BEGIN; SET LOCAL app.brand_id = '{a}'; "
                    "INSERT INTO audit_pending (id, brand_id, at, actor_id, actor_ref, action, "
                    f"metadata) VALUES (gen_random_uuid(), '{b}', now(), 'x', 'x', 'x', '{{}}');"
                    " COMMIT"
                )
            await conn.execute("ROLLBACK")
        async with tenant_transaction(pool, b) as conn:
            assert (await verify(conn, b)).checked == 0
    finally:
        await pool.close()
