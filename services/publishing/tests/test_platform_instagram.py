"""The Instagram adapter against a fake Instagram API over real HTTP: Instagram Login with
the long-lived exchange and refresh, image / reel / carousel containers waited on until
finished, the quota from content_publishing_limit, Graph errors, reconciliation, insights,
and the caption rules."""

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
from fakes.instagram import APP_ID, APP_SECRET, USER_ID, FakeInstagram
from pressroom_publishing.platforms import adapter_class
from pressroom_publishing.platforms.base import (
    AuthExpiredError,
    Credentials,
    NotSupportedError,
    OAuthContext,
    PlatformHTTP,
    PostContent,
    RejectedError,
    RevokedError,
    TransientError,
)
from pressroom_publishing.platforms.instagram import InstagramPlatform

pytestmark = pytest.mark.integration

REDIRECT = "http://127.0.0.1:9/v1/connections/instagram/callback"


@dataclass
class Env:
    fake: FakeInstagram
    url: str
    media: MediaFiles
    http: PlatformHTTP

    def platform(self) -> InstagramPlatform:
        return InstagramPlatform(
            self.http,
            {
                "graph_url": self.url,
                "oauth_api_url": self.url,
                "auth_url": f"{self.url}/oauth/authorize",
                "client_id": APP_ID,
                "client_secret": APP_SECRET,
                "poll_s": 0.01,
            },
        )

    def photo(self, seed: int = 1, alt: str | None = None):
        data = image_bytes(10_000, seed=seed)
        return media_item(self.media.add(data, "image/jpeg"), data, alt_text=alt), data

    async def connect(self) -> Credentials:
        platform = self.platform()
        context = OAuthContext(state=secrets.token_urlsafe(8), redirect_uri=REDIRECT)
        consent = await follow_consent(self.http, await platform.authorization_url(context))
        grant = await platform.exchange_code(consent["code"], context)
        account = await platform.verify(credentials("instagram", grant.access_token, "?"))
        return credentials("instagram", grant.access_token, account.account_id)


@pytest.fixture(scope="module")
async def env() -> AsyncIterator[Env]:
    fake = FakeInstagram()
    async with serve(fake.app()) as url, media_server() as media, http_client() as http:
        fake.base_url = url
        yield Env(fake, url, media, http)


@pytest.fixture
async def creds(env: Env) -> Credentials:
    env.fake.failures.clear()
    env.fake.quota_used = 0
    return await env.connect()


def test_the_adapter_is_registered():
    assert adapter_class("instagram") is InstagramPlatform


async def test_login_gives_a_long_lived_token_for_the_professional_account(env: Env):
    platform = env.platform()
    context = OAuthContext(state="st", redirect_uri=REDIRECT)
    consent = await follow_consent(env.http, await platform.authorization_url(context))
    grant = await platform.exchange_code(
        consent["code"] + "#_", context
    )  # as pasted from the redirect
    assert env.fake.tokens[grant.access_token] == "long"
    assert grant.expires_at is not None and grant.expires_at - datetime.now(UTC) > timedelta(
        days=59
    )
    creds = credentials("instagram", grant.access_token, "?")
    account = await platform.verify(creds)
    assert account.account_id == USER_ID and account.extra["followers"] == 4321
    # The long-lived token is its own refresh credential, so the vault keeps it refreshable.
    assert grant.refresh_token == grant.access_token
    renewed = await platform.refresh(creds)
    assert renewed.access_token != grant.access_token
    assert renewed.refresh_token == renewed.access_token
    env.fake.expire_all()
    with pytest.raises(AuthExpiredError):
        await platform.refresh(creds)


async def test_image_reel_and_carousel(env: Env, creds: Credentials):
    platform = env.platform()
    image, data = env.photo(1, alt="a kite")
    single = await platform.publish(
        creds, publish_request(f"kite {secrets.token_hex(3)}", (image,))
    )
    container = env.fake.containers[env.fake.media[single.platform_post_id]["container"]]
    assert container["bytes"] == data and container["fields"]["alt_text"] == "a kite"
    assert single.url and single.url.startswith("https://www.instagram.com/p/")

    clip = image_bytes(30_000, seed=3)
    reel = media_item(
        env.media.add(clip, "video/mp4"), clip, kind="video", content_type="video/mp4"
    )
    published = await platform.publish(creds, publish_request("reel", (reel,)))
    assert (
        env.fake.containers[env.fake.media[published.platform_post_id]["container"]]["kind"]
        == "REELS"
    )

    items = (env.photo(4)[0], env.photo(5)[0], reel)
    carousel = await platform.publish(
        creds, publish_request(f"three {secrets.token_hex(3)}", items)
    )
    stored = env.fake.media[carousel.platform_post_id]
    assert stored["kind"] == "CAROUSEL" and len(stored["children"]) == 3
    kinds = [env.fake.containers[c]["kind"] for c in stored["children"]]
    assert kinds == ["IMAGE", "IMAGE", "VIDEO"]
    assert env.fake.quota_used == 3


