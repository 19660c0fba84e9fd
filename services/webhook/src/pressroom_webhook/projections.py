"""Endpoint events -> ``webhook_endpoints`` (live in the command's transaction; rebuildable)."""

from __future__ import annotations

import asyncpg
from pressroom_kit.eventstore import RecordedEvent
from pressroom_kit.projections import Projection


async def _created(conn: asyncpg.Connection, event: RecordedEvent) -> None:
    d = event.data
    await conn.execute(
        "INSERT INTO webhook_endpoints (id, brand_id, url, provider, event_types, description, "
        "enabled, secret_enc, created_at, updated_at) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)",
        event.stream_id,
        event.brand_id,
        d["url"],
        d["provider"],
        d["event_types"],
        d["description"],
        d["enabled"],
        d["secret_enc"],
        event.occurred_at,
    )


async def _changed(conn: asyncpg.Connection, event: RecordedEvent) -> None:
    d = event.data
    await conn.execute(
        "UPDATE webhook_endpoints SET url = $2, provider = $3, event_types = $4, "
        "description = $5, enabled = $6, disabled_reason = CASE WHEN $6 THEN NULL "
        "ELSE disabled_reason END, updated_at = $7 WHERE id = $1",
        event.stream_id,
        d["url"],
        d["provider"],
        d["event_types"],
        d["description"],
        d["enabled"],
        event.occurred_at,
    )


async def _rotated(conn: asyncpg.Connection, event: RecordedEvent) -> None:
    d = event.data
    await conn.execute(
        "UPDATE webhook_endpoints SET secret_enc = $2, previous_secret_enc = $3, "
        "previous_valid_until = $4::text::timestamptz, updated_at = $5 WHERE id = $1",
        event.stream_id,
        d["secret_enc"],
        d["previous_secret_enc"],
        d["previous_valid_until"],
        event.occurred_at,
    )


async def _disabled(conn: asyncpg.Connection, event: RecordedEvent) -> None:
    await conn.execute(
        "UPDATE webhook_endpoints SET enabled = false, disabled_reason = $2, updated_at = $3 "
        "WHERE id = $1",
        event.stream_id,
        event.data["reason"],
        event.occurred_at,
    )


async def _deleted(conn: asyncpg.Connection, event: RecordedEvent) -> None:
    await conn.execute(
        "UPDATE webhook_endpoints SET deleted = true, enabled = false, updated_at = $2 "
        "WHERE id = $1",
        event.stream_id,
        event.occurred_at,
    )


ENDPOINTS = Projection(
    name="webhook_endpoints",
    tables=("webhook_endpoints",),
    handlers={
        "EndpointCreated": _created,
        "EndpointChanged": _changed,
        "SecretRotated": _rotated,
        "EndpointDisabled": _disabled,
        "EndpointDeleted": _deleted,
    },
)
