"""Approval settings: ``PRESSROOM_APPROVAL_*`` plus the shared ``PRESSROOM_*`` names."""

from __future__ import annotations

from pressroom_kit.settings import ServiceSettings
from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

# Development only: the service logs a warning when it runs with these.
DEV_LINK_KEY = "pressroom-development-review-link-key"
DEV_AUDIT_KEY = "pressroom-development-audit-pseudonym-key"


class ApprovalSettings(ServiceSettings):
    model_config = SettingsConfigDict(
        env_prefix="PRESSROOM_APPROVAL_", extra="ignore", populate_by_name=True
    )

    port: int = 8104
    database_url: str = "postgresql://postgres@127.0.0.1:54329/pressroom_approval"
    consumer_group: str = "pressroom-approval"
    consumer_session_timeout_ms: int = 10_000

    # Signed tokens: review links and unsubscribe links (HMAC keys of their own).
    link_signing_key: SecretStr = SecretStr(DEV_LINK_KEY)
    # Keyed hashes of personal data in the audit chain (erasure keeps the chain verifiable).
    audit_pseudonym_key: SecretStr = SecretStr(DEV_AUDIT_KEY)

    # Expiry: pending approvals whose post's time has passed.
    expiry_interval_s: float = 5.0

    # Escalations: the scheduler and its deliveries.
    escalation_poll_s: float = 1.0
    escalation_batch: int = 200
    escalation_lease_s: float = 60.0
    escalation_max_attempts: int = 6
    escalation_retry_base_s: float = 30.0
    working_hours_start: int = Field(default=9, ge=0, le=23)
    working_hours_end: int = Field(default=18, ge=1, le=24)

    # Email (SMTP) and Slack.
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 8025
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    smtp_use_tls: bool = False
    smtp_timeout_s: float = 15.0
    mail_from: str = "Pressroom <pressroom@localhost>"
    slack_timeout_s: float = 10.0

    # Review links: the media service (thumbnails on the review page) and its timeout.
    media_url: str = "http://127.0.0.1:8101"
    review_media_timeout_s: float = Field(default=2.0, gt=0, le=30)

    # Escalations: rules' Slack webhook URLs sealed at rest (key id -> base64 AES-256 key;
    # the development key below makes the service log a warning).
    escalation_secret_keys: dict[str, str] = Field(
        default_factory=lambda: {"dev": "T+4G+rcoqI85ex48zr7bVazMZc7Kf0fIhalOXgp9+8M="}
    )
    escalation_secret_key_id: str = "dev"
