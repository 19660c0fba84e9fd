"""``/v1/connections``: list, authorize, the OAuth callback, app-password connects, verify
and disconnect.

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
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from pressroom_publishing.connections import app_password, oauth
from pressroom_publishing.connections.app_password import (
    DEFAULT_SERVICE_URL,
    AppPasswordPlatform,
)
from pressroom_publishing.connections.credentials import VaultCredentials
from pressroom_publishing.connections.instances import (
    InstanceApp,
    InstanceAppPlatform,
    InstanceApps,
    normalize_server_url,
)
from pressroom_publishing.connections.state import BadState
from pressroom_publishing.connections.vault import Vault
from pressroom_publishing.platforms import PLATFORM_IDS, known_platform
from pressroom_publishing.platforms.base import Platform, PlatformError, TransientError

ADMIN = [requires_role("admin")]
VIEWER = [requires_role("viewer")]
PlatformId = Annotated[str, Parameter(pattern=r"^[a-z0-9_-]{1,40}$", max_length=40)]


class AuthorizeBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    instance_url: str | None = Field(
        default=None,
        min_length=1,
        max_length=2048,
        description="mastodon (required there, refused elsewhere): the instance to connect, "
        "any instance (https://host[:port], or just the host name)",
    )


class AppPasswordBody(BaseModel):
    """Never kept: the app password is traded for a session and dropped."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)
    identifier: str = Field(
        min_length=1, max_length=2048, description="handle, DID or the account's email"
    )
    app_password: SecretStr = Field(
        min_length=1, max_length=256, description="an app password (xxxx-xxxx-xxxx-xxxx)"
    )
    service_url: str | None = Field(
        default=None,
        min_length=1,
        max_length=2048,
        description="the account's server (PDS); default: the adapter's configured "
        f"service_url, else {DEFAULT_SERVICE_URL}",
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
    if not known_platform(platform):
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


def _apps(state: State) -> InstanceApps:
    return InstanceApps(state.pool, state.box, timeout_s=state.settings.platform_timeout_s)


async def _instance_app(
    state: State, adapter: Platform, body: AuthorizeBody | None, now: datetime
) -> InstanceApp | None:
    """For a platform with an app per instance: the named instance's app, registered there
    on first use. Elsewhere an ``instance_url`` is refused."""
    instance_url = None if body is None else body.instance_url
    name = adapter.capabilities.display_name
    if not isinstance(adapter, InstanceAppPlatform):
        if instance_url is not None:
            raise Invalid(
                f"{name} has no instances to choose from; leave out instance_url",
                code="invalid",
                errors=[{"field": "instance_url", "message": "not for this platform"}],
            )
        return None
    if instance_url is None:
        raise Invalid(
            f"{name}: say which instance to connect (instance_url)",
            code="instance_required",
            errors=[{"field": "instance_url", "message": "required"}],
        )
    instance = normalize_server_url(
        instance_url,
        field="instance_url",
        allow_insecure=state.settings.allow_insecure_instances,
    )
    try:
        return await _apps(state).ensure(
            adapter, instance, oauth.redirect_uri(state.settings, adapter.id), now=now
        )
    except TimeoutError as exc:
        raise oauth.PlatformFailed(f"{adapter.id}: {instance} did not answer in time") from exc
    except TransientError as exc:
        raise oauth.PlatformFailed(f"{adapter.id}: {instance}: {exc.message}") from exc
    except PlatformError as exc:
        raise Invalid(
            f"{instance} refused to register Pressroom as an app (is it a {name} instance?): "
            f"{exc.message}",
            code="instance_refused",
            errors=[{"field": "instance_url", "message": "the instance refused"}],
        ) from exc
    except ValueError as exc:
        raise oauth.PlatformFailed(f"{adapter.id}: {instance}: {exc}") from exc


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
        now = state.clock()
        app = await _instance_app(state, adapter, data, now)
        result = await oauth.authorize(
            state.pool,
            Vault(state.box),
            adapter,
            state.settings,
            brand_id=who.brand_id,
            user_id=who.sub,
            extra={} if app is None else app.public(),
            secret_extra=None if app is None else {"client_secret": app.client_secret},
            now=now,
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
            apps=_apps(state),
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

    @post(
        "/{platform:str}/app-password",
        guards=ADMIN,
        status_code=201,
        opt=problems(502),
        responses={200: ResponseSpec(ConnectionOut, description="Reconnected (same id)")},
    )
    async def connect_with_app_password(
        self,
        request: Request[Any, Any, Any],
        state: State,
        platform: FromPath[PlatformId],
        data: Annotated[AppPasswordBody, Body()],
    ) -> Response[ConnectionOut]:
        """Connect a platform that takes an app password instead of a redirect (Bluesky):
        201 with the new connection, 200 on a reconnect. The password is not kept."""
        who = _principal(request)
        adapter = _platform(state, platform)
        if adapter.capabilities.connect != "app_password" or not isinstance(
            adapter, AppPasswordPlatform
        ):
            raise Invalid(
                f"{adapter.capabilities.display_name} connects through OAuth: use "
                f"POST /v1/connections/{platform}/authorize",
                code="not_app_password",
                errors=[{"field": "platform", "message": "connects through OAuth"}],
            )
        settings = state.settings
        if data.service_url is not None:
            service_url = normalize_server_url(
                data.service_url,
                field="service_url",
                allow_insecure=settings.allow_insecure_instances,
            )
        else:  # the adapter's configured entryway (the operator's choice), else bsky.social
            configured = adapter.config.get("service_url")
            service_url = normalize_server_url(
                configured if isinstance(configured, str) else DEFAULT_SERVICE_URL,
                field="service_url",
                allow_insecure=True,
            )
        done = await app_password.connect(
            state.pool,
            Vault(state.box),
            adapter,
            brand_id=who.brand_id,
            user_id=who.sub,
            identifier=app_password.check_identifier(data.identifier),
            app_password=app_password.check_app_password(data.app_password.get_secret_value()),
            service_url=service_url,
            timeout_s=settings.platform_timeout_s,
            now=state.clock(),
        )
        connection = await _read(state, who.brand_id, done.connection_id)
        return Response(connection, status_code=200 if done.reconnected else 201)

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
