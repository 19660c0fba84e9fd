"""Review tokens, form nonces and the page helpers, without I/O."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from pressroom_approval.review import pages, tokens
from pressroom_approval.review.links import ReviewLink
from pressroom_approval.review.media import _usable, origin

pytestmark = pytest.mark.unit

KEY = "unit-test-review-link-key"
CLAIMS = tokens.LinkClaims(uuid.uuid4(), uuid.uuid4(), datetime(2030, 5, 1, 12, 0, tzinfo=UTC))


def test_a_token_round_trips_and_is_url_safe() -> None:
    token = tokens.sign_link(KEY, CLAIMS)
    assert len(token) == tokens.TOKEN_LENGTH
    assert all(c.isalnum() or c in "-_" for c in token)
    assert tokens.read_link(KEY, token) == CLAIMS


def test_every_altered_character_is_refused() -> None:
    token = tokens.sign_link(KEY, CLAIMS)
    for index in range(len(token)):
        replacement = "A" if token[index] != "A" else "B"
        altered = token[:index] + replacement + token[index + 1 :]
        with pytest.raises(tokens.BadToken):
            tokens.read_link(KEY, altered)


@pytest.mark.parametrize(
    "token",
    ["", "x", "not a token", "é" * tokens.TOKEN_LENGTH, "=" * tokens.TOKEN_LENGTH, "\x00" * 76],
)
def test_garbage_is_refused(token: str) -> None:
    with pytest.raises(tokens.BadToken):
        tokens.read_link(KEY, token)


def test_another_key_or_a_changed_claim_is_refused() -> None:
    token = tokens.sign_link(KEY, CLAIMS)
    with pytest.raises(tokens.BadToken):
        tokens.read_link("another-key", token)
    # Re-sign the body of another brand with a wrong tag: the brand cannot be swapped.
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    other_brand = raw[:17] + uuid.uuid4().bytes + raw[33:]
    forged = base64.urlsafe_b64encode(other_brand).rstrip(b"=").decode()
    with pytest.raises(tokens.BadToken):
        tokens.read_link(KEY, forged)


def test_a_token_of_another_purpose_is_refused() -> None:
    """An HMAC over the same bytes without the review purpose (say an unsubscribe token
    signed with the same key) is no review token."""
    import hashlib
    import hmac

    token = tokens.sign_link(KEY, CLAIMS)
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    body = raw[:41]
    other = body + hmac.new(KEY.encode(), body, hashlib.sha256).digest()
    with pytest.raises(tokens.BadToken):
        tokens.read_link(KEY, base64.urlsafe_b64encode(other).rstrip(b"=").decode())


def test_the_form_nonce_binds_link_and_submission() -> None:
    nonce = tokens.form_nonce(KEY, CLAIMS.link_id, "3")
    assert tokens.nonce_matches(KEY, CLAIMS.link_id, "3", nonce)
    assert not tokens.nonce_matches(KEY, CLAIMS.link_id, "4", nonce)
    assert not tokens.nonce_matches(KEY, uuid.uuid4(), "3", nonce)
    assert not tokens.nonce_matches(KEY, CLAIMS.link_id, "3", "")
    assert not tokens.nonce_matches(KEY, CLAIMS.link_id, "3", "\ud800é")


def test_link_status_says_what_happened_first() -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    link = ReviewLink(
        id=uuid.uuid4(),
        brand_id=uuid.uuid4(),
        approval_id=uuid.uuid4(),
        name="Ana",
        email=None,
        created_by="u",
        created_at=now,
        expires_at=now + timedelta(hours=1),
        revoked_at=None,
        revoked_by=None,
        used_at=None,
        used_decision=None,
    )
    assert link.status(now) == "active"
    assert link.status(now + timedelta(hours=1)) == "expired"
    used = ReviewLink(**{**link.__dict__, "used_at": now, "used_decision": "approve"})
    assert used.status(now + timedelta(days=3)) == "used"
    revoked = ReviewLink(**{**used.__dict__, "revoked_at": now})
    assert revoked.status(now) == "revoked"


def test_times_are_shown_on_the_brand_wall_clock() -> None:
    moment = datetime(2026, 12, 7, 8, 30, tzinfo=UTC)
    assert pages.local_time(moment, pages.zone("Europe/Paris")) == (
        "Monday 7 December 2026, 09:30 CET (Europe/Paris)"
    )
    assert pages.local_time(moment, pages.zone("America/New_York")).startswith(
        "Monday 7 December 2026, 03:30 EST"
    )
    assert pages.zone("Not/AZone").key == "UTC"
    assert pages.zone(None).key == "UTC"
    assert pages.zone("../../etc/passwd").key == "UTC"


def test_the_page_headers_allow_no_script() -> None:
    headers = pages.headers(["https://cdn.example", "https://cdn.example"])
    csp = headers["Content-Security-Policy"]
    assert csp.startswith("default-src 'none'; img-src https://cdn.example data:;")
    assert "script-src" not in csp
    assert "form-action 'self'" in csp
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["Cache-Control"] == "no-store"


def test_templates_escape_what_people_wrote() -> None:
    html = pages.render("message.html", {"title": "<b>x</b>", "message": "<script>1</script>"})
    body = html.content
    assert "<script>1</script>" not in body
    assert "&lt;script&gt;1&lt;/script&gt;" in body


@pytest.mark.parametrize(
    ("url", "usable"),
    [
        ("https://gw.example/media-files/abc?sig=1", True),
        ("http://127.0.0.1:8000/x.png", True),
        ("javascript:alert(1)", False),
        ("/relative.png", False),
        ("data:image/png;base64,AAAA", False),
        (None, False),
        (42, False),
    ],
)
def test_only_absolute_http_thumbnails_reach_the_page(url: object, usable: bool) -> None:
    assert (_usable(url) is not None) is usable


def test_origin_of_a_url() -> None:
    assert origin("https://gw.example:8443/media-files/a?b=c") == "https://gw.example:8443"


async def test_without_a_shared_secret_every_thumbnail_is_a_placeholder() -> None:
    import aiohttp
    from pressroom_approval.review.media import MediaThumbnails

    async with aiohttp.ClientSession() as session:
        media = MediaThumbnails(session, "http://127.0.0.1:9", None)
        ids = [uuid.uuid4(), uuid.uuid4()]
        found = await media.lookup(uuid.uuid4(), [*ids, ids[0]])
    assert set(found) == set(ids)
    assert all(t.url is None and t.label == "preview unavailable" for t in found.values())
    assert await media.lookup(uuid.uuid4(), []) == {}
