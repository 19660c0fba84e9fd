"""Settings shared by every service, read from the environment.

Shared names are fixed (docs/architecture.md): ``PRESSROOM_JWT_SECRET``,
``PRESSROOM_JWT_JWKS_URL``, ``PRESSROOM_JWT_ISSUER``, ``PRESSROOM_JWT_AUDIENCE``,
``PRESSROOM_KAFKA_BOOTSTRAP_SERVERS``, ``PRESSROOM_PUBLIC_URL``. A service subclasses
``ServiceSettings`` with its own prefix (``PRESSROOM_<SERVICE>_``) for the rest, e.g.
``PRESSROOM_MEDIA_DATABASE_URL``.
"""

from __future__ import annotations

import os
from typing import Self

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from pressroom_kit.auth import JWTSettings


def _shared(name: str) -> AliasChoices:
    return AliasChoices(f"PRESSROOM_{name}", f"pressroom_{name.lower()}")


class ServiceSettings(BaseSettings):
    """Base of a service's settings; subclasses set ``env_prefix`` and add their own."""

    model_config = SettingsConfigDict(
        env_prefix="PRESSROOM_SERVICE_", extra="ignore", populate_by_name=True
    )

    database_url: str = "postgresql://postgres@127.0.0.1:54329/postgres"
    migrate_database_url: str | None = Field(
        default=None, description="owner DSN for migrations (default: database_url)"
    )
    runtime_role: str | None = Field(
        default=None,
        description="non-owner role to create and run as locally (default: the service's "
        "own, pressroom_<service>); empty in production, where database_url already names "
        "the runtime role",
    )
    host: str = "127.0.0.1"
    port: int = 8100
    log_json: bool = True
    log_level: str = "INFO"
    http_keep_alive_s: int = Field(
        default=75,
        ge=1,
        description="how long the server keeps an idle client connection open; longer than "
        "its clients keep idle connections for reuse (the gateway's pool: 30 s, a load "
        "balancer's: typically 60 s), so the client side always closes first and never "
        "sends a request on a connection the server is closing",
    )
    cors_origins: list[str] = Field(default_factory=list)

    jwt_secret: SecretStr | None = Field(default=None, validation_alias=_shared("JWT_SECRET"))
    jwt_jwks_url: str | None = Field(default=None, validation_alias=_shared("JWT_JWKS_URL"))
    jwt_issuer: str | None = Field(default=None, validation_alias=_shared("JWT_ISSUER"))
    jwt_audience: str | None = Field(default=None, validation_alias=_shared("JWT_AUDIENCE"))
    jwt_leeway_s: float = Field(default=30.0, validation_alias=_shared("JWT_LEEWAY_S"))
    jwt_jwks_ttl_s: float = Field(default=600.0, validation_alias=_shared("JWT_JWKS_TTL_S"))
    jwt_jwks_grace_s: float = Field(default=3600.0, validation_alias=_shared("JWT_JWKS_GRACE_S"))
    public_url: str = Field(
        default="",
        validation_alias=_shared("PUBLIC_URL"),
        description="the gateway as browsers and platforms reach it; every absolute URL a "
        "service hands out starts with it (default: http://127.0.0.1:<PRESSROOM_GATEWAY_PORT>)",
    )
    kafka_bootstrap_servers: str = Field(
        default="127.0.0.1:19092", validation_alias=_shared("KAFKA_BOOTSTRAP_SERVERS")
    )
    consumer_group: str = Field(
        default="", description="the inbox consumers' group (default: pressroom-<service>)"
    )
    consumer_session_timeout_ms: int = 10_000
    consumer_rest_after_s: float = Field(
        default=20.0,
        validation_alias=_shared("CONSUMER_REST_AFTER_S"),
        description="after this long without records a consumer fetches every 2 s instead of "
        "twice a second (0: never); on Apache Kafka it costs no latency",
    )

    @model_validator(mode="after")
    def _public_url(self) -> Self:
        if not self.public_url:
            port = os.environ.get("PRESSROOM_GATEWAY_PORT", "8000")
            self.public_url = f"http://127.0.0.1:{port}"
        self.public_url = self.public_url.rstrip("/")
        return self

    @model_validator(mode="after")
    def _own_runtime_role(self) -> Self:
        """Each service its own runtime role (``PRESSROOM_MEDIA_`` -> ``pressroom_media``), so
        one service's credentials cannot reach another's database, and its own consumer
        group (``pressroom-media``)."""
        prefix = str(self.model_config.get("env_prefix", "")).lower().rstrip("_")
        if "runtime_role" not in self.model_fields_set:
            self.runtime_role = prefix
        if not self.consumer_group:
            self.consumer_group = prefix.replace("_", "-")
        return self

    def jwt(self) -> JWTSettings:
        return JWTSettings(
            secret=self.jwt_secret.get_secret_value() if self.jwt_secret else None,
            jwks_url=self.jwt_jwks_url,
            issuer=self.jwt_issuer,
            audience=self.jwt_audience,
            leeway=self.jwt_leeway_s,
            jwks_ttl=self.jwt_jwks_ttl_s,
            jwks_grace=self.jwt_jwks_grace_s,
        )
