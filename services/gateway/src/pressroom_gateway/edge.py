"""The edge: proxied paths take a lean path; everything else goes to the Litestar app.

A proxied request needs request ids, token verification, the brand rule, rate limits,
security headers, a server span and a metric, then the proxy. Doing those in one function,
with one wrapper around ``send``, costs a fraction of running the request through
Litestar's routing and six middleware layers (measured in ``bench/gateway.py``).
The gateway's own routes (brands, health, OpenAPI) still go through Litestar.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Sequence
from typing import Any

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from opentelemetry import propagate, trace
from opentelemetry.sdk.trace import TracerProvider
from pressroom_kit.auth import JWTVerifier
from pressroom_kit.errors import PressroomError
from pressroom_kit.http import SECURITY_HEADERS
from pressroom_kit.logs import request_id_var
from prometheus_client import Histogram

from pressroom_gateway.proxy import ReverseProxy, send_problem
from pressroom_gateway.ratelimit import RateLimiter, too_many

PROXIED = Histogram(
    "pressroom_gateway_proxied_seconds",
    "Proxied requests by backend and status class",
    ["backend", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
tracer = trace.get_tracer("pressroom_gateway.edge")
_SECURITY = [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]


class Edge:
    def __init__(
        self,
        app: ASGIApp,
        proxy: ReverseProxy,
        verifier: JWTVerifier,
        limiter: RateLimiter,
        public_paths: Sequence[str],
    ) -> None:
        self.app = app
        self.proxy = proxy
        self.verifier = verifier
        self.limiter = limiter
        self.public = [re.compile(p) for p in public_paths]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.app, name)  # state, openapi_schema, ... of the Litestar app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        method = str(scope.get("method", "GET"))
        backend = self.proxy.backend_for(path)
        if backend is None:
            await self.app(scope, receive, send)
            return
        headers = scope["headers"]
        request_id = _header(headers, b"x-request-id")
        request_id = request_id[:128] if request_id else uuid.uuid4().hex
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status_holder = [0]
        try:
            if isinstance(trace.get_tracer_provider(), TracerProvider):
                carrier = {"traceparent": _header(headers, b"traceparent") or ""}
                with tracer.start_as_current_span(
                    f"{method} {path}",
                    context=propagate.extract(carrier),
                    kind=trace.SpanKind.SERVER,
                    attributes={
                        "http.request.method": scope["method"],
                        "url.path": path,
                        "pressroom.backend": backend,
                    },
                ) as span:
                    await self._handle(scope, receive, send, backend, request_id, status_holder)
                    span.set_attribute("http.response.status_code", status_holder[0])
            else:
                await self._handle(scope, receive, send, backend, request_id, status_holder)
        finally:
            request_id_var.reset(token)
            PROXIED.labels(backend, f"{status_holder[0] // 100}xx").observe(
                time.perf_counter() - started
            )

    async def _handle(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        backend: str,
        request_id: str,
        status_holder: list[int],
    ) -> None:
        extra: list[tuple[bytes, bytes]] = [(b"x-request-id", request_id.encode()), *_SECURITY]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder[0] = message["status"]
                message["headers"] = [*message.get("headers", ()), *extra]
            await send(message)

        if not _is_normal(scope["path"]):
            # Public paths and routes are matched on the path as sent; a backend may read
            # ``//``, ``.`` or ``..`` segments otherwise (``/sandbox-platform//_control``
            # routes to ``/_control`` there), so such a path never gets past the edge.
            await send_problem(
                send_with_headers,
                400,
                "Bad Request",
                "the path has empty, '.' or '..' segments",
                code="bad_path",
            )
            return
        if not any(p.search(scope["path"]) for p in self.public):
            value = _header(scope["headers"], b"authorization") or ""
            scheme, _, credentials = value.partition(" ")
            if scheme.lower() != "bearer" or not credentials.strip():
                await send_problem(
                    send_with_headers,
                    401,
                    "Unauthorized",
                    "a bearer token is required",
                    code="missing_token",
                    www_authenticate=True,
                )
                return
            try:
                principal = await self.verifier.verify(credentials.strip())
            except PressroomError as exc:
                await send_problem(
                    send_with_headers,
                    exc.status,
                    exc.title,
                    exc.detail,
                    code=exc.code,
                    www_authenticate=exc.status == 401,
                )
                return
            if principal.brand_id is None:
                await send_problem(
                    send_with_headers,
                    403,
                    "Forbidden",
                    "the token carries no brand_id",
                    code="no_brand",
                )
                return
            scope["user"] = principal
        refused, limit_headers = await self.limiter.check(scope)
        extra += [(n.lower().encode(), v.encode()) for n, v in limit_headers]
        if refused is not None:
            await too_many(send_with_headers, refused, [])
            return
        await self.proxy.forward(scope, receive, send_with_headers, backend)


def _header(headers: Any, name: bytes) -> str | None:
    for key, value in headers:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _is_normal(path: str) -> bool:
    """No empty segment (``//``) and no ``.`` or ``..`` segment; a trailing slash is fine."""
    segments = path.split("/")[1:]
    if segments and segments[-1] == "":
        segments = segments[:-1]
    return all(segment not in ("", ".", "..") for segment in segments)
