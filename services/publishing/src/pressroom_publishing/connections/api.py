"""``/v1/connections``: list, authorize, the OAuth callback, verify and disconnect.

Reads ``app.state.pool``, ``box`` (``SecretBox``), ``platforms`` (id -> ``Platform``),
``settings`` and ``clock``. The callback is public (the browser comes back from the platform
without our token); the signed, single-use state is what binds it to a brand and a user.
"""

from __future__ import annotations

import html
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from litestar import Controller, MediaType, Request, Response, delete, get, post
from litestar.datastructures import State
from litestar.openapi import ResponseSpec
from litestar.params import Body, FromPath, Parameter, QueryParameter
from litestar.response import Redirect
from pressroom_kit.auth import Principal
from pressroom_kit.db import tenant_transaction
from pressroom_kit.errors import Invalid, NotFound, PressroomError
from pressroom_kit.http import PUBLIC, requires_role
from pressroom_kit.pagination import Cursor, newest_first
from pressroom_kit.problems import problems
from pydantic import BaseModel, ConfigDict, Field

from pressroom_publishing.connections import oauth
from pressroom_publishing.connections.credentials import VaultCredentials
from pressroom_publishing.connections.state import BadState
from pressroom_publishing.connections.vault import Vault
from pressroom_publishing.platforms import PLATFORM_IDS
from pressroom_publishing.platforms.base import Platform, PlatformError

ADMIN = [requires_role("admin")]
VIEWER = [requires_role("viewer")]
PlatformId = Annotated[str, Parameter(pattern=r"^[a-z0-9_-]{1,40}$", max_length=40)]


class AuthorizeBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    instance_url: str | None = Field(
        default=None,
        max_length=2048,
        pattern=r"^[Hh][Tt][Tt][Pp][Ss]?://[!-~]+$",
        description="mastodon: the instance to connect (any instance)",
    )


class AuthorizationOut(BaseModel):
    authorization_url: str
    state: str


class ConnectionOut(BaseModel):
    """A connection as the API shows it: never a token."""

    id: uuid.UUID
    platform: str
    status: str
    account_id: str
    account_name: str | None
    scopes: list[str]
    extra: dict[str, Any]
    token_expires_at: datetime | None
    last_verified_at: datetime | None
    last_refreshed_at: datetime | None
    last_error: str | None
    connected_by: str | None
    created_at: datetime
    updated_at: datetime


class Page(BaseModel):
    items: list[ConnectionOut]
    next_cursor: str | None


_COLUMNS = (
    "id, platform, status, account_id, account_name, scopes, extra, token_expires_at, "
    "last_verified_at, last_refreshed_at, last_error, connected_by, created_at, updated_at"
)


class UnknownPlatform(NotFound):
    code = "unknown_platform"


@dataclass(frozen=True)
class Caller:
    sub: str
    brand_id: uuid.UUID


def _principal(request: Request[Any, Any, Any]) -> Caller:
    principal = request.user
    assert isinstance(principal, Principal) and principal.brand_id is not None
    return Caller(principal.sub, principal.brand_id)


def _platform(state: State, platform: str) -> Platform:
    if platform not in PLATFORM_IDS:
        raise UnknownPlatform(
            f"no platform {platform!r}; known: {', '.join(PLATFORM_IDS)}", code="unknown_platform"
        )
    adapter: Platform | None = state.platforms.get(platform)
    if adapter is None:
        raise Invalid(
            f"the {platform} platform is not available on this installation",
            code="platform_unavailable",
            errors=[{"field": "platform", "message": "not available"}],
        )
    return adapter


def _source(state: State) -> VaultCredentials:
    return VaultCredentials(state.pool, state.box, state.platforms, state.settings, state.clock)


async def _read(state: State, brand_id: uuid.UUID, connection_id: uuid.UUID) -> ConnectionOut:
    async with tenant_transaction(state.pool, brand_id) as conn:
        row = await conn.fetchrow(
            f"SELECT {_COLUMNS} FROM platform_connections WHERE id = $1", connection_id
        )
    if row is None:
        raise NotFound(f"no connection {connection_id}", code="no_connection")
    return ConnectionOut(**dict(row))


