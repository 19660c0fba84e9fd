"""Connection events -> ``platform_connections`` (live in the command's transaction;
rebuildable: every time comes from the event, never from a clock). No token ever reaches it."""

from __future__ import annotations

import asyncpg
from pressroom_kit.eventstore import RecordedEvent
from pressroom_kit.projections import Projection, ProjectionHandler


async def _connected(conn: asyncpg.Connection, event: RecordedEvent) -> None:
    d = event.data
    await conn.execute(
        "INSERT INTO platform_connections (id, brand_id, platform, status, account_id, "
        "account_name, scopes, extra, token_expires_at, last_verified_at, last_refreshed_at, "
        "last_error, connected_by, created_at, updated_at) "
        "VALUES ($1, $2, $3, 'connected', $4, $5, $6, $7::jsonb, $8::text::timestamptz, "
        "$9::text::timestamptz, NULL, NULL, $10, $11, $11) "
        "ON CONFLICT (id) DO UPDATE SET status = 'connected', account_id = EXCLUDED.account_id, "
        "account_name = EXCLUDED.account_name, scopes = EXCLUDED.scopes, extra = EXCLUDED.extra, "
        "token_expires_at = EXCLUDED.token_expires_at, "
        "last_verified_at = EXCLUDED.last_verified_at, last_error = NULL, "
        "connected_by = EXCLUDED.connected_by, updated_at = EXCLUDED.updated_at",
        event.stream_id,
        event.brand_id,
        d["platform"],
        d["account_id"],
        d.get("account_name"),
        d.get("scopes") or [],
        d.get("extra") or {},
        d.get("expires_at"),
        d["at"],  # the connect proved the token against the platform: verified now
        d.get("connected_by"),
        event.occurred_at,
    )


async def _refreshed(conn: asyncpg.Connection, event: RecordedEvent) -> None:
    d = event.data
    await conn.execute(
        "UPDATE platform_connections SET token_expires_at = $2::text::timestamptz, "
        "scopes = CASE WHEN cardinality($3::text[]) > 0 THEN $3::text[] ELSE scopes END, "
        "last_refreshed_at = $4::text::timestamptz, "
        "last_error = CASE WHEN status = 'error' THEN last_error END, updated_at = $5 "
        "WHERE id = $1",
        event.stream_id,
        d.get("expires_at"),
        d.get("scopes") or [],
        d["at"],
        event.occurred_at,
    )


async def _verified(conn: asyncpg.Connection, event: RecordedEvent) -> None:
    d = event.data
    await conn.execute(
        "UPDATE platform_connections SET last_verified_at = $2::text::timestamptz, "
        "account_name = coalesce($3, account_name), last_error = NULL, "
        "status = CASE WHEN status = 'error' THEN 'connected' ELSE status END, updated_at = $4 "
        "WHERE id = $1",
        event.stream_id,
        d["at"],
        d.get("account_name"),
        event.occurred_at,
    )


async def _refresh_failed(conn: asyncpg.Connection, event: RecordedEvent) -> None:
    await conn.execute(
        "UPDATE platform_connections SET last_error = $2, updated_at = $3 WHERE id = $1",
        event.stream_id,
        event.data["error"],
        event.occurred_at,
    )


async def _errored(conn: asyncpg.Connection, event: RecordedEvent) -> None:
    d = event.data
    await conn.execute(
        "UPDATE platform_connections SET status = 'error', last_error = $2, "
        "last_verified_at = $3::text::timestamptz, updated_at = $4 WHERE id = $1",
        event.stream_id,
        d["reason"],
        d["at"],  # checked then: the worker verifies it again after VERIFY_INTERVAL_S
        event.occurred_at,
    )


def _ended(status: str) -> ProjectionHandler:
    async def handle(conn: asyncpg.Connection, event: RecordedEvent) -> None:
        await conn.execute(
            "UPDATE platform_connections SET status = $2, last_error = $3, updated_at = $4 "
            "WHERE id = $1",
            event.stream_id,
            status,
            event.data["reason"],
            event.occurred_at,
        )

    return handle


async def _disconnected(conn: asyncpg.Connection, event: RecordedEvent) -> None:
    await conn.execute("DELETE FROM platform_connections WHERE id = $1", event.stream_id)


CONNECTIONS = Projection(
    name="platform_connections",
    tables=("platform_connections",),
    handlers={
        "ConnectionConnected": _connected,
        "ConnectionTokensRefreshed": _refreshed,
        "ConnectionVerified": _verified,
        "ConnectionRefreshFailed": _refresh_failed,
        "ConnectionErrored": _errored,
        "ConnectionExpired": _ended("expired"),
        "ConnectionRevoked": _ended("revoked"),
        "ConnectionDisconnected": _disconnected,
    },
)
