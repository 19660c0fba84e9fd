"""The sandbox's OAuth 2 through the adapter over real HTTP: consent, PKCE, single-use
codes, refresh with and without rotation, expiry by the clock, revocation."""

from __future__ import annotations

import asyncio
import base64
import secrets
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from pressroom_publishing.platforms.base import (
    AuthExpiredError,
    OAuthContext,
    RejectedError,
    RevokedError,
    TransientError,
)
from pressroom_publishing.platforms.sandbox import pkce_challenge
from pressroom_publishing.sandbox import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, SandboxAccount
from sandbox_testkit import REDIRECT_URI, SandboxEnv, sandbox_env

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def env() -> AsyncIterator[SandboxEnv]:
    async with sandbox_env() as shared:
        yield shared


@pytest.fixture(autouse=True)
def _fresh(env: SandboxEnv) -> None:
    env.fresh()


def context(**changes: object) -> OAuthContext:
    base = OAuthContext(
        state=secrets.token_urlsafe(16),
        redirect_uri=REDIRECT_URI,
        code_verifier=secrets.token_urlsafe(48),
    )
    return replace(base, **changes)  # type: ignore[arg-type]


async def test_the_code_flow_with_pkce_gives_tokens_for_the_consenting_account(env: SandboxEnv):
    platform = env.platform()
    ctx = context()
    url = await platform.authorization_url(ctx)
    query = parse_qs(urlsplit(url).query)
    assert url.startswith(f"{env.base_url}/oauth/authorize?")
    assert query["code_challenge"] == [pkce_challenge(ctx.code_verifier or "")]
    assert query["code_challenge_method"] == ["S256"]
    assert query["client_id"] == [DEFAULT_CLIENT_ID]

    authorized = await env.client.authorize(url, username="acme-news")
    assert authorized.state == ctx.state
    assert authorized.location.startswith(REDIRECT_URI + "?")

    grant = await platform.exchange_code(authorized.code, ctx)
    assert grant.access_token.startswith("sbx_at_")
    assert grant.refresh_token and grant.refresh_token.startswith("sbx_rt_")
    assert grant.scopes == ("read", "write")
    assert grant.expires_at is not None
    assert grant.expires_at == env.clock() + timedelta(seconds=3600)
    wall = env.platform(clock=None)  # without a clock: the wall clock
    wall_grant = await wall.exchange_code(
        (await env.client.authorize(await wall.authorization_url(ctx))).code, ctx
    )
    assert wall_grant.expires_at is not None
    remaining = (wall_grant.expires_at - datetime.now(UTC)).total_seconds()
    assert 3500 < remaining <= 3600

    credentials = await env.connect("acme-news")
    account = await platform.verify(credentials)
    assert account.account_id == SandboxAccount.for_username("acme-news").id
    assert account.name == "Acme News"
    assert account.extra == {"username": "acme-news"}


async def test_a_wrong_verifier_or_a_reused_code_is_refused(env: SandboxEnv):
    platform = env.platform()
    ctx = context()
    authorized = await env.client.authorize(await platform.authorization_url(ctx))

    with pytest.raises(RejectedError) as wrong:
        await platform.exchange_code(authorized.code, replace(ctx, code_verifier="x" * 50))
    assert wrong.value.code == "invalid_grant"
    assert "verifier" in wrong.value.message
    with pytest.raises(RejectedError):
        await platform.exchange_code(authorized.code, replace(ctx, code_verifier=None))
    with pytest.raises(RejectedError):
        await platform.exchange_code(authorized.code, replace(ctx, redirect_uri=REDIRECT_URI + "x"))

    grant = await platform.exchange_code(authorized.code, ctx)
    assert grant.access_token
    with pytest.raises(RejectedError) as reused:
        await platform.exchange_code(authorized.code, ctx)
    assert reused.value.code == "invalid_grant"


async def test_replaying_a_used_code_also_ends_the_grant_it_gave(env: SandboxEnv):
    """RFC 6749 4.1.2: a code used twice may have been stolen; the platform revokes the
    tokens it issued for it. (A callback must exchange its code once.)"""
    platform = env.platform()
    ctx = context()
    authorized = await env.client.authorize(await platform.authorization_url(ctx))
    grant = await platform.exchange_code(authorized.code, ctx)
    credentials = await env.connect()
    await platform.verify(credentials)
    with pytest.raises(RejectedError):
        await platform.exchange_code(authorized.code, ctx)
    stolen = replace(
        credentials, access_token=grant.access_token, refresh_token=grant.refresh_token
    )
    with pytest.raises(RevokedError):
        await platform.verify(stolen)
    await platform.verify(credentials)  # other grants are untouched


