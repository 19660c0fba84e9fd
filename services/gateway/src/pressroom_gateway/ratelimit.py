"""Token-bucket rate limits per user and per brand, and per client address when anonymous.

In memory for one replica; in Redis (one atomic Lua script per check) when
``PRESSROOM_GATEWAY_REDIS_URL`` is set, so several replicas share the budget. Refused
requests get ``429`` with ``Retry-After`` and the IETF ``RateLimit-*`` headers.

The client address is the one ``TrustedProxies`` resolves (never a client's own
``X-Forwarded-For``). Signed file URLs are fetched by platforms from a few addresses, many
files each, so they do not spend the anonymous bucket: they key on the client address and
the file, with a larger cap per address across files.
"""

from __future__ import annotations

import hashlib
import math
import re
import time
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import parse_qs

from litestar.datastructures import MutableScopeHeaders
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from pressroom_kit.auth import Principal
from pressroom_kit.logs import get_logger

from pressroom_gateway.forwarded import TrustedProxies

log = get_logger(__name__)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset_s: float  # until the bucket is full again
    retry_after_s: float  # until one token is available (0 when allowed)


class BucketStore(Protocol):
    async def take(self, key: str, capacity: int, window_s: float) -> Decision: ...


class MemoryBuckets:
    """Buckets in this process; right for a single replica."""

    def __init__(self, max_keys: int = 100_000) -> None:
        self._buckets: dict[str, tuple[float, float]] = {}
        self.max_keys = max_keys

    async def take(self, key: str, capacity: int, window_s: float) -> Decision:
        rate = capacity / window_s
        now = time.monotonic()
        tokens, stamp = self._buckets.get(key, (float(capacity), now))
        tokens = min(float(capacity), tokens + (now - stamp) * rate)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        if len(self._buckets) >= self.max_keys and key not in self._buckets:
            self._buckets.pop(next(iter(self._buckets)))
        self._buckets[key] = (tokens, now)
        return _decision(allowed, capacity, tokens, rate)


_LUA = """
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'stamp')
local tokens = tonumber(state[1]) or capacity
local stamp = tonumber(state[2]) or now
tokens = math.min(capacity, tokens + math.max(0, now - stamp) * rate)
local allowed = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'stamp', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(capacity / rate * 1000) + 1000)
return {allowed, tostring(tokens)}
"""


class RedisBuckets:
    """Buckets in Redis, shared by every gateway replica; the server's clock is the clock."""

    def __init__(self, url: str) -> None:
        import redis.asyncio as redis

        self.client = redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
        self.script = self.client.register_script(_LUA)

    async def take(self, key: str, capacity: int, window_s: float) -> Decision:
        rate = capacity / window_s
        allowed, tokens = await self.script(keys=[f"pressroom:rl:{key}"], args=[capacity, rate])
        return _decision(bool(int(allowed)), capacity, float(tokens), rate)

    async def close(self) -> None:
        await self.client.aclose()


def _decision(allowed: bool, capacity: int, tokens: float, rate: float) -> Decision:
    return Decision(
        allowed=allowed,
        limit=capacity,
        remaining=max(0, math.floor(tokens)),
        reset_s=(capacity - tokens) / rate,
        retry_after_s=0.0 if allowed else (1.0 - tokens) / rate,
    )


@dataclass(frozen=True)
class Limits:
    user: int
    brand: int
    anonymous: int
    window_s: float
    signed_file: int = 60  # one client, one signed file
    signed_client: int = 3000  # one client, every signed file


# ``?expires=<unix seconds>&signature=<unpadded base64url HMAC-SHA256>`` (the media service's).
_SIGNATURE = re.compile(r"^[A-Za-z0-9_-]{43}$")
_EXPIRES = re.compile(r"^[0-9]{1,12}$")


