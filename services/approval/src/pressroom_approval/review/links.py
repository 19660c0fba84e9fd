"""The ``review_links`` table: create, list, revoke, open and consume links.

Every function runs on the caller's connection, inside a ``tenant_transaction`` for the
link's brand (row-level security keeps other brands' links out of reach).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal
from uuid import UUID, uuid4

import asyncpg

LinkStatus = Literal["active", "expired", "revoked", "used"]
Decision = Literal["approve", "reject"]

_COLUMNS = (
    "id, brand_id, approval_id, name, email, created_by, created_at, expires_at, "
    "revoked_at, revoked_by, used_at, used_decision"
)


@dataclass(frozen=True)
class ReviewLink:
    id: UUID
    brand_id: UUID
    approval_id: UUID
    name: str
    email: str | None
    created_by: str
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    revoked_by: str | None
    used_at: datetime | None
    used_decision: str | None

    def status(self, now: datetime) -> LinkStatus:
        """Revoked and used outrank expired: they say what someone did."""
        if self.revoked_at is not None:
            return "revoked"
        if self.used_at is not None:
            return "used"
        if self.expires_at <= now:
            return "expired"
        return "active"


def _link(row: asyncpg.Record) -> ReviewLink:
    return ReviewLink(**dict(row))


async def create_link(
    conn: asyncpg.Connection,
    *,
    brand_id: UUID,
    approval_id: UUID,
    name: str,
    email: str | None,
    created_by: str,
    now: datetime,
    expires_at: datetime,
) -> ReviewLink:
    row = await conn.fetchrow(
        f"INSERT INTO review_links (id, brand_id, approval_id, name, email, created_by, "
        f"created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {_COLUMNS}",
        uuid4(),
        brand_id,
        approval_id,
        name,
        email,
        created_by,
        now,
        expires_at,
    )
    assert row is not None
    return _link(row)


async def links_of(conn: asyncpg.Connection, approval_id: UUID) -> list[ReviewLink]:
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM review_links WHERE approval_id = $1 ORDER BY created_at, id",
        approval_id,
    )
    return [_link(r) for r in rows]


async def get_link(conn: asyncpg.Connection, link_id: UUID) -> ReviewLink | None:
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM review_links WHERE id = $1", link_id)
    return None if row is None else _link(row)


async def revoke_link(
    conn: asyncpg.Connection, *, approval_id: UUID, link_id: UUID, by: str, now: datetime
) -> tuple[ReviewLink | None, bool]:
    """(the link, whether this call revoked it). Revoking twice is no error: the second
    call finds it revoked already and changes nothing."""
    row = await conn.fetchrow(
        f"UPDATE review_links SET revoked_at = $3, revoked_by = $4 "
        f"WHERE id = $1 AND approval_id = $2 AND revoked_at IS NULL RETURNING {_COLUMNS}",
        link_id,
        approval_id,
        now,
        by,
    )
    if row is not None:
        return _link(row), True
    link = await get_link(conn, link_id)
    if link is None or link.approval_id != approval_id:
        return None, False
    return link, False


async def consume_link(
    conn: asyncpg.Connection, link_id: UUID, decision: Decision, now: datetime
) -> ReviewLink | None:
    """Mark the link used for ``decision``, once: the row lock serialises two forms posted
    at once and the loser finds ``used_at`` set (``None``). Same transaction as the
    decision, so a decision that fails leaves the link unused."""
    row = await conn.fetchrow(
        f"UPDATE review_links SET used_at = $2, used_decision = $3 "
        f"WHERE id = $1 AND used_at IS NULL AND revoked_at IS NULL AND expires_at > $2 "
        f"RETURNING {_COLUMNS}",
        link_id,
        now,
        decision,
    )
    return None if row is None else _link(row)
