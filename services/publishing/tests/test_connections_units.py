"""The signed OAuth state and the connection aggregate's decisions (no I/O)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from pressroom_kit.errors import NotFound
from pressroom_publishing.connections.domain import Connection
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
