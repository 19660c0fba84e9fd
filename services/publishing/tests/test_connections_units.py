"""The signed OAuth state and the connection aggregate's decisions (no I/O)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from pressroom_kit.errors import Invalid, NotFound
from pressroom_publishing.connections.app_password import (
    check_app_password,
    check_identifier,
)
from pressroom_publishing.connections.domain import Connection
from pressroom_publishing.connections.instances import BadServerUrl, normalize_server_url
from pressroom_publishing.connections.oauth import public_extra
from pressroom_publishing.connections.state import (
    BadState,
    StateClaims,
    new_verifier,
    read_state,
    sign_state,
)

pytestmark = pytest.mark.unit

KEY = "state-key"
NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def claims(user: str = "auth0|user.with.dots") -> StateClaims:
    return StateClaims(uuid.uuid4(), uuid.uuid4(), "sandbox", user, NOW + timedelta(minutes=10))


def test_state_round_trips_and_is_url_safe():
    original = claims()
    state = sign_state(KEY, original)
    assert all(c.isalnum() or c in "-_." for c in state)
    assert len(state) < 200
    read = read_state(KEY, state, now=NOW)
    assert read == original


@pytest.mark.parametrize(
    "tamper",
    [
        lambda s: s[:-1] + ("A" if s[-1] != "A" else "B"),  # the signature
        lambda s: s.replace("sandbox", "mastodon"),  # a signed part
        lambda s: s.rpartition(".")[2],  # no payload
        lambda s: "",
        lambda s: "a.b.c",
    ],
)
def test_a_tampered_state_is_refused(tamper):
    state = sign_state(KEY, claims())
    with pytest.raises(BadState) as refused:
        read_state(KEY, tamper(state), now=NOW)
    assert refused.value.status == 400


def test_another_key_and_expiry_are_refused():
    state = sign_state(KEY, claims())
    with pytest.raises(BadState):
        read_state("other-key", state, now=NOW)
    with pytest.raises(BadState) as late:
        read_state(KEY, state, now=NOW + timedelta(minutes=10))
    assert late.value.code == "state_expired"


def test_pkce_verifier_has_the_rfc_length():
    verifier = new_verifier()
    assert 43 <= len(verifier) <= 128
    assert verifier != new_verifier()


def connected() -> Connection:
    return Connection.connect(
        uuid.uuid4(),
        existing=None,
        brand_id=uuid.uuid4(),
        platform="sandbox",
        account_id="a",
        account_name=None,
        scopes=[],
        extra={},
        expires_at=NOW,
        connected_by="u",
        at=NOW,
    )


def test_expiring_is_noticed_once_per_expiry_and_again_after_a_new_token():
    connection = connected()
    assert connection.notice_expiring(usable_until=NOW, first_affected_post_at=None, affected=1)
    assert not connection.notice_expiring(usable_until=NOW, first_affected_post_at=None, affected=2)
    connection.refreshed(expires_at=NOW + timedelta(hours=1), scopes=[], at=NOW)
    assert connection.notice_expiring(
        usable_until=NOW + timedelta(hours=1), first_affected_post_at=None, affected=1
    )


def test_refresh_failures_are_noted_once_and_a_dead_connection_stays_dead():
    connection = connected()
    connection.refresh_failed("down", at=NOW)
    connection.refresh_failed("down", at=NOW)
    assert [type(e).__name__ for e in connection.pending].count("RefreshFailed") == 1
    connection.expire("dead", at=NOW)
    connection.expire("dead again", at=NOW)
    connection.refresh_failed("down later", at=NOW)
    assert connection.status == "expired"
    assert [type(e).__name__ for e in connection.pending][-1] == "Expired"
    connection.revoke("gone", by=None, at=NOW)
    assert connection.status == "revoked"


def test_reconnect_keeps_the_id_and_says_so():
    connection = connected()
    connection.mark_saved()
    again = Connection.connect(
        uuid.uuid4(),
        existing=connection,
        brand_id=connection.brand_id or uuid.uuid4(),
        platform="sandbox",
        account_id="a",
        account_name=None,
        scopes=[],
        extra={},
        expires_at=None,
        connected_by="u",
        at=NOW,
    )
    assert again.id == connection.id
    assert again.pending[-1].reconnected  # type: ignore[attr-defined]
    again.disconnect(by="u")
    with pytest.raises(NotFound):
        again.verified(account_name=None, at=NOW)


def test_server_urls_are_normalised_or_refused():
    def norm(url: str, insecure: bool = False) -> str:
        return normalize_server_url(url, field="instance_url", allow_insecure=insecure)

    assert norm("mastodon.social") == "https://mastodon.social"
    assert norm("  HTTPS://Mastodon.Social./@Gargron  ") == "https://mastodon.social"
    assert norm("https://social.example:443/") == "https://social.example"
    assert norm("https://social.example:8443") == "https://social.example:8443"
    assert norm("https://bücher.example") == "https://xn--bcher-kva.example"
    assert norm("http://127.0.0.1:3000", insecure=True) == "http://127.0.0.1:3000"
    assert norm("http://[::1]:80", insecure=True) == "http://[::1]"
    assert norm("https://8.8.8.8") == "https://8.8.8.8"
    for bad in (
        "http://social.example",
        "https://localhost",
        "https://app.localhost",
        "https://10.0.0.5",
        "https://169.254.169.254",
        "https://[fd00::1]",
        "https://a@social.example",
        "https://social.example#x",
        "https://social.example?",
        "wss://social.example",
        "https://social..example",
        "https://" + "a" * 64 + ".example",
        "https://soc\nial.example",
        "https://social.example:0x1",
    ):
        with pytest.raises(BadServerUrl):
            norm(bad)


def test_only_app_passwords_and_real_identifiers_pass():
    assert check_app_password(" abcd-2345-efgh-6789 ") == "abcd-2345-efgh-6789"
    for bad in ("hunter2", "ABCD-2345-EFGH-6789", "abcd-2345-efgh", "abcd_2345_efgh_6789"):
        with pytest.raises(Invalid, match="App passwords"):
            check_app_password(bad)
    assert check_identifier("@alice.bsky.social") == "alice.bsky.social"
    assert (
        check_identifier("did:plc:z72i7hdynmk6r22z27h6tvur") == "did:plc:z72i7hdynmk6r22z27h6tvur"
    )
    assert check_identifier("alice@example.com") == "alice@example.com"
    for bad in ("alice", "two words.example", "", "@"):
        with pytest.raises(Invalid):
            check_identifier(bad)


def test_public_extra_drops_secrets():
    assert public_extra(
        {"instance_url": "https://a.example", "client_id": "c", "client_secret": "s"},
        {"handle": "h", "refreshJwt": "r", "access_token": "t"},
    ) == {"instance_url": "https://a.example", "client_id": "c", "handle": "h"}


def test_error_status_is_entered_from_connected_and_left_by_a_verify():
    connection = connected()
    connection.errored("the platform refused: login disabled", at=NOW)
    assert connection.status == "error" and connection.last_error is not None
    connection.refreshed(expires_at=NOW + timedelta(hours=2), scopes=[], at=NOW)
    assert connection.status == "error" and connection.last_error is not None
    connection.verified(account_name=None, at=NOW)
    assert connection.status == "connected" and connection.last_error is None
    connection.errored("again", at=NOW)
    connection.expire("dead", at=NOW)
    assert connection.status == "expired"
    connection.errored("too late", at=NOW)
    connection.verified(account_name=None, at=NOW)
    assert connection.status == "expired"  # only a reconnect revives a dead one
