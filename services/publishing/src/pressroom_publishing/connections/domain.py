"""The connection aggregate: one brand's link to one platform account. Pure Python.

Tokens are not part of it: they live sealed in ``platform_connection_tokens``, written in the
same transaction as these events, so neither the event store nor a projection rebuild ever
holds a secret. Times a decision depends on (``expires_at``, ``at``) travel in the events, so
the projection never reads a clock.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar
from uuid import UUID

from pressroom_kit.domain import Aggregate, DomainEvent
from pressroom_kit.errors import NotFound
from pydantic import Field

STATUSES = ("connected", "expired", "revoked", "error")


class Connected(DomainEvent):
    """An OAuth flow finished: first connect, or a reconnect that replaced the tokens."""

    type_name: ClassVar[str] = "ConnectionConnected"
    brand_id: UUID
    platform: str
    account_id: str
    account_name: str | None = None
    scopes: list[str] = Field(default_factory=list)
    extra: dict[str, Any] = Field(default_factory=dict)
    expires_at: datetime | None = None
    connected_by: str | None = None
    reconnected: bool = False
    at: datetime


class TokensRefreshed(DomainEvent):
    type_name: ClassVar[str] = "ConnectionTokensRefreshed"
    expires_at: datetime | None = None
    scopes: list[str] = Field(default_factory=list)
    at: datetime


class Verified(DomainEvent):
    type_name: ClassVar[str] = "ConnectionVerified"
    account_name: str | None = None
    at: datetime


class RefreshFailed(DomainEvent):
    """A refresh failed for a passing reason (the platform down): still connected."""

    type_name: ClassVar[str] = "ConnectionRefreshFailed"
    error: str
    at: datetime


class Errored(DomainEvent):
    """The platform answers but will not act for this token, for a reason that is neither
    an expiry nor a revocation (a 403 on verify, or the token speaks for another account).
    Not used for publishing; a later successful verify makes it ``connected`` again."""

    type_name: ClassVar[str] = "ConnectionErrored"
    reason: str
    at: datetime


class ExpiringNoticed(DomainEvent):
    """Scheduled posts would find no usable token; announced once per expiry."""

    type_name: ClassVar[str] = "ConnectionExpiringNoticed"
    usable_until: datetime
    first_affected_post_at: datetime | None = None
    affected_posts: int = 0


class Expired(DomainEvent):
    type_name: ClassVar[str] = "ConnectionExpired"
    reason: str
    at: datetime


class Revoked(DomainEvent):
    type_name: ClassVar[str] = "ConnectionRevoked"
    reason: str
    revoked_by: str | None = None  # None: the platform revoked it
    at: datetime


class Disconnected(DomainEvent):
    type_name: ClassVar[str] = "ConnectionDisconnected"
    disconnected_by: str | None = None


class Connection(Aggregate):
    stream_type = "platform_connection"
    event_classes = (
        Connected,
        TokensRefreshed,
        Verified,
        RefreshFailed,
        Errored,
        ExpiringNoticed,
        Expired,
        Revoked,
        Disconnected,
    )

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.brand_id: UUID | None = None
        self.platform = ""
        self.status = "connected"
        self.account_id = ""
        self.expires_at: datetime | None = None
        self.last_error: str | None = None
        self.warned_for: datetime | None = None
        self.disconnected = False

    def apply(self, event: DomainEvent) -> None:
        match event:
            case Connected():
                self.brand_id, self.platform = event.brand_id, event.platform
                self.account_id, self.expires_at = event.account_id, event.expires_at
                self.status, self.last_error, self.disconnected = "connected", None, False
                self.warned_for = None
            case TokensRefreshed():
                self.expires_at, self.warned_for = event.expires_at, None
                if self.status != "error":
                    self.last_error = None
            case Verified():
                self.last_error = None
                if self.status == "error":
                    self.status = "connected"
            case Errored():
                self.status, self.last_error = "error", event.reason
            case RefreshFailed():
                self.last_error = event.error
            case ExpiringNoticed():
                self.warned_for = event.usable_until
            case Expired():
                self.status, self.last_error = "expired", event.reason
            case Revoked():
                self.status, self.last_error = "revoked", event.reason
            case Disconnected():
                self.disconnected = True

    @property
    def live(self) -> bool:
        return not self.disconnected

    def _require_live(self) -> None:
        if self.disconnected:
            raise NotFound(f"no connection {self.id}", code="no_connection")

    @classmethod
    def connect(
        cls,
        connection_id: UUID,
        *,
        existing: Connection | None,
        brand_id: UUID,
        platform: str,
        account_id: str,
        account_name: str | None,
        scopes: list[str],
        extra: dict[str, Any],
        expires_at: datetime | None,
        connected_by: str | None,
        at: datetime,
    ) -> Connection:
        """A first connect, or a reconnect of ``existing`` (same id: posts keep pointing at it)."""
        connection = existing if existing is not None and existing.live else cls(str(connection_id))
        connection.record(
            Connected(
                brand_id=brand_id,
                platform=platform,
                account_id=account_id,
                account_name=account_name,
                scopes=scopes,
                extra=extra,
                expires_at=expires_at,
                connected_by=connected_by,
                reconnected=not connection.is_new,
                at=at,
            )
        )
        return connection

    def refreshed(self, *, expires_at: datetime | None, scopes: list[str], at: datetime) -> None:
        self._require_live()
        self.record(TokensRefreshed(expires_at=expires_at, scopes=scopes, at=at))

    def verified(self, *, account_name: str | None, at: datetime) -> None:
        """The platform accepted the token just now (an ``error`` connection recovers)."""
        self._require_live()
        if self.status in ("connected", "error"):
            self.record(Verified(account_name=account_name, at=at))

    def errored(self, reason: str, *, at: datetime) -> None:
        """Verify found the token refused for good but not dead (see ``Errored``); noted at
        every verification that finds it so (as ``Verified`` is), which dates the check."""
        self._require_live()
        if self.status in ("connected", "error"):
            self.record(Errored(reason=reason[:500], at=at))

    def refresh_failed(self, error: str, *, at: datetime) -> None:
        """Noted once per distinct error, so a platform down for hours adds one event."""
        self._require_live()
        if self.status == "connected" and self.last_error != error:
            self.record(RefreshFailed(error=error[:500], at=at))

    def expire(self, reason: str, *, at: datetime) -> None:
        self._require_live()
        if self.status in ("connected", "error"):
            self.record(Expired(reason=reason[:500], at=at))

    def revoke(self, reason: str, *, by: str | None, at: datetime) -> None:
        self._require_live()
        if self.status in ("connected", "expired", "error"):
            self.record(Revoked(reason=reason[:500], revoked_by=by, at=at))

    def notice_expiring(
        self, *, usable_until: datetime, first_affected_post_at: datetime | None, affected: int
    ) -> bool:
        """Record the warning unless this expiry was already announced; True if recorded."""
        self._require_live()
        if self.status != "connected" or self.warned_for == usable_until:
            return False
        self.record(
            ExpiringNoticed(
                usable_until=usable_until,
                first_affected_post_at=first_affected_post_at,
                affected_posts=affected,
            )
        )
        return True

    def disconnect(self, *, by: str | None) -> None:
        self._require_live()
        self.record(Disconnected(disconnected_by=by))
