"""The LinkedIn adapter against a fake LinkedIn over real HTTP: the 3-legged flow, refresh,
versioned Posts API headers, little-text commentary, image and multi-part video uploads in
order, a retired version as a configuration error, token errors, reconciliation, metrics."""

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
from fakes.linkedin import CLIENT_ID, CLIENT_SECRET, PART, SUB, FakeLinkedIn
from pressroom_publishing.platforms import adapter_class, linkedin
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
from pressroom_publishing.platforms.linkedin import LinkedInPlatform, little_text

pytestmark = pytest.mark.integration

REDIRECT = "http://127.0.0.1:9/v1/connections/linkedin/callback"


@dataclass
class Env:
    fake: FakeLinkedIn
    url: str
    media: MediaFiles
    http: PlatformHTTP

    def platform(self, **config: object) -> LinkedInPlatform:
        return LinkedInPlatform(
            self.http,
            {
                "api_url": self.url,
                "oauth_url": f"{self.url}/oauth/v2",
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "version": linkedin.DEFAULT_VERSION,
                **config,
            },
        )

    async def connect(self) -> Credentials:
        platform = self.platform()
        context = OAuthContext(state=secrets.token_urlsafe(8), redirect_uri=REDIRECT)
        consent = await follow_consent(self.http, await platform.authorization_url(context))
        grant = await platform.exchange_code(consent["code"], context)
        account = await platform.verify(credentials("linkedin", grant.access_token, "?"))
        return credentials(
            "linkedin",
            grant.access_token,
            account.account_id,
            refresh_token=grant.refresh_token,
            **account.extra,
        )


@pytest.fixture(scope="module")
async def env() -> AsyncIterator[Env]:
    fake = FakeLinkedIn()
    async with serve(fake.app()) as url, media_server() as media, http_client() as http:
        fake.base_url = url
        yield Env(fake, url, media, http)


@pytest.fixture
async def creds(env: Env) -> Credentials:
    env.fake.failures.clear()
    return await env.connect()


def test_the_adapter_is_registered():
    assert adapter_class("linkedin") is LinkedInPlatform


async def test_the_code_flow_gives_a_60_day_token_and_a_refresh_token(env: Env):
    platform = env.platform()
    context = OAuthContext(state="st", redirect_uri=REDIRECT)
    url = await platform.authorization_url(context)
    assert url.startswith(f"{env.url}/oauth/v2/authorization?") and "w_member_social" in url
    consent = await follow_consent(env.http, url)
    assert consent["state"] == "st"
    with pytest.raises(RejectedError):
        await platform.exchange_code(
            consent["code"], OAuthContext(state="st", redirect_uri="http://127.0.0.1:9/other")
        )
    consent = await follow_consent(env.http, url)
    grant = await platform.exchange_code(consent["code"], context)
    assert grant.expires_at is not None and grant.expires_at - datetime.now(UTC) > timedelta(
        days=59
    )
    assert grant.scopes == ("openid", "profile", "w_member_social")
    creds = credentials("linkedin", grant.access_token, SUB, refresh_token=grant.refresh_token)
    account = await platform.verify(creds)
    assert account.account_id == SUB and account.extra["author"] == f"urn:li:person:{SUB}"

    refreshed = await platform.refresh(creds)
    assert refreshed.access_token != grant.access_token
    with pytest.raises(AuthExpiredError):
        await platform.refresh(credentials("linkedin", "t", SUB, refresh_token="unknown"))
    with pytest.raises(AuthExpiredError):
        await platform.refresh(credentials("linkedin", "t", SUB))

    await platform.revoke(creds)
    with pytest.raises(RevokedError):
        await platform.verify(creds)


