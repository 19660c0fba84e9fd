"""Publishing settings: ``PRESSROOM_PUBLISHING_*`` plus the shared ``PRESSROOM_*`` names."""

from __future__ import annotations

from typing import Any

from pressroom_kit.settings import ServiceSettings
from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

# Development only: the service logs a warning when it runs with these.
DEV_KEY_ID = "dev"
DEV_KEY = "cHJlc3Nyb29tLXB1Ymxpc2hpbmctZGV2LWtleS0zMmI="
DEV_STATE_KEY = "pressroom-development-oauth-state-key"


class PublishingSettings(ServiceSettings):
    model_config = SettingsConfigDict(
        env_prefix="PRESSROOM_PUBLISHING_", extra="ignore", populate_by_name=True
    )

    port: int = 8102
    database_url: str = "postgresql://postgres@127.0.0.1:54329/pressroom_publishing"

    # Connections: tokens sealed with AES-GCM under a key id (rotation: add a key, switch the
    # id; old tokens still open), OAuth state signed with its own key.
    encryption_keys: dict[str, str] = Field(default_factory=lambda: {DEV_KEY_ID: DEV_KEY})
    encryption_key_id: str = DEV_KEY_ID
    state_signing_key: SecretStr = SecretStr(DEV_STATE_KEY)
    state_ttl_s: int = 600
    connect_return_url: str | None = Field(
        default=None, description="where the OAuth callback sends the browser (303) when set"
    )
    refresh_ahead_s: int = Field(default=3600, description="renew tokens this long before expiry")
    verify_interval_s: float = 6 * 3600
    expiring_horizon_s: int = Field(
        default=3 * 24 * 3600,
        description="warn (connection.expiring) when scheduled posts within this horizon "
        "would find no usable token",
    )
    connections_interval_s: float = 60.0
    allow_insecure_instances: bool = Field(
        default=False,
        description="accept http:// and local or private hosts as a Mastodon instance or a "
        "Bluesky PDS (local fakes and development only)",
    )

    # Platforms: the built-in sandbox's API (server-to-server) and consent page (browser).
    # Default: mounted in this service under /sandbox-platform; the consent page is reached
    # through the gateway at PRESSROOM_PUBLIC_URL.
    sandbox_enabled: bool = Field(
        default=False,
        description="mount the sandbox platform (a development and test tool); the local "
        "stack (pressroom dev) turns it on",
    )
    sandbox_api_url: str | None = Field(
        default=None, description="default: http://127.0.0.1:<port>/sandbox-platform"
    )
    sandbox_auth_url: str | None = Field(
        default=None, description="default: <PRESSROOM_PUBLIC_URL>/sandbox-platform"
    )
    platform_timeout_s: float = 30.0
    platforms: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="the real platforms' adapter configs by platform id, as JSON in "
        'PRESSROOM_PUBLISHING_PLATFORMS, e.g. {"mastodon": {}, "x": {"client_id": "...", '
        '"client_secret": "...", "api_url": "https://api.x.com"}}; the keys of each are in '
        "the service README (Platforms)",
    )

    # The media service, for fresh signed file URLs at publish time.
    media_url: str = "http://127.0.0.1:8101"

    # Scheduler.
    max_retries: int = 3
    retry_base_s: float = 30.0
    retry_max_s: float = 3600.0
    retry_jitter: float = 0.2
    claim_batch: int = 100
    poll_interval_s: float = 0.25
    idle_poll_max_s: float = Field(
        default=2.0,
        description="while rounds claim nothing, the poll (which catches claims whose lease "
        "ran out; new, moved and retried targets wake the scheduler by NOTIFY and it sleeps "
        "until the next one is due) doubles from poll_interval_s up to this",
    )
    lease_s: float = 120.0
    publish_concurrency: int = 64

    # Metrics for analytics (analytics.sync.requested.v1 -> publishing.metrics.collected.v1).
    metrics_poll_s: float = Field(default=1.0, description="how often the worker looks for work")
    metrics_lease_s: float = 120.0
    metrics_claim_batch: int = 20
    metrics_concurrency: int = Field(
        default=8, description="fetches at once per replica (each may refresh a token)"
    )
    metrics_max_retries: int = Field(
        default=3, description="retries of transient errors before answering failed"
    )
    metrics_retry_base_s: float = 30.0
    metrics_retry_max_s: float = 900.0

    consumer_group: str = "pressroom-publishing"
    consumer_session_timeout_ms: int = 10_000

    def sandbox_api(self) -> str:
        return (self.sandbox_api_url or f"http://127.0.0.1:{self.port}/sandbox-platform").rstrip(
            "/"
        )

    def sandbox_auth(self) -> str:
        return (self.sandbox_auth_url or f"{self.public_url}/sandbox-platform").rstrip("/")
