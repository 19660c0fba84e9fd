"""The token vault: sealed tokens in ``platform_connection_tokens``, opened only for one call.

Every token is sealed with the kit's ``SecretBox`` (AES-GCM under a key id) and a context
that names the connection and the field (``connection:<id>:access``), so a ciphertext copied
onto another row, or from the refresh column into the access column, does not open.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

import asyncpg
from pressroom_kit.secrets import SecretBox

from pressroom_publishing.connections.instances import app_context
from pressroom_publishing.platforms.base import Credentials, TokenGrant

Field = Literal["access", "refresh", "verifier"]

_COLUMNS = (
    "t.connection_id, t.brand_id, t.platform, t.access_token_enc, t.refresh_token_enc, "
    "t.expires_at, t.generation, c.status, c.account_id, c.extra, "
    "a.id AS app_id, a.client_secret_enc AS app_secret_enc"
)
# A connection on a federated platform names its instance's app (``platform_apps``) by
# instance and client id; its client secret joins the credentials for the call only.
_APP_JOIN = (
    "LEFT JOIN platform_apps a ON a.platform = c.platform "
    "AND a.instance_url = c.extra->>'instance_url' AND a.client_id = c.extra->>'client_id'"
)


def context(kind: str, row_id: UUID, field: Field) -> str:
    return f"{kind}:{row_id}:{field}"


@dataclass(frozen=True)
class TokenRow:
    """One connection's sealed tokens with what the credentials need from its projection."""

    connection_id: UUID
    brand_id: UUID
    platform: str
    status: str
    account_id: str
    extra: Mapping[str, Any]
    access_token_enc: str
    refresh_token_enc: str | None
    expires_at: datetime | None
    generation: int
    app_id: UUID | None = None
    app_secret_enc: str | None = None

    def __repr__(self) -> str:  # ciphertext stays out of logs too
        return f"TokenRow(connection_id={self.connection_id}, generation={self.generation})"

    @property
    def refreshable(self) -> bool:
        return self.refresh_token_enc is not None


class Vault:
    """Seals and opens tokens; reads and writes the tokens row inside the caller's
    transaction (the caller holds the tenant transaction and the lock order)."""

    def __init__(self, box: SecretBox) -> None:
        self.box = box

    def seal(self, connection_id: UUID, field: Field, token: str) -> str:
        return self.box.encrypt(token, context=context("connection", connection_id, field))

    def open(self, connection_id: UUID, field: Field, sealed: str) -> str:
        return self.box.decrypt(sealed, context=context("connection", connection_id, field))

    def seal_verifier(self, state_id: UUID, verifier: str) -> str:
        return self.box.encrypt(verifier, context=context("oauth_state", state_id, "verifier"))

    def open_verifier(self, state_id: UUID, sealed: str) -> str:
        return self.box.decrypt(sealed, context=context("oauth_state", state_id, "verifier"))

    def credentials(self, row: TokenRow) -> Credentials:
        extra = dict(row.extra)
        if row.app_id is not None and row.app_secret_enc is not None:
            extra["client_secret"] = self.box.decrypt(
                row.app_secret_enc, context=app_context(row.app_id)
            )
        return Credentials(
            connection_id=row.connection_id,
            brand_id=row.brand_id,
            platform=row.platform,
            access_token=self.open(row.connection_id, "access", row.access_token_enc),
            account_id=row.account_id,
            refresh_token=(
                None
                if row.refresh_token_enc is None
                else self.open(row.connection_id, "refresh", row.refresh_token_enc)
            ),
            expires_at=row.expires_at,
            extra=extra,
        )

    async def read(
        self, conn: asyncpg.Connection, *, lock: bool, connection_id: UUID
    ) -> TokenRow | None:
        """The connection's row (under the transaction's brand), locked ``FOR UPDATE`` when
        ``lock``: that is the first lock any change of a connection takes."""
        row = await conn.fetchrow(
            f"SELECT {_COLUMNS} FROM platform_connection_tokens t "
            f"JOIN platform_connections c ON c.id = t.connection_id {_APP_JOIN} "
            f"WHERE t.connection_id = $1{' FOR UPDATE OF t' if lock else ''}",
            connection_id,
        )
        return None if row is None else _token_row(row)

    async def find(self, conn: asyncpg.Connection, platform: str) -> TokenRow | None:
        """The brand's connection to ``platform`` (the transaction's brand), unlocked."""
        row = await conn.fetchrow(
            f"SELECT {_COLUMNS} FROM platform_connections c "
            f"JOIN platform_connection_tokens t ON t.connection_id = c.id {_APP_JOIN} "
            "WHERE c.platform = $1",
            platform,
        )
        return None if row is None else _token_row(row)

    async def write(
        self,
        conn: asyncpg.Connection,
        *,
        connection_id: UUID,
        brand_id: UUID,
        platform: str,
        grant: TokenGrant,
        at: datetime,
    ) -> None:
        """Store ``grant``: a new row, or new tokens on the row (generation + 1). A grant
        without a refresh token keeps the one stored (platforms send one only sometimes)."""
        refresh = (
            None
            if grant.refresh_token is None
            else self.seal(connection_id, "refresh", grant.refresh_token)
        )
        await conn.execute(
            "INSERT INTO platform_connection_tokens (connection_id, brand_id, platform, "
            "access_token_enc, refresh_token_enc, expires_at, generation, updated_at) "
            "VALUES ($1, $2, $3, $4, $5, $6, 1, $7) "
            "ON CONFLICT (connection_id) DO UPDATE SET "
            "access_token_enc = EXCLUDED.access_token_enc, "
            "refresh_token_enc = coalesce(EXCLUDED.refresh_token_enc, "
            "platform_connection_tokens.refresh_token_enc), "
            "expires_at = EXCLUDED.expires_at, "
            "generation = platform_connection_tokens.generation + 1, "
            "updated_at = EXCLUDED.updated_at",
            connection_id,
            brand_id,
            platform,
            self.seal(connection_id, "access", grant.access_token),
            refresh,
            grant.expires_at,
            at,
        )

    async def delete(self, conn: asyncpg.Connection, connection_id: UUID) -> None:
        await conn.execute(
            "DELETE FROM platform_connection_tokens WHERE connection_id = $1", connection_id
        )


def _token_row(row: asyncpg.Record) -> TokenRow:
    return TokenRow(
        connection_id=row["connection_id"],
        brand_id=row["brand_id"],
        platform=row["platform"],
        status=row["status"],
        account_id=row["account_id"],
        extra=row["extra"] or {},
        access_token_enc=row["access_token_enc"],
        refresh_token_enc=row["refresh_token_enc"],
        expires_at=row["expires_at"],
        generation=row["generation"],
        app_id=row["app_id"],
        app_secret_enc=row["app_secret_enc"],
    )
