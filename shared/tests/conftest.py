from __future__ import annotations

import asyncpg
import pytest
import sample
from pressroom_kit.db import apply_migrations, connect, create_pool
from pressroom_kit.testing.plugin import TestDatabase


@pytest.fixture
async def sample_db(fresh_db: TestDatabase) -> TestDatabase:
    conn = await connect(fresh_db.owner_dsn)
    try:
        await apply_migrations(conn, [sample.MIGRATIONS])
        await conn.execute(
            "GRANT SELECT, INSERT, UPDATE, DELETE ON notes, note_mentions TO pressroom_app"
        )
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
