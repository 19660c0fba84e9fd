"""Client addresses behind trusted proxies, forwarded headers, and anonymous rate limits
(including signed file URLs), through the real gateway to a real echo backend."""

from __future__ import annotations

import time
from typing import Any

import pydantic
import pytest
from gateway_testkit import call, gateway_settings, running_gateway
from pressroom_gateway.forwarded import TrustedProxies
from pressroom_gateway.settings import GatewaySettings

SIGNATURE = "A" * 21 + "-_" + "b" * 20  # 43 base64url characters, as the media service signs


def _scope(peer: str, *headers: tuple[str, str], scheme: str = "http") -> dict[str, Any]:
    return {
        "type": "http",
        "client": (peer, 40000),
        "scheme": scheme,
        "headers": [(k.encode(), v.encode()) for k, v in [("host", "gw.local"), *headers]],
    }


RESOLVED = {
    "nobody trusted: the peer, whatever it claims": ((), "10.0.0.5", ["6.6.6.6"], "10.0.0.5"),
    "a trusted proxy: the client it names": (
        ("10.0.0.0/8",),
        "10.0.0.5",
        ["203.0.113.7"],
        "203.0.113.7",
    ),
    "a spoofed left part is skipped": (
        ("10.0.0.0/8",),
        "10.0.0.5",
        ["1.1.1.1, 203.0.113.7, 10.0.0.9"],
        "203.0.113.7",
    ),
    "several header lines read as one list": (
        ("10.0.0.0/8",),
        "10.0.0.5",
        ["1.1.1.1", "203.0.113.8"],
        "203.0.113.8",
    ),
    "an untrusted peer's header is ignored": (
        ("10.0.0.0/8",),
        "198.51.100.1",
        ["203.0.113.7"],
        "198.51.100.1",
    ),
    "ports and brackets": (("10.0.0.0/8",), "10.0.0.5", ["[2001:db8::1]:4711"], "2001:db8::1"),
    "v4 with a port": (("10.0.0.0/8",), "10.0.0.5", ["203.0.113.9:5555"], "203.0.113.9"),
    "garbage stops the walk": (("10.0.0.0/8",), "10.0.0.5", ["203.0.113.7, evil"], "10.0.0.5"),
    "all trusted: the leftmost": (("10.0.0.0/8",), "10.0.0.5", ["10.1.1.1, 10.2.2.2"], "10.1.1.1"),
    "a v4-mapped v6 peer": (("10.0.0.0/8",), "::ffff:10.0.0.5", ["203.0.113.7"], "203.0.113.7"),
    "no header from a trusted proxy": (("10.0.0.0/8",), "10.0.0.5", [], "10.0.0.5"),
}


@pytest.mark.unit
@pytest.mark.parametrize("case", list(RESOLVED))
def test_the_client_is_the_first_untrusted_hop_from_the_right(case):
    trusted, peer, chain, client = RESOLVED[case]
    scope = _scope(peer, *(("x-forwarded-for", hop) for hop in chain))
    assert TrustedProxies(trusted).resolve(scope).client_ip == client


@pytest.mark.unit
def test_a_trusted_proxys_proto_and_host_are_kept_only_when_sane():
    trusted = TrustedProxies(["10.0.0.0/8"])
    good = trusted.resolve(
        _scope("10.0.0.5", ("x-forwarded-proto", "HTTPS"), ("x-forwarded-host", "api.example"))
    )
    assert (good.proto, good.host) == ("https", "api.example")
    odd = trusted.resolve(
        _scope("10.0.0.5", ("x-forwarded-proto", "gopher"), ("x-forwarded-host", "a b\x01"))
    )
    assert (odd.proto, odd.host) == ("http", "gw.local")


@pytest.mark.unit
def test_trusted_proxies_must_be_networks():
    assert GatewaySettings(trusted_proxies=["10.0.0.0/8", "::1"]).trusted_proxies
    with pytest.raises(pydantic.ValidationError):
        GatewaySettings(trusted_proxies=["10.0.0.0/33"])
    with pytest.raises(pydantic.ValidationError):
        GatewaySettings(trusted_proxies=["load-balancer"])


SPOOFED = {
    "X-Forwarded-For": "6.6.6.6",
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Host": "evil.example",
    "Forwarded": "for=6.6.6.6;proto=https",
    "X-Real-IP": "6.6.6.6",
}


