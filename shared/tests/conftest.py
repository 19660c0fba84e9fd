from __future__ import annotations

import asyncpg
import pytest
from pressroom_kit.db import apply_migrations, connect, create_pool, grant_runtime_role
from pressroom_kit.testing.plugin import APP_ROLE, TestDatabase
from pressroom_kit.testing.sample import domain as sample


@pytest.fixture
async def sample_db(fresh_db: TestDatabase) -> TestDatabase:
    conn = await connect(fresh_db.owner_dsn)
    try:
        await apply_migrations(conn, [sample.MIGRATIONS])
        await grant_runtime_role(conn, APP_ROLE)
    finally:
        await conn.close()
    return fresh_db


@pytest.fixture
async def app_pool(sample_db: TestDatabase) -> asyncpg.Pool:
    pool = await create_pool(sample_db.app_dsn, max_size=10)
    yield pool
    await pool.close()


@pytest.fixture
async def owner_pool(sample_db: TestDatabase) -> asyncpg.Pool:
    pool = await create_pool(sample_db.owner_dsn, max_size=5)
    yield pool
    await pool.close()
