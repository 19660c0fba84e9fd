"""Brand events -> ``brands`` and ``brand_users`` (live in the command's transaction, and
rebuildable with ``pressroom rebuild gateway``)."""

from __future__ import annotations

import asyncpg
from pressroom_kit.eventstore import RecordedEvent
from pressroom_kit.projections import Projection


async def _created(conn: asyncpg.Connection, event: RecordedEvent) -> None:
    data = event.data
    await conn.execute(
        "INSERT INTO brands (id, name, timezone, settings, created_by, created_at, updated_at) "
        "VALUES ($1, $2, $3, $4, $5, $6, $6)",
        event.brand_id,
        data["name"],
        data["timezone"],
        data["settings"],
        data["created_by"],
        event.occurred_at,
    )
    await conn.execute(
        "INSERT INTO brand_users (brand_id, user_id, email, role, added_at) "
        "VALUES ($1, $2, $3, 'admin', $4)",
        event.brand_id,
        data["created_by"],
        data.get("creator_email"),
        event.occurred_at,
    )


async def _updated(conn: asyncpg.Connection, event: RecordedEvent) -> None:
    data = event.data
    await conn.execute(
        "UPDATE brands SET name = $2, timezone = $3, settings = $4, updated_at = $5 WHERE id = $1",
        event.brand_id,
        data["name"],
        data["timezone"],
        data["settings"],
        event.occurred_at,
    )


async def _member_added(conn: asyncpg.Connection, event: RecordedEvent) -> None:
    data = event.data
    await conn.execute(
        "INSERT INTO brand_users (brand_id, user_id, email, role, added_at) "
        "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (brand_id, user_id) "
        "DO UPDATE SET role = EXCLUDED.role, email = coalesce(EXCLUDED.email, brand_users.email)",
        event.brand_id,
        data["user_id"],
        data.get("email"),
        data["role"],
        event.occurred_at,
    )


async def _member_removed(conn: asyncpg.Connection, event: RecordedEvent) -> None:
    await conn.execute(
        "DELETE FROM brand_users WHERE brand_id = $1 AND user_id = $2",
        event.brand_id,
        event.data["user_id"],
    )


BRANDS = Projection(
    name="brands",
    tables=("brands", "brand_users"),
    handlers={
        "BrandCreated": _created,
        "BrandUpdated": _updated,
        "MemberAdded": _member_added,
        "MemberRemoved": _member_removed,
    },
)