@pytest.mark.integration
async def test_a_clients_own_forwarding_headers_never_reach_the_service(gateway, http):
    status, _, body = await call(http, "GET", f"{gateway}/media-files/x.jpg", headers=SPOOFED)
    assert status == 200
    sent = {k.lower(): v for k, v in body["headers"].items()}
    assert sent["x-forwarded-for"] == "127.0.0.1"
    assert sent["x-forwarded-proto"] == "http"
    assert sent["x-forwarded-host"] == gateway.removeprefix("http://")
    assert "forwarded" not in sent and "x-real-ip" not in sent


@pytest.mark.integration
async def test_a_trusted_proxys_forwarding_headers_are_kept_and_extended(
    fresh_db, kafka_bootstrap, backend, http
):
    settings = gateway_settings(
        fresh_db, kafka_bootstrap, {"/media-files": backend}, trusted_proxies=["127.0.0.1/32"]
    )
    async with running_gateway(settings) as base:
        status, _, body = await call(
            http,
            "GET",
            f"{base}/media-files/x.jpg",
            headers={
                "X-Forwarded-For": "203.0.113.7",
                "X-Forwarded-Proto": "https",
                "X-Forwarded-Host": "api.pressroom.example",
            },
        )
    assert status == 200
    sent = {k.lower(): v for k, v in body["headers"].items()}
    assert sent["x-forwarded-for"] == "203.0.113.7, 127.0.0.1"
    assert sent["x-forwarded-proto"] == "https"
    assert sent["x-forwarded-host"] == "api.pressroom.example"


async def _statuses(http, base: str, path: str, count: int, **headers: str) -> list[int]:
    return [(await call(http, "GET", f"{base}{path}", headers=headers))[0] for _ in range(count)]


@pytest.mark.integration
async def test_behind_a_trusted_proxy_anonymous_clients_get_their_own_buckets(
    fresh_db, kafka_bootstrap, backend, http
):
    settings = gateway_settings(
        fresh_db,
        kafka_bootstrap,
        {"/media-files": backend},
        trusted_proxies=["127.0.0.0/8"],
        rate_limit_anonymous=3,
    )
    async with running_gateway(settings) as base:
        one = {"X-Forwarded-For": "203.0.113.1"}
        assert await _statuses(http, base, "/media-files/x", 4, **one) == [200, 200, 200, 429]
        other = {"X-Forwarded-For": "203.0.113.2"}
        assert await _statuses(http, base, "/media-files/x", 1, **other) == [200]
        spoofed = {"X-Forwarded-For": "203.0.113.99, 203.0.113.1"}  # the proxy saw .1
        assert await _statuses(http, base, "/media-files/x", 1, **spoofed) == [429]


@pytest.mark.integration
async def test_without_trusted_proxies_a_forged_header_buys_no_new_bucket(
    fresh_db, kafka_bootstrap, backend, http
):
    settings = gateway_settings(
        fresh_db, kafka_bootstrap, {"/media-files": backend}, rate_limit_anonymous=2
    )
    async with running_gateway(settings) as base:
        statuses = [
            (await call(http, "GET", f"{base}/media-files/x", headers={"X-Forwarded-For": ip}))[0]
            for ip in ("198.51.100.1", "198.51.100.2", "198.51.100.3")
        ]
        assert statuses == [200, 200, 429]


@pytest.mark.integration
async def test_signed_file_fetches_key_on_client_and_file_not_the_anonymous_bucket(
    fresh_db, kafka_bootstrap, backend, http
):
    settings = gateway_settings(
        fresh_db,
        kafka_bootstrap,
        {"/media-files": backend},
        rate_limit_anonymous=2,
        rate_limit_signed_file=3,
        rate_limit_signed_client=6,
    )
    expires = int(time.time()) + 3600
    signed = f"?expires={expires}&signature={SIGNATURE}"
    async with running_gateway(settings) as base:
        # One file: three fetches, then that file is throttled for this client ...
        assert await _statuses(http, base, f"/media-files/a.jpg{signed}", 4) == [
            200,
            200,
            200,
            429,
        ]
        # ... other files are not, up to the client's cap across files (6 fetches, counting
        # the refused one).
        assert await _statuses(http, base, f"/media-files/b.jpg{signed}", 2) == [200, 200]
        assert await _statuses(http, base, f"/media-files/c.jpg{signed}", 1) == [429]
        # None of it touched the anonymous bucket.
        assert await _statuses(http, base, "/media-files/plain.jpg", 3) == [200, 200, 429]
        # An expired or malformed link is just an anonymous request (and that bucket is empty).
        expired = f"?expires={int(time.time()) - 10}&signature={SIGNATURE}"
        malformed = f"?expires={expires}&signature=short"
        twice = f"{signed}&signature={SIGNATURE}"
        for query in (expired, malformed, twice):
            assert await _statuses(http, base, f"/media-files/d.jpg{query}", 1) == [429]
