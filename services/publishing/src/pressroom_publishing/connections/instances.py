"""Federated platforms: the server a brand names (a Mastodon instance, a Bluesky PDS), and
the OAuth app Pressroom registers once per instance.

``normalize_server_url`` turns what an admin typed into ``scheme://host[:port]`` or refuses
it (422): https only, no user info, query or fragment, a syntactically valid host; a path is
dropped (the API lives at the root; pasting a profile URL still names the instance). Unless
``allow_insecure_instances`` is on (local fakes), ``http://``, ``localhost`` and loopback,
private, link-local or reserved IP literals are refused too, so an admin cannot point the
service's own HTTP client at the machine's neighbours. A host name that *resolves* to such
an address is not caught here; the deployment's egress rules are the real fence.

``InstanceApps.ensure`` finds or registers the app (``InstanceAppPlatform.register_app``)
for a platform, instance and redirect URI, keeping its client secret sealed in
``platform_apps``. Registration is once across replicas and brands: the registering
transaction holds an advisory lock named after the instance across the one bounded
registration call, and whoever waited on it finds the app when it gets the lock. Nothing
else of ours takes that lock, so the wait cannot deadlock; it costs one pooled connection
per instance being registered.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlsplit

import asyncpg
from pressroom_kit.db import tenant_transaction
from pressroom_kit.errors import Invalid
from pressroom_kit.secrets import SecretBox

from pressroom_publishing.platforms.base import Platform

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_DEFAULT_PORTS = {"https": 443, "http": 80}
_LOCAL_NAMES = ("localhost", "localhost.localdomain")


@runtime_checkable
class InstanceAppPlatform(Protocol):
    """A platform on which Pressroom registers its OAuth app per instance (Mastodon).

    ``register_app`` answers at least ``client_id`` and ``client_secret``; the adapter's
    ``authorization_url``, ``exchange_code``, ``verify`` and ``revoke`` then read
    ``instance_url``, ``client_id`` and ``client_secret`` from ``OAuthContext.extra`` /
    ``Credentials.extra`` (the secret is added there for the call only, never stored)."""

    async def register_app(self, instance_url: str, redirect_uri: str) -> Mapping[str, Any]: ...


class BadServerUrl(Invalid):
    code = "bad_server_url"


def normalize_server_url(raw: str, *, field: str, allow_insecure: bool) -> str:
    """``scheme://host[:port]`` (lower-case, IDNA, default port dropped), or ``BadServerUrl``."""

    def refuse(message: str) -> BadServerUrl:
        return BadServerUrl(
            f"{field}: {message}",
            code="bad_server_url",
            errors=[{"field": field, "message": message}],
        )

    text = raw.strip()
    if not text:
        raise refuse("is empty")
    if any(ch.isspace() or ord(ch) < 0x20 for ch in text):
        raise refuse("must not contain spaces or control characters")
    if "://" not in text:
        text = f"https://{text}"  # a bare host name, as people type it
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise refuse(f"is not a URL ({exc})") from exc
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise refuse(f"must be an https:// URL, not {scheme}://")
    if scheme == "http" and not allow_insecure:
        raise refuse("must use https://")
    if "@" in parts.netloc:
        raise refuse("must not contain a user name or password")
    if parts.query or text.endswith("?"):
        raise refuse("must not have a query (?…)")
    if parts.fragment or "#" in text:
        raise refuse("must not have a fragment (#…)")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise refuse("has no host")
    address: ipaddress.IPv4Address | ipaddress.IPv6Address | None
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is None:
        try:
            host = host.encode("idna").decode("ascii").lower()
        except UnicodeError as exc:
            raise refuse("has an invalid host name") from exc
        labels = host.split(".")
        if len(host) > 253 or not all(_LABEL.match(label) for label in labels):
            raise refuse("has an invalid host name")
        local = host in _LOCAL_NAMES or host.endswith(".localhost")
        if local and not allow_insecure:
            raise refuse("must be a public host, not localhost")
        shown = host
    else:
        if not allow_insecure and not address.is_global:
            raise refuse("must be a public host, not a loopback, private or reserved address")
        shown = f"[{address.compressed}]" if address.version == 6 else address.compressed
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{shown}:{port}"
    return f"{scheme}://{shown}"