async def test_two_replicas_refreshing_one_rotating_token_at_once_one_wins(env: SandboxEnv):
    """What the connections' one-refresh-across-replicas rule is for: the loser of the race
    holds a dead refresh token and must pick up the winner's tokens instead."""
    platform = env.platform()
    credentials = await env.connect()
    results = await asyncio.gather(
        platform.refresh(credentials), platform.refresh(credentials), return_exceptions=True
    )
    wins = [r for r in results if not isinstance(r, BaseException)]
    losses = [r for r in results if isinstance(r, BaseException)]
    assert len(wins) == 1
    assert len(losses) == 1 and isinstance(losses[0], AuthExpiredError)


async def test_a_code_is_short_lived(env: SandboxEnv):
    platform = env.platform()
    ctx = context()
    authorized = await env.client.authorize(await platform.authorization_url(ctx))
    env.clock.advance(61)
    with pytest.raises(RejectedError) as late:
        await platform.exchange_code(authorized.code, ctx)
    assert "expired" in late.value.message


async def test_deny_redirects_with_access_denied_and_the_state(env: SandboxEnv):
    platform = env.platform()
    ctx = context()
    denied = await env.client.authorize(await platform.authorization_url(ctx), decision="deny")
    query = parse_qs(urlsplit(denied.location).query)
    assert query == {"error": ["access_denied"], "state": [ctx.state]}


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({}, "client_id is required"),
        ({"client_id": "nobody", "redirect_uri": REDIRECT_URI}, "unknown client_id"),
        ({"client_id": DEFAULT_CLIENT_ID}, "redirect_uri"),
        ({"client_id": DEFAULT_CLIENT_ID, "redirect_uri": "javascript:alert(1)"}, "redirect_uri"),
        (
            {
                "client_id": DEFAULT_CLIENT_ID,
                "redirect_uri": REDIRECT_URI,
                "code_challenge": "a" * 43,
                "code_challenge_method": "plain",
            },
            "S256",
        ),
        (
            {
                "client_id": DEFAULT_CLIENT_ID,
                "redirect_uri": REDIRECT_URI,
                "response_type": "token",
            },
            "response_type",
        ),
    ],
)
async def test_bad_authorization_requests_get_a_400_page(
    env: SandboxEnv, params: dict[str, str], needle: str
):
    async with env.session.get(f"{env.base_url}/oauth/authorize", params=params) as page:
        assert page.status == 400
        assert page.content_type == "text/html"
        assert needle in await page.text()
    async with env.session.post(
        f"{env.base_url}/oauth/authorize",
        data={**params, "decision": "allow"},
        allow_redirects=False,
    ) as answer:
        assert answer.status == 400
        assert (await answer.json())["error"] == "invalid_request"


async def test_the_non_interactive_consent_and_client_secret_basic(env: SandboxEnv):
    verifier = secrets.token_urlsafe(48)
    async with env.session.post(
        f"{env.base_url}/oauth/authorize",
        data={
            "client_id": DEFAULT_CLIENT_ID,
            "redirect_uri": REDIRECT_URI,
            "state": "s1",
            "code_challenge": pkce_challenge(verifier),
            "code_challenge_method": "S256",
            "decision": "allow",
        },
        allow_redirects=False,
    ) as answer:
        assert answer.status == 303
        code = parse_qs(urlsplit(answer.headers["Location"]).query)["code"][0]
    basic = base64.b64encode(f"{DEFAULT_CLIENT_ID}:{DEFAULT_CLIENT_SECRET}".encode()).decode()
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT_URI,
        "code_verifier": verifier,
    }
    async with env.session.post(
        f"{env.base_url}/oauth/token", data=form, headers={"Authorization": f"Basic {basic}"}
    ) as answer:
        assert answer.status == 200
        body = await answer.json()
        assert answer.headers["Cache-Control"] == "no-store"
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    async with env.session.post(
        f"{env.base_url}/oauth/token", data={"grant_type": "password"}
    ) as answer:
        assert answer.status == 401
        assert (await answer.json())["error"] == "invalid_client"


async def test_a_wrong_client_secret_is_a_rejection_not_an_expired_token(env: SandboxEnv):
    platform = env.platform(client_secret="not-the-secret")
    ctx = context()
    authorized = await env.client.authorize(await platform.authorization_url(ctx))
    with pytest.raises(RejectedError) as refused:
        await platform.exchange_code(authorized.code, ctx)
    assert refused.value.code == "invalid_client"
    assert refused.value.status == 401


