"""The Mastodon adapter against a fake instance over real HTTP: app registration, the code
flow with PKCE, instance limits read and cached, statuses with streamed media uploads and
Idempotency-Key, reconciliation, errors, metrics, and Mastodon's counting rules."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from fakes import (
    MediaFiles,
    credentials,
    follow_consent,
    http_client,
    image_bytes,
    media_item,
    media_server,
    publish_request,
    serve,
)
from fakes.mastodon import ACCOUNT_ID, FakeMastodon
from pressroom_publishing.platforms import adapter_class
from pressroom_publishing.platforms.base import (
    AuthExpiredError,
    Credentials,
    OAuthContext,
    PlatformHTTP,
    PostContent,
    RejectedError,
    RevokedError,
    TransientError,
)
from pressroom_publishing.platforms.mastodon import MastodonPlatform

pytestmark = pytest.mark.integration

REDIRECT = "http://127.0.0.1:9/v1/connections/mastodon/callback"
FAMILY = "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466"


@dataclass
class Env:
    fake: FakeMastodon
    url: str
    media: MediaFiles
    http: PlatformHTTP

    def platform(self, **config: object) -> MastodonPlatform:
        return MastodonPlatform(self.http, {"media_poll_s": 0.01, **config})


@pytest.fixture(scope="module")
async def env() -> AsyncIterator[Env]:
    fake = FakeMastodon()
    async with serve(fake.app()) as url, media_server() as media, http_client() as http:
        fake.base_url = url
        yield Env(fake, url, media, http)


async def connect(env: Env, platform: MastodonPlatform) -> Credentials:
    app = await platform.register_app(env.url, REDIRECT)
    context = OAuthContext(
        state=secrets.token_urlsafe(8),
        redirect_uri=REDIRECT,
        code_verifier=secrets.token_urlsafe(48),
        extra=app,
    )
    consent = await follow_consent(env.http, await platform.authorization_url(context))
    assert consent["state"] == context.state
    grant = await platform.exchange_code(consent["code"], context)
    return credentials("mastodon", grant.access_token, ACCOUNT_ID, **app)


@pytest.fixture
async def creds(env: Env) -> Credentials:
    env.fake.failures.clear()
    return await connect(env, env.platform())


def test_the_adapter_is_registered():
    assert adapter_class("mastodon") is MastodonPlatform


async def test_the_code_flow_registers_an_app_checks_pkce_and_gives_a_lasting_token(env: Env):
    platform = env.platform()
    app = await platform.register_app(env.url, REDIRECT)
    assert set(app) == {"instance_url", "client_id", "client_secret"}
    assert env.fake.apps[app["client_id"]]["redirect_uris"] == [REDIRECT]
    context = OAuthContext(
        state="s1", redirect_uri=REDIRECT, code_verifier=secrets.token_urlsafe(48), extra=app
    )
    url = await platform.authorization_url(context)
    assert url.startswith(f"{env.url}/oauth/authorize?") and "code_challenge_method=S256" in url

    wrong = await follow_consent(env.http, url)
    with pytest.raises(RejectedError) as refused:
        await platform.exchange_code(
            wrong["code"],
            OAuthContext(state="s1", redirect_uri=REDIRECT, code_verifier="x" * 43, extra=app),
        )
    assert refused.value.code == "invalid_grant"

    consent = await follow_consent(env.http, url)
    grant = await platform.exchange_code(consent["code"], context)
    assert grant.expires_at is None and grant.refresh_token is None
    assert "write:statuses" in grant.scopes
    with pytest.raises(RejectedError):  # a code is single-use
        await platform.exchange_code(consent["code"], context)

    creds = credentials("mastodon", grant.access_token, ACCOUNT_ID, **app)
    account = await platform.verify(creds)
    assert account.account_id == ACCOUNT_ID and account.name == "Alice Example"
    with pytest.raises(AuthExpiredError):
        await platform.refresh(creds)

    await platform.revoke(creds)
    with pytest.raises(RevokedError):
        await platform.verify(creds)


async def test_a_text_status_is_idempotent_by_reference(env: Env, creds: Credentials):
    platform = env.platform()
    request = publish_request("Hello fediverse & friends <3")
    first = await platform.publish(creds, request)
    again = await platform.publish(creds, request)
    assert first.platform_post_id == again.platform_post_id
    assert first.url == f"{env.url}/@alice/{first.platform_post_id}"
    assert first.published_at is not None
    assert [s for s in env.fake.statuses.values() if s["id"] == first.platform_post_id]
    assert sum(1 for k in env.fake.idempotency if k.endswith(request.reference)) == 1


async def test_media_are_streamed_then_polled_until_processed_before_the_status(
    env: Env, creds: Credentials
):
    platform = env.platform()
    photo = image_bytes(300_000, seed=2)
    clip = image_bytes(700_000, seed=3)
    image = media_item(env.media.add(photo, "image/jpeg"), photo, alt_text="A red kite")
    video = media_item(
        env.media.add(clip, "video/mp4"), clip, kind="video", content_type="video/mp4"
    )
    for items in ((image,), (video,)):
        start = len(env.fake.calls)
        published = await platform.publish(creds, publish_request("with media", items))
        calls = [c for c in env.fake.calls[start:] if not c[1].startswith("/api/v2/instance")]
        status = env.fake.statuses[published.platform_post_id]
        assert len(status["media_attachments"]) == 1
        uploaded = env.fake.uploads[-1]
        if items[0] is image:
            assert uploaded["bytes"] == photo and uploaded["content_type"] == "image/jpeg"
            assert env.fake.media[uploaded["id"]]["description"] == "A red kite"
            assert [m for m, _ in calls] == ["POST", "POST"]
        else:
            assert uploaded["bytes"] == clip
            media_id = uploaded["id"]
            assert calls == [
                ("POST", "/api/v2/media"),
                ("GET", f"/api/v1/media/{media_id}"),
                ("GET", f"/api/v1/media/{media_id}"),
                ("GET", f"/api/v1/media/{media_id}"),
                ("POST", "/api/v1/statuses"),
            ]


async def test_instance_limits_are_read_once_and_enforced_before_uploading(
    env: Env, creds: Credentials
):
    platform = env.platform()
    await platform.publish(creds, publish_request("one"))
    reads = env.fake.instance_reads
    await platform.publish(creds, publish_request("two"))
    assert env.fake.instance_reads == reads  # cached

    env.fake.max_characters = 40
    strict = env.platform(instance_ttl_s=0)
    photo = image_bytes(1000)
    item = media_item(env.media.add(photo, "image/jpeg"), photo)
    uploads = len(env.fake.uploads)
    try:
        with pytest.raises(RejectedError) as refused:
            await strict.publish(creds, publish_request("x" * 41, (item,)))
        assert refused.value.code == "validation" and "limit of 40" in refused.value.message
        assert len(env.fake.uploads) == uploads
        # A URL counts as 23 whatever its length.
        await strict.publish(creds, publish_request("see https://example.com/" + "a" * 80))
        assert (await strict.validate_for(creds, PostContent(text=FAMILY * 40))) == []
        await strict.publish(creds, publish_request(FAMILY * 40))  # the instance agrees
    finally:
        env.fake.max_characters = 500


async def test_errors_map_onto_the_interface(env: Env, creds: Credentials):
    platform = env.platform()
    env.fake.fail("/api/v1/statuses", 422, {"error": "Validation failed: Text can't be blank"})
    with pytest.raises(RejectedError) as rejected:
        await platform.publish(creds, publish_request("x"))
    assert rejected.value.message == "Validation failed: Text can't be blank"

    reset = (datetime.now(UTC) + timedelta(seconds=120)).isoformat()
    env.fake.fail(
        "/api/v1/statuses",
        429,
        {"error": "Too many requests"},
        headers={
            "X-RateLimit-Limit": "300",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": reset,
        },
    )
    with pytest.raises(TransientError) as limited:
        await platform.publish(creds, publish_request("x"))
    assert limited.value.retry_after_s is not None and 100 < limited.value.retry_after_s <= 120

    env.fake.fail("/api/v1/statuses", 503, "<html>Service Unavailable</html>")
    with pytest.raises(TransientError):
        await platform.publish(creds, publish_request("x"))

    env.fake.fail(
        "/api/v1/statuses",
        422,
        {"error": "Cannot attach files that have not finished processing. Try again in a moment!"},
    )
    with pytest.raises(TransientError):
        await platform.publish(creds, publish_request("x"))

    env.fake.fail("/api/v1/statuses", 401, {"error": "The access token was revoked"})
    with pytest.raises(RevokedError):
        await platform.publish(creds, publish_request("x"))

    gone = media_item(f"{env.media.base_url}/files/missing", b"x" * 10)
    with pytest.raises(RejectedError) as missing:
        await platform.publish(creds, publish_request("x", (gone,)))
    assert missing.value.code == "media_gone"


async def test_an_unknown_outcome_is_reconciled_from_the_account_statuses(
    env: Env, creds: Credentials
):
    platform = env.platform()
    photo = image_bytes(2000, seed=9)
    item = media_item(env.media.add(photo, "image/jpeg"), photo)
    request = publish_request(
        f"Launch day {secrets.token_hex(4)}!\n\nSee https://example.com/a?b=1&c=2", (item,)
    )
    assert await platform.find_published(creds, request) is None
    published = await platform.publish(creds, request)
    found = await platform.find_published(creds, request)
    assert found is not None and found.platform_post_id == published.platform_post_id
    # The same text without its image is a different post.
    assert await platform.find_published(creds, publish_request(request.content.text)) is None

    await platform.delete(creds, published.platform_post_id)
    assert published.platform_post_id not in env.fake.statuses
    await platform.delete(creds, published.platform_post_id)  # already gone: fine
    assert await platform.find_published(creds, request) is None


async def test_metrics_are_todays_counts(env: Env, creds: Credentials):
    platform = env.platform()
    published = await platform.publish(creds, publish_request(f"count me {secrets.token_hex(3)}"))
    today = datetime.now(UTC).date()
    report = await platform.fetch_metrics(
        creds, today - timedelta(days=7), today, [published.platform_post_id, "404404"]
    )
    assert [(d.day, d.followers) for d in report.account] == [(today, env.fake.followers)]
    [post] = report.posts
    assert (post.likes, post.shares, post.comments, post.engagement) == (3, 2, 1, 6)
    past = await platform.fetch_metrics(creds, today - timedelta(days=9), today - timedelta(days=2))
    assert not past.account and not past.posts


def test_mastodon_counting_rules():
    platform = MastodonPlatform(None, {})  # validation needs no HTTP
    assert platform.validate(PostContent(text=FAMILY * 500)) == []
    assert [p.field for p in platform.validate(PostContent(text=FAMILY * 501))] == ["text"]
    # Combining marks belong to their letter.
    assert platform.validate(PostContent(text="e\u0301" * 500)) == []
    # A URL counts 23; a remote mention counts its local part.
    long_url = "https://example.com/" + "p" * 400
    assert platform.validate(PostContent(text="a" * 477 + long_url)) == []
    assert platform.validate(PostContent(text="a" * 478 + long_url)) != []
    assert platform.validate(PostContent(text="@bob@mastodon.example " + "a" * 495)) == []


async def test_a_crash_between_the_platforms_commit_and_its_answer(env: Env, creds: Credentials):
    """The status is created but the answer is lost: the next attempt finds it, and a
    retry with the same reference is answered with it (Idempotency-Key), not a second."""
    platform = env.platform()
    request = publish_request(f"lost answer {secrets.token_hex(3)}")
    env.fake.drop("/api/v1/statuses")
    with pytest.raises(TransientError):
        await platform.publish(creds, request)
    found = await platform.find_published(creds, request)
    assert found is not None
    again = await platform.publish(creds, request)
    assert again.platform_post_id == found.platform_post_id
    assert sum(1 for k in env.fake.idempotency if k.endswith(request.reference)) == 1


async def test_app_credentials_may_come_from_the_config_per_instance(env: Env):
    """An app registered ahead of time: the connection carries only its instance URL, the
    client id and secret stay in the configuration."""
    app = await env.platform().register_app(env.url, REDIRECT)
    platform = env.platform(
        apps={env.url: {"client_id": app["client_id"], "client_secret": app["client_secret"]}}
    )
    context = OAuthContext(
        state="s",
        redirect_uri=REDIRECT,
        code_verifier=secrets.token_urlsafe(48),
        extra={"instance_url": env.url},
    )
    consent = await follow_consent(env.http, await platform.authorization_url(context))
    grant = await platform.exchange_code(consent["code"], context)
    creds = credentials("mastodon", grant.access_token, ACCOUNT_ID, instance_url=env.url)
    assert (await platform.verify(creds)).account_id == ACCOUNT_ID
    await platform.revoke(creds)
    with pytest.raises(RejectedError) as missing:
        await env.platform().authorization_url(
            OAuthContext(
                state="s",
                redirect_uri=REDIRECT,
                extra={"instance_url": "https://elsewhere.example"},
            )
        )
    assert missing.value.code == "config"


def test_the_configured_app_is_never_used_for_another_instance():
    from pressroom_publishing.platforms.base import RejectedError

    platform = MastodonPlatform(
        None,  # type: ignore[arg-type]
        {"instance_url": "https://home.example", "client_id": "ours", "client_secret": "s3"},
    )
    assert platform._setting({"instance_url": "https://home.example"}, "client_secret") == "s3"
    assert platform._setting({}, "client_id") == "ours"
    with pytest.raises(RejectedError):
        platform._setting({"instance_url": "https://elsewhere.example"}, "client_secret")
    registered = {"instance_url": "https://elsewhere.example", "client_secret": "theirs"}
    assert platform._setting(registered, "client_secret") == "theirs"
