from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import re
import time

import pytest
from pressroom_kit.errors import Invalid
from pressroom_webhook.domain import matches, valid_event_types
from pressroom_webhook.providers import render
from pressroom_webhook.secrets import SecretBox, new_secret
from pressroom_webhook.settings import WebhookSettings
from pressroom_webhook.signing import InvalidSignature, headers, verify
from pressroom_webhook.ssrf import (
    GuardedResolver,
    UnsafeTarget,
    check_address,
    check_target,
    literal_address,
    validate_url,
)
from pydantic import ValidationError

pytestmark = pytest.mark.unit


def test_signature_checks_out_with_an_independent_implementation_of_the_spec():
    secret = new_secret()
    body = b'{"hello":"world"}'
    sent = headers([secret], "msg_1", 1_700_000_000, body)
    # The Standard Webhooks spec, written out here without our code: HMAC-SHA256 keyed with
    # the base64-decoded part after "whsec_", over "{id}.{timestamp}.{body}", base64, "v1,".
    key = base64.b64decode(secret.split("_", 1)[1])
    content = b"msg_1.1700000000." + body
    expected = base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()
    assert sent["webhook-signature"] == f"v1,{expected}"
    assert sent["webhook-id"] == "msg_1" and sent["webhook-timestamp"] == "1700000000"


def test_rotation_signs_with_both_secrets_and_either_verifies():
    old, new = new_secret(), new_secret()
    now = int(time.time())
    sent = headers([new, old], "msg_2", now, b"{}")
    assert len(sent["webhook-signature"].split()) == 2
    verify(old, sent, b"{}")
    verify(new, sent, b"{}")
    with pytest.raises(InvalidSignature):
        verify(new_secret(), sent, b"{}")
    with pytest.raises(InvalidSignature):
        verify(new, sent, b"{tampered}")


@pytest.mark.parametrize(
    ("patterns", "event_type", "expected"),
    [
        (["publishing.post.published.v1"], "publishing.post.published.v1", True),
        (["publishing.post.*"], "publishing.post.failed.v1", True),
        (["publishing.post.*"], "publishing.connection.expired.v1", False),
        (["*"], "media.asset.uploaded.v1", True),
        (["media.*", "approval.approved.v1"], "approval.approved.v1", True),
        (["approval.approved.v1"], "approval.approved.v2", False),
    ],
)
def test_event_type_matching(patterns, event_type, expected):
    assert matches(valid_event_types(patterns), event_type) is expected


def test_bad_patterns_are_refused():
    with pytest.raises(Invalid):
        valid_event_types([])
    with pytest.raises(Invalid):
        valid_event_types(["bad pattern"])


def test_slack_gets_a_message_and_zapier_a_flat_object():
    event = {
        "id": "e1",
        "type": "publishing.post.published.v1",
        "time": "2026-11-24T12:00:00Z",
        "subject": "post-1",
        "brandid": "b1",
        "data": {
            "platform": "instagram",
            "url": "https://instagr.am/p/1",
            "results": {"instagram": {"status": "published"}},
        },
    }
    body, content_type = render("slack", event)
    message = json.loads(body)
    assert message["text"] == "Post published to Instagram: https://instagr.am/p/1"
    assert message["blocks"][0]["type"] == "section"
    assert content_type == "application/json"
    flat = json.loads(render("zapier", event)[0])
    assert flat["event_type"] == "publishing.post.published.v1"
    assert flat["data__results__instagram__status"] == "published"
    generic, generic_type = render("generic", event)
    assert json.loads(generic) == event and generic_type == "application/cloudevents+json"


@pytest.mark.parametrize("address", ["127.0.0.1", "::1", "10.0.0.1", "192.168.1.5", "100.64.0.1"])
def test_private_and_loopback_need_the_allow_list(address):
    with pytest.raises(UnsafeTarget):
        check_address(ipaddress.ip_address(address), allow_private=False)
    check_address(ipaddress.ip_address(address), allow_private=True)


@pytest.mark.parametrize(
    "address",
    [
        "169.254.169.254",
        "fe80::1",
        "224.0.0.1",
        "0.0.0.0",
        "::ffff:169.254.169.254",
        "fd00:ec2::254",
    ],
)
def test_link_local_metadata_and_multicast_are_never_allowed(address):
    with pytest.raises(UnsafeTarget):
        check_address(ipaddress.ip_address(address), allow_private=True)


async def test_urls_are_refused_at_creation_without_the_allow_list():
    from webhook_testkit import StaticResolver

    resolver = GuardedResolver(
        allow_private=False,
        inner=StaticResolver({"evil.example": "10.0.0.1", "good.example": "93.184.216.34"}),
    )
    for url in (
        "http://127.0.0.1/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
        "http://2130706433/hook",
        "http://0x7f.1/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "https://evil.example/hook",
    ):
        with pytest.raises(Invalid, match="forbidden address"):
            await validate_url(url, resolver, require_https=False)
    assert await validate_url("https://good.example/hook", resolver, require_https=True)
    with pytest.raises(Invalid, match="https"):
        await validate_url("http://good.example/hook", resolver, require_https=True)
    with pytest.raises(Invalid):
        await validate_url("ftp://good.example/x", resolver, require_https=False)
    with pytest.raises(Invalid):
        await validate_url("https://user:pw@good.example/x", resolver, require_https=False)


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("0x7F000001", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("10.1.2", "10.1.0.2"),
        ("127.0.0.1.", "127.0.0.1"),
        ("1572395042", "93.184.216.34"),
        ("[::ffff:127.0.0.1]", "::ffff:7f00:1"),
        ("::", "::"),
        ("example.com", None),
        ("0x7f.example", None),
        ("a1.b2", None),
    ],
)
def test_literal_hosts_are_read_the_way_the_os_reads_them(host, address):
    expected = None if address is None else ipaddress.ip_address(address)
    assert literal_address(host) == expected


