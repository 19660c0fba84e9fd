from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from pressroom_kit.db import connect, create_pool, grant_runtime_role, tenant_transaction
from pressroom_kit.leases import Lease, LeasedRows, LeaseLost
from pressroom_kit.testing.plugin import APP_ROLE, TestDatabase

# A work table the way a service would have one (brand-scoped, RLS on), and its claim: a
# SECURITY DEFINER function, because the claim runs across brands.
SCHEMA = """
CREATE TABLE chores (
    id          uuid        PRIMARY KEY,
    brand_id    uuid        NOT NULL,
    due_at      timestamptz NOT NULL,
    done_by     text,
    lease_token uuid,
    lease_until timestamptz
);
SELECT pressroom_enable_tenant_rls('chores');
CREATE TABLE chore_log (chore_id uuid NOT NULL, brand_id uuid NOT NULL, note text NOT NULL);
SELECT pressroom_enable_tenant_rls('chore_log');
CREATE FUNCTION chores_claim(at timestamptz, lease interval, max_rows integer)
RETURNS TABLE (id uuid, brand_id uuid, lease_token uuid, lease_until timestamptz)
LANGUAGE sql SECURITY DEFINER SET search_path = public AS $$
    WITH chosen AS (
        SELECT c.id FROM chores c
        WHERE c.done_by IS NULL AND c.due_at <= at
          AND (c.lease_until IS NULL OR c.lease_until <= at)
        ORDER BY c.due_at LIMIT max_rows
        FOR UPDATE SKIP LOCKED
    )
    UPDATE chores c SET lease_token = gen_random_uuid(), lease_until = at + lease
    FROM chosen WHERE c.id = chosen.id
    RETURNING c.id, c.brand_id, c.lease_token, c.lease_until
$$;
"""
CLAIM = "SELECT * FROM chores_claim($1, $2, $3)"
FINISH = (
    "UPDATE chores SET done_by = $3, lease_token = NULL, lease_until = NULL "
    "WHERE id = $1 AND lease_token = $2"
)


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def pool(fresh_db: TestDatabase) -> asyncpg.Pool:
    owner = await connect(fresh_db.owner_dsn)
    try:
        await owner.execute(SCHEMA)
        await grant_runtime_role(owner, APP_ROLE)
    finally:
        await owner.close()
    app_pool = await create_pool(fresh_db.app_dsn, max_size=10)
    yield app_pool
    await app_pool.close()


async def add_chores(pool: asyncpg.Pool, brand: uuid.UUID, n: int, due: datetime) -> None:
    async with tenant_transaction(pool, brand) as conn:
        await conn.executemany(
            "INSERT INTO chores (id, brand_id, due_at) VALUES ($1, $2, $3)",
            [(uuid.uuid4(), brand, due) for _ in range(n)],
        )


@pytest.mark.unit
def test_names_must_be_plain_sql_names_and_leases_last_a_while():
    for bad in ('chores"; DROP TABLE x; --', "Chores", "a.b.c", ""):
        with pytest.raises(ValueError, match="plain SQL name"):
            LeasedRows(bad, duration=timedelta(seconds=5))
    with pytest.raises(ValueError, match="positive"):
        LeasedRows("chores", duration=timedelta(0))
    rows = LeasedRows("public.chores", duration=timedelta(seconds=9))
    lease = Lease(uuid.uuid4(), uuid.uuid4(), datetime.now(UTC))
    assert rows.keep(lease, connect=None)._every == 3.0  # type: ignore[arg-type]


@pytest.mark.integration
async def test_racing_claims_across_brands_share_the_rows_without_overlap(pool):
    clock = Clock()
    rows = LeasedRows("chores", duration=timedelta(seconds=30), clock=clock)
    for _ in range(3):
        await add_chores(pool, uuid.uuid4(), 20, clock.now)

    async def claim_all() -> list[Lease]:
        taken = []
        async with pool.acquire() as conn:
            while batch := await rows.claim(conn, CLAIM, 7):
                taken += [lease for lease, _row in batch]
        return taken

    results = await asyncio.gather(*(claim_all() for _ in range(4)))
    ids = [lease.row_id for result in results for lease in result]
    assert len(ids) == 60 and len(set(ids)) == 60
    expiry = clock.now + timedelta(seconds=30)
    assert all(lease.expires_at == expiry for result in results for lease in result)
    async with pool.acquire() as conn:
        assert await rows.claim(conn, CLAIM, 100) == []  # all leased, none expired