async def test_a_text_post_sends_the_version_headers_and_little_text(env: Env, creds: Credentials):
    platform = env.platform()
    text = f"Hiring (remote) #jobs @ACME [apply] {{now}} *fast* 50% <3 ~ {secrets.token_hex(3)}"
    published = await platform.publish(creds, publish_request(text))
    assert published.platform_post_id.startswith("urn:li:share:")
    assert published.url == f"https://www.linkedin.com/feed/update/{published.platform_post_id}/"
    post = env.fake.posts[published.platform_post_id]
    assert post["commentary"] == little_text(text)
    assert "\\#jobs" in post["commentary"] and "\\(remote\\)" in post["commentary"]
    assert post["author"] == f"urn:li:person:{SUB}" and post["lifecycleState"] == "PUBLISHED"
    assert "content" not in post


async def test_images_are_initialized_then_put_then_posted(env: Env, creds: Credentials):
    platform = env.platform()
    photos = [image_bytes(200_000, seed=i) for i in range(3)]
    items = tuple(
        media_item(env.media.add(p, "image/jpeg"), p, alt_text=f"alt {i}")
        for i, p in enumerate(photos)
    )
    start = len(env.fake.calls)
    single = await platform.publish(
        creds, publish_request(f"one {secrets.token_hex(3)}", items[:1])
    )
    urn = env.fake.posts[single.platform_post_id]["content"]["media"]["id"]
    assert env.fake.images[urn]["data"] == photos[0]
    assert [(m, p.split("/urn")[0]) for m, p in env.fake.calls[start:]] == [
        ("POST", "/rest/images"),
        ("PUT", "/upload/image"),
        ("POST", "/rest/posts"),
    ]
    multi = await platform.publish(creds, publish_request(f"three {secrets.token_hex(3)}", items))
    images = env.fake.posts[multi.platform_post_id]["content"]["multiImage"]["images"]
    assert [i["altText"] for i in images] == ["alt 0", "alt 1", "alt 2"]
    assert [env.fake.images[i["id"]]["data"] for i in images] == photos


async def test_a_video_is_uploaded_in_the_parts_linkedin_asks_for(env: Env, creds: Credentials):
    platform = env.platform()
    clip = image_bytes(PART * 2 + 5000, seed=4)
    video = media_item(
        env.media.add(clip, "video/mp4"), clip, kind="video", content_type="video/mp4"
    )
    start = len(env.fake.calls)
    published = await platform.publish(
        creds, publish_request(f"video {secrets.token_hex(3)}", (video,))
    )
    urn = env.fake.posts[published.platform_post_id]["content"]["media"]["id"]
    stored = env.fake.videos[urn]
    assert b"".join(stored["parts"][i] for i in sorted(stored["parts"])) == clip
    steps = [(m, p.split("/urn")[0]) for m, p in env.fake.calls[start:]]
    assert steps == [
        ("POST", "/rest/videos"),
        ("PUT", "/upload/video"),
        ("PUT", "/upload/video"),
        ("PUT", "/upload/video"),
        ("POST", "/rest/videos"),
        ("GET", "/rest/videos"),
        ("GET", "/rest/videos"),
        ("POST", "/rest/posts"),
    ]


async def test_a_retired_version_is_a_configuration_error_not_a_retry(env: Env, creds: Credentials):
    with pytest.raises(RejectedError) as retired:
        await env.platform(version="202301").publish(creds, publish_request("x"))
    assert retired.value.code == "version_retired" and retired.value.status == 426
    assert "platforms.linkedin.version" in retired.value.message


LINKEDIN_DUPLICATE_WITHOUT_URN = {
    "status": 422,
    "code": "DUPLICATE_POST",
    "message": "Content is a duplicate",
}