@pytest.mark.parametrize("host", ["08.0.0.1", "256.1.1.1", "1.2.3.4.5", "1.2.65536", "[zz::1]"])
def test_numeric_hosts_that_are_no_valid_address_are_refused(host):
    with pytest.raises(UnsafeTarget, match="not a valid"):
        literal_address(host)


@pytest.mark.parametrize(
    "address",
    ["64:ff9b::7f00:1", "64:ff9b::a00:1", "2002:7f00:1::", "2002:a9fe:a9fe::", "::127.0.0.1"],
)
def test_ipv6_forms_that_carry_a_private_ipv4_address_are_refused(address):
    with pytest.raises(UnsafeTarget):
        check_address(ipaddress.ip_address(address), allow_private=False)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://[::ffff:127.0.0.1]/",
        "http://0.0.0.0/",
        "http://[::]/",
        "http://2130706433/",
        "http://0x7f.1/",
        "http://１２７.０.０.１/",  # fullwidth digits: normalised to 127.0.0.1
        "http://[fe80::1%25eth0]/",
        "http://user:pw@hooks.example/",
        "ftp://hooks.example/",
        "http://hooks.example:99999/",
    ],
)
def test_stored_urls_are_checked_again_before_connecting(url):
    with pytest.raises(UnsafeTarget):
        check_target(url, allow_private=False, require_https=False)
    check_target("https://hooks.example/x", allow_private=False, require_https=True)
    check_target("http://93.184.216.34/x", allow_private=False, require_https=False)
    check_target("http://127.0.0.1:8080/x", allow_private=True, require_https=False)
    with pytest.raises(UnsafeTarget, match="https"):
        check_target("http://hooks.example/x", allow_private=False, require_https=True)


def test_private_targets_are_refused_unless_asked_for(monkeypatch):
    monkeypatch.delenv("PRESSROOM_WEBHOOK_ALLOW_PRIVATE_TARGETS", raising=False)
    assert WebhookSettings().allow_private_targets is False
    monkeypatch.setenv("PRESSROOM_WEBHOOK_ALLOW_PRIVATE_TARGETS", "true")
    assert WebhookSettings().allow_private_targets is True


def test_sealed_secrets_decrypt_only_in_their_context():
    key = base64.b64encode(b"k" * 32).decode()
    box = SecretBox({"k1": key}, "k1")
    sealed = box.encrypt("whsec_abc", context="endpoint-1")
    assert sealed.startswith("k1:") and "whsec_abc" not in sealed
    assert box.decrypt(sealed, context="endpoint-1") == "whsec_abc"
    with pytest.raises(ValueError):
        box.decrypt(sealed, context="endpoint-2")
    rotated = SecretBox({"k1": key, "k2": base64.b64encode(b"j" * 32).decode()}, "k2")
    assert rotated.decrypt(sealed, context="endpoint-1") == "whsec_abc"


def test_the_event_type_pattern_means_the_same_to_pydantic_and_to_python_re():
    """The document's pattern is what schemathesis generates from (Python's ``re``) and what
    pydantic enforces (a Rust engine): a class like ``\\s`` differs between the two."""
    from pressroom_webhook.api import EndpointCreate

    pattern = EndpointCreate.model_json_schema()["properties"]["event_types"]["items"]["pattern"]
    probes = [chr(c) for c in range(0x300)] + ["\u2028", "\u3000", "\ufeff", "\U0001f600"]
    for char in probes:
        event_type = f"a{char}b"
        by_re = re.fullmatch(pattern, event_type) is not None
        try:
            EndpointCreate.model_validate({"url": "https://a.example", "event_types": [event_type]})
            by_pydantic = True
        except ValidationError:
            by_pydantic = False
        assert by_re == by_pydantic, (hex(ord(char)), by_re, by_pydantic)


def test_the_documented_url_schema_takes_what_the_server_takes():
    """The document's `url` schema (a pattern, and once `format: uri` the server never
    enforced) and the server agree on each URL: `#>$` was taken yet refused by the format."""
    import jsonschema_rs
    from pressroom_webhook.api import EndpointCreate

    documented = EndpointCreate.model_json_schema()["properties"]["url"]
    validator = jsonschema_rs.validator_for(documented, validate_formats=True)
    for url in (
        "https://a.example/h?x=1#f",
        "https://a.example/#>$",
        "http://a.example:8080/a%20b|c",
        "https://a.example/a b",
        "ftp://a.example/",
        "https://10.0.0.1/",
    ):
        try:
            EndpointCreate.model_validate({"url": url, "event_types": ["*"]})
            server = True
        except ValidationError:
            server = False
        assert validator.is_valid(url) == server, (url, server)
