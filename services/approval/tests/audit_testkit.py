"""Helpers for the audit and privacy tests: a migrated database of the approval service, its
runtime-role pool and owner connection, and a brand transaction to record entries in."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from uuid import UUID

import asyncpg
from pressroom_approval.app import MIGRATIONS
from pressroom_kit.db import apply_migrations, connect, create_pool, grant_runtime_role
from pressroom_kit.testing.plugin import APP_ROLE, TestDatabase


@dataclass
class AuditDb:
    db: TestDatabase
    pool: asyncpg.Pool  # the runtime role: row-level security applies

    async def owner(self) -> asyncpg.Connection:
        """A connection as the tables' owner (the test server's superuser)."""
        return await connect(self.db.owner_dsn)


@asynccontextmanager
async def audit_database(db: TestDatabase) -> AsyncIterator[AuditDb]:
    conn = await connect(db.owner_dsn)
    try:
        await apply_migrations(conn, [MIGRATIONS])
        await grant_runtime_role(conn, APP_ROLE)
    finally:
        await conn.close()
    pool = await create_pool(db.app_dsn, min_size=1, max_size=12)
    try:
        yield AuditDb(db, pool)
    finally:
        await pool.close()


async def chain_rows(adb: AuditDb, brand_id: UUID) -> list[asyncpg.Record]:
    owner = await adb.owner()
    try:
        return await owner.fetch(
            "SELECT * FROM audit_logs WHERE brand_id = $1 ORDER BY seq", brand_id
        )
    finally:
        await owner.close()
