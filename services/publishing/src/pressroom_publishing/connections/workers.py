"""``ConnectionWorker``: keeps tokens usable before anyone needs them.

Every ``connections_interval_s`` it claims the connections that need tending, across brands
(``publishing_connections_claim``, SECURITY DEFINER, with a lease through
``pressroom_kit.leases`` so two replicas never tend one connection at once), and for each:

(a) refreshes a token that expires within ``refresh_ahead_s`` (single-flight, see
    ``credentials``); a passing failure leaves it ``connected`` with the error noted, a dead
    refresh token marks it ``expired`` or ``revoked``;
(b) verifies a connection not verified for ``verify_interval_s`` (an ``error`` one too:
    that is how it comes back to ``connected``);
(c) for a token that cannot be renewed, warns once per expiry
    (``publishing.connection.expiring.v1``) when posts scheduled within
    ``expiring_horizon_s`` fall after it, and marks it ``expired`` once it has passed.

``step()`` is one pass, so tests drive it with their own clock.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timedelta
from uuid import UUID

import asyncpg
from pressroom_kit.db import tenant_transaction
from pressroom_kit.health import Heartbeats
from pressroom_kit.leases import Lease, LeasedRows, LeaseLost
from pressroom_kit.logs import get_logger

from pressroom_publishing.connections import handlers
from pressroom_publishing.connections.credentials import VaultCredentials
from pressroom_publishing.connections.vault import TokenRow
from pressroom_publishing.platforms.base import PlatformError, TransientError

log = get_logger(__name__)

# P's table of per-platform post targets (the scheduler's); until it exists no post can be
# affected by an expiry, so the check reads nothing.
TARGETS_SQL = (
    "SELECT min(scheduled_at), count(*) FROM publishing_targets WHERE brand_id = $1 "
    "AND platform = $2 AND status = 'pending' AND scheduled_at < $3 AND scheduled_at >= $4"
)


# Connections tended at once by one replica: each may hold a pooled connection across one
# platform call (see ``credentials``), so this stays well under the pool's size.
CONCURRENCY = 8


class ConnectionWorker:
    beat_name = "connections"

    def __init__(self, source: VaultCredentials, heartbeats: Heartbeats | None = None) -> None:
        self.source = source
        self.settings = source.settings
        self.heartbeats = heartbeats or Heartbeats()
        self.heartbeats.register(
            self.beat_name, max_age=max(30.0, self.settings.connections_interval_s * 3)
        )
        self.leases = LeasedRows(
            "platform_connection_tokens",
            id_column="connection_id",
            duration=timedelta(seconds=max(60.0, self.settings.platform_timeout_s * 4)),
            clock=lambda: self.source.clock(),
        )
        self._gate = asyncio.Semaphore(CONCURRENCY)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                tended = await self.step()
                self.heartbeats.beat(self.beat_name, detail=f"{tended} tended")
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("connection pass failed; next pass retries", error=str(exc))
                self.heartbeats.beat(self.beat_name, ok=False, detail=str(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.settings.connections_interval_s)

    async def step(self) -> int:
        """One pass: claim what needs tending now and tend it; returns how many."""
        now = self.source.clock()
        settings = self.settings
        claimed = await self.leases.claim(
            self.source.pool,
            "SELECT * FROM publishing_connections_claim($1, $2, $3, $4, $5, $6)",
            100,
            now + timedelta(seconds=settings.refresh_ahead_s),
            now - timedelta(seconds=settings.verify_interval_s),
            now + timedelta(seconds=settings.expiring_horizon_s),
        )
        await asyncio.gather(*(self._tend_guarded(lease, row) for lease, row in claimed))
        return len(claimed)

    async def _tend_guarded(self, lease: Lease, row: asyncpg.Record) -> None:
        brand_id: UUID = row["brand_id"]
        try:
            async with self._gate:
                await self.tend(brand_id, row["connection_id"])
        except Exception:
            # The lease runs out and a later pass tries again; nothing is lost.
            log.exception("tending a connection failed", connection_id=str(row["connection_id"]))
        finally:
            with contextlib.suppress(LeaseLost):
                async with tenant_transaction(self.source.pool, brand_id) as conn:
                    await self.leases.release(conn, lease)

    async def tend(self, brand_id: UUID, connection_id: UUID) -> None:
        source, settings = self.source, self.settings
        if await source.refresh_due(brand_id, connection_id):
            return  # a fresh token is a verified one
        now = source.clock()
        async with tenant_transaction(source.pool, brand_id) as conn:
            row = await source.vault.read(conn, lock=False, connection_id=connection_id)
            verified_at = await conn.fetchval(
                "SELECT coalesce(last_verified_at, created_at) FROM platform_connections "
                "WHERE id = $1",
                connection_id,
            )
        if row is None or row.status not in ("connected", "error"):
            return
        connected = row.status == "connected"  # an ``error`` one is only verified again
        if connected and row.refresh_token_enc is None and row.expires_at is not None:
            if row.expires_at <= now:
                await source.end(
                    brand_id,
                    connection_id,
                    "expired",
                    f"the access token expired and {row.platform} gives no refresh token; "
                    "reconnect",
                )
                return
            await self._warn_if_posts_affected(
                brand_id, connection_id, row.platform, row.expires_at
            )
        if verified_at is not None and verified_at <= now - timedelta(
            seconds=settings.verify_interval_s
        ):
            try:
                await source.verify(brand_id, connection_id, actor=None)
            except PlatformError as exc:
                log.info(
                    "verification could not reach the platform",
                    connection_id=str(connection_id),
                    error=exc.message,
                )

    async def _warn_if_posts_affected(
        self, brand_id: UUID, connection_id: UUID, platform: str, usable_until: datetime
    ) -> None:
        horizon = self.source.clock() + timedelta(seconds=self.settings.expiring_horizon_s)

        # The connection's first lock (its tokens row, bounded), then its events.
        async def notice(conn: asyncpg.Connection, _: TokenRow) -> None:
            if await conn.fetchval("SELECT to_regclass('publishing_targets')") is None:
                return
            found = await conn.fetchrow(TARGETS_SQL, brand_id, platform, horizon, usable_until)
            first, affected = (None, 0) if found is None else (found[0], found[1])
            if not affected:
                return
            connection = await handlers.load(conn, connection_id)
            if connection.notice_expiring(
                usable_until=usable_until, first_affected_post_at=first, affected=affected
            ):
                await handlers.save(conn, connection, actor=None)

        try:
            await self.source.change(brand_id, connection_id, notice)
        except TransientError:
            log.info(
                "the connection is busy elsewhere; noticed next pass",
                connection_id=str(connection_id),
            )