async def test_the_quota_and_errors(env: Env, creds: Credentials):
    platform = env.platform()
    image, _ = env.photo(7)
    env.fake.quota_used = 100
    quota = await platform.publishing_quota(creds)
    assert quota is not None and (quota.used, quota.total, quota.remaining) == (100, 100, 0)
    with pytest.raises(TransientError) as exhausted:
        await platform.publish(creds, publish_request("x", (image,)))
    assert exhausted.value.code == "quota"
    env.fake.quota_used = 0

    publish_path = f"/v21.0/{USER_ID}/media_publish"
    env.fake.fail(
        publish_path,
        400,
        {
            "error": {
                "message": "The maximum number of posts that can be published has been reached",
                "type": "OAuthException",
                "code": 9,
                "error_subcode": 2207042,
            }
        },
    )
    with pytest.raises(TransientError) as limited:
        await platform.publish(creds, publish_request("x", (image,)))
    assert limited.value.code == "quota"
    env.fake.fail(
        publish_path,
        400,
        {
            "error": {
                "message": "The user has not authorized application.",
                "type": "OAuthException",
                "code": 190,
                "error_subcode": 458,
            }
        },
    )
    with pytest.raises(RevokedError):
        await platform.publish(creds, publish_request("x", (image,)))

    gone = media_item(f"{env.media.base_url}/files/missing", b"x")
    with pytest.raises(RejectedError) as failed:
        await platform.publish(creds, publish_request("x", (gone,)))
    assert failed.value.code == "media_error"
    with pytest.raises(NotSupportedError):
        await platform.delete(creds, "1")


async def test_an_unknown_outcome_is_reconciled(env: Env, creds: Credentials):
    platform = env.platform()
    items = (env.photo(8)[0], env.photo(9)[0])
    request = publish_request(f"Did this go out? {secrets.token_hex(3)}", items)
    assert await platform.find_published(creds, request) is None
    published = await platform.publish(creds, request)
    found = await platform.find_published(creds, request)
    assert found is not None and found.platform_post_id == published.platform_post_id
    assert (
        await platform.find_published(creds, publish_request(request.content.text, items[:1]))
        is None
    )


async def test_insights(env: Env, creds: Credentials):
    platform = env.platform()
    published = await platform.publish(
        creds, publish_request(f"m {secrets.token_hex(3)}", (env.photo(10)[0],))
    )
    today = datetime.now(UTC).date()
    report = await platform.fetch_metrics(
        creds, today - timedelta(days=1), today, [published.platform_post_id]
    )
    yesterday = today - timedelta(days=1)
    assert [(d.day, d.reach) for d in report.account] == [
        (yesterday, 50 + yesterday.day),
        (today, 50 + today.day),
    ]
    assert report.account[-1].followers == 4321
    [post] = report.posts
    assert (
        post.reach,
        post.impressions,
        post.likes,
        post.comments,
        post.shares,
        post.engagement,
    ) == (700, 1100, 55, 8, 4, 76)


def test_caption_rules():
    platform = InstagramPlatform(None, {})  # validation needs no HTTP
    image = media_item("http://127.0.0.1:9/a.jpg", b"x" * 10)
    assert platform.validate(PostContent(text="a" * 2200, media=(image,))) == []
    assert [p.field for p in platform.validate(PostContent(text="a" * 2201, media=(image,)))] == [
        "text"
    ]
    assert [p.field for p in platform.validate(PostContent(text="no media"))] == ["media"]
    tags = " ".join(f"#t{i}" for i in range(31))
    assert [p.field for p in platform.validate(PostContent(text=tags, media=(image,)))] == ["text"]
    png = media_item("http://127.0.0.1:9/a.png", b"x", content_type="image/png")
    assert [p.field for p in platform.validate(PostContent(text="png", media=(png,)))] == ["media"]
    eleven = (image,) * 11
    assert platform.validate(PostContent(text="many", media=eleven)) != []


async def test_a_crash_between_the_platforms_commit_and_its_answer(env: Env, creds: Credentials):
    platform = env.platform()
    request = publish_request(f"lost answer {secrets.token_hex(3)}", (env.photo(11)[0],))
    env.fake.drop(f"/v21.0/{USER_ID}/media_publish")
    with pytest.raises(TransientError):
        await platform.publish(creds, request)
    found = await platform.find_published(creds, request)
    assert found is not None and found.platform_post_id in env.fake.media
