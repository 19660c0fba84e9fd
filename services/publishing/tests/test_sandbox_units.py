"""The sandbox adapter's error classification and capabilities, and the sandbox state's
rules, without I/O."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta

import pytest
from pressroom_publishing.platforms import adapter_class
from pressroom_publishing.platforms.base import (
    AuthExpiredError,
    PlatformHTTP,
    PostContent,
    RejectedError,
    Response,
    RevokedError,
    TextCount,
    TransientError,
    count_text,
)
from pressroom_publishing.platforms.sandbox import SandboxPlatform, pkce_challenge
from pressroom_publishing.sandbox import SandboxAccount, SandboxState, insights
from pressroom_publishing.sandbox.state import Failure, SandboxError
from pressroom_publishing.sandbox.state import pkce_challenge as server_pkce

pytestmark = pytest.mark.unit

FAMILY = "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466"


def adapter() -> SandboxPlatform:
    http = PlatformHTTP.__new__(PlatformHTTP)  # classification never touches the session
    return SandboxPlatform(http, {"api_url": "http://sandbox.invalid/sandbox-platform/"})


def answer(status: int, body: object, **headers: str) -> Response:
    return Response(status, headers, json.dumps(body).encode())


@pytest.mark.parametrize(
    ("status", "body", "headers", "kind", "code"),
    [
        (
            401,
            {"error": {"code": "token_expired", "message": "m"}},
            {},
            AuthExpiredError,
            "token_expired",
        ),
        (
            401,
            {"error": {"code": "token_revoked", "message": "m"}},
            {},
            RevokedError,
            "token_revoked",
        ),
        (
            401,
            {"error": {"code": "invalid_token", "message": "m"}},
            {},
            AuthExpiredError,
            "invalid_token",
        ),
        (
            400,
            {"error": "invalid_grant", "error_description": "d"},
            {},
            AuthExpiredError,
            "invalid_grant",
        ),
        (
            401,
            {"error": "invalid_client", "error_description": "d"},
            {},
            RejectedError,
            "invalid_client",
        ),
        (
            422,
            {"error": {"code": "text_too_long", "message": "m"}},
            {},
            RejectedError,
            "text_too_long",
        ),
        (
            429,
            {"error": {"code": "rate_limited", "message": "m"}},
            {"Retry-After": "12"},
            TransientError,
            "rate_limited",
        ),
        (
            500,
            {"error": {"code": "internal_error", "message": "m"}},
            {},
            TransientError,
            "internal_error",
        ),
        (504, {"error": "timeout", "error_description": "d"}, {}, TransientError, "timeout"),
    ],
)
def test_classification_reads_the_sandbox_error_bodies(status, body, headers, kind, code):
    error = adapter().classify(answer(status, body, **headers))
    assert type(error) is kind
    assert error.code == code
    assert error.status == status
    if headers:
        assert isinstance(error, TransientError)
        assert error.retry_after_s == 12


def test_a_body_that_is_not_json_is_still_classified():
    error = adapter().classify(Response(502, {}, b"<html>bad gateway</html>"))
    assert isinstance(error, TransientError)
    assert "bad gateway" in error.message


def test_the_adapter_is_registered_and_declares_its_capabilities():
    assert adapter_class("sandbox") is SandboxPlatform
    caps = SandboxPlatform.capabilities
    assert (caps.platform, caps.text_limit, caps.text_count) == (
        "sandbox",
        500,
        TextCount.GRAPHEMES,
    )
    assert (caps.max_images, caps.max_videos, caps.pkce) == (4, 1, True)
    assert caps.lookup_by_reference and caps.token_lifetime_s == 3600
    assert adapter().api_url == "http://sandbox.invalid/sandbox-platform"
    with pytest.raises(ValueError, match="api_url"):
        SandboxPlatform(PlatformHTTP.__new__(PlatformHTTP), {})


def test_graphemes_an_emoji_family_is_one():
    assert count_text(FAMILY, TextCount.GRAPHEMES) == 1
    assert count_text(FAMILY, TextCount.CHARACTERS) == 7
    assert adapter().validate(PostContent(text=FAMILY * 500)) == []
    assert len(adapter().validate(PostContent(text=FAMILY * 501))) == 1


def test_pkce_is_s256_the_same_on_both_sides():
    verifier = "x" * 64
    assert pkce_challenge(verifier) == server_pkce(verifier)
    assert len(pkce_challenge(verifier)) == 43
    assert "=" not in pkce_challenge(verifier)


def test_accounts_derive_from_usernames():
    assert SandboxAccount.for_username("a") == SandboxAccount.for_username("a")
    assert SandboxAccount.for_username("a").id != SandboxAccount.for_username("b").id
    assert SandboxAccount.for_username("acme-news").display_name == "Acme News"


def test_one_key_from_many_threads_is_one_post():
    state = SandboxState()
    account = SandboxAccount.for_username("threads")
    results: list[str] = []

    def publish() -> None:
        post, _ = state.create_post(account, text="t", media=[], link=None, key="k1")
        results.append(post.id)

    threads = [threading.Thread(target=publish) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(results)) == 1
    assert len(state.posts) == 1


def test_failures_are_used_up_in_order_and_any_matches_everything():
    state = SandboxState()
    state.add_failure(Failure(operation="publish", mode="error_500", count=2))
    state.add_failure(Failure(operation="any", mode="timeout"))
    assert state.take_failure("me") is not None  # the "any"
    assert state.take_failure("me") is None
    assert [state.take_failure("publish") is not None for _ in range(3)] == [True, True, False]
    assert state.call_counts() == {"me": 2, "publish": 3}


def test_expired_and_revoked_tokens_say_so():
    now = datetime(2026, 1, 1, tzinfo=UTC)
    state = SandboxState(clock=lambda: now)
    code = state.issue_code(
        client_id="pressroom", redirect_uri="http://x/cb", username="u", scopes=(), challenge=None
    )
    token = state.redeem_code(
        code=code, client_id="pressroom", redirect_uri="http://x/cb", verifier=None
    )
    assert state.account_for(token["access_token"]).username == "u"
    state.expire_tokens()
    with pytest.raises(SandboxError) as expired:
        state.account_for(token["access_token"])
    assert expired.value.code == "token_expired"
    state.revoke_tokens()
    with pytest.raises(SandboxError) as revoked:
        state.account_for(token["access_token"])
    assert revoked.value.code == "token_revoked"


def test_insights_decay_after_a_posts_day_and_are_stable():
    state = SandboxState(clock=lambda: datetime(2026, 3, 1, 12, tzinfo=UTC))
    account = SandboxAccount.for_username("i")
    post, _ = state.create_post(account, text="t", media=[], link=None, key=None)
    day = datetime(2026, 3, 1, tzinfo=UTC).date()
    series = [insights.post_day(post, day + timedelta(days=n)) for n in range(4)]
    impressions = [s["impressions"] for s in series if s]
    assert impressions == sorted(impressions, reverse=True) and impressions[0] >= 200
    assert insights.post_day(post, day - timedelta(days=1)) is None
    assert insights.account_day(account.id, [post], day) == insights.account_day(
        account.id, [post], day
    )


def test_garbled_answers_are_transient_not_crashes():
    from pressroom_publishing.platforms.sandbox import _daily

    platform = adapter()
    for row in ({"day": "not a day"}, {"reach": 1}, {"day": "2026-01-01", "reach": None}):
        with pytest.raises(TransientError, match="unreadable"):
            platform._parsed(_daily, row)
    with pytest.raises(TransientError):
        platform._object(Response(200, {}, b"[1, 2]"))
    assert platform._parsed(_daily, {"day": "2026-01-01", "reach": 3}).reach == 3