class RateLimiter:
    """Checks the caller's user bucket and brand bucket (or the client IP's when anonymous)."""

    def __init__(
        self,
        store: BucketStore,
        limits: Limits,
        trusted_proxies: TrustedProxies | None = None,
        signed_paths: tuple[str, ...] = (),
    ) -> None:
        self.store = store
        self.limits = limits
        self.trusted_proxies = trusted_proxies or TrustedProxies()
        self.signed_paths = signed_paths

    async def check(self, scope: Scope) -> tuple[Decision | None, list[tuple[str, str]]]:
        """``(refusal or None, headers to add)``; a broken store lets requests through."""
        try:
            decisions = [
                await self.store.take(key, capacity, self.limits.window_s)
                for key, capacity in self._checks(scope)
            ]
        except Exception as exc:
            log.warning("rate limiter unavailable; letting the request through", error=repr(exc))
            return None, []
        refused = [d for d in decisions if not d.allowed]
        if refused:
            worst = max(refused, key=lambda d: d.retry_after_s)
            return worst, _headers(worst)
        return None, _headers(min(decisions, key=lambda d: d.remaining))

    def _checks(self, scope: Scope) -> list[tuple[str, int]]:
        principal = scope.get("user")
        if isinstance(principal, Principal):
            checks = [(f"user:{principal.sub}", self.limits.user)]
            if principal.brand_id is not None:
                checks.append((f"brand:{principal.brand_id}", self.limits.brand))
            return checks
        client = self.trusted_proxies.resolve(scope).client_ip
        if self._is_signed_fetch(scope):
            file = hashlib.sha256(scope["path"].encode()).hexdigest()[:32]
            return [
                (f"signed:{client}:{file}", self.limits.signed_file),
                (f"signed-ip:{client}", self.limits.signed_client),
            ]
        return [(f"ip:{client}", self.limits.anonymous)]

    def _is_signed_fetch(self, scope: Scope) -> bool:
        """A GET/HEAD of a signed file URL that is well formed and not expired. The gateway
        cannot check the signature (the key stays with the media service); a forged one
        still spends the per-client cap and gets a 403 from the service."""
        if scope.get("method") not in ("GET", "HEAD") or not scope["path"].startswith(
            self.signed_paths
        ):
            return False
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        expires, signature = query.get("expires", []), query.get("signature", [])
        if len(expires) != 1 or len(signature) != 1:
            return False
        return (
            bool(_SIGNATURE.match(signature[0]))
            and bool(_EXPIRES.match(expires[0]))
            and int(expires[0]) >= time.time()
        )


class RateLimitMiddleware:
    """The limiter as Litestar middleware, for the gateway's own routes."""

    def __init__(
        self,
        app: ASGIApp,
        limiter: RateLimiter,
        exempt: tuple[str, ...] = ("/healthz", "/readyz", "/metrics", "/schema"),
    ) -> None:
        self.app = app
        self.limiter = limiter
        self.exempt = exempt

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP or scope["path"].startswith(self.exempt):
            await self.app(scope, receive, send)
            return
        refused, headers = await self.limiter.check(scope)
        if refused is not None:
            await too_many(send, refused, headers)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                mutable = MutableScopeHeaders.from_message(message)
                for name, value in headers:
                    mutable[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _headers(decision: Decision) -> list[tuple[str, str]]:
    return [
        ("RateLimit-Limit", str(decision.limit)),
        ("RateLimit-Remaining", str(decision.remaining)),
        ("RateLimit-Reset", str(math.ceil(decision.reset_s))),
    ]


async def too_many(send: Send, decision: Decision, headers: list[tuple[str, str]]) -> None:
    import json

    retry_after = max(1, math.ceil(decision.retry_after_s))
    body = json.dumps(
        {
            "type": "https://pressroom.dev/problems/rate_limited",
            "title": "Too many requests",
            "status": 429,
            "detail": f"rate limit of {decision.limit} requests reached; retry in {retry_after} s",
            "retry_after_s": retry_after,
        }
    ).encode()
    raw: list[tuple[bytes, bytes]] = [
        (b"content-type", b"application/problem+json"),
        (b"content-length", str(len(body)).encode()),
        (b"retry-after", str(retry_after).encode()),
    ]
    raw += [(n.lower().encode(), v.encode()) for n, v in headers]
    await send({"type": "http.response.start", "status": 429, "headers": raw})
    await send({"type": "http.response.body", "body": body, "more_body": False})