@dataclass(frozen=True)
class InstanceApp:
    """A registered app; ``client_secret`` is open only for the call at hand."""

    id: uuid.UUID
    instance_url: str
    client_id: str
    client_secret: str

    def __repr__(self) -> str:
        return f"InstanceApp(id={self.id}, instance_url={self.instance_url!r})"

    def public(self) -> dict[str, str]:
        """What connections and OAuth states keep (no secret)."""
        return {"instance_url": self.instance_url, "client_id": self.client_id}

    def extra(self) -> dict[str, str]:
        """What the adapter needs for one call (with the secret)."""
        return {**self.public(), "client_secret": self.client_secret}


def app_context(app_id: uuid.UUID) -> str:
    return f"platform_app:{app_id}:client_secret"


_COLUMNS = "id, instance_url, client_id, client_secret_enc"


class InstanceApps:
    """``platform_apps``: find, register once, and open apps."""

    def __init__(self, pool: asyncpg.Pool, box: SecretBox, *, timeout_s: float) -> None:
        self.pool = pool
        self.box = box
        self.timeout_s = timeout_s

    def _open(self, row: asyncpg.Record) -> InstanceApp:
        return InstanceApp(
            id=row["id"],
            instance_url=row["instance_url"],
            client_id=row["client_id"],
            client_secret=self.box.decrypt(
                row["client_secret_enc"], context=app_context(row["id"])
            ),
        )

    async def ensure(
        self, platform: Platform, instance_url: str, redirect_uri: str, *, now: datetime
    ) -> InstanceApp:
        """The app for ``platform`` on ``instance_url`` with ``redirect_uri``, registered on
        the instance the first time (once, whoever asks at the same moment). Platform errors
        of the registration propagate."""
        assert isinstance(platform, InstanceAppPlatform)
        find = (
            f"SELECT {_COLUMNS} FROM platform_apps "
            "WHERE platform = $1 AND instance_url = $2 AND redirect_uri = $3"
        )
        key = (platform.id, instance_url, redirect_uri)
        async with tenant_transaction(self.pool, None) as conn:
            row = await conn.fetchrow(find, *key)
        if row is not None:
            return self._open(row)
        async with tenant_transaction(self.pool, None) as conn:
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
                "platform_app:" + "\x1f".join(key),
            )
            row = await conn.fetchrow(find, *key)
            if row is not None:
                return self._open(row)  # registered while we waited for the lock
            async with asyncio.timeout(self.timeout_s + 5):
                registered = await platform.register_app(instance_url, redirect_uri)
            client_id = registered.get("client_id")
            client_secret = registered.get("client_secret")
            if not isinstance(client_id, str) or not isinstance(client_secret, str):
                raise ValueError("register_app answered no client_id and client_secret")
            app_id = uuid.uuid4()
            await conn.execute(
                "INSERT INTO platform_apps (id, platform, instance_url, redirect_uri, "
                "client_id, client_secret_enc, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                app_id,
                platform.id,
                instance_url,
                redirect_uri,
                client_id,
                self.box.encrypt(client_secret, context=app_context(app_id)),
                now,
            )
        return InstanceApp(app_id, instance_url, client_id, client_secret)

    async def find(self, platform: str, instance_url: str, client_id: str) -> InstanceApp | None:
        """The app a state or connection names (by its client id), opened."""
        async with tenant_transaction(self.pool, None) as conn:
            row = await conn.fetchrow(
                f"SELECT {_COLUMNS} FROM platform_apps "
                "WHERE platform = $1 AND instance_url = $2 AND client_id = $3",
                platform,
                instance_url,
                client_id,
            )
        return None if row is None else self._open(row)
