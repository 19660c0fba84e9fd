"""Asset events -> ``media_assets``, ``media_usage_logs`` and ``storage_quotas``.

They run live in the command's transaction and can be rebuilt from the event store: every
value comes from the events (the quota events carry the limit and the warning crossings).
"""

from __future__ import annotations

import asyncpg
from pressroom_kit.eventstore import RecordedEvent
from pressroom_kit.projections import Projection


async def _quota(conn: asyncpg.Connection, event: RecordedEvent, delta: int) -> None:
    quota = event.data["quota"]
    await conn.execute(
        "INSERT INTO storage_quotas AS q (brand_id, limit_bytes, used_bytes, warning_threshold, "
        "warning_active, updated_at) VALUES ($1, $2, greatest($3, 0), $4, $5 = 'raised', $6) "
        "ON CONFLICT (brand_id) DO UPDATE SET limit_bytes = EXCLUDED.limit_bytes, "
        "used_bytes = greatest(q.used_bytes + $3, 0), "
        "warning_threshold = EXCLUDED.warning_threshold, "
        "warning_active = CASE $5 WHEN 'raised' THEN true WHEN 'cleared' THEN false "
        "ELSE q.warning_active END, updated_at = EXCLUDED.updated_at",
        event.brand_id,
        quota["limit_bytes"],
        delta,
        quota["warning_threshold"],
        quota.get("warning") or "",
        event.occurred_at,
    )


async def _uploaded(conn: asyncpg.Connection, event: RecordedEvent) -> None:
    d = event.data
    await conn.execute(
        "INSERT INTO media_assets (id, brand_id, kind, category, filename, content_type, "
        "size_bytes, hash, tags, metadata, files, uploaded_by, created_at, updated_at) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13)",
        event.stream_id,
        event.brand_id,
        d["kind"],
        d["category"],
        d["filename"],
        d["content_type"],
        d["size_bytes"],
        d["hash"],
        d["tags"],
        d["metadata"],
        d["files"],
        event.metadata.get("actor"),
        event.occurred_at,
    )
    await _quota(conn, event, d["size_bytes"])


async def _updated(conn: asyncpg.Connection, event: RecordedEvent) -> None:
    d = event.data
    await conn.execute(
        "UPDATE media_assets SET filename = $2, category = $3, tags = $4, updated_at = $5 "
        "WHERE id = $1",
        event.stream_id,
        d["filename"],
        d["category"],
        d["tags"],
        event.occurred_at,
    )


async def _log_usage(conn: asyncpg.Connection, event: RecordedEvent, user: str | None) -> None:
    """One line of the asset's usage log per use and per release."""
    d = event.data
    await conn.execute(
        "INSERT INTO media_usage_logs (id, brand_id, asset_id, used_in, action, used_by_user, "
        "source_event, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        event.event_id,
        event.brand_id,
        event.stream_id,
        d["used_in"],
        d["action"],
        user,
        d["source_event"],
        event.occurred_at,
    )


async def _used(conn: asyncpg.Connection, event: RecordedEvent) -> None:
    d = event.data
    await conn.execute(
        "UPDATE media_assets SET used_in = CASE WHEN $2 = ANY(used_in) THEN used_in "
        "ELSE array_append(used_in, $2) END, usage_count = usage_count + 1, updated_at = $3 "
        "WHERE id = $1",
        event.stream_id,
        d["used_in"],
        event.occurred_at,
    )
    await _log_usage(conn, event, d["used_by_user"])


async def _released(conn: asyncpg.Connection, event: RecordedEvent) -> None:
    d = event.data
    await conn.execute(
        "UPDATE media_assets SET used_in = CASE WHEN $3 THEN used_in "
        "ELSE array_remove(used_in, $2) END, usage_count = greatest(usage_count - 1, 0), "
        "updated_at = $4 WHERE id = $1",
        event.stream_id,
        d["used_in"],
        d["still_used"],
        event.occurred_at,
    )
    await _log_usage(conn, event, d["released_by_user"])


async def _deleted(conn: asyncpg.Connection, event: RecordedEvent) -> None:
    await conn.execute("DELETE FROM media_assets WHERE id = $1", event.stream_id)
    await _quota(conn, event, -event.data["size_bytes"])


MEDIA = Projection(
    name="media",
    tables=("media_assets", "media_usage_logs", "storage_quotas"),
    handlers={
        "AssetUploaded": _uploaded,
        "AssetUpdated": _updated,
        "AssetUsed": _used,
        "AssetUsageReleased": _released,
        "AssetDeleted": _deleted,
    },
)
