"""Test helpers for connections: a real OAuth 2 provider over HTTP, an adapter for it, and
the publishing service's connection routes on a real port.

``OAuthProvider`` is a small aiohttp server speaking OAuth 2 the way platforms do: an
authorization endpoint that redirects back with a code (or ``error=access_denied``), a form
token endpoint for ``authorization_code`` (PKCE S256 checked) and ``refresh_token`` grants
(refresh tokens rotate: the old one dies on use), a ``/me`` endpoint behind a bearer token,
and token revocation. Tests script its failures and count its calls.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import secrets
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from importlib import resources
from typing import Any
from urllib.parse import urlencode

import aiohttp
import asyncpg
from aiohttp import web
from litestar import Litestar
from pressroom_kit.auth import JWTVerifier, mint_token
from pressroom_kit.db import connect, create_pool, prepare_database, set_all_brands
from pressroom_kit.embedded import free_port
from pressroom_kit.http import create_service_app
from pressroom_kit.secrets import SecretBox
from pressroom_kit.testing.plugin import APP_ROLE, TestDatabase
from pressroom_kit.testing.servers import serve_asgi
from pressroom_publishing.connections.api import ConnectionController
from pressroom_publishing.connections.credentials import VaultCredentials
from pressroom_publishing.connections.workers import ConnectionWorker
from pressroom_publishing.platforms.base import (
    Account,
    Capabilities,
    Credentials,
    MetricsReport,
    NotSupportedError,
    OAuthContext,
    Platform,
    PlatformError,
    PlatformHTTP,
    PublishedPost,
    PublishRequest,
    Response,
    RevokedError,
    TokenGrant,
)
from pressroom_publishing.settings import PublishingSettings

SECRET = "publishing-test-secret-publishing-test"
MIGRATIONS = ("publishing", resources.files("pressroom_publishing") / "migrations")
CLIENT_ID = "pressroom-test-client"
CLIENT_SECRET = "pressroom-test-client-secret"


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


# --- the OAuth provider -------------------------------------------------------------------


@dataclass
class Grant:
    access_token: str
    refresh_token: str | None
    account_id: str
    expires_at: datetime
    revoked: bool = False


@dataclass
class OAuthProvider:
    """A platform's OAuth server. ``calls`` counts requests per endpoint; ``refresh_answers``
    scripts the next refresh answers (``(status, body)``); ``hold_refresh`` (when set) keeps
    refresh requests waiting until the test sets it."""

    url: str = ""
    lifetime_s: int = 7200
    send_refresh_token: bool = True
    deny: bool = False
    calls: Counter[str] = field(default_factory=Counter)
    codes: dict[str, dict[str, str]] = field(default_factory=dict)
    grants: dict[str, Grant] = field(default_factory=dict)  # by access token
    refresh_tokens: dict[str, Grant] = field(default_factory=dict)
    refresh_answers: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    revoke_answers: list[int] = field(default_factory=list)
    hold_refresh: asyncio.Event | None = None
    account_id: str = "acct-1"
    account_name: str = "Test Account"
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)  # the tests' clock

    def _issue(self, account_id: str, *, with_refresh: bool) -> dict[str, Any]:
        grant = Grant(
            access_token=f"at-{secrets.token_urlsafe(24)}",
            refresh_token=f"rt-{secrets.token_urlsafe(24)}" if with_refresh else None,
            account_id=account_id,
            expires_at=self.clock() + timedelta(seconds=self.lifetime_s),
        )
        self.grants[grant.access_token] = grant
        body: dict[str, Any] = {
            "access_token": grant.access_token,
            "token_type": "bearer",
            "expires_in": self.lifetime_s,
            "scope": "read write",
        }
        if grant.refresh_token is not None:
            self.refresh_tokens[grant.refresh_token] = grant
            body["refresh_token"] = grant.refresh_token
        return body

    def revoke_all(self) -> None:
        """The user withdrew the app on the platform: every token is dead."""
        for grant in self.grants.values():
            grant.revoked = True
        self.refresh_tokens.clear()

    async def authorize(self, request: web.Request) -> web.StreamResponse:
        self.calls["authorize"] += 1
        q = request.query
        redirect = q["redirect_uri"]
        if self.deny:
            query = {"error": "access_denied", "error_description": "the user said no"}
            raise web.HTTPFound(f"{redirect}?{urlencode({**query, 'state': q['state']})}")
        if q.get("client_id") != CLIENT_ID or q.get("response_type") != "code":
            return web.json_response({"error": "invalid_request"}, status=400)
        code = secrets.token_urlsafe(16)
        self.codes[code] = {
            "redirect_uri": redirect,
            "challenge": q.get("code_challenge", ""),
        }
        raise web.HTTPFound(f"{redirect}?{urlencode({'code': code, 'state': q['state']})}")

    async def token(self, request: web.Request) -> web.Response:
        form = await request.post()
        if form.get("client_id") != CLIENT_ID or form.get("client_secret") != CLIENT_SECRET:
            return web.json_response({"error": "invalid_client"}, status=401)
        if form.get("grant_type") == "authorization_code":
            self.calls["exchange"] += 1
            issued = self.codes.pop(str(form.get("code")), None)
            if issued is None or issued["redirect_uri"] != form.get("redirect_uri"):
                return web.json_response(
                    {"error": "invalid_grant", "error_description": "unknown or used code"},
                    status=400,
                )
            verifier = str(form.get("code_verifier", ""))
            challenge = (
                base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
                .rstrip(b"=")
                .decode()
            )
            if challenge != issued["challenge"]:
                return web.json_response(
                    {"error": "invalid_grant", "error_description": "PKCE verification failed"},
                    status=400,
                )
            return web.json_response(
                self._issue(self.account_id, with_refresh=self.send_refresh_token)
            )
        if form.get("grant_type") == "refresh_token":
            self.calls["refresh"] += 1
            if self.hold_refresh is not None:
                await self.hold_refresh.wait()
            if self.refresh_answers:
                status, body = self.refresh_answers.pop(0)
                return web.json_response(body, status=status)
            old = self.refresh_tokens.pop(str(form.get("refresh_token")), None)
            if old is None or old.revoked:
                return web.json_response(
                    {"error": "invalid_grant", "error_description": "refresh token is dead"},
                    status=400,
                )
            old.revoked = True  # rotation: the old access and refresh tokens die
            return web.json_response(self._issue(old.account_id, with_refresh=True))
        return web.json_response({"error": "unsupported_grant_type"}, status=400)

    def _bearer(self, request: web.Request) -> Grant | None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        return self.grants.get(token) if scheme == "Bearer" else None

    async def me(self, request: web.Request) -> web.Response:
        self.calls["me"] += 1
        grant = self._bearer(request)
        if grant is None or grant.expires_at <= self.clock():
            return web.json_response({"error": "invalid_token"}, status=401)
        if grant.revoked:
            return web.json_response(
                {"error": "token_revoked", "error_description": "the user removed the app"},
                status=401,
            )
        return web.json_response({"id": grant.account_id, "name": self.account_name})

    async def revoke(self, request: web.Request) -> web.Response:
        self.calls["revoke"] += 1
        if self.revoke_answers:
            return web.json_response({"error": "unavailable"}, status=self.revoke_answers.pop(0))
        form = await request.post()
        grant = self.grants.get(str(form.get("token")))
        if grant is not None:
            grant.revoked = True
            if grant.refresh_token:
                self.refresh_tokens.pop(grant.refresh_token, None)
        return web.Response(status=200)


@asynccontextmanager
async def oauth_provider() -> AsyncIterator[OAuthProvider]:
    provider = OAuthProvider()
    app = web.Application()
    app.router.add_get("/oauth/authorize", provider.authorize)
    app.router.add_post("/oauth/token", provider.token)
    app.router.add_post("/oauth/revoke", provider.revoke)
    app.router.add_get("/api/me", provider.me)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    provider.url = f"http://127.0.0.1:{port}"
    try:
        yield provider
    finally:
        await runner.cleanup()


class ProviderPlatform(Platform):
    """An adapter for ``OAuthProvider``, registered as the ``sandbox`` id in these tests."""

    capabilities = Capabilities(
        platform="sandbox", display_name="Test Platform", text_limit=500, pkce=True
    )

    @property
    def base(self) -> str:
        return str(self.config["url"])

    async def authorization_url(self, context: OAuthContext) -> str:
        assert context.code_verifier is not None
        challenge = (
            base64.urlsafe_b64encode(hashlib.sha256(context.code_verifier.encode()).digest())
            .rstrip(b"=")
            .decode()
        )
        query = {
            "response_type": "code",
            "client_id": CLIENT_ID,
            "redirect_uri": context.redirect_uri,
            "state": context.state,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        return f"{self.base}/oauth/authorize?{urlencode(query)}"

    def _grant(self, body: dict[str, Any]) -> TokenGrant:
        expires_in = body.get("expires_in")
        return TokenGrant(
            access_token=body["access_token"],
            refresh_token=body.get("refresh_token"),
            expires_at=(
                None
                if expires_in is None
                else self.config["clock"]() + timedelta(seconds=int(expires_in))
            ),
            scopes=tuple(str(body.get("scope", "")).split()),
        )

    async def exchange_code(self, code: str, context: OAuthContext) -> TokenGrant:
        answer = await self.http.request(
            self,
            "POST",
            f"{self.base}/oauth/token",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": context.redirect_uri,
                "code_verifier": context.code_verifier or "",
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
            },
        )
        return self._grant(answer.json())

    async def refresh(self, credentials: Credentials) -> TokenGrant:
        answer = await self.http.request(
            self,
            "POST",
            f"{self.base}/oauth/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": credentials.refresh_token or "",
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
            },
        )
        return self._grant(answer.json())

    async def verify(self, credentials: Credentials) -> Account:
        answer = await self.http.request(
            self, "GET", f"{self.base}/api/me", token=credentials.access_token
        )
        body = answer.json()
        return Account(account_id=body["id"], name=body.get("name"))

    async def revoke(self, credentials: Credentials) -> None:
        await self.http.request(
            self,
            "POST",
            f"{self.base}/oauth/revoke",
            data={"token": credentials.access_token, "client_id": CLIENT_ID},
        )

    def classify(self, response: Response) -> PlatformError:
        code, message = self.error_details(response)
        if code == "token_revoked":
            return RevokedError(self.id, message, code=code, status=response.status)
        return super().classify(response)

    async def publish(self, credentials: Credentials, request: PublishRequest) -> PublishedPost:
        raise NotSupportedError(self.id, "this test platform only connects")

    async def delete(self, credentials: Credentials, platform_post_id: str) -> None:
        raise NotSupportedError(self.id, "this test platform only connects")

    async def fetch_metrics(
        self,
        credentials: Credentials,
        since: date,
        until: date,
        platform_post_ids: Sequence[str] = (),
    ) -> MetricsReport:
        raise NotSupportedError(self.id, "this test platform only connects")


class NoRedirectPlatform(ProviderPlatform):
    """Says it connects without OAuth (as Bluesky does) but has no ``create_session``: for
    refusals."""

    capabilities = Capabilities(
        platform="bluesky", display_name="Bluesky", text_limit=300, connect="app_password"
    )


# --- the service ------------------------------------------------------------------------


def token(role: str = "admin", brand: uuid.UUID | None = None, sub: str | None = None) -> str:
    return mint_token(
        SECRET,
        sub=sub or f"user-{role}",
        role=role,  # type: ignore[arg-type]
        brand_id=brand,
    )


def publishing_settings(db: TestDatabase, **overrides: Any) -> PublishingSettings:
    values: dict[str, Any] = {
        "database_url": db.owner_dsn,
        "runtime_role": APP_ROLE,
        "jwt_secret": SECRET,
        "platform_timeout_s": 5.0,
        **overrides,
    }
    return PublishingSettings.model_validate(values)


def connections_app(
    settings: PublishingSettings,
    platforms: dict[str, Platform],
    clock: FakeClock,
) -> Litestar:
    """The connection routes as the service will mount them (test-only composition)."""
    box = SecretBox(settings.encryption_keys, settings.encryption_key_id)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        dsn = await prepare_database(
            database_url=settings.database_url,
            migrate_database_url=settings.migrate_database_url,
            runtime_role=settings.runtime_role,
            migrations=[MIGRATIONS],
        )
        pool = await create_pool(dsn, min_size=2, max_size=20)
        app.state.update(pool=pool, box=box, platforms=platforms, settings=settings, clock=clock)
        try:
            yield
        finally:
            await pool.close()

    return create_service_app(
        name="publishing",
        route_handlers=[ConnectionController],
        verifier=JWTVerifier(settings.jwt()),
        lifespan=[lifespan],
    )


@dataclass
class Service:
    base: str
    app: Litestar
    clock: FakeClock
    http: aiohttp.ClientSession
    provider: OAuthProvider
    db: TestDatabase

    @property
    def pool(self) -> asyncpg.Pool:
        return self.app.state.pool  # type: ignore[no-any-return]

    def source(self, pool: asyncpg.Pool | None = None) -> VaultCredentials:
        state = self.app.state
        return VaultCredentials(
            pool or state.pool, state.box, state.platforms, state.settings, self.clock
        )

    def worker(self, pool: asyncpg.Pool | None = None) -> ConnectionWorker:
        return ConnectionWorker(self.source(pool))

    async def call(
        self, method: str, path: str, brand: uuid.UUID, role: str = "admin", **kwargs: Any
    ) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token(role, brand)}", **kwargs.pop("headers", {})}
        async with self.http.request(
            method, self.base + path, headers=headers, allow_redirects=False, **kwargs
        ) as response:
            raw = await response.read()
            if response.content_type.endswith("json") and raw:
                return response.status, json.loads(raw)
            return response.status, raw.decode()

    async def start_flow(self, brand: uuid.UUID, **body: Any) -> tuple[str, str]:
        """Authorize, then let the provider's consent redirect back: the callback URL (as
        the browser would follow it) and the state."""
        status, out = await self.call(
            "POST", "/v1/connections/sandbox/authorize", brand, json=body or None
        )
        assert status == 200, out
        async with self.http.get(out["authorization_url"], allow_redirects=False) as consent:
            assert consent.status == 302, await consent.text()
            return consent.headers["Location"], out["state"]

    async def browser(self, url: str) -> tuple[int, str, dict[str, str]]:
        """A browser's GET (no bearer token)."""
        async with self.http.get(url, allow_redirects=False) as response:
            return response.status, await response.text(), dict(response.headers)

    async def connect(self, brand: uuid.UUID) -> dict[str, Any]:
        callback, _ = await self.start_flow(brand)
        status, text, _ = await self.browser(callback)
        assert status == 200, text
        return await self.connection(brand)

    async def connection(self, brand: uuid.UUID) -> dict[str, Any]:
        status, body = await self.call("GET", "/v1/connections", brand, role="viewer")
        assert status == 200, body
        assert len(body["items"]) == 1, body
        return body["items"][0]  # type: ignore[no-any-return]

    async def owner(self, query: str, *args: Any) -> list[asyncpg.Record]:
        """Rows as the tables' owner sees them, every brand (the raw database)."""
        conn = await connect(self.db.owner_dsn)
        try:
            async with conn.transaction():
                await set_all_brands(conn)
                return await conn.fetch(query, *args)
        finally:
            await conn.close()

    async def database_text(self) -> str:
        """Every row of every table in the database, as text (to look for secrets)."""
        tables = await self.owner(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
        )
        parts = []
        for table in tables:
            rows = await self.owner(f'SELECT t::text AS row FROM "{table["tablename"]}" t')
            parts.extend(r["row"] for r in rows)
        return "\n".join(parts)

    async def outbox_types(self) -> list[str]:
        rows = await self.owner("SELECT headers->>'ce_type' AS t FROM outbox ORDER BY id")
        return [r["t"] for r in rows]


