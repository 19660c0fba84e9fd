"""The Litestar app factory every service uses.

It gives problem+json errors (RFC 9457, no stack traces, 4xx for bad input), ``/healthz``,
``/readyz`` (database, broker *and* background workers), ``/metrics`` (Prometheus), request
ids, the JWT guard, tracing and the OpenAPI document.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import asyncpg
from litestar import Litestar, MediaType, Request, Response, Router, get
from litestar.config.cors import CORSConfig
from litestar.connection import ASGIConnection
from litestar.datastructures import MutableScopeHeaders, State
from litestar.enums import ScopeType
from litestar.exceptions import (
    HTTPException,
    NotAuthorizedException,
    PermissionDeniedException,
    ValidationException,
)
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult
from litestar.middleware.base import DefineMiddleware
from litestar.openapi import OpenAPIConfig, ResponseSpec
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.plugins.opentelemetry import OpenTelemetryConfig, OpenTelemetryPlugin
from litestar.plugins.prometheus import PrometheusConfig, PrometheusController
from litestar.routes import HTTPRoute
from litestar.static_files import create_static_files_router
from litestar.status_codes import HTTP_204_NO_CONTENT
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from pydantic import BaseModel

from pressroom_kit.auth import JWTVerifier, Principal, Role
from pressroom_kit.errors import Forbidden, PressroomError, Unauthorized
from pressroom_kit.health import Heartbeats
from pressroom_kit.logs import get_logger, request_id_var
from pressroom_kit.problems import document_problems
from pressroom_kit.schemas import FieldStrictnessPlugin, RequestSchemaPlugin
from pressroom_kit.text import keep_text_check, refuse_unstorable_text

log = get_logger(__name__)

PROBLEM = "application/problem+json"
PUBLIC = {"public": True, "exclude_from_auth": True}
PROBE = {**PUBLIC, "probe": True}
ASSETS_PATH = "/schema/assets"
ReadinessCheck = Callable[[], Awaitable[None]]


def problem_body(
    status: int, title: str, detail: str, *, code: str | None = None, **extra: Any
) -> dict[str, Any]:
    """The RFC 9457 body every Pressroom error uses (with the request id when there is one)."""
    body: dict[str, Any] = {
        "type": f"https://pressroom.dev/problems/{code or _slug(title)}",
        "title": title,
        "status": status,
        "detail": detail,
    }
    request_id = request_id_var.get()
    if request_id:
        body["request_id"] = request_id
    body.update({k: v for k, v in extra.items() if v is not None})
    return body


def problem(
    status: int, title: str, detail: str, *, code: str | None = None, **extra: Any
) -> Response[dict[str, Any]]:
    body = problem_body(status, title, detail, code=code, **extra)
    headers = {"WWW-Authenticate": 'Bearer realm="pressroom"'} if status == 401 else None
    return Response(body, status_code=status, media_type=PROBLEM, headers=headers)


def _slug(title: str) -> str:
    return title.lower().replace(" ", "_")


def _pressroom_error(_: Request[Any, Any, Any], exc: PressroomError) -> Response[Any]:
    extra = {k: (str(v) if isinstance(v, uuid.UUID) else v) for k, v in exc.extra.items()}
    return problem(exc.status, exc.title, exc.detail, code=exc.code, **extra)


def _parameter_aliases(request: Request[Any, Any, Any]) -> dict[str, str]:
    """Python parameter name -> the name the client sent (``Parameter(query="from")``), so a
    problem names ``from``, not the handler's ``since``."""
    try:
        parameters = request.route_handler.parsed_fn_signature.parameters
    except (AttributeError, LookupError):
        return {}
    aliases = {}
    for name, parameter in parameters.items():
        definition = parameter.kwarg_definition
        alias = None
        # ``QueryParameter(name=...)`` and friends, or the older ``Parameter(query=...)``.
        for attribute in ("name", "query", "header", "cookie"):
            alias = alias or getattr(definition, attribute, None)
        if isinstance(alias, str) and alias != name:
            aliases[name] = alias
    return aliases


_MISSING = re.compile(r"Missing required (?P<where>\w+ parameter) '(?P<name>[^']+)'")


