"""``VaultCredentials``: the scheduler's ``CredentialSource``, and every token operation that
talks to a platform (refresh, verify, revoke), in one place.

Single-flight refresh, in three layers, so that one refresh is in flight per connection and
a hanging token endpoint cannot starve the database pool:

1. In one process, concurrent refreshes of a connection share one ``asyncio`` future: the
   first caller leads, the others wait on the future (holding no database connection) and
   get its outcome: the new token, or the very same ``TransientError``/``ConnectionUnusable``
   without calling the platform again. A waiter whose token is still stale after a refresh
   that was not for it (the leader found nothing due) goes on to lead one of its own.
2. Across replicas, the leader locks the connection's tokens row (``SELECT ... FOR UPDATE``
   in the brand's tenant transaction) and waits for that lock at most ``lock_wait_s``
   (``SET LOCAL lock_timeout``). When another replica holds it longer, the row is re-read
   without a lock: a token that changed meanwhile is returned, else
   ``RefreshUnavailable("refresh in progress elsewhere")`` (a ``TransientError``): the
   caller retries later; it never sits on a pooled connection for the other replica's
   whole platform timeout.
3. The lock is held across the one platform call (bounded by ``platform_timeout_s + 5``).
   That is deliberate: platforms that rotate refresh tokens invalidate the old one on use,
   so two replicas refreshing at once would kill the connection. What waits on the lock is
   another replica's refresh (bounded, see 2.) or a change of the same connection, readers
   never lock (MVCC), the worker's claim skips locked rows, and every transaction that
   changes a connection takes this lock first and only then appends the connection's events
   (one lock order: no deadlock). The cost is one pooled connection per refresh in flight,
   so leaders also take one of ``max_refreshes`` slots first (default a quarter of the pool):
   when a platform's token endpoint hangs for every connection at once, the rest queue in
   memory, not on the pool — the API, relay, consumers and lease keepers keep their
   connections.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, TypeVar
from uuid import UUID

import asyncpg
from pressroom_kit.db import tenant_transaction
from pressroom_kit.errors import NotFound
from pressroom_kit.logs import get_logger
from pressroom_kit.secrets import SecretBox

from pressroom_publishing.connections import handlers
from pressroom_publishing.connections.domain import Connection
from pressroom_publishing.connections.vault import TokenRow, Vault
from pressroom_publishing.platforms.base import (
    AuthExpiredError,
    ConnectionUnusable,
    Credentials,
    Platform,
    PlatformError,
    RejectedError,
    RevokedError,
    TokenGrant,
    TransientError,
)
from pressroom_publishing.settings import PublishingSettings

log = get_logger(__name__)
Clock = Callable[[], datetime]
T = TypeVar("T")
# ``credentials`` refreshes first when the token would expire within this margin.
REFRESH_MARGIN = timedelta(minutes=1)
# How long a refresh waits for another replica's lock on the tokens row before it gives up
# with a ``TransientError`` (it holds a pooled connection while it waits).
LOCK_WAIT_S = 2.0


class RefreshUnavailable(TransientError):
    """A token could not be refreshed (or a connection changed) just now: the platform's
    token endpoint failed passingly or timed out, or another replica holds the connection.
    Raised before any publication was attempted, so a caller must not read its missing
    ``status`` as "the platform may have acted" — nothing was sent but a token request."""

    @classmethod
    def of(cls, exc: TransientError) -> RefreshUnavailable:
        return cls(
            exc.platform,
            exc.message,
            code=exc.code,
            status=exc.status,
            details=exc.details,
            retry_after_s=exc.retry_after_s,
        )


class _Busy(Exception):
    """The tokens row stayed locked (another replica's refresh) past ``lock_wait_s``."""


@dataclass(frozen=True)
class _Dead:
    status: Literal["expired", "revoked"]
    reason: str


class VaultCredentials:
    """Implements ``platforms.base.CredentialSource`` over the token vault."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        box: SecretBox,
        platforms: Mapping[str, Platform],
        settings: PublishingSettings,
        clock: Clock,
        *,
        lock_wait_s: float = LOCK_WAIT_S,
        max_refreshes: int | None = None,
    ) -> None:
        self.pool = pool
        self.vault = Vault(box)
        self.platforms = platforms
        self.settings = settings
        self.clock = clock
        self.lock_wait_s = lock_wait_s
        slots = max_refreshes if max_refreshes is not None else pool.get_max_size() // 4
        self._slots = asyncio.Semaphore(max(1, slots))
        self._flights: dict[UUID, asyncio.Future[TokenRow]] = {}

    # --- CredentialSource -------------------------------------------------------------

    async def credentials(self, brand_id: UUID, platform: str) -> Credentials:
        async with tenant_transaction(self.pool, brand_id) as conn:
            row = await self.vault.find(conn, platform)
        if row is None:
            raise ConnectionUnusable(
                platform, "missing", f"the brand has no {platform} connection; connect it first"
            )
        _usable(row)
        now = self.clock()
        expires_at = row.expires_at
        if expires_at is not None and expires_at <= now + REFRESH_MARGIN:
            seen = row.generation
            if row.refreshable:
                try:
                    row = await self._refresh(
                        brand_id, row.connection_id, wanted=lambda r: r.generation == seen
                    )
                except TransientError:
                    if expires_at <= now:
                        raise
                    # Still valid for a moment: use it; the worker tries again.
            elif expires_at <= now:
                await self._end(
                    brand_id,
                    row.connection_id,
                    _Dead(
                        "expired",
                        f"the access token expired and {platform} gave no refresh token; reconnect",
                    ),
                )
                raise ConnectionUnusable(platform, "expired", "the connection expired; reconnect")
        return self.vault.credentials(row)

    async def refresh_after_rejection(self, stale: Credentials) -> Credentials:
        def still_stale(row: TokenRow) -> bool:
            current = self.vault.open(row.connection_id, "access", row.access_token_enc)
            return current == stale.access_token

        row = await self._refresh(stale.brand_id, stale.connection_id, wanted=still_stale)
        return self.vault.credentials(row)

    async def mark_revoked(self, credentials: Credentials, error: PlatformError) -> None:
        await self._end(
            credentials.brand_id,
            credentials.connection_id,
            _Dead("revoked", error.message or "the platform withdrew the grant"),
        )

    # --- worker and API ---------------------------------------------------------------

    async def refresh_due(self, brand_id: UUID, connection_id: UUID) -> bool:
        """Refresh if the token still expires within ``refresh_ahead_s`` (another replica may
        have done it meanwhile); True when this call refreshed it. A passing failure is
        noted on the connection (still ``connected``)."""
        horizon = self.clock() + timedelta(seconds=self.settings.refresh_ahead_s)
        refreshed = False

        def due(row: TokenRow) -> bool:
            nonlocal refreshed
            refreshed = row.refreshable and row.expires_at is not None and row.expires_at <= horizon
            return refreshed

        try:
            await self._refresh(brand_id, connection_id, wanted=due)
        except (TransientError, ConnectionUnusable):
            return False
        return refreshed

    async def verify(self, brand_id: UUID, connection_id: UUID, *, actor: str | None) -> None:
        """Ask the platform about the token now. A token it refuses is refreshed once; a dead
        one marks the connection ``expired`` or ``revoked``; one refused for good but not
        dead (a 403: account suspended, scopes withdrawn), or that now speaks for another
        account, marks it ``error`` — and a later successful verify ``connected`` again.
        ``TransientError`` (and other platform errors) propagate: nothing was learned."""
        async with tenant_transaction(self.pool, brand_id) as conn:
            row = await self.vault.read(conn, lock=False, connection_id=connection_id)
        if row is None:
            raise NotFound(f"no connection {connection_id}", code="no_connection")
        if row.status not in ("connected", "error"):
            return
        platform = self._platform(row.platform)
        credentials = self.vault.credentials(row)
        try:
            account = await platform.verify(credentials)
        except RevokedError as exc:
            await self._end(brand_id, connection_id, _Dead("revoked", exc.message))
            return
        except RejectedError as exc:
            await self._errored(brand_id, connection_id, f"the platform refused: {exc.message}")
            return
        except AuthExpiredError:
            try:
                credentials = await self.refresh_after_rejection(credentials)
            except ConnectionUnusable:
                return  # marked expired or revoked by the refresh
            try:
                account = await platform.verify(credentials)
            except (AuthExpiredError, RevokedError) as exc:
                status: Literal["expired", "revoked"] = (
                    "revoked" if isinstance(exc, RevokedError) else "expired"
                )
                await self._end(brand_id, connection_id, _Dead(status, exc.message))
                return
            except RejectedError as exc:
                await self._errored(brand_id, connection_id, f"the platform refused: {exc.message}")
                return
        if account.account_id and row.account_id and account.account_id != row.account_id:
            await self._errored(
                brand_id,
                connection_id,
                f"the token now speaks for account {account.account_id}, not "
                f"{row.account_id}; reconnect",
            )
            return

        async def record(conn: asyncpg.Connection, _: TokenRow) -> None:
            connection = await handlers.load(conn, connection_id)
            connection.verified(account_name=account.name, at=self.clock())
            await handlers.save(conn, connection, actor=actor)

        await self.change(brand_id, connection_id, record)  # None: disconnected meanwhile

    async def _errored(self, brand_id: UUID, connection_id: UUID, reason: str) -> None:
        async def record(conn: asyncpg.Connection, _: TokenRow) -> None:
            connection = await handlers.load(conn, connection_id)
            connection.errored(reason, at=self.clock())
            await handlers.save(conn, connection, actor=None)

        await self.change(brand_id, connection_id, record)

    async def disconnect(self, brand_id: UUID, connection_id: UUID, *, actor: str) -> None:
        """Revoke on the platform where it allows (any failure there is logged and the
        connection is disconnected anyway), then drop the connection and its tokens."""
        async with tenant_transaction(self.pool, brand_id) as conn:
            row = await self.vault.read(conn, lock=False, connection_id=connection_id)
        if row is None:
            raise NotFound(f"no connection {connection_id}", code="no_connection")
        platform = self.platforms.get(row.platform)
        if platform is not None and row.status in ("connected", "error"):
            try:
                await platform.revoke(self.vault.credentials(row))
            except ValueError:
                log.warning(
                    "the tokens do not open (unknown key); disconnecting without revoking",
                    connection_id=str(connection_id),
                )
            except PlatformError as exc:
                log.warning(
                    "revoking on the platform failed; disconnecting anyway",
                    connection_id=str(connection_id),
                    platform=row.platform,
                    error=exc.message,
                    kind=exc.kind,
                )

        async def drop(conn: asyncpg.Connection, _: TokenRow) -> bool:
            connection = await handlers.load(conn, connection_id)
            connection.disconnect(by=actor)
            await handlers.save(conn, connection, actor=actor)
            await self.vault.delete(conn, connection_id)
            return True

        if await self.change(brand_id, connection_id, drop) is None:
            raise NotFound(f"no connection {connection_id}", code="no_connection")

    # --- the one refresh --------------------------------------------------------------

    async def _refresh(
        self, brand_id: UUID, connection_id: UUID, *, wanted: Callable[[TokenRow], bool]
    ) -> TokenRow:
        """One refresh per connection in this process: join the one in flight (its outcome
        is ours, unless its new row still is what we wanted replaced), else lead one."""
        while (flight := self._flights.get(connection_id)) is not None:
            row = await asyncio.shield(flight)  # its TransientError/ConnectionUnusable too
            if not wanted(row):
                return row
        flight = asyncio.get_running_loop().create_future()
        # Retrieve the outcome even when nobody joined (no "never retrieved" warning).
        flight.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._flights[connection_id] = flight
        try:
            row = await self._lead(brand_id, connection_id, wanted=wanted)
        except asyncio.CancelledError:
            flight.set_exception(RefreshUnavailable("unknown", "the token refresh was interrupted"))
            raise
        except BaseException as exc:
            flight.set_exception(exc)
            raise
        else:
            flight.set_result(row)
            return row
        finally:
            del self._flights[connection_id]

    async def _lead(
        self, brand_id: UUID, connection_id: UUID, *, wanted: Callable[[TokenRow], bool]
    ) -> TokenRow:
        """Take a refresh slot, then refresh under the row lock; when another replica holds
        the lock past ``lock_wait_s``: the row as it stands if no longer ``wanted``, else
        ``TransientError``."""
        async with self._slots:
            try:
                return await self._refresh_locked(brand_id, connection_id, wanted=wanted)
            except _Busy:
                pass
            async with tenant_transaction(self.pool, brand_id) as conn:
                row = await self.vault.read(conn, lock=False, connection_id=connection_id)
        if row is None:
            raise ConnectionUnusable("unknown", "missing", "the connection was removed")
        if not wanted(row):
            return row  # the other replica's refresh landed meanwhile
        raise RefreshUnavailable(
            row.platform, "refresh in progress elsewhere", retry_after_s=self.lock_wait_s
        )

    async def _refresh_locked(
        self, brand_id: UUID, connection_id: UUID, *, wanted: Callable[[TokenRow], bool]
    ) -> TokenRow:
        """Under the tokens row's lock: if ``wanted(row)`` (the token we hold is still the
        stored one, or still due), call the platform once and store the new tokens; return the
        row as it stands. ``ConnectionUnusable`` when the connection is or becomes dead;
        ``TransientError`` (noted on the connection) when the platform could not answer."""
        dead: _Dead | None = None
        failure: RefreshUnavailable | None = None
        async with tenant_transaction(self.pool, brand_id) as conn:
            row = await self._lock_row(conn, connection_id)
            if row is None:
                raise ConnectionUnusable("unknown", "missing", "the connection was removed")
            if row.status != "error":  # an errored one keeps its tokens fresh for its recovery
                _usable(row)
            if not wanted(row):
                return row  # someone else refreshed (or it is not due any more)
            if not row.refreshable:
                dead = _Dead(
                    "expired", f"{row.platform} refused the access token and gave no refresh token"
                )
            else:
                platform = self._platform(row.platform)
                try:
                    async with asyncio.timeout(self.settings.platform_timeout_s + 5):
                        grant = await platform.refresh(self.vault.credentials(row))
                except TimeoutError:
                    failure = RefreshUnavailable(row.platform, "the token refresh timed out")
                except TransientError as exc:
                    failure = RefreshUnavailable.of(exc)
                except RevokedError as exc:
                    dead = _Dead("revoked", exc.message)
                except PlatformError as exc:  # auth expired, or the grant refused for good
                    dead = _Dead("expired", f"the refresh token was refused: {exc.message}")
                else:
                    return await self._store_refresh(conn, row, grant)
            connection = await handlers.load(conn, connection_id)
            now = self.clock()
            if dead is not None:
                _decide_end(connection, dead, now)
            elif failure is not None:
                connection.refresh_failed(f"refresh failed: {failure.message}", at=now)
            await handlers.save(conn, connection, actor=None)
        if failure is not None:
            raise failure
        assert dead is not None
        raise ConnectionUnusable(row.platform, dead.status, dead.reason)

    async def _lock_row(self, conn: asyncpg.Connection, connection_id: UUID) -> TokenRow | None:
        """The tokens row, locked, waiting at most ``lock_wait_s`` for it (``_Busy`` then:
        the transaction is aborted and must be left)."""
        await conn.execute(f"SET LOCAL lock_timeout = '{max(1, int(self.lock_wait_s * 1000))}ms'")
        try:
            row = await self.vault.read(conn, lock=True, connection_id=connection_id)
        except asyncpg.LockNotAvailableError as exc:
            raise _Busy from exc
        await conn.execute("SET LOCAL lock_timeout = 0")  # the rest of the transaction: as usual
        return row

    async def _store_refresh(
        self, conn: asyncpg.Connection, row: TokenRow, grant: TokenGrant
    ) -> TokenRow:
        now = self.clock()
        await self.vault.write(
            conn,
            connection_id=row.connection_id,
            brand_id=row.brand_id,
            platform=row.platform,
            grant=grant,
            at=now,
        )
        connection = await handlers.load(conn, row.connection_id)
        connection.refreshed(expires_at=grant.expires_at, scopes=list(grant.scopes), at=now)
        await handlers.save(conn, connection, actor=None)
        fresh = await self.vault.read(conn, lock=False, connection_id=row.connection_id)
        assert fresh is not None
        return fresh

    async def end(
        self,
        brand_id: UUID,
        connection_id: UUID,
        status: Literal["expired", "revoked"],
        reason: str,
    ) -> None:
        """Mark the connection dead (``expired`` or ``revoked``, with its public event)."""
        await self._end(brand_id, connection_id, _Dead(status, reason))

    async def _end(self, brand_id: UUID, connection_id: UUID, dead: _Dead) -> None:
        async def record(conn: asyncpg.Connection, _: TokenRow) -> None:
            connection = await handlers.load(conn, connection_id)
            _decide_end(connection, dead, self.clock())
            await handlers.save(conn, connection, actor=None)

        await self.change(brand_id, connection_id, record)

    async def change(
        self,
        brand_id: UUID,
        connection_id: UUID,
        change: Callable[[asyncpg.Connection, TokenRow], Awaitable[T]],
    ) -> T | None:
        """``change`` in a transaction holding the tokens row's lock (None: no such row).
        It first waits, holding no pooled connection, for this process's refresh of the
        connection to settle; while another replica's refresh holds the lock, it waits at
        most ``lock_wait_s`` at a time and gives the connection back to the pool between
        attempts, until that refresh's own bound has passed (then ``TransientError``)."""
        flight = self._flights.get(connection_id)
        if flight is not None:
            await asyncio.wait([flight])  # its outcome is its callers' business
        deadline = time.monotonic() + self.settings.platform_timeout_s + 5 + self.lock_wait_s
        pause = 0.05
        while True:
            try:
                async with tenant_transaction(self.pool, brand_id) as conn:
                    row = await self._lock_row(conn, connection_id)
                    return None if row is None else await change(conn, row)
            except _Busy:
                if time.monotonic() >= deadline:
                    raise RefreshUnavailable(
                        "unknown", "the connection is busy elsewhere", retry_after_s=1.0
                    ) from None
                await asyncio.sleep(pause)
                pause = min(pause * 2, 1.0)

    def _platform(self, platform_id: str) -> Platform:
        platform = self.platforms.get(platform_id)
        if platform is None:
            raise ConnectionUnusable(
                platform_id, "error", f"the {platform_id} platform is not available here"
            )
        return platform


def _usable(row: TokenRow) -> None:
    if row.status != "connected":
        raise ConnectionUnusable(
            row.platform, row.status, f"the {row.platform} connection is {row.status}; reconnect"
        )


def _decide_end(connection: Connection, dead: _Dead, at: datetime) -> None:
    if dead.status == "revoked":
        connection.revoke(dead.reason, by=None, at=at)
    else:
        connection.expire(dead.reason, at=at)
