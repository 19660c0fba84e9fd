"""Streaming reverse proxy from public prefixes to the owning services.

Bodies stream both ways through one pooled aiohttp session (aiohttp measured several times
faster than httpx under concurrency here), so a 1 GB upload passes with bounded memory.
A backend that is down answers 503, a slow one 504, a broken one 502 — always as
problem+json and never a hang; an idempotent GET/HEAD is retried once on a connection error.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from litestar.types import Message, Receive, Scope, Send
from opentelemetry import propagate
from pressroom_kit.http import SECURITY_HEADERS, problem_body
from pressroom_kit.logs import get_logger, request_id_var

from pressroom_gateway.forwarded import FORWARDING_HEADERS, Forwarded, TrustedProxies

log = get_logger(__name__)

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "host",
    }
)
CHUNK = 64 * 1024
# The gateway's own server and edge add these to every response; the backend's copies
# would repeat them (``x-request-id: a, a``).
SET_BY_GATEWAY = frozenset(
    {"date", "server", "x-request-id", *(name.lower() for name in SECURITY_HEADERS)}
)
_DROPPED = HOP_BY_HOP | SET_BY_GATEWAY


UPSTREAM_KEEPALIVE_S = 30.0


class BodyTooLarge(Exception):
    pass


@dataclass(frozen=True)
class ProxySettings:
    max_body_bytes: int
    connect_timeout_s: float
    read_timeout_s: float
    total_timeout_s: float


class ReverseProxy:
    """An ASGI app forwarding to ``routes`` (longest matching path prefix wins)."""

    def __init__(
        self,
        routes: Mapping[str, str],
        settings: ProxySettings,
        trusted_proxies: TrustedProxies | None = None,
    ) -> None:
        self.routes = sorted(
            ((prefix.rstrip("/"), url.rstrip("/")) for prefix, url in routes.items()),
            key=lambda item: len(item[0]),
            reverse=True,
        )
        self.settings = settings
        self.trusted_proxies = trusted_proxies or TrustedProxies()
        self.session: aiohttp.ClientSession | None = None

    async def start(self, pool_size: int) -> None:
        connector = aiohttp.TCPConnector(
            limit=pool_size,
            limit_per_host=pool_size,
            # Idle upstream connections are reused for 30 s, well inside the services' own
            # keep-alive (``http_keep_alive_s``, 75 s): the gateway always closes first, so it
            # never sends a request on a connection the service is closing.
            keepalive_timeout=UPSTREAM_KEEPALIVE_S,
            enable_cleanup_closed=True,
        )
        self.session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            timeout=aiohttp.ClientTimeout(
                total=self.settings.total_timeout_s,
                connect=self.settings.connect_timeout_s,
                sock_read=self.settings.read_timeout_s,
            ),
        )

    async def stop(self) -> None:
        if self.session is not None:
            await self.session.close()
            self.session = None

    def backend_for(self, path: str) -> str | None:
        for prefix, url in self.routes:
            if path == prefix or path.startswith(prefix + "/"):
                return url
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        backend = self.backend_for(scope["path"])
        if backend is None:
            await send_problem(send, 404, "Not found", f"no service serves {scope['path']}")
            return
        await self.forward(scope, receive, send, backend)

    async def forward(self, scope: Scope, receive: Receive, send: Send, backend: str) -> None:
        """Proxy one request to ``backend`` (the caller already matched the route)."""
        raw_path = scope.get("raw_path") or scope["path"].encode()
        path = raw_path.decode("latin-1") if isinstance(raw_path, bytes) else str(raw_path)
        query = scope.get("query_string", b"")
        url = backend + path + ("?" + query.decode("latin-1") if query else "")
        method = str(scope.get("method", "GET"))
        headers = _forward_headers(scope, self.trusted_proxies.resolve(scope))
        declared = headers.get("content-length")
        limit = self.settings.max_body_bytes
        if declared is not None and declared.isdigit() and int(declared) > limit:
            status, title, detail, code = _FAILURES["too_large"]
            await send_problem(
                send, status, title, detail.format(limit=limit), code=code, limit_bytes=limit
            )
            return
        has_body = method not in ("GET", "HEAD", "OPTIONS", "DELETE") or declared not in (None, "0")
        overflow = _Overflow()
        body = self._body(receive, overflow) if has_body else None
        attempts = 2 if method in ("GET", "HEAD") else 1
        assert self.session is not None, "the proxy was not started"
        for attempt in range(1, attempts + 1):
            try:
                async with self.session.request(
                    method, url, headers=headers, data=body, allow_redirects=False
                ) as upstream:
                    await self._relay_response(upstream, send)
                return
            except _ResponseStarted:
                return  # the client already got a status; the stream was cut
            except (BodyTooLarge, aiohttp.ClientError, TimeoutError) as exc:
                # aiohttp wraps our body generator's BodyTooLarge in a ClientError.
                failure = "too_large" if overflow.hit else _failure_kind(exc)
                if failure in ("disconnected", "unreachable") and attempt < attempts:
                    continue
                if failure != "too_large":
                    log.warning("backend failed", backend=backend, failure=failure, error=repr(exc))
                status, title, detail, code = _FAILURES[failure]
                await send_problem(
                    send,
                    status,
                    title,
                    detail.format(limit=limit),
                    code=code,
                    limit_bytes=limit if failure == "too_large" else None,
                )
                return

    async def _body(self, receive: Receive, overflow: _Overflow) -> AsyncIterator[bytes]:
        seen = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise aiohttp.ClientPayloadError("the client went away")
            chunk: bytes = message.get("body", b"")  # type: ignore[assignment]
            seen += len(chunk)
            if seen > self.settings.max_body_bytes:
                overflow.hit = True
                raise BodyTooLarge
            if chunk:
                yield chunk
            if not message.get("more_body", False):
                return

    async def _relay_response(self, upstream: aiohttp.ClientResponse, send: Send) -> None:
        headers = [
            (name.lower(), value)
            for name, value in upstream.raw_headers
            if name.lower().decode("latin-1") not in _DROPPED
        ]
        await send({"type": "http.response.start", "status": upstream.status, "headers": headers})
        try:
            async for chunk in upstream.content.iter_chunked(CHUNK):
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("upstream response cut", error=repr(exc))
            raise _ResponseStarted from exc
        await send({"type": "http.response.body", "body": b"", "more_body": False})


class _ResponseStarted(Exception):
    pass


_FAILURES: dict[str, tuple[int, str, str, str]] = {
    "too_large": (413, "Content too large", "the body exceeds {limit} bytes", "content_too_large"),
    "unreachable": (
        503,
        "Service unavailable",
        "the service behind this path is unavailable",
        "backend_down",
    ),
    "timeout": (
        504,
        "Gateway timeout",
        "the service behind this path did not answer in time",
        "backend_timeout",
    ),
    "disconnected": (
        502,
        "Bad gateway",
        "the service behind this path closed the connection",
        "backend_error",
    ),
    "broken": (
        502,
        "Bad gateway",
        "the service behind this path gave no valid answer",
        "backend_error",
    ),
}


def _failure_kind(exc: BaseException) -> str:
    if isinstance(exc, BodyTooLarge):
        return "too_large"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "disconnected"  # typically a pooled keep-alive connection the backend closed
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "unreachable"
    if isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError):
        return "timeout"
    return "broken"


class _Overflow:
    hit = False


def _forward_headers(scope: Scope, forwarded: Forwarded) -> dict[str, str]:
    incoming: list[tuple[str, str]] = [
        (k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in scope["headers"]
    ]
    connection_listed = {
        token.strip().lower()
        for name, value in incoming
        if name == "connection"
        for token in value.split(",")
    }
    headers: dict[str, str] = {}
    for name, value in incoming:
        if name in HOP_BY_HOP or name in connection_listed or name == "traceparent":
            continue
        if name in FORWARDING_HEADERS and not forwarded.peer_trusted:
            continue  # a client's own claims about where it came from
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    if forwarded.forwarded_for:
        headers["x-forwarded-for"] = forwarded.forwarded_for
    headers["x-forwarded-proto"] = forwarded.proto
    if forwarded.host:
        headers["x-forwarded-host"] = forwarded.host
    request_id = request_id_var.get()
    if request_id:
        headers["x-request-id"] = request_id
    propagate.inject(headers)  # the gateway's span becomes the service span's parent
    return headers


async def send_problem(
    send: Send,
    status: int,
    title: str,
    detail: str,
    *,
    code: str | None = None,
    www_authenticate: bool = False,
    **extra: Any,
) -> None:
    """A problem+json response written straight to ASGI ``send``."""
    payload = json.dumps(problem_body(status, title, detail, code=code, **extra)).encode()
    headers = [
        (b"content-type", b"application/problem+json"),
        (b"content-length", str(len(payload)).encode()),
    ]
    if www_authenticate:
        headers.append((b"www-authenticate", b'Bearer realm="pressroom"'))
    start: Message = {"type": "http.response.start", "status": status, "headers": headers}
    with contextlib.suppress(Exception):
        await send(start)
        await send({"type": "http.response.body", "body": payload, "more_body": False})