async def test_refresh_rotates_the_refresh_token_and_the_old_one_dies(env: SandboxEnv):
    platform = env.platform()
    credentials = await env.connect()
    grant = await platform.refresh(credentials)
    assert grant.refresh_token and grant.refresh_token != credentials.refresh_token
    assert grant.access_token != credentials.access_token
    renewed = replace(credentials, access_token=grant.access_token)
    assert (await platform.verify(renewed)).account_id == credentials.account_id
    with pytest.raises(AuthExpiredError) as dead:
        await platform.refresh(credentials)
    assert dead.value.code == "invalid_grant"


async def test_a_platform_that_sends_no_new_refresh_token_keeps_the_old_one_working(
    env: SandboxEnv,
):
    await env.client.settings(rotate_refresh_tokens=False)
    platform = env.platform()
    credentials = await env.connect()
    first = await platform.refresh(credentials)
    assert first.refresh_token is None  # the caller keeps the one it has
    second = await platform.refresh(credentials)
    assert second.access_token not in (first.access_token, credentials.access_token)


async def test_tokens_expire_by_the_clock_and_refresh_brings_them_back(env: SandboxEnv):
    await env.client.settings(token_lifetime_s=600)
    platform = env.platform()
    credentials = await env.connect()
    assert credentials.expires_at == env.clock() + timedelta(seconds=600)  # one clock
    env.clock.advance(599)
    await platform.verify(credentials)
    env.clock.advance(1)
    with pytest.raises(AuthExpiredError) as expired:
        await platform.verify(credentials)
    assert expired.value.code == "token_expired"
    assert expired.value.status == 401
    grant = await platform.refresh(credentials)
    await platform.verify(replace(credentials, access_token=grant.access_token))


async def test_control_expires_access_tokens_and_optionally_refresh_tokens(env: SandboxEnv):
    platform = env.platform()
    alice = await env.connect("alice")
    bob = await env.connect("bob")
    assert await env.client.expire_tokens(alice.account_id) == 1
    with pytest.raises(AuthExpiredError):
        await platform.verify(alice)
    await platform.verify(bob)
    await env.client.expire_tokens(refresh=True)
    with pytest.raises(AuthExpiredError):
        await platform.verify(bob)
    with pytest.raises(AuthExpiredError) as dead:
        await platform.refresh(bob)
    assert "expired" in dead.value.message


async def test_revoked_grants_are_told_apart_from_expired_tokens(env: SandboxEnv):
    platform = env.platform()
    alice = await env.connect("alice")
    bob = await env.connect("bob")
    assert await env.client.revoke_tokens(alice.account_id) == 1
    with pytest.raises(RevokedError) as revoked:
        await platform.verify(alice)
    assert revoked.value.code == "token_revoked"
    with pytest.raises(AuthExpiredError):
        await platform.refresh(alice)  # a dead refresh token: reconnect
    await platform.verify(bob)
    await platform.revoke(bob)  # the user disconnects from Pressroom
    with pytest.raises(RevokedError):
        await platform.verify(bob)


async def test_token_endpoint_failures_are_classified(env: SandboxEnv):
    platform = env.platform()
    credentials = await env.connect()
    await env.client.fail("token", "error_500")
    with pytest.raises(TransientError) as broken:
        await platform.refresh(credentials)
    assert broken.value.status == 500
    await env.client.fail("token", "rate_limited", retry_after_s=7)
    with pytest.raises(TransientError) as limited:
        await platform.refresh(credentials)
    assert limited.value.retry_after_s == 7
    await env.client.fail("token", "token_revoked")
    with pytest.raises(AuthExpiredError):
        await platform.refresh(credentials)
    await platform.refresh(credentials)  # the failures were used up
    assert (await env.client.calls())["token"] == 5  # the connect's exchange and four refreshes


async def test_no_refresh_token_means_auth_expired_without_a_call(env: SandboxEnv):
    platform = env.platform()
    credentials = await env.connect()
    with pytest.raises(AuthExpiredError):
        await platform.refresh(replace(credentials, refresh_token=None))
    assert (await env.client.calls())["token"] == 1


def test_credentials_never_show_their_tokens():
    from pressroom_publishing.platforms.base import Credentials

    credentials = Credentials(
        connection_id=uuid.uuid4(),
        brand_id=uuid.uuid4(),
        platform="sandbox",
        access_token="sbx_at_secret",
        account_id="1",
        refresh_token="sbx_rt_secret",
    )
    assert "secret" not in repr(credentials)
