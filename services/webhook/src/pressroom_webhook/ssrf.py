"""Refusing webhook targets on private, loopback, link-local, multicast or metadata addresses.

Checked when an endpoint is created or changed, and again for every delivery by the HTTP
client's resolver, so a name that later resolves somewhere else (DNS rebinding) is still
refused. Loopback and private ranges may be allowed (local development); link-local and
cloud metadata addresses never are.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver
from pressroom_kit.errors import Invalid

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
METADATA = {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}


class UnsafeTarget(OSError):
    """The target resolves to an address webhooks must not reach."""


def check_address(address: IPAddress, *, allow_private: bool) -> None:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address in METADATA or address.is_link_local:
        raise UnsafeTarget(f"{address} is a link-local or metadata address")
    if address.is_multicast or address.is_unspecified:
        raise UnsafeTarget(f"{address} is not a unicast address")
    if address.is_loopback or address.is_private or not address.is_global:
        if not allow_private:
            raise UnsafeTarget(f"{address} is a private or loopback address")
        if address.is_reserved and not address.is_loopback:
            raise UnsafeTarget(f"{address} is a reserved address")


class GuardedResolver(AbstractResolver):
    """Resolves with ``inner`` and refuses the whole answer if any address is unsafe."""

    def __init__(self, *, allow_private: bool, inner: AbstractResolver | None = None) -> None:
        self.allow_private = allow_private
        self._inner = inner

    @property
    def inner(self) -> AbstractResolver:
        if self._inner is None:  # made on first use: it needs the running loop
            self._inner = ThreadedResolver()
        return self._inner

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        try:
            literal = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            literal = None
        if literal is not None:
            check_address(literal, allow_private=self.allow_private)
            return [_result(host, str(literal), port)]
        results = await self.inner.resolve(host, port, family)
        for result in results:
            check_address(ipaddress.ip_address(result["host"]), allow_private=self.allow_private)
        return results

    async def close(self) -> None:
        if self._inner is not None:
            await self._inner.close()


def _result(hostname: str, address: str, port: int) -> ResolveResult:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    return {
        "hostname": hostname,
        "host": address,
        "port": port,
        "family": family,
        "proto": 0,
        "flags": socket.AI_NUMERICHOST,
    }


async def validate_url(url: str, resolver: GuardedResolver, *, require_https: bool) -> str:
    """A clean endpoint URL, or ``Invalid`` (422) naming what is wrong."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Invalid(
            "the URL must be an absolute http(s) URL",
            code="bad_url",
            errors=[{"field": "url", "message": "absolute http(s) URL"}],
        )
    if require_https and parts.scheme != "https":
        raise Invalid(
            "webhook URLs must use https",
            code="https_required",
            errors=[{"field": "url", "message": "https required"}],
        )
    if parts.username or parts.password:
        raise Invalid(
            "credentials in the URL are not allowed; use the signing secret",
            code="bad_url",
            errors=[{"field": "url", "message": "no credentials"}],
        )
    try:
        await resolver.resolve(parts.hostname, parts.port or 443)
    except UnsafeTarget as exc:
        raise Invalid(
            f"the URL points at a forbidden address: {exc}",
            code="unsafe_target",
            errors=[{"field": "url", "message": str(exc)}],
        ) from exc
    except OSError as exc:
        raise Invalid(
            f"the URL's host does not resolve: {exc}",
            code="unresolvable",
            errors=[{"field": "url", "message": "host does not resolve"}],
        ) from exc
    return url
