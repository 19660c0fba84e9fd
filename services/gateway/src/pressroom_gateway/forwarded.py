"""Who the client is, and the ``X-Forwarded-*`` headers the gateway sends on.

A client can write any ``X-Forwarded-For`` it likes, so those headers count only when the
TCP peer is one of ``PRESSROOM_GATEWAY_TRUSTED_PROXIES`` (a load balancer in front of the
gateway). Then the client is the first address from the right of ``X-Forwarded-For`` that
is not a trusted proxy; otherwise it is the peer and the client's forwarding headers are
replaced by the gateway's own.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from litestar.types import Scope

# Headers that say where a request came from; only a trusted proxy may set them.
FORWARDING_HEADERS = frozenset(
    {"x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "forwarded", "x-real-ip"}
)
_HOST = re.compile(r"^[A-Za-z0-9.\-_~%:\[\]]{1,255}$")
_V4_WITH_PORT = re.compile(r"^(\d{1,3}(?:\.\d{1,3}){3}):\d{1,5}$")
_V6_IN_BRACKETS = re.compile(r"^\[([0-9A-Fa-f:.]+)\](?::\d{1,5})?$")


@dataclass(frozen=True)
class Forwarded:
    client_ip: str  # the address rate limits key on
    forwarded_for: str | None  # X-Forwarded-For to send on: the trusted chain plus the peer
    proto: str
    host: str | None
    peer_trusted: bool


class TrustedProxies:
    """The networks whose ``X-Forwarded-*`` headers are believed (none by default)."""

    def __init__(self, cidrs: Iterable[str] = ()) -> None:
        self.networks = [ipaddress.ip_network(cidr.strip(), strict=False) for cidr in cidrs]
        # The same few proxies and clients come back request after request.
        self._cached_trusts = functools.lru_cache(maxsize=4096)(self._trusts)

    def _trusts(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.networks)

    def trusts(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        return self._cached_trusts(address)

    def resolve(self, scope: Scope) -> Forwarded:
        client = scope.get("client")
        peer = client[0] if client else None
        scheme = str(scope.get("scheme", "http"))
        peer_address = parse_address(peer) if peer and self.networks else None
        if peer_address is None or not self.trusts(peer_address):
            host = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"host"), None)
            return Forwarded(peer or "unknown", peer, scheme, host, peer_trusted=False)
        headers = _values(scope["headers"])
        host = _last(headers.get("host"))
        hops = [
            hop.strip() for value in headers.get("x-forwarded-for", []) for hop in value.split(",")
        ]
        hops = [hop for hop in hops if hop]
        client_ip = str(peer_address)
        for hop in reversed(hops):
            address = parse_address(hop)
            if address is None:
                break  # nothing left of an unreadable hop can be believed
            client_ip = str(address)
            if not self.trusts(address):
                break
        proto = (_first(headers.get("x-forwarded-proto")) or "").lower()
        forwarded_host = _first(headers.get("x-forwarded-host"))
        return Forwarded(
            client_ip=client_ip,
            forwarded_for=", ".join([*hops, peer or ""]),
            proto=proto if proto in ("http", "https") else scheme,
            host=forwarded_host if forwarded_host and _HOST.match(forwarded_host) else host,
            peer_trusted=True,
        )


@functools.lru_cache(maxsize=4096)
def parse_address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An address from an ``X-Forwarded-For`` hop (``1.2.3.4``, ``1.2.3.4:80``, ``::1``,
    ``[::1]:80``); ``None`` for anything else (``unknown``, names, garbage)."""
    text = text.strip()
    for pattern in (_V4_WITH_PORT, _V6_IN_BRACKETS):
        match = pattern.match(text)
        if match:
            text = match.group(1)
            break
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def validate_cidrs(cidrs: Sequence[str]) -> list[str]:
    """``cidrs`` when each is a network (``10.0.0.0/8``, ``::1``); ``ValueError`` otherwise."""
    TrustedProxies(cidrs)
    return list(cidrs)


def _values(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, list[str]]:
    wanted = {b"host", b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host"}
    found: dict[str, list[str]] = {}
    for name, value in raw:
        if name in wanted:
            found.setdefault(name.decode(), []).append(value.decode("latin-1"))
    return found


def _first(values: list[str] | None) -> str | None:
    if not values:
        return None
    return values[0].split(",")[0].strip() or None


def _last(values: list[str] | None) -> str | None:
    return values[-1].strip() if values else None
