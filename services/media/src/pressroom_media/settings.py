"""Media settings: ``PRESSROOM_MEDIA_*`` plus the shared ``PRESSROOM_*`` names."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self
from uuid import UUID

from pressroom_kit.settings import ServiceSettings
from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

# Development only: the service logs a warning when it signs URLs with this key.
DEV_URL_KEY = "pressroom-development-url-signing-key"


class MediaSettings(ServiceSettings):
    model_config = SettingsConfigDict(
        env_prefix="PRESSROOM_MEDIA_", extra="ignore", populate_by_name=True
    )

    port: int = 8101
    database_url: str = "postgresql://postgres@127.0.0.1:54329/pressroom_media"
    data_dir: Path = Field(
        default=Path("var"),
        validation_alias=AliasChoices("PRESSROOM_DATA_DIR", "data_dir"),
        description="the local stack's data folder; local storage and staging live under it",
    )

    # Where files live.
    storage_backend: Literal["local", "s3"] = "local"
    storage_dir: Path | None = Field(default=None, description="default: <data_dir>/media")
    staging_dir: Path | None = Field(
        default=None, description="where uploads are spooled; default: <data_dir>/media-staging"
    )
    s3_endpoint_url: str | None = None
    s3_bucket: str = "pressroom-media"
    s3_region: str = "us-east-1"
    s3_access_key: SecretStr | None = None
    s3_secret_key: SecretStr | None = None

    # Serving: absolute URLs that platforms can fetch, signed and expiring.
    public_base_url: str = Field(
        default="",
        description="where file URLs point (default: PRESSROOM_PUBLIC_URL, the gateway)",
    )
    url_signing_key: SecretStr = SecretStr(DEV_URL_KEY)
    url_ttl_s: int = 24 * 3600

    # Limits.
    default_quota_bytes: int = 5 * 1024**3
    quota_overrides: dict[UUID, int] = Field(
        default_factory=dict, description="per-brand storage limits in bytes (JSON object)"
    )
    quota_warning_threshold: float = Field(default=0.8, gt=0, le=1)
    reservation_ttl_s: int = 3600
    sweep_interval_s: float = 60.0
    max_upload_bytes: int = 2 * 1024**3
    max_image_pixels: int = 60_000_000
    max_video_pixels: int = 4096 * 2160
    max_video_duration_s: float = 4 * 3600

    # Processing.
    processing_workers: int = Field(default=2, ge=1)
    processing_timeout_s: float = 120.0

    consumer_group: str = "pressroom-media"
    consumer_session_timeout_ms: int = 10_000

    @model_validator(mode="after")
    def _public_base_url(self) -> Self:
        """File URLs follow the shared public URL unless this service is told otherwise."""
        self.public_base_url = (self.public_base_url or self.public_url).rstrip("/")
        return self

    def storage_path(self) -> Path:
        return self.storage_dir or self.data_dir / "media"

    def staging_path(self) -> Path:
        return self.staging_dir or self.data_dir / "media-staging"