@pytest.mark.integration
async def test_a_stalled_holder_loses_the_row_and_its_late_writes_are_refused(pool):
    clock = Clock()
    rows = LeasedRows("chores", duration=timedelta(seconds=10), clock=clock)
    brand = uuid.uuid4()
    await add_chores(pool, brand, 1, clock.now)
    async with pool.acquire() as conn:
        [(first, record)] = await rows.claim(conn, CLAIM, 10)
    assert record["brand_id"] == brand
    clock.now += timedelta(seconds=11)  # the first holder stalls past its lease
    async with pool.acquire() as conn:
        [(second, _)] = await rows.claim(conn, CLAIM, 10)
    assert second.row_id == first.row_id and second.token != first.token

    async with tenant_transaction(pool, brand) as conn:
        with pytest.raises(LeaseLost):
            await rows.renew(conn, first)
        with pytest.raises(LeaseLost):
            await rows.release(conn, first)

    # A late write after other statements in its transaction: all of it rolls back.
    async def late_write() -> None:
        async with tenant_transaction(pool, brand) as conn:
            await conn.execute(
                "INSERT INTO chore_log VALUES ($1, $2, 'first was here')", first.row_id, brand
            )
            await rows.execute(conn, first, FINISH, "first")

    with pytest.raises(LeaseLost):
        await late_write()
    async with tenant_transaction(pool, brand) as conn:
        renewed = await rows.renew(conn, second)
        assert renewed.expires_at == clock.now + timedelta(seconds=10)
        await conn.execute(
            "INSERT INTO chore_log VALUES ($1, $2, 'second was here')", second.row_id, brand
        )
        await rows.execute(conn, renewed, FINISH, "second")
    async with tenant_transaction(pool, brand) as conn:
        assert await conn.fetchval("SELECT done_by FROM chores") == "second"
        assert [r["note"] for r in await conn.fetch("SELECT note FROM chore_log")] == [
            "second was here"
        ]
        with pytest.raises(LeaseLost):  # finished: the token is gone
            await rows.execute(conn, second, FINISH, "again")
    # A fenced write without the brand's context sees no row: refused, never a silent no-op.
    async with pool.acquire() as conn:
        with pytest.raises(LeaseLost):
            await rows.execute(conn, second, FINISH, "no brand")


@pytest.mark.integration
async def test_release_hands_the_row_back_at_once(pool):
    clock = Clock()
    rows = LeasedRows("chores", duration=timedelta(minutes=5), clock=clock)
    brand = uuid.uuid4()
    await add_chores(pool, brand, 1, clock.now)
    async with pool.acquire() as conn:
        [(lease, _)] = await rows.claim(conn, CLAIM, 1)
        assert await rows.claim(conn, CLAIM, 1) == []
    async with tenant_transaction(pool, brand) as conn:
        await rows.release(conn, lease)
    async with pool.acquire() as conn:
        [(again, _)] = await rows.claim(conn, CLAIM, 1)
    assert again.row_id == lease.row_id and again.token != lease.token


@pytest.mark.integration
async def test_the_keeper_renews_through_a_long_operation_and_signals_loss(pool):
    rows = LeasedRows("chores", duration=timedelta(seconds=0.6))  # the real clock
    brand = uuid.uuid4()
    await add_chores(pool, brand, 2, datetime.now(UTC))
    async with pool.acquire() as conn:
        [(kept, _), (stolen, _)] = await rows.claim(conn, CLAIM, 2)

    def in_brand():
        return tenant_transaction(pool, brand)

    async with rows.keep(kept, in_brand) as keeper, rows.keep(stolen, in_brand) as robbed:
        # Someone takes the second row from under its holder (what a claim after expiry does).
        async with tenant_transaction(pool, brand) as conn:
            await conn.execute(
                "UPDATE chores SET lease_token = gen_random_uuid(), "
                "lease_until = now() + interval '1 hour' WHERE id = $1",
                stolen.row_id,
            )
        deadline = asyncio.get_running_loop().time() + 2.0  # over three lease lengths
        while asyncio.get_running_loop().time() < deadline:
            async with pool.acquire() as conn:
                assert await rows.claim(conn, CLAIM, 2) == []  # the kept row stays leased
            await asyncio.sleep(0.1)
        assert robbed.lost.is_set() and not keeper.lost.is_set()
        assert keeper.lease.expires_at > datetime.now(UTC)
        assert keeper.lease.token == kept.token
    async with tenant_transaction(pool, brand) as conn:
        await rows.execute(conn, keeper.lease, FINISH, "kept")
        with pytest.raises(LeaseLost):
            await rows.execute(conn, stolen, FINISH, "robbed")
