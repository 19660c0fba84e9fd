"""The OAuth 2 flow: ``authorize`` builds the consent URL and a single-use signed state;
``complete`` checks the state, consumes it exactly once, exchanges the code, learns the
account and stores the connection (one per brand and platform) with its sealed tokens."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg
from pressroom_kit.db import tenant_transaction
from pressroom_kit.errors import Conflict, PressroomError

from pressroom_publishing.connections import handlers
from pressroom_publishing.connections.domain import Connection
from pressroom_publishing.connections.instances import InstanceAppPlatform, InstanceApps
from pressroom_publishing.connections.state import (
    BadState,
    StateClaims,
    new_verifier,
    read_state,
    sign_state,
)
from pressroom_publishing.connections.vault import Vault
from pressroom_publishing.platforms.base import (
    Account,
    Credentials,
    OAuthContext,
    Platform,
    PlatformError,
    TokenGrant,
)
from pressroom_publishing.settings import PublishingSettings

Clock = Callable[[], datetime]


class PlatformFailed(PressroomError):
    """The platform refused or failed a step of the flow: its message, as a 502."""

    status, code, title = 502, "platform_error", "The platform refused the request"


def redirect_uri(settings: PublishingSettings, platform: str) -> str:
    """Through the gateway, as the platform's registered redirect URI must read."""
    return f"{settings.public_url}/v1/connections/{platform}/callback"


@dataclass(frozen=True)
class Authorization:
    authorization_url: str
    state: str


@dataclass(frozen=True)
class Completed:
    connection_id: UUID
    platform: str
    reconnected: bool


async def authorize(
    pool: asyncpg.Pool,
    vault: Vault,
    platform: Platform,
    settings: PublishingSettings,
    *,
    brand_id: UUID,
    user_id: str,
    extra: dict[str, Any],
    secret_extra: Mapping[str, Any] | None = None,
    now: datetime,
) -> Authorization:
    """``extra`` is kept on the state (and later the connection); ``secret_extra`` (an
    instance app's client secret) only reaches the adapter for this one call."""
    state_id = uuid.uuid4()
    expires_at = now + timedelta(seconds=settings.state_ttl_s)
    verifier = new_verifier() if platform.capabilities.pkce else None
    claims = StateClaims(state_id, brand_id, platform.id, user_id, expires_at)
    state = sign_state(settings.state_signing_key.get_secret_value(), claims)
    uri = redirect_uri(settings, platform.id)
    try:
        url = await platform.authorization_url(
            OAuthContext(
                state=state,
                redirect_uri=uri,
                code_verifier=verifier,
                extra={**extra, **(secret_extra or {})},
            )
        )
    except PlatformError as exc:
        raise PlatformFailed(f"{platform.id}: {exc.message}") from exc
    async with tenant_transaction(pool, brand_id) as conn:
        # States nobody came back with are kept a day past expiry (replays read as such).
        await conn.execute(
            "DELETE FROM oauth_states WHERE expires_at < $1", now - timedelta(days=1)
        )
        await conn.execute(
            "INSERT INTO oauth_states (id, brand_id, user_id, platform, redirect_uri, "
            "code_verifier_enc, extra, expires_at, created_at) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            state_id,
            brand_id,
            user_id,
            platform.id,
            uri,
            None if verifier is None else vault.seal_verifier(state_id, verifier),
            extra,
            expires_at,
            now,
        )
    return Authorization(authorization_url=url, state=state)


def check_state(
    settings: PublishingSettings, state: str, platform: str, now: datetime
) -> StateClaims:
    """Signature and expiry first (no database work for a forged state), then the platform
    in the path must be the one the state was issued for."""
    claims = read_state(settings.state_signing_key.get_secret_value(), state, now=now)
    if claims.platform != platform:
        raise BadState(
            f"this state was issued for {claims.platform}, not {platform}",
            code="platform_mismatch",
        )
    return claims


async def consume_state(
    pool: asyncpg.Pool, claims: StateClaims, *, now: datetime
) -> asyncpg.Record:
    """Mark the state used, exactly once: of two callbacks racing with it, one wins."""
    async with tenant_transaction(pool, claims.brand_id) as conn:
        row = await conn.fetchrow(
            "UPDATE oauth_states SET used_at = $2 "
            "WHERE id = $1 AND used_at IS NULL AND expires_at > $2 "
            "RETURNING user_id, platform, redirect_uri, code_verifier_enc, extra",
            claims.state_id,
            now,
        )
        if row is None:
            known = await conn.fetchrow(
                "SELECT used_at FROM oauth_states WHERE id = $1", claims.state_id
            )
    if row is not None:
        return row
    if known is not None and known["used_at"] is not None:
        raise Conflict(
            "this OAuth state was already used; start the connection again", code="state_used"
        )
    raise BadState(
        "the OAuth state expired or is unknown; start the connection again", code="state_expired"
    )


