"""The sandbox platform for tests: a real server on a loopback port, its control API, the
adapter built against it, and the browser's part of the OAuth flow.

    async with running_sandbox(clock) as (base_url, state):
        client = SandboxClient(base_url)
        await client.fail("publish", "rate_limited", retry_after_s=5)
"""

from __future__ import annotations

import contextlib
import secrets
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
from litestar import Litestar
from pressroom_kit.testing.servers import serve_asgi
from pressroom_publishing.platforms.base import Credentials, OAuthContext, PlatformHTTP
from pressroom_publishing.platforms.sandbox import SandboxPlatform
from pressroom_publishing.sandbox import MOUNT_PATH, SandboxState, sandbox_mount
from pressroom_publishing.sandbox.state import Clock

REDIRECT_URI = "http://127.0.0.1:9/v1/connections/sandbox/callback"


class FakeClock:
    """A clock a test moves by hand (tokens expire, days pass) without sleeping."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    def set(self, moment: datetime) -> None:
        self.now = moment


@contextlib.asynccontextmanager
async def running_sandbox(
    clock: Clock | None = None,
    *,
    state: SandboxState | None = None,
    public_url: str | None = None,
) -> AsyncIterator[tuple[str, SandboxState]]:
    """The sandbox mounted under ``/sandbox-platform`` (as in the publishing service) on a
    free port; yields ``(base_url, state)`` with ``base_url`` ending in the mount path."""
    state = state or SandboxState()
    if clock is not None:
        state.clock = clock
    app = Litestar(
        route_handlers=[sandbox_mount(MOUNT_PATH, state, public_url=public_url)],
        openapi_config=None,
    )
    async with serve_asgi(app) as root:
        try:
            yield f"{root}{MOUNT_PATH}", state
        finally:
            state.release_held()  # held "timeout" requests end before the server stops


def sandbox_config(base_url: str, **extra: Any) -> dict[str, Any]:
    """The adapter's configuration for a sandbox at ``base_url``."""
    return {"api_url": base_url, "auth_url": base_url, **extra}


def sandbox_platform(
    base_url: str, session: aiohttp.ClientSession, *, timeout_s: float = 10.0, **extra: Any
) -> SandboxPlatform:
    return SandboxPlatform(
        PlatformHTTP(session, timeout_s=timeout_s), sandbox_config(base_url, **extra)
    )


@dataclass
class Authorized:
    code: str
    state: str
    location: str


