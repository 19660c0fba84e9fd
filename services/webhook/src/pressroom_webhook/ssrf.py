"""Refusing webhook targets on private, loopback, link-local, multicast or metadata addresses.

Checked when an endpoint is created or changed, and again before every delivery: the stored
URL is validated again (``check_target``), a literal host in any form the OS accepts
(``127.1``, ``2130706433``, ``0x7f.1``, ``[::ffff:127.0.0.1]``) is checked before connecting,
because aiohttp connects to what looks like an IP address without asking the resolver, and a
name is checked by the HTTP client's resolver, so one that later resolves somewhere else (DNS
rebinding) is still refused. Loopback and private ranges may be allowed (local development);
link-local and cloud metadata addresses never are.
"""

from __future__ import annotations

import ipaddress
import re
import socket

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver
from pressroom_kit.errors import Invalid
from yarl import URL

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
METADATA = {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
# IPv6 prefixes that carry an IPv4 address in their last 32 bits (NAT64, IPv4-compatible).
EMBEDS_IPV4_LAST = [ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48")]
COMPATIBLE = ipaddress.ip_network("::/96")
# One part of an IPv4 address as inet_aton(3) reads it: hexadecimal, octal or decimal.
_INET_PART = re.compile(r"0[xX][0-9a-fA-F]*|0[0-7]*|[1-9][0-9]*")


class UnsafeTarget(OSError):
    """The target resolves to an address webhooks must not reach."""


def check_address(address: IPAddress, *, allow_private: bool) -> None:
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        else:
            embedded = _embedded_ipv4(address)
            if embedded is not None:
                check_address(embedded, allow_private=allow_private)
    if address in METADATA or address.is_link_local:
        raise UnsafeTarget(f"{address} is a link-local or metadata address")
    if address.is_multicast or address.is_unspecified:
        raise UnsafeTarget(f"{address} is not a unicast address")
    if address.is_loopback or address.is_private or address.is_reserved or not address.is_global:
        if not allow_private:
            raise UnsafeTarget(f"{address} is a private or loopback address")
        if address.is_reserved and not address.is_loopback:
            raise UnsafeTarget(f"{address} is a reserved address")


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address that 6to4, Teredo, NAT64 or IPv4-compatible forms route to."""
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if any(address in net for net in EMBEDS_IPV4_LAST) or (
        address in COMPATIBLE and int(address) > 1
    ):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def literal_address(host: str) -> IPAddress | None:
    """The address a literal host names, in any form the OS would connect to, or ``None`` for
    a name. A host that looks numeric but is no valid address is ``UnsafeTarget``: what the
    OS makes of it is not ours to guess."""
    bare = host.strip("[]")
    if ":" in bare:
        try:
            return ipaddress.IPv6Address(bare)
        except ValueError:
            raise UnsafeTarget(f"{host} is not a valid IPv6 address") from None
    bare = bare.removesuffix(".")
    parts = bare.split(".")
    if not all(_INET_PART.fullmatch(part) for part in parts):
        if bare.replace(".", "").isdigit():
            raise UnsafeTarget(f"{host} is not a valid IPv4 address")
        return None
    numbers = [_inet_part(part) for part in parts]
    if len(numbers) > 4 or any(n > 255 for n in numbers[:-1]):
        raise UnsafeTarget(f"{host} is not a valid IPv4 address")
    if numbers[-1] >= 256 ** (5 - len(numbers)):
        raise UnsafeTarget(f"{host} is not a valid IPv4 address")
    value = 0
    for n in numbers[:-1]:
        value = value << 8 | n
    value = value << 8 * (5 - len(numbers)) | numbers[-1]
    return ipaddress.IPv4Address(value)


def _inet_part(part: str) -> int:
    if part[:2].lower() == "0x":
        return int(part[2:] or "0", 16)
    return int(part, 8) if part.startswith("0") else int(part)


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
        literal = literal_address(host)
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


def url_problem(url: str, *, require_https: bool) -> tuple[str, str] | None:
    """What makes ``url`` unusable as a webhook target, as ``(code, message)``, or ``None``."""
    try:
        parts = URL(url)
        host = parts.host
    except ValueError:
        return "bad_url", "the URL must be an absolute http(s) URL"
    if parts.scheme not in ("http", "https") or not host:
        return "bad_url", "the URL must be an absolute http(s) URL"
    if require_https and parts.scheme != "https":
        return "https_required", "webhook URLs must use https"
    if parts.user or parts.password:
        return "bad_url", "credentials in the URL are not allowed; use the signing secret"
    return None


def check_target(url: str, *, allow_private: bool, require_https: bool) -> None:
    """Everything about a stored URL that can be checked before connecting: its form and, for
    a literal host, the address. ``UnsafeTarget`` names what is wrong. A name is checked by
    ``GuardedResolver`` when the HTTP client resolves it."""
    problem = url_problem(url, require_https=require_https)
    if problem is not None:
        raise UnsafeTarget(problem[1])
    address = literal_address(URL(url).host or "")
    if address is not None:
        check_address(address, allow_private=allow_private)


async def validate_url(url: str, resolver: GuardedResolver, *, require_https: bool) -> str:
    """A clean endpoint URL, or ``Invalid`` (422) naming what is wrong."""
    problem = url_problem(url, require_https=require_https)
    if problem is not None:
        code, message = problem
        raise Invalid(message, code=code, errors=[{"field": "url", "message": message}])
    parts = URL(url)
    try:
        await resolver.resolve(parts.host or "", parts.port or 443)
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