async def test_errors_map_onto_the_interface(env: Env, creds: Credentials):
    platform = env.platform()
    text = f"twice {secrets.token_hex(3)}"
    first = await platform.publish(creds, publish_request(text))
    again = await platform.publish(creds, publish_request(text))  # 422 DUPLICATE_POST
    assert again.platform_post_id == first.platform_post_id
    env.fake.fail("/rest/posts", 422, LINKEDIN_DUPLICATE_WITHOUT_URN, method="POST")
    with pytest.raises(RejectedError) as duplicate:
        await platform.publish(creds, publish_request(f"never posted {secrets.token_hex(3)}"))
    assert duplicate.value.code == "duplicate"

    env.fake.fail(
        "/rest/posts",
        429,
        {"status": 429, "message": "Resource level throttle limit reached"},
        headers={"Retry-After": "30"},
    )
    with pytest.raises(TransientError) as throttled:
        await platform.publish(creds, publish_request("x"))
    assert throttled.value.retry_after_s == 30

    env.fake.fail("/rest/posts", 500, {"status": 500, "message": "Internal Server Error"})
    with pytest.raises(TransientError):
        await platform.publish(creds, publish_request("x"))

    env.fake.set_all("expired")
    with pytest.raises(AuthExpiredError) as expired:
        await platform.publish(creds, publish_request("x"))
    assert expired.value.code == "EXPIRED_ACCESS_TOKEN"
    env.fake.set_all("revoked")
    with pytest.raises(RevokedError):
        await platform.publish(creds, publish_request("x"))
    env.fake.set_all("ok")


async def test_an_unknown_outcome_is_reconciled_from_the_authors_posts(
    env: Env, creds: Credentials
):
    platform = env.platform()
    photo = image_bytes(3000)
    item = media_item(env.media.add(photo, "image/jpeg"), photo)
    request = publish_request(f"Did #this go out? {secrets.token_hex(3)}", (item,))
    assert await platform.find_published(creds, request) is None
    published = await platform.publish(creds, request)
    found = await platform.find_published(creds, request)
    assert found is not None and found.platform_post_id == published.platform_post_id
    assert await platform.find_published(creds, publish_request(request.content.text)) is None
    await platform.delete(creds, published.platform_post_id)
    await platform.delete(creds, published.platform_post_id)  # gone already: fine
    assert await platform.find_published(creds, request) is None

    env.fake.fail(
        "/rest/posts",
        403,
        {
            "status": 403,
            "serviceErrorCode": 100,
            "code": "ACCESS_DENIED",
            "message": "Not enough permissions to access: partnerApiPostsExternal.FINDER-author",
        },
        method="GET",
    )
    with pytest.raises(NotSupportedError):
        await platform.find_published(creds, request)


async def test_metrics_for_a_page_are_daily_and_posts_have_social_actions(
    env: Env, creds: Credentials
):
    platform = env.platform()
    page = credentials("linkedin", creds.access_token, SUB, author="urn:li:organization:2414183")
    published = await platform.publish(page, publish_request(f"page post {secrets.token_hex(3)}"))
    today = datetime.now(UTC).date()
    report = await platform.fetch_metrics(
        page, today - timedelta(days=2), today, [published.platform_post_id]
    )
    assert [d.day for d in report.account] == [
        today - timedelta(days=2),
        today - timedelta(days=1),
        today,
    ]
    first = report.account[0]
    assert (first.reach, first.impressions, first.engagement) == (100, 200, 12)
    [post] = report.posts
    assert (post.likes, post.comments, post.engagement) == (7, 2, 9)
    member = await platform.fetch_metrics(creds, today, today)
    assert not member.account and not member.posts


def test_limits():
    platform = LinkedInPlatform(None, {})  # validation needs no HTTP
    assert platform.validate(PostContent(text="a" * 3000)) == []
    assert [p.field for p in platform.validate(PostContent(text="a" * 3001))] == ["text"]
    assert little_text("a_b*c\\d") == "a\\_b\\*c\\\\d"


async def test_a_crash_between_the_platforms_commit_and_its_answer(env: Env, creds: Credentials):
    platform = env.platform()
    request = publish_request(f"lost answer {secrets.token_hex(3)}")
    posts_before = len(env.fake.posts)
    env.fake.drop("/rest/posts")
    with pytest.raises(TransientError):
        await platform.publish(creds, request)
    found = await platform.find_published(creds, request)
    assert found is not None
    # A retry that did not ask first: LinkedIn's duplicate refusal gives the post.
    retried = await platform.publish(creds, request)
    assert retried.platform_post_id == found.platform_post_id
    assert len(env.fake.posts) == posts_before + 1