class SandboxClient:
    """The control API (``/_control``) and a browser for the consent page."""

    def __init__(self, base_url: str, session: aiohttp.ClientSession | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._session = session

    @contextlib.asynccontextmanager
    async def _http(self) -> AsyncIterator[aiohttp.ClientSession]:
        if self._session is not None:
            yield self._session
            return
        async with aiohttp.ClientSession() as session:
            yield session

    async def _call(self, method: str, path: str, body: Any = None) -> Any:
        async with (
            self._http() as session,
            session.request(method, f"{self.base_url}{path}", json=body) as answer,
        ):
            payload = await answer.read()
            if answer.status >= 400:
                raise AssertionError(f"{method} {path}: {answer.status} {payload!r}")
            return await answer.json() if payload else None

    async def fail(
        self,
        operation: str,
        mode: str,
        count: int = 1,
        *,
        retry_after_s: float | None = 30.0,
        delay_s: float = 30.0,
        effect: bool = False,
        code: str | None = None,
        message: str | None = None,
    ) -> None:
        """The next ``count`` calls of ``operation`` fail as ``mode`` (see the README)."""
        body: dict[str, Any] = {
            "operation": operation,
            "mode": mode,
            "count": count,
            "retry_after_s": retry_after_s,
            "delay_s": delay_s,
            "effect": effect,
        }
        if code is not None:
            body["code"] = code
        if message is not None:
            body["message"] = message
        await self._call("POST", "/_control/failures", body)

    async def clear_failures(self) -> None:
        await self._call("DELETE", "/_control/failures")

    async def posts(self) -> list[dict[str, Any]]:
        """Every post ever created (deleted ones too), with its ``idempotency_key``."""
        answer = await self._call("GET", "/_control/posts")
        return list(answer["data"])

    async def calls(self) -> dict[str, int]:
        answer = await self._call("GET", "/_control/calls")
        return dict(answer["calls"])

    async def reset(self) -> None:
        await self._call("POST", "/_control/reset")

    async def expire_tokens(self, account_id: str | None = None, *, refresh: bool = False) -> int:
        body: dict[str, Any] = {"refresh": refresh}
        if account_id is not None:
            body["account_id"] = account_id
        answer = await self._call("POST", "/_control/tokens/expire", body)
        return int(answer["grants"])

    async def revoke_tokens(self, account_id: str | None = None) -> int:
        body = {} if account_id is None else {"account_id": account_id}
        answer = await self._call("POST", "/_control/tokens/revoke", body)
        return int(answer["grants"])

    async def settings(self, **changes: Any) -> dict[str, Any]:
        """Switch platform quirks, e.g. ``rotate_refresh_tokens=False``."""
        if not changes:
            return dict(await self._call("GET", "/_control/settings"))
        return dict(await self._call("POST", "/_control/settings", changes))

    async def authorize(
        self, authorization_url: str, *, username: str = "sandbox-user", decision: str = "allow"
    ) -> Authorized:
        """What a user's browser does: open the consent page, press a button, follow the
        ``303`` to the redirect URI (not fetched: the answer's query is returned)."""
        async with self._http() as session:
            async with session.get(authorization_url) as page:
                text = await page.text()
                if page.status != 200 or "Authorize" not in text:
                    raise AssertionError(f"consent page: {page.status} {text[:300]}")
            form = {k: v[0] for k, v in parse_qs(urlsplit(authorization_url).query).items()}
            form.update(decision=decision, username=username)
            async with session.post(
                authorization_url.split("?", 1)[0], data=form, allow_redirects=False
            ) as answer:
                if answer.status != 303:
                    raise AssertionError(f"consent: {answer.status} {await answer.text()}")
                location = answer.headers["Location"]
        query = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
        return Authorized(
            code=query.get("code", ""), state=query.get("state", ""), location=location
        )


async def connect(
    platform: SandboxPlatform,
    client: SandboxClient,
    *,
    username: str = "sandbox-user",
    brand_id: uuid.UUID | None = None,
) -> Credentials:
    """A whole OAuth connection (consent, code exchange with PKCE, account) as credentials."""
    context = OAuthContext(
        state=secrets.token_urlsafe(16),
        redirect_uri=REDIRECT_URI,
        code_verifier=secrets.token_urlsafe(48),
    )
    authorized = await client.authorize(
        await platform.authorization_url(context), username=username
    )
    grant = await platform.exchange_code(authorized.code, context)
    probe = Credentials(
        connection_id=uuid.uuid4(),
        brand_id=brand_id or uuid.uuid4(),
        platform="sandbox",
        access_token=grant.access_token,
        account_id="",
        refresh_token=grant.refresh_token,
        expires_at=grant.expires_at,
    )
    account = await platform.verify(probe)
    return Credentials(
        connection_id=probe.connection_id,
        brand_id=probe.brand_id,
        platform="sandbox",
        access_token=grant.access_token,
        account_id=account.account_id,
        refresh_token=grant.refresh_token,
        expires_at=grant.expires_at,
    )


@dataclass
class SandboxEnv:
    """One running sandbox with its clock, an HTTP session, the control client and the
    adapter: what a test module shares (``fresh`` between tests)."""

    base_url: str
    state: SandboxState
    clock: FakeClock
    session: aiohttp.ClientSession
    client: SandboxClient

    def platform(self, *, timeout_s: float = 10.0, **extra: Any) -> SandboxPlatform:
        """The adapter, on the sandbox's clock."""
        extra.setdefault("clock", self.clock)
        return sandbox_platform(self.base_url, self.session, timeout_s=timeout_s, **extra)

    async def connect(self, username: str = "sandbox-user") -> Credentials:
        return await connect(self.platform(), self.client, username=username)

    def fresh(self) -> None:
        self.state.reset()
        self.clock.set(datetime.now(UTC).replace(microsecond=0))


@contextlib.asynccontextmanager
async def sandbox_env() -> AsyncIterator[SandboxEnv]:
    clock = FakeClock()
    async with running_sandbox(clock) as (base_url, state), aiohttp.ClientSession() as session:
        yield SandboxEnv(base_url, state, clock, session, SandboxClient(base_url, session))