PlatformsFactory = Callable[[PlatformHTTP, OAuthProvider, FakeClock], dict[str, Platform]]


def provider_platforms(
    http: PlatformHTTP, provider: OAuthProvider, clock: FakeClock
) -> dict[str, Platform]:
    config = {"url": provider.url, "clock": clock}
    return {"sandbox": ProviderPlatform(http, config), "bluesky": NoRedirectPlatform(http, config)}


@asynccontextmanager
async def connections_service(
    db: TestDatabase,
    *,
    platforms: PlatformsFactory = provider_platforms,
    clock: FakeClock | None = None,
    **overrides: Any,
) -> AsyncIterator[Service]:
    """The service with the local OAuth provider's adapter as ``sandbox`` (or the adapters
    ``platforms`` builds)."""
    clock = clock or FakeClock()
    async with oauth_provider() as provider, aiohttp.ClientSession() as http:
        provider.clock = clock  # the platform lives on the tests' clock too
        platform_http = PlatformHTTP(http, timeout_s=5.0)
        adapters = platforms(platform_http, provider, clock)
        # The service is its own public URL here (no gateway in front): redirect URIs
        # point straight back at it.
        port = free_port()
        overrides.setdefault("public_url", f"http://127.0.0.1:{port}")
        settings = publishing_settings(db, **overrides)
        app = connections_app(settings, adapters, clock)
        async with serve_asgi(app, port=port) as base:
            yield Service(base, app, clock, http, provider, db)