def _validation_error(request: Request[Any, Any, Any], exc: ValidationException) -> Response[Any]:
    errors = []
    aliases = _parameter_aliases(request)
    for entry in exc.extra if isinstance(exc.extra, list) else []:
        if isinstance(entry, dict):
            key = entry.get("key")
            if isinstance(key, str) and entry.get("source") != "body":
                key = aliases.get(key, key)
            field = key
            errors.append({"field": field or entry.get("source"), "message": entry.get("message")})
    missing = _MISSING.search(exc.detail or "")
    if not errors and missing:
        # Litestar names a missing parameter only in its message.
        errors.append({"field": missing["name"], "message": f"a required {missing['where']}"})
    status = 400 if "malformed" in (exc.detail or "").lower() else 422
    return problem(
        status, "Validation failed", exc.detail or "invalid input", code="validation", errors=errors
    )


def _http_error(_: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    if isinstance(exc, NotAuthorizedException):
        return problem(401, "Unauthorized", exc.detail, code="unauthorized")
    if isinstance(exc, PermissionDeniedException):
        return problem(403, "Forbidden", exc.detail, code="forbidden")
    titles = {
        404: "Not found",
        405: "Method not allowed",
        413: "Content too large",
        429: "Too many requests",
    }
    title = titles.get(exc.status_code, "Request failed")
    response = problem(exc.status_code, title, exc.detail, code=_slug(title))
    if exc.headers:
        response.headers.update(exc.headers)
    return response


def _internal_error(_: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.exception("unhandled error", error=repr(exc))
    return problem(
        500, "Internal server error", "the server failed to handle the request", code="internal"
    )


EXCEPTION_HANDLERS: Mapping[Any, Any] = {
    PressroomError: _pressroom_error,
    ValidationException: _validation_error,
    HTTPException: _http_error,
    Exception: _internal_error,
}


class RequestIdMiddleware:
    """Takes ``X-Request-ID`` (or makes one), binds it to logs and echoes it back."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        incoming = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                incoming = value.decode("latin-1")[:128]
                break
        request_id = incoming or uuid.uuid4().hex
        token = request_id_var.set(request_id)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableScopeHeaders.from_message(message)["X-Request-ID"] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id_var.reset(token)


SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-site",
}


class SecurityHeadersMiddleware:
    """Adds conservative security headers to every response (and HSTS over HTTPS)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        https = scope.get("scheme") == "https"

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableScopeHeaders.from_message(message)
                for name, value in SECURITY_HEADERS.items():
                    if name not in headers:
                        headers[name] = value
                if https:
                    headers["Strict-Transport-Security"] = "max-age=31536000; includeSubDomains"
            await send(message)

        await self.app(scope, receive, send_with_headers)


class JWTAuthMiddleware(AbstractAuthenticationMiddleware):
    """Verifies ``Authorization: Bearer <jwt>`` on every route not marked public."""

    def __init__(self, app: ASGIApp, verifier: JWTVerifier, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.verifier = verifier

    async def authenticate_request(
        self, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> AuthenticationResult:
        header = connection.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("a bearer token is required", code="missing_token")
        principal = await self.verifier.verify(token.strip())
        return AuthenticationResult(user=principal, auth=token.strip())


async def brand_guard(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    """Every authenticated route needs a token with a brand, unless it opts out."""
    if handler.opt.get("public") or handler.opt.get("brand_optional"):
        return
    principal = connection.scope.get("user")
    if isinstance(principal, Principal) and principal.brand_id is None:
        raise Forbidden("the token carries no brand_id", code="no_brand")


def requires_role(minimum: Role) -> Callable[..., Awaitable[None]]:
    """A guard allowing ``minimum`` and higher roles (viewer < manager < admin)."""

    # Guards are async so that Litestar does not hop to a worker thread to run them.
    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        principal = connection.scope.get("user")
        if not isinstance(principal, Principal):
            raise Unauthorized("a bearer token is required", code="missing_token")
        if not principal.has_role(minimum):
            raise Forbidden(
                f"this needs the {minimum} role; the token has {principal.role}", code="role"
            )

    guard.__name__ = f"requires_{minimum}"
    return guard


class Health(BaseModel):
    status: Literal["ok"]
    service: str


class Check(BaseModel):
    ok: bool
    detail: str | None = None
    age_s: float | None = None
    degraded: str | None = None


class Readiness(BaseModel):
    status: Literal["ready", "degraded", "unavailable"]
    service: str
    checks: dict[str, Check]


def docs_assets_router() -> Router:
    """Swagger UI's files, served from the installed ``swagger-ui-py`` package: the API docs
    page works with no network."""
    return create_static_files_router(
        path=ASSETS_PATH,
        directories=[Path(str(resources.files("swagger_ui") / "static"))],
        opt=PUBLIC,
        include_in_schema=False,
        send_as_attachment=False,
    )


def api_docs_page(openapi_url: str, title: str = "Pressroom API") -> str:
    """The Swagger UI page for ``openapi_url``, loading only this server's assets."""
    return f"""<!doctype html>
<html>
  <head>
    <title>{title}</title>
    <meta charset="utf-8" />
    <meta name="viewport" content="width=device-width, initial-scale=1" />
    <link rel="icon" type="image/png" href="{ASSETS_PATH}/favicon-32x32.png" />
    <link rel="stylesheet" href="{ASSETS_PATH}/swagger-ui.css" />
  </head>
  <body>
    <div id="swagger-ui"></div>
    <script src="{ASSETS_PATH}/swagger-ui-bundle.js"></script>
    <script src="{ASSETS_PATH}/swagger-ui-standalone-preset.js"></script>
    <script>
      window.ui = SwaggerUIBundle({{
        url: "{openapi_url}",
        dom_id: "#swagger-ui",
        deepLinking: true,
        presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
        layout: "StandaloneLayout",
      }});
    </script>
  </body>
</html>
"""


def answer_options_with_every_method(app: Litestar) -> None:
    """Make each path's automatic ``OPTIONS`` answer list all of the path's methods.

    Litestar makes that handler when it meets the path's first handler and keeps it when
    later handlers (a controller's ``get`` and ``patch`` on one path) join the route, so its
    ``Allow`` would name only the first ones."""
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        allow = ", ".join(sorted(route.methods))
        for handler in route.route_handlers:
            if handler.http_methods == {"OPTIONS"} and handler.handler_name == "options_handler":

                def options_handler(scope: Scope, allow: str = allow) -> Response[None]:
                    return Response(
                        content=None,
                        status_code=HTTP_204_NO_CONTENT,
                        headers={"Allow": allow},
                        media_type=MediaType.TEXT,
                    )

                # The one Litestar made reads a stale route; this one is sync like it.
                handler._fn = options_handler  # type: ignore[assignment]


def database_check(pool: asyncpg.Pool, timeout: float = 2.0) -> ReadinessCheck:
    async def check() -> None:
        async with asyncio.timeout(timeout):
            await pool.fetchval("SELECT 1")

    return check


def broker_check(bootstrap_servers: str, timeout: float = 2.0) -> ReadinessCheck:
    """Reachable when any bootstrap server accepts a TCP connection."""

    async def check() -> None:
        errors = []
        for server in bootstrap_servers.split(","):
            host, _, port = server.strip().rpartition(":")
            try:
                async with asyncio.timeout(timeout):
                    _, writer = await asyncio.open_connection(host.strip("[]"), int(port))
                writer.close()
                return
            except (OSError, TimeoutError, ValueError) as exc:
                errors.append(f"{server}: {exc!r}")
        raise ConnectionError("; ".join(errors))

    return check


def create_service_app(
    *,
    name: str,
    route_handlers: Sequence[Any],
    verifier: JWTVerifier | None,
    heartbeats: Heartbeats | None = None,
    readiness: Mapping[str, ReadinessCheck] | None = None,
    lifespan: Sequence[Any] = (),
    version: str = "0.1.0",
    description: str = "",
    cors_origins: Sequence[str] = (),
    debug: bool = False,
    state: Mapping[str, Any] | None = None,
    public_paths: Sequence[str] = (),
    after_auth_middleware: Sequence[Any] = (),
    openapi_path: str = "/schema",
) -> Litestar:
    """A Litestar app with the kit's middleware, errors, health, metrics and OpenAPI."""
    beats = heartbeats or Heartbeats()
    checks = dict(readiness or {})

    @get("/healthz", opt=PROBE, tags=["health"], sync_to_thread=False)
    def healthz() -> Health:
        """Liveness: the process answers."""
        return Health(status="ok", service=name)

    @get(
        "/readyz",
        opt=PROBE,
        tags=["health"],
        responses={
            503: ResponseSpec(
                Readiness,
                description="Not ready: a check failed (a normal answer while a dependency is "
                "down or starting; load balancers take the replica out of rotation)",
            )
        },
    )
    async def readyz() -> Response[Readiness]:
        """Readiness: the database, the broker and every background worker are healthy."""
        results: dict[str, Any] = {}

        async def run(check_name: str, check: ReadinessCheck) -> None:
            try:
                await check()
                results[check_name] = {"ok": True}
            except Exception as exc:
                results[check_name] = {"ok": False, "detail": repr(exc)}

        await asyncio.gather(*(run(n, c) for n, c in checks.items()))
        results.update(beats.status())
        ready = all(entry["ok"] for entry in results.values())
        status = ("degraded" if beats.degraded() else "ready") if ready else "unavailable"
        body = Readiness(
            status=status,
            service=name,
            checks={n: Check(**entry) for n, entry in results.items()},
        )
        return Response(body, status_code=200 if ready else 503)

    class Metrics(PrometheusController):
        path = "/metrics"
        opt = PUBLIC
        include_in_schema = False

    middleware: list[Any] = [RequestIdMiddleware, SecurityHeadersMiddleware]
    if verifier is not None:
        middleware.append(
            DefineMiddleware(
                JWTAuthMiddleware,
                verifier=verifier,
                exclude=["^/schema", "^/healthz", "^/readyz", "^/metrics", *public_paths],
                exclude_from_auth_key="exclude_from_auth",
            )
        )
    middleware.extend(after_auth_middleware)
    middleware.append(
        PrometheusConfig(
            app_name=name.replace("-", "_"),
            prefix="pressroom_http",
            group_path=True,
            exclude=["/metrics", "/healthz", "/readyz"],
        ).middleware
    )
    openapi = OpenAPIConfig(
        title=f"Pressroom {name}",
        version=version,
        description=description or None,
        path=openapi_path,
        render_plugins=[
            SwaggerRenderPlugin(
                path="/",
                js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
                css_url=f"{ASSETS_PATH}/swagger-ui.css",
                standalone_preset_js_url=f"{ASSETS_PATH}/swagger-ui-standalone-preset.js",
                favicon=f"<link rel='icon' href='{ASSETS_PATH}/favicon-32x32.png'>",
            )
        ],
        components=Components(
            security_schemes={
                "BearerAuth": SecurityScheme(type="http", scheme="bearer", bearer_format="JWT")
            }
        ),
        security=[{"BearerAuth": []}],
    )
    app = Litestar(
        route_handlers=[healthz, readyz, Metrics, docs_assets_router(), *route_handlers],
        middleware=middleware,
        guards=[brand_guard],
        before_request=refuse_unstorable_text,
        exception_handlers=dict(EXCEPTION_HANDLERS),
        openapi_config=openapi,
        plugins=[
            RequestSchemaPlugin(),
            FieldStrictnessPlugin(),
            OpenTelemetryPlugin(OpenTelemetryConfig(exclude=["/metrics", "/healthz", "/readyz"])),
        ],
        lifespan=list(lifespan),
        cors_config=CORSConfig(allow_origins=list(cors_origins)) if cors_origins else None,
        debug=debug,
        state=None if state is None else State(dict(state)),
    )
    document_problems(app)
    keep_text_check(app)
    answer_options_with_every_method(app)
    return app


__all__ = [
    "ASSETS_PATH",
    "PROBE",
    "PUBLIC",
    "ReadinessCheck",
    "api_docs_page",
    "broker_check",
    "create_service_app",
    "database_check",
    "problem",
    "requires_role",
]
