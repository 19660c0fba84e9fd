"""The Threads adapter against a fake Threads API over real HTTP: short and long-lived
tokens, refresh in place, text / image / video / carousel containers waited on until
finished, the publishing quota, Graph errors, reconciliation, insights, emoji counting."""

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
from fakes.threads import APP_ID, APP_SECRET, USER_ID, FakeThreads
from pressroom_publishing.platforms import adapter_class
from pressroom_publishing.platforms.base import (
    AuthExpiredError,
    Credentials,
    OAuthContext,
    PlatformHTTP,
    PostContent,
    RejectedError,
    TextCount,
    TransientError,
    count_text,
)
from pressroom_publishing.platforms.threads import ThreadsPlatform

pytestmark = pytest.mark.integration

REDIRECT = "http://127.0.0.1:9/v1/connections/threads/callback"
FAMILY = "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466"  # 25 UTF-8 bytes


@dataclass
class Env:
    fake: FakeThreads
    url: str
    media: MediaFiles
    http: PlatformHTTP

    def platform(self) -> ThreadsPlatform:
        return ThreadsPlatform(
            self.http,
            {
                "graph_url": self.url,
                "auth_url": f"{self.url}/oauth/authorize",
                "client_id": APP_ID,
                "client_secret": APP_SECRET,
                "poll_s": 0.01,
            },
        )

    async def connect(self) -> Credentials:
        platform = self.platform()
        context = OAuthContext(state=secrets.token_urlsafe(8), redirect_uri=REDIRECT)
        consent = await follow_consent(self.http, await platform.authorization_url(context))
        grant = await platform.exchange_code(consent["code"], context)
        account = await platform.verify(credentials("threads", grant.access_token, "?"))
        return credentials("threads", grant.access_token, account.account_id)


@pytest.fixture(scope="module")
async def env() -> AsyncIterator[Env]:
    fake = FakeThreads()
    async with serve(fake.app()) as url, media_server() as media, http_client() as http:
        fake.base_url = url
        yield Env(fake, url, media, http)


@pytest.fixture
async def creds(env: Env) -> Credentials:
    env.fake.failures.clear()
    env.fake.quota_used = 0
    return await env.connect()


def test_the_adapter_is_registered():
    assert adapter_class("threads") is ThreadsPlatform


async def test_the_code_gives_a_long_lived_token_that_refreshes_in_place(env: Env):
    platform = env.platform()
    context = OAuthContext(state="st", redirect_uri=REDIRECT)
    consent = await follow_consent(env.http, await platform.authorization_url(context))
    grant = await platform.exchange_code(consent["code"], context)
    assert env.fake.tokens[grant.access_token] == "long"
    assert grant.expires_at is not None and grant.expires_at - datetime.now(UTC) > timedelta(
        days=59
    )
    with pytest.raises(RejectedError):
        await platform.exchange_code(consent["code"], context)
    creds = credentials("threads", grant.access_token, USER_ID)
    assert (await platform.verify(creds)).account_id == USER_ID
    # The long-lived token is its own refresh credential, so the vault keeps it refreshable.
    assert grant.refresh_token == grant.access_token
    renewed = await platform.refresh(creds)
    assert renewed.access_token != grant.access_token
    assert renewed.refresh_token == renewed.access_token
    env.fake.expire_all()
    with pytest.raises(AuthExpiredError):
        await platform.refresh(creds)
    with pytest.raises(AuthExpiredError):
        await platform.verify(creds)


async def test_text_image_video_and_carousel_posts(env: Env, creds: Credentials):
    platform = env.platform()
    text = await platform.publish(
        creds, publish_request(f"hello {secrets.token_hex(3)}", link="https://example.com")
    )
    stored = env.fake.media[text.platform_post_id]
    assert stored["kind"] == "TEXT"
    assert (
        env.fake.containers[stored["container"]]["fields"]["link_attachment"]
        == "https://example.com"
    )
    assert text.url and text.url.startswith("https://www.threads.net/@acme/post/")

    photo = image_bytes(20_000, seed=1)
    clip = image_bytes(40_000, seed=2)
    image = media_item(env.media.add(photo, "image/jpeg"), photo, alt_text="a kite")
    video = media_item(
        env.media.add(clip, "video/mp4"), clip, kind="video", content_type="video/mp4"
    )
    single = await platform.publish(creds, publish_request("one", (image,)))
    container = env.fake.containers[env.fake.media[single.platform_post_id]["container"]]
    assert container["bytes"] == photo and container["fields"]["alt_text"] == "a kite"

    start = len(env.fake.calls)
    carousel = await platform.publish(
        creds, publish_request(f"two {secrets.token_hex(3)}", (image, video))
    )
    paths = [(m, p.rsplit("/", 1)[-1]) for m, p in env.fake.calls[start:]]
    assert paths[0] == ("GET", "threads_publishing_limit")
    assert [p for p in paths if p[0] == "POST"] == [
        ("POST", "threads"),
        ("POST", "threads"),
        ("POST", "threads"),
        ("POST", "threads_publish"),
    ]
    stored = env.fake.media[carousel.platform_post_id]
    assert stored["kind"] == "CAROUSEL" and len(stored["children"]) == 2