class ConnectionController(Controller):
    path = "/v1/connections"
    tags = ["connections"]

    @get("/", guards=VIEWER)
    async def list_connections(
        self,
        request: Request[Any, Any, Any],
        state: State,
        limit: Annotated[int, Parameter(ge=1, le=200)] = 50,
        cursor: Cursor = None,
    ) -> Page:
        """The brand's connections, newest first (never a token)."""
        rows, next_cursor = await newest_first(
            state.pool,
            _principal(request).brand_id,
            f"SELECT {_COLUMNS} FROM platform_connections",
            [],
            cursor,
            limit,
        )
        return Page(items=[ConnectionOut(**dict(r)) for r in rows], next_cursor=next_cursor)

    @post("/{platform:str}/authorize", guards=ADMIN, status_code=200, opt=problems(502))
    async def authorize(
        self,
        request: Request[Any, Any, Any],
        state: State,
        platform: FromPath[PlatformId],
        data: Annotated[AuthorizeBody | None, Body()] = None,
    ) -> AuthorizationOut:
        """Start connecting: the platform's consent URL and the signed, single-use state."""
        who = _principal(request)
        adapter = _platform(state, platform)
        if adapter.capabilities.connect != "oauth2":
            raise Invalid(
                f"{adapter.capabilities.display_name} connects with an app password, not OAuth",
                code="not_oauth",
                errors=[{"field": "platform", "message": "connects with an app password"}],
            )
        extra: dict[str, Any] = {}
        if data is not None and data.instance_url is not None:
            extra["instance_url"] = data.instance_url.rstrip("/")
        result = await oauth.authorize(
            state.pool,
            Vault(state.box),
            adapter,
            state.settings,
            brand_id=who.brand_id,
            user_id=who.sub,
            extra=extra,
            now=state.clock(),
        )
        return AuthorizationOut(authorization_url=result.authorization_url, state=result.state)

    @get(
        "/{platform:str}/callback",
        opt={**PUBLIC, **problems(409, 502)},
        status_code=200,
        media_type=MediaType.HTML,
        responses={
            303: ResponseSpec(
                None,
                description="Connected: on to PRESSROOM_PUBLISHING_CONNECT_RETURN_URL "
                "(with ?platform=…&status=connected) when it is set",
            )
        },
    )
    async def callback(
        self,
        state: State,
        platform: FromPath[PlatformId],
        code: Annotated[str | None, QueryParameter(max_length=4096)] = None,
        oauth_state: Annotated[str | None, QueryParameter(name="state", max_length=1024)] = None,
        error: Annotated[str | None, QueryParameter(max_length=200)] = None,
        error_description: Annotated[str | None, QueryParameter(max_length=1000)] = None,
    ) -> Response[str]:
        """Where the platform sends the browser back: finish connecting (public; the signed
        state binds it to the brand and user that started)."""
        if error is not None:
            detail = f"{platform}: the authorization was not granted ({error})"
            if error_description:
                detail += f": {error_description}"
            raise PressroomError(detail, code="authorization_denied")
        if not code or not oauth_state:
            raise BadState("the callback needs both code and state", code="bad_callback")
        settings = state.settings
        now = state.clock()
        claims = oauth.check_state(settings, oauth_state, platform, now)
        adapter = _platform(state, platform)
        done = await oauth.complete(
            state.pool,
            Vault(state.box),
            adapter,
            claims=claims,
            state=oauth_state,
            code=code,
            now=now,
        )
        if settings.connect_return_url:
            target = settings.connect_return_url
            query = urlencode({"platform": platform, "status": "connected"})
            return Redirect(f"{target}{'&' if '?' in target else '?'}{query}", status_code=303)
        name = html.escape(adapter.capabilities.display_name)
        page = (
            "<!doctype html><html><head><meta charset='utf-8'><title>Connected</title></head>"
            f"<body><h1>{name} is connected</h1><p>Pressroom can now publish to this "
            f"{name} account{' again' if done.reconnected else ''}. You may close this page."
            "</p></body></html>"
        )
        return Response(page, media_type=MediaType.HTML)

    @post("/{connection_id:uuid}/verify", guards=ADMIN, status_code=200, opt=problems(502))
    async def verify(
        self, request: Request[Any, Any, Any], state: State, connection_id: FromPath[uuid.UUID]
    ) -> ConnectionOut:
        """Check the token with the platform now; a dead one marks the connection expired or
        revoked (200 with the connection either way; 502 when the platform did not answer)."""
        who = _principal(request)
        try:
            await _source(state).verify(who.brand_id, connection_id, actor=who.sub)
        except PlatformError as exc:
            raise oauth.PlatformFailed(f"{exc.platform}: {exc.message}") from exc
        return await _read(state, who.brand_id, connection_id)

    @delete("/{connection_id:uuid}", guards=ADMIN, status_code=204)
    async def disconnect(
        self, request: Request[Any, Any, Any], state: State, connection_id: FromPath[uuid.UUID]
    ) -> None:
        """Disconnect: revoke on the platform where it allows, drop the tokens."""
        who = _principal(request)
        await _source(state).disconnect(who.brand_id, connection_id, actor=who.sub)
