"""JWT verification (HS256 secret or JWKS with RS256/ES256/EdDSA), claims and role guards.

Tokens are issued by the identity provider (Supabase-style claims ``sub, email, brand_id,
role``). ``alg: none`` and algorithm confusion are refused: the algorithm is chosen by the
key source (HS256 only with the shared secret; RS256/ES256/EdDSA only with a JWKS key of
the matching type), never by the token alone.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp
import jwt
from pydantic import BaseModel, ConfigDict, ValidationError

from pressroom_kit.errors import Forbidden, Unauthorized
from pressroom_kit.logs import get_logger

log = get_logger(__name__)

Role = Literal["admin", "manager", "viewer"]
ROLE_RANK: dict[str, int] = {"viewer": 1, "manager": 2, "admin": 3}
ASYMMETRIC_ALGORITHMS = ("RS256", "ES256", "EdDSA")


class Principal(BaseModel):
    """Who is calling: the verified claims of their token."""

    model_config = ConfigDict(frozen=True)

    sub: str
    email: str | None = None
    brand_id: uuid.UUID | None = None
    role: Role
    token: str = ""

    def has_role(self, minimum: Role) -> bool:
        return ROLE_RANK[self.role] >= ROLE_RANK[minimum]


@dataclass
class JWTSettings:
    secret: str | None = None
    jwks_url: str | None = None
    issuer: str | None = None
    audience: str | None = None
    leeway: float = 30.0
    # Keys older than the TTL are refreshed in the background while still in use.
    jwks_ttl: float = 600.0
    # An unknown ``kid`` may mean the provider rotated keys: refetch, but not more often.
    jwks_min_refresh: float = 10.0
    # How long past the TTL cached keys keep verifying tokens while every refresh fails.
    jwks_grace: float = 3600.0
    jwks_timeout: float = 5.0
    # Between failed fetches: 1 s, 2 s, 4 s, ... up to the cap.
    jwks_backoff: float = 1.0
    jwks_max_backoff: float = 60.0
    cache_size: int = 10_000


class JWKSCache:
    """Keys from a JWKS URL, fetched with aiohttp by one request at a time.

    A stale key set keeps serving while a background refresh runs, and for ``grace``
    seconds past its TTL while refreshes fail or hang; failures back off exponentially.
    Only an empty (or too old) key set or an unknown ``kid`` makes a caller wait for a
    fetch, and an unknown ``kid`` refetches at most once per ``min_refresh``.
    """

    def __init__(
        self,
        url: str,
        ttl: float,
        min_refresh: float = 10.0,
        *,
        grace: float = 3600.0,
        timeout: float = 5.0,
        backoff: float = 1.0,
        max_backoff: float = 60.0,
    ) -> None:
        self.url = url
        self.ttl = ttl
        self.min_refresh = min_refresh
        self.grace = grace
        self.timeout = timeout
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.fetches = 0
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched = 0.0  # when the keys in hand were fetched (monotonic)
        self._attempted = -math.inf  # when the last fetch started
        self._failures = 0
        self._retry_at = 0.0  # no fetch before this after a failure
        self._error = ""
        self._flight: asyncio.Task[None] | None = None

    async def key(self, kid: str | None) -> jwt.PyJWK:
        """The key for ``kid``; ``Unauthorized`` for an unknown kid or unavailable keys."""
        now = time.monotonic()
        usable = bool(self._keys) and now - self._fetched <= self.ttl + self.grace
        if usable and now - self._fetched > self.ttl:
            self._start(now)  # refresh in the background; this request does not wait
        found = self._lookup(kid) if usable else None
        if found is not None:
            return found
        if not usable:
            await self._await_fetch(now)
            if not self._keys or time.monotonic() - self._fetched > self.ttl + self.grace:
                raise Unauthorized(
                    "the signing keys are unavailable; try again shortly",
                    code="jwks_unavailable",
                )
        elif self._in_flight() or now - self._attempted >= self.min_refresh:
            await self._await_fetch(now)  # perhaps the provider rotated its keys
        found = self._lookup(kid)
        if found is None:
            raise Unauthorized("token signed with an unknown key", code="unknown_key")
        return found

    def _lookup(self, kid: str | None) -> jwt.PyJWK | None:
        if kid is None and len(self._keys) == 1:
            return next(iter(self._keys.values()))
        return self._keys.get(kid or "")

    def _in_flight(self) -> bool:
        return self._flight is not None and not self._flight.done()

    def _start(self, now: float) -> asyncio.Task[None] | None:
        """The fetch in flight, starting one unless failures ask to wait."""
        if self._flight is not None and not self._flight.done():
            return self._flight
        if now < self._retry_at:
            return None
        # No await between the check and the assignment: exactly one fetch starts.
        self._attempted = now
        self._flight = asyncio.get_running_loop().create_task(self._fetch())
        return self._flight

    async def _await_fetch(self, now: float) -> None:
        flight = self._start(now)
        if flight is not None:
            # Shielded: a caller that gives up does not cancel the fetch for the others.
            await asyncio.shield(flight)

    async def _fetch(self) -> None:
        self.fetches += 1
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout)) as session,
                session.get(self.url) as response,
            ):
                response.raise_for_status()
                document = await response.json(content_type=None)
            keys = _parse_jwks(document)
        except Exception as exc:  # whatever went wrong, keep the keys and back off
            self._failures += 1
            delay = min(self.max_backoff, self.backoff * 2 ** (self._failures - 1))
            self._retry_at = time.monotonic() + delay * random.uniform(0.8, 1.0)
            self._error = f"{type(exc).__name__}: {exc}"
            log.warning(
                "JWKS fetch failed; keeping the cached keys",
                url=self.url,
                error=self._error,
                failures=self._failures,
                retry_in_s=round(delay, 3),
                cached_keys=len(self._keys),
            )
            return
        self._keys = keys
        self._fetched = time.monotonic()
        self._failures = 0
        self._retry_at = 0.0
        self._error = ""


def _parse_jwks(document: Any) -> dict[str, jwt.PyJWK]:
    """The usable keys of a JWKS document; ``ValueError`` when it has none (a broken
    answer must not replace keys that work)."""
    entries = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise ValueError("the JWKS document has no 'keys' list")
    keys: dict[str, jwt.PyJWK] = {}
    for entry in entries:
        try:
            key = jwt.PyJWK(entry)
        except (jwt.PyJWTError, TypeError, ValueError, KeyError):
            continue
        keys[str(entry.get("kid") or "")] = key
    if not keys:
        raise ValueError("the JWKS document has no usable key")
    return keys


class JWTVerifier:
    """Verifies bearer tokens into ``Principal``s; caches verified tokens until they expire."""

    def __init__(self, settings: JWTSettings) -> None:
        if not settings.secret and not settings.jwks_url:
            raise ValueError("JWT verification needs a secret or a JWKS URL")
        self.settings = settings
        self._jwks = (
            JWKSCache(
                settings.jwks_url,
                settings.jwks_ttl,
                settings.jwks_min_refresh,
                grace=settings.jwks_grace,
                timeout=settings.jwks_timeout,
                backoff=settings.jwks_backoff,
                max_backoff=settings.jwks_max_backoff,
            )
            if settings.jwks_url
            else None
        )
        self._cache: OrderedDict[str, tuple[Principal, float]] = OrderedDict()

    async def verify(self, token: str) -> Principal:
        """The principal of a valid token. ``Unauthorized`` (401) for a bad token,
        ``Forbidden`` (403) for a valid token whose claims give no access."""
        cached = self._cache.get(token)
        if cached is not None and cached[1] > time.time():
            self._cache.move_to_end(token)
            return cached[0]
        claims = await self._decode(token)
        principal = self._principal(claims, token)
        self._cache[token] = (principal, float(claims["exp"]) + self.settings.leeway)
        if len(self._cache) > self.settings.cache_size:
            self._cache.popitem(last=False)
        return principal

    async def _decode(self, token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"malformed token: {exc}") from exc
        alg = header.get("alg")
        key: Any
        if alg == "HS256" and self.settings.secret:
            key = self.settings.secret
        elif alg in ASYMMETRIC_ALGORITHMS and self._jwks is not None:
            jwk = await self._jwks.key(header.get("kid"))  # PyJWT checked it is a string
            if jwk.key_type != _key_type(alg):
                raise Unauthorized("token algorithm does not match its key")
            key = jwk.key
        else:
            raise Unauthorized(f"token algorithm {alg!r} is not accepted")
        options: jwt.types.Options = {
            "require": ["exp", "sub"],
            "verify_aud": self.settings.audience is not None,
        }
        try:
            return jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=self.settings.audience,
                issuer=self.settings.issuer,
                leeway=self.settings.leeway,
                options=options,
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthorized("token expired", code="token_expired") from exc
        except jwt.InvalidSignatureError as exc:
            raise Unauthorized("token signature is invalid", code="bad_signature") from exc
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"token rejected: {exc}") from exc

    @staticmethod
    def _principal(claims: dict[str, Any], token: str) -> Principal:
        role = claims.get("role")
        if role not in ROLE_RANK:
            raise Forbidden(f"unknown role {role!r}", code="unknown_role")
        try:
            return Principal(
                sub=str(claims["sub"]),
                email=claims.get("email"),
                brand_id=claims.get("brand_id") or None,
                role=role,
                token=token,
            )
        except ValidationError as exc:
            raise Forbidden("token claims are invalid", code="bad_claims") from exc


def _key_type(alg: str) -> str:
    return {"RS256": "RSA", "ES256": "EC", "EdDSA": "OKP"}[alg]


def mint_token(
    secret: str,
    *,
    sub: str,
    role: Role,
    brand_id: uuid.UUID | str | None = None,
    email: str | None = None,
    ttl_seconds: int = 12 * 3600,
    issuer: str | None = None,
    audience: str | None = None,
) -> str:
    """An HS256 token as the identity provider would issue it (local development, tests)."""
    now = int(time.time())
    claims: dict[str, Any] = {"sub": sub, "role": role, "iat": now, "exp": now + ttl_seconds}
    if brand_id is not None:
        claims["brand_id"] = str(brand_id)
    if email is not None:
        claims["email"] = email
    if issuer is not None:
        claims["iss"] = issuer
    if audience is not None:
        claims["aud"] = audience
    return jwt.encode(claims, secret, algorithm="HS256")