async def complete(
    pool: asyncpg.Pool,
    vault: Vault,
    platform: Platform,
    *,
    claims: StateClaims,
    state: str,
    code: str,
    now: datetime,
    apps: InstanceApps | None = None,
) -> Completed:
    row = await consume_state(pool, claims, now=now)
    stored: dict[str, Any] = dict(row["extra"] or {})
    call_extra = dict(stored)
    if isinstance(platform, InstanceAppPlatform):
        # The code is exchanged with the app (and on the instance) the state was made for.
        app = None
        if apps is not None and "instance_url" in stored and "client_id" in stored:
            app = await apps.find(platform.id, stored["instance_url"], stored["client_id"])
        if app is None:
            raise BadState(
                "the app this authorization was started with is gone; start the connection again",
                code="state_unreadable",
            )
        call_extra = app.extra()
    try:
        verifier = (
            None
            if row["code_verifier_enc"] is None
            else vault.open_verifier(claims.state_id, row["code_verifier_enc"])
        )
    except ValueError as exc:  # sealed under a key this installation no longer has
        raise BadState(
            "this authorization can no longer be finished; start the connection again",
            code="state_unreadable",
        ) from exc
    context = OAuthContext(
        state=state,
        redirect_uri=row["redirect_uri"],
        code_verifier=verifier,
        extra=call_extra,
    )
    connection_id = await _connection_id(pool, claims.brand_id, platform.id)
    try:
        grant = await platform.exchange_code(code, context)
        account = await platform.verify(
            Credentials(
                connection_id=connection_id,
                brand_id=claims.brand_id,
                platform=platform.id,
                access_token=grant.access_token,
                account_id="",
                refresh_token=grant.refresh_token,
                expires_at=grant.expires_at,
                extra=context.extra,
            )
        )
    except PlatformError as exc:
        raise PlatformFailed(f"{platform.id}: {exc.message}") from exc
    return await save_connection(
        pool,
        vault,
        platform,
        brand_id=claims.brand_id,
        user_id=claims.user_id,
        grant=grant,
        account=account,
        extra=public_extra(stored, account.extra),
        now=now,
        connection_id=connection_id,
    )


# Keys an adapter may hand around in ``extra`` that must never be stored or shown.
SECRET_KEYS = frozenset(
    {
        "client_secret",
        "password",
        "app_password",
        "access_token",
        "refresh_token",
        "access_jwt",
        "refresh_jwt",
        "accessJwt",
        "refreshJwt",
    }
)


def public_extra(*parts: Mapping[str, Any]) -> dict[str, Any]:
    """The connection's non-secret details: ``parts`` merged, secret-looking keys dropped."""
    merged: dict[str, Any] = {}
    for part in parts:
        merged.update({k: v for k, v in part.items() if k not in SECRET_KEYS})
    return merged


async def _connection_id(pool: asyncpg.Pool, brand_id: UUID, platform: str) -> UUID:
    async with tenant_transaction(pool, brand_id) as conn:
        existing: UUID | None = await conn.fetchval(
            "SELECT id FROM platform_connections WHERE platform = $1", platform
        )
    return existing or uuid.uuid4()


async def save_connection(
    pool: asyncpg.Pool,
    vault: Vault,
    platform: Platform,
    *,
    brand_id: UUID,
    user_id: str,
    grant: TokenGrant,
    account: Account,
    extra: dict[str, Any],
    now: datetime,
    connection_id: UUID | None = None,
) -> Completed:
    """Store a connect (OAuth callback or app password): one connection per brand and
    platform, so a reconnect keeps its id and replaces the tokens (keeping the stored refresh
    token when the grant has none). Two connects racing for a new one: the loser reconnects
    over the winner."""
    connection_id = connection_id or await _connection_id(pool, brand_id, platform.id)
    for attempt in (1, 2):
        try:
            return await _store(
                pool, vault, platform, brand_id, user_id, connection_id, grant, account, extra, now
            )
        except asyncpg.UniqueViolationError:
            if attempt == 2:
                raise
            connection_id = await _connection_id(pool, brand_id, platform.id)
    raise AssertionError("unreachable")


async def _store(
    pool: asyncpg.Pool,
    vault: Vault,
    platform: Platform,
    brand_id: UUID,
    user_id: str,
    connection_id: UUID,
    grant: TokenGrant,
    account: Account,
    extra: dict[str, Any],
    now: datetime,
) -> Completed:
    async with tenant_transaction(pool, brand_id) as conn:
        existing: Connection | None = None
        if await vault.read(conn, lock=True, connection_id=connection_id) is not None:
            existing = await handlers.load(conn, connection_id)
        connection = Connection.connect(
            connection_id,
            existing=existing,
            brand_id=brand_id,
            platform=platform.id,
            account_id=account.account_id,
            account_name=account.name,
            scopes=list(grant.scopes),
            extra=extra,
            expires_at=grant.expires_at,
            connected_by=user_id,
            at=now,
        )
        await vault.write(
            conn,
            connection_id=connection_id,
            brand_id=brand_id,
            platform=platform.id,
            grant=grant,
            at=now,
        )
        await handlers.save(conn, connection, actor=user_id)
    return Completed(connection_id, platform.id, reconnected=existing is not None)
