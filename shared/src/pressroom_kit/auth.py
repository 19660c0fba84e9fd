"""JWT verification (HS256 secret or JWKS with RS256/ES256/EdDSA), claims and role guards.

Tokens are issued by the identity provider (Supabase-style claims ``sub, email, brand_id,
role``). ``alg: none`` and algorithm confusion are refused: the algorithm is chosen by the
key source (HS256 only with the shared secret; RS256/ES256/EdDSA only with a JWKS key of
the matching type), never by the token alone.
"""

from __future__ import annotations

import asyncio
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
    jwks_ttl: float = 600.0
    # An unknown ``kid`` may mean the provider rotated keys: refetch, but not more often.
    jwks_min_refresh: float = 10.0
    cache_size: int = 10_000


class JWKSCache:
    """Keys from a JWKS URL, fetched with aiohttp, refreshed on TTL or on an unknown ``kid``."""

    def __init__(self, url: str, ttl: float, min_refresh: float = 10.0) -> None:
        self.url = url
        self.ttl = ttl
        self.min_refresh = min_refresh
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched = 0.0
        self._lock = asyncio.Lock()

    async def key(self, kid: str | None) -> jwt.PyJWK:
        stale = time.monotonic() - self._fetched > self.ttl
        if stale or kid not in self._keys:
            await self._refresh(force=not stale)
        if kid is None and len(self._keys) == 1:
            return next(iter(self._keys.values()))
        if kid not in self._keys:
            raise Unauthorized("token signed with an unknown key")
        return self._keys[kid]

    async def _refresh(self, *, force: bool) -> None:
        async with self._lock:
            if force and self._fetched and time.monotonic() - self._fetched < self.min_refresh:
                return
            timeout = aiohttp.ClientTimeout(total=5)
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.get(self.url) as response,
            ):
                response.raise_for_status()
                document = await response.json(content_type=None)
            keys = {}
            for entry in document.get("keys", []):
                try:
                    key = jwt.PyJWK(entry)
                except jwt.PyJWTError:
                    continue
                keys[entry.get("kid") or ""] = key
            self._keys = keys
            self._fetched = time.monotonic()


class JWTVerifier:
    """Verifies bearer tokens into ``Principal``s; caches verified tokens until they expire."""

    def __init__(self, settings: JWTSettings) -> None:
        if not settings.secret and not settings.jwks_url:
            raise ValueError("JWT verification needs a secret or a JWKS URL")
        self.settings = settings
        self._jwks = (
            JWKSCache(settings.jwks_url, settings.jwks_ttl, settings.jwks_min_refresh)
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
            try:
                jwk = await self._jwks.key(header.get("kid"))
            except (TimeoutError, aiohttp.ClientError) as exc:
                log.warning("JWKS fetch failed", url=self.settings.jwks_url, error=repr(exc))
                raise Unauthorized("signing keys are unavailable") from exc
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
