"""The connection repository, its public events, and loading a connection for a change."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import asyncpg
from pressroom_contracts.events.publishing import (
    ConnectionConnected,
    ConnectionExpired,
    ConnectionExpiring,
    ConnectionRevoked,
)
from pressroom_contracts.topics import Topic
from pressroom_kit.errors import NotFound
from pressroom_kit.eventstore import RecordedEvent
from pressroom_kit.projections import Projector
from pressroom_kit.repository import Repository

from pressroom_publishing.connections.domain import Connection
from pressroom_publishing.connections.projections import CONNECTIONS

SOURCE = "/pressroom/publishing"


def to_public(event: RecordedEvent) -> list[tuple[str, str, dict[str, Any]]]:
    """``ConnectionConnected`` / ``ExpiringNoticed`` / ``Expired`` / ``Revoked`` ->
    ``publishing.connection.*.v1``; the platform travels in the event's metadata."""
    d = event.data
    base = {
        "connection_id": event.stream_id,
        "brand_id": event.brand_id,
        "platform": event.metadata.get("platform", d.get("platform", "")),
    }
    payload: Any
    match event.type:
        case "ConnectionConnected":
            payload = ConnectionConnected(
                **base,
                account_id=d["account_id"],
                account_name=d.get("account_name"),
                scopes=d.get("scopes") or [],
                expires_at=d.get("expires_at"),
                reconnected=d.get("reconnected", False),
                connected_by=d.get("connected_by"),
            )
        case "ConnectionExpiringNoticed":
            payload = ConnectionExpiring(
                **base,
                usable_until=d["usable_until"],
                first_affected_post_at=d.get("first_affected_post_at"),
                affected_posts=d.get("affected_posts", 0),
            )
        case "ConnectionExpired":
            payload = ConnectionExpired(**base, reason=d["reason"])
        case "ConnectionRevoked":
            payload = ConnectionRevoked(**base, reason=d["reason"], revoked_by=d.get("revoked_by"))
        case _:
            return []
    return [(Topic.PUBLISHING.value, payload.event_type, payload.model_dump(mode="json"))]


REPOSITORY: Repository[Connection] = Repository(
    Connection, source=SOURCE, projector=Projector([CONNECTIONS]), to_public=to_public
)


async def load(conn: asyncpg.Connection, connection_id: UUID) -> Connection:
    """The live connection, if it belongs to the transaction's brand (the projection row,
    under row-level security, proves that)."""
    owned = await conn.fetchval("SELECT 1 FROM platform_connections WHERE id = $1", connection_id)
    connection = await REPOSITORY.load(conn, str(connection_id)) if owned else None
    if connection is None or not connection.live:
        raise NotFound(f"no connection {connection_id}", code="no_connection")
    return connection


async def save(
    conn: asyncpg.Connection, connection: Connection, *, actor: str | None
) -> list[RecordedEvent]:
    return await REPOSITORY.save(
        conn,
        connection,
        brand_id=connection.brand_id,
        actor=actor,
        metadata={"platform": connection.platform},
    )