async def test_the_quota_and_errors(env: Env, creds: Credentials):
    platform = env.platform()
    env.fake.quota_used = env.fake.quota_total
    quota = await platform.publishing_quota(creds)
    assert quota is not None and quota.remaining == 0 and quota.total == 250
    with pytest.raises(TransientError) as exhausted:
        await platform.publish(creds, publish_request("x"))
    assert exhausted.value.code == "quota"
    env.fake.quota_used = 0

    gone = media_item(f"{env.media.base_url}/files/missing", b"x")
    with pytest.raises(RejectedError) as failed:
        await platform.publish(creds, publish_request("x", (gone,)))
    assert failed.value.code == "media_error"

    env.fake.fail(
        f"/v1.0/{USER_ID}/threads_publish",
        400,
        {
            "error": {
                "message": "(#4) Application request limit reached",
                "type": "OAuthException",
                "code": 4,
            }
        },
    )
    with pytest.raises(TransientError):
        await platform.publish(creds, publish_request(f"x {secrets.token_hex(3)}"))
    six_links = " ".join(f"https://e{i}.example" for i in range(6))
    with pytest.raises(RejectedError) as links:
        await platform.publish(creds, publish_request(six_links))
    assert links.value.code == "validation"


async def test_an_unknown_outcome_is_reconciled(env: Env, creds: Credentials):
    platform = env.platform()
    request = publish_request(f"Did  this go out? {secrets.token_hex(3)}")
    assert await platform.find_published(creds, request) is None
    published = await platform.publish(creds, request)
    found = await platform.find_published(creds, request)
    assert found is not None and found.platform_post_id == published.platform_post_id
    await platform.delete(creds, published.platform_post_id)
    await platform.delete(creds, published.platform_post_id)
    assert await platform.find_published(creds, request) is None


async def test_insights(env: Env, creds: Credentials):
    platform = env.platform()
    published = await platform.publish(creds, publish_request(f"m {secrets.token_hex(3)}"))
    today = datetime.now(UTC).date()
    report = await platform.fetch_metrics(
        creds, today - timedelta(days=1), today, [published.platform_post_id]
    )
    assert [(d.day, d.impressions) for d in report.account] == [
        (today - timedelta(days=1), 100 + (today - timedelta(days=1)).day),
        (today, 100 + today.day),
    ]
    assert report.account[-1].followers == 812
    [post] = report.posts
    assert (post.impressions, post.likes, post.comments, post.shares, post.engagement) == (
        1500,
        40,
        6,
        6,
        52,
    )


def test_emoji_count_as_their_utf8_bytes():
    platform = ThreadsPlatform(None, {})  # validation needs no HTTP
    assert count_text(FAMILY, TextCount.EMOJI_AS_UTF8) == 25
    assert count_text("é" * 10, TextCount.EMOJI_AS_UTF8) == 10
    assert platform.validate(PostContent(text=FAMILY * 20)) == []
    assert platform.validate(PostContent(text=FAMILY * 20 + "a")) != []
    assert platform.validate(PostContent(text="a" * 500)) == []
    assert platform.validate(PostContent(text="🙂" * 125)) == []  # 4 bytes each
    assert platform.validate(PostContent(text="🙂" * 126)) != []


async def test_a_crash_between_the_platforms_commit_and_its_answer(env: Env, creds: Credentials):
    platform = env.platform()
    request = publish_request(f"lost answer {secrets.token_hex(3)}")
    env.fake.drop(f"/v1.0/{USER_ID}/threads_publish")
    with pytest.raises(TransientError):
        await platform.publish(creds, request)
    found = await platform.find_published(creds, request)
    assert found is not None and found.platform_post_id in env.fake.media
