"""Webhook settings: ``PRESSROOM_WEBHOOK_*`` plus the shared ``PRESSROOM_*`` names."""

from __future__ import annotations

from pressroom_kit.settings import ServiceSettings
from pydantic import AliasChoices, Field
from pydantic_settings import SettingsConfigDict

# Development only: the service logs a warning when it runs with this key.
DEV_KEY_ID = "dev"
DEV_KEY = "cHJlc3Nyb29tLWRldmVsb3BtZW50LWtleS0zMmJ5dGU="


class WebhookSettings(ServiceSettings):
    model_config = SettingsConfigDict(
        env_prefix="PRESSROOM_WEBHOOK_", extra="ignore", populate_by_name=True
    )

    port: int = 8105
    database_url: str = "postgresql://postgres@127.0.0.1:54329/pressroom_webhook"
    # Off unless asked for: the local stack (`pressroom dev`) and tests with local receivers
    # turn it on.
    allow_private_targets: bool = Field(
        default=False,
        validation_alias=AliasChoices(
            "PRESSROOM_WEBHOOK_ALLOW_PRIVATE_TARGETS", "allow_private_targets"
        ),
    )
    require_https: bool = False
    encryption_keys: dict[str, str] = Field(default_factory=lambda: {DEV_KEY_ID: DEV_KEY})
    encryption_key_id: str = DEV_KEY_ID
    max_attempts: int = 5
    schedule_s: list[float] = Field(default_factory=lambda: [0.0, 5.0, 300.0, 1800.0, 7200.0])
    jitter: float = 0.1
    timeout_s: float = 10.0
    response_capture_bytes: int = 4096
    disable_after_s: float = 5 * 24 * 3600
    rotation_overlap_s: float = 24 * 3600
    per_endpoint_concurrency: int = 4
    per_endpoint_rate: float = 20.0
    claim_batch: int = 200
    poll_interval_s: float = 0.5
    # While rounds claim nothing, the worker sleeps until the next attempt or lease is due
    # (webhook_next_due), waking on NOTIFY and finished deliveries; the poll that catches
    # anything else doubles from poll_interval_s up to this.
    idle_poll_max_s: float = 2.0
    lease_s: float = 60.0
    consumer_group: str = "pressroom-webhook"
    consumer_session_timeout_ms: int = 10_000
