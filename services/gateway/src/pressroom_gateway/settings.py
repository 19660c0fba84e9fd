"""Gateway settings: ``PRESSROOM_GATEWAY_*`` plus the shared ``PRESSROOM_*`` names."""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from pressroom_kit.settings import ServiceSettings
from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from pressroom_gateway.forwarded import validate_cidrs

# Which service owns which public path prefix (ARCHITECTURE.md §4 ports).
DEFAULT_ROUTES: dict[str, str] = {
    "/v1/media": "http://127.0.0.1:8101",
    "/media-files": "http://127.0.0.1:8101",
    "/v1/posts": "http://127.0.0.1:8102",
    "/v1/connections": "http://127.0.0.1:8102",
    "/v1/calendar": "http://127.0.0.1:8102",
    "/sandbox-platform": "http://127.0.0.1:8102",
    "/v1/analytics": "http://127.0.0.1:8103",
    "/v1/approvals": "http://127.0.0.1:8104",
    "/v1/escalation-rules": "http://127.0.0.1:8104",
    "/v1/client-settings": "http://127.0.0.1:8104",
    "/v1/unsubscribe": "http://127.0.0.1:8104",
    "/v1/audit-logs": "http://127.0.0.1:8104",
    "/v1/privacy": "http://127.0.0.1:8104",
    "/review": "http://127.0.0.1:8104",
    "/v1/webhooks": "http://127.0.0.1:8105",
}

# Paths that need no token at the gateway (the service checks what they carry instead).
DEFAULT_PUBLIC = [
    r"^/media-files/",
    r"^/v1/unsubscribe/",
    # Review links: the page and its decision form are bound to the signed token in the path.
    r"^/review/",
    r"^/v1/connections/[^/]+/callback$",
    # The sandbox platform: its consent page is opened by a browser without our token;
    # its API checks its own tokens (publishing mounts it only while the sandbox is on). Its
    # control API (make the next calls fail, expire tokens) stays behind a Pressroom token.
    r"^/sandbox-platform/(?!_control(/|$))",
]


class GatewaySettings(ServiceSettings):
    model_config = SettingsConfigDict(
        env_prefix="PRESSROOM_GATEWAY_", extra="ignore", populate_by_name=True
    )

    port: int = 8000
    database_url: str = "postgresql://postgres@127.0.0.1:54329/pressroom_gateway"
    routes: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_ROUTES))
    public_paths: list[str] = Field(default_factory=lambda: list(DEFAULT_PUBLIC))
    max_body_bytes: int = 2 * 1024**3
    connect_timeout_s: float = 3.0
    read_timeout_s: float = 30.0
    total_timeout_s: float = 300.0
    pool_size: int = 256
    rate_limit_user: int = 600
    rate_limit_brand: int = 3000
    rate_limit_anonymous: int = 120
    rate_limit_window_s: float = 60.0
    rate_limit_signed_file: int = 60
    rate_limit_signed_client: int = 3000
    # Signed, expiring file URLs (``?expires&signature``) under these prefixes.
    signed_url_prefixes: list[str] = Field(default_factory=lambda: ["/media-files/"])
    # Load balancers in front of the gateway (CIDRs); nobody's X-Forwarded-* is believed
    # by default.
    trusted_proxies: list[str] = Field(default_factory=list)
    redis_url: str | None = None
    openapi_refresh_s: float = 30.0
    backend_ready_timeout_s: float = 2.0
    demo_brand_id: UUID | None = None
    server: Literal["granian", "uvicorn"] = "uvicorn"
    workers: int = 1

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        return validate_cidrs(value)
