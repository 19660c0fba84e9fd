"""The TikTok adapter against a fake TikTok API over real HTTP: Login Kit with TikTok's hex
PKCE challenge and rotating refresh tokens, creator info first, Direct Post with chunked
FILE_UPLOAD by the media transfer rules and with PULL_FROM_URL, status until complete,
envelope errors, reconciliation by title, counts, and the video rules."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

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
from fakes.tiktok import CLIENT_KEY, CLIENT_SECRET, MB, OPEN_ID, FakeTikTok
from pressroom_publishing.platforms import adapter_class
from pressroom_publishing.platforms.base import (
    AuthExpiredError,
    Credentials,
    MediaItem,
    NotSupportedError,
    OAuthContext,
    PlatformHTTP,
    PostContent,
    PublishRequest,
    RejectedError,
    RevokedError,
    TransientError,
)
from pressroom_publishing.platforms.tiktok import TikTokPlatform, chunk_plan

pytestmark = pytest.mark.integration

REDIRECT = "http://127.0.0.1:9/v1/connections/tiktok/callback"


@dataclass
class Env:
    fake: FakeTikTok
    url: str
    media: MediaFiles
    http: PlatformHTTP

    def platform(self, **config: object) -> TikTokPlatform:
        return TikTokPlatform(
            self.http,
            {
                "api_url": self.url,
                "auth_url": f"{self.url}/v2/auth/authorize/",
                "client_key": CLIENT_KEY,
                "client_secret": CLIENT_SECRET,
                "poll_s": 0.01,
                **config,
            },
        )

    def video(
        self, size: int, seed: int = 1, duration: float | None = 30.0
    ) -> tuple[MediaItem, bytes]:
        data = image_bytes(size, seed=seed)
        url = self.media.add(data, "video/mp4")
        return (
            MediaItem(
                media_id=uuid.uuid4(),
                kind="video",
                content_type="video/mp4",
                size_bytes=size,
                url=url,
                duration_s=duration,
            ),
            data,
        )

    async def connect(self) -> Credentials:
        platform = self.platform()
        context = OAuthContext(
            state="s", redirect_uri=REDIRECT, code_verifier=secrets.token_urlsafe(48)
        )
        consent = await follow_consent(self.http, await platform.authorization_url(context))
        grant = await platform.exchange_code(consent["code"], context)
        return credentials(
            "tiktok",
            grant.access_token,
            OPEN_ID,
            refresh_token=grant.refresh_token,
            username="acme",
        )


@pytest.fixture(scope="module")
async def env() -> AsyncIterator[Env]:
    fake = FakeTikTok()
    async with serve(fake.app()) as url, media_server() as media, http_client() as http:
        fake.base_url = url
        yield Env(fake, url, media, http)


@pytest.fixture
async def creds(env: Env) -> Credentials:
    env.fake.failures.clear()
    return await env.connect()


def with_options(request: PublishRequest, **options: object) -> PublishRequest:
    content = PostContent(text=request.content.text, media=request.content.media, options=options)
    return PublishRequest(post_id=request.post_id, reference=request.reference, content=content)


def test_the_adapter_is_registered():
    assert adapter_class("tiktok") is TikTokPlatform


async def test_login_kit_with_tiktoks_pkce_and_rotating_refresh(env: Env):
    platform = env.platform()
    context = OAuthContext(
        state="st", redirect_uri=REDIRECT, code_verifier=secrets.token_urlsafe(48)
    )
    url = await platform.authorization_url(context)
    assert f"client_key={CLIENT_KEY}" in url
    consent = await follow_consent(env.http, url)
    wrong = OAuthContext(state="st", redirect_uri=REDIRECT, code_verifier="w" * 50)
    with pytest.raises(RejectedError) as refused:
        await platform.exchange_code(consent["code"], wrong)
    assert refused.value.code == "invalid_grant"
    consent = await follow_consent(env.http, url)
    grant = await platform.exchange_code(consent["code"], context)
    assert grant.refresh_token and "video.publish" in grant.scopes
    assert (
        grant.expires_at is not None
        and (grant.expires_at - datetime.now(UTC)).total_seconds() > 86000
    )
    creds = credentials("tiktok", grant.access_token, OPEN_ID, refresh_token=grant.refresh_token)
    account = await platform.verify(creds)
    assert account.account_id == OPEN_ID and account.extra["followers"] == 2048
    renewed = await platform.refresh(creds)
    assert renewed.refresh_token != grant.refresh_token
    with pytest.raises(AuthExpiredError):  # rotated
        await platform.refresh(creds)
    await platform.revoke(creds)
    with pytest.raises(AuthExpiredError):
        await platform.verify(creds)


async def test_a_large_video_is_uploaded_in_the_documented_chunks(env: Env, creds: Credentials):
    platform = env.platform()
    video, data = env.video(27 * MB + 4321, seed=2)
    start = len(env.fake.calls)
    published = await platform.publish(creds, publish_request("launch video", (video,)))
    [state] = [
        s for s in env.fake.uploads.values() if s.get("video_id") == published.platform_post_id
    ]
    assert state["source"]["chunk_size"] == 10 * MB and state["source"]["total_chunk_count"] == 2
    assert state["chunks"] == [10 * MB, 17 * MB + 4321]  # the last chunk carries the rest
    assert bytes(state["received"]) == data
    paths = [p.split("/upload/")[0] or "/upload" for _, p in env.fake.calls[start:]]
    assert paths == [
        "/v2/post/publish/creator_info/query/",
        "/v2/post/publish/video/init/",
        "/upload",
        "/upload",
        "/v2/post/publish/status/fetch/",
        "/v2/post/publish/status/fetch/",
    ]
    assert (
        state["post"]["privacy_level"] == "PUBLIC_TO_EVERYONE"
        and state["post"]["disable_duet"] is True
    )
    assert published.url == f"https://www.tiktok.com/@acme/video/{published.platform_post_id}"


async def test_a_small_video_goes_whole_and_pull_from_url_uploads_nothing(
    env: Env, creds: Credentials
):
    platform = env.platform()
    video, data = env.video(2 * MB, seed=3)
    published = await platform.publish(
        creds, with_options(publish_request("small", (video,)), privacy_level="SELF_ONLY")
    )
    [state] = [s for s in env.fake.uploads.values() if s["post"]["title"] == "small"]
    assert state["chunks"] == [2 * MB] and bytes(state["received"]) == data
    assert published.platform_post_id.startswith("v_pub_file")  # private: no public post id yet

    pulled, pulled_data = env.video(1 * MB, seed=4)
    gets = len(env.media.gets)
    await env.platform(source="PULL_FROM_URL").publish(creds, publish_request("pulled", (pulled,)))
    [state] = [s for s in env.fake.uploads.values() if s["post"]["title"] == "pulled"]
    assert (
        bytes(state["received"]) == pulled_data and len(env.media.gets) == gets + 1
    )  # TikTok's own GET


async def test_creator_limits_and_errors(env: Env, creds: Credentials):
    platform = env.platform()
    video, _ = env.video(1 * MB, seed=5, duration=900)
    env.fake.max_duration = 600
    with pytest.raises(RejectedError) as long:
        await platform.publish(creds, publish_request("long", (video,)))
    assert long.value.code == "validation"  # over TikTok's 600 s before asking
    env.fake.max_duration = 60
    video, _ = env.video(1 * MB, seed=6, duration=90)
    with pytest.raises(RejectedError) as creator:
        await platform.publish(creds, publish_request("long", (video,)))
    assert creator.value.code == "duration"
    env.fake.max_duration = 600
    env.fake.privacy_options = ["SELF_ONLY"]
    with pytest.raises(RejectedError) as privacy:
        await platform.publish(
            creds, with_options(publish_request("x", (video,)), privacy_level="PUBLIC_TO_EVERYONE")
        )
    assert privacy.value.code == "privacy_level_option_mismatch"
    env.fake.privacy_options = ["PUBLIC_TO_EVERYONE", "MUTUAL_FOLLOW_FRIENDS", "SELF_ONLY"]

    init = "/v2/post/publish/video/init/"
    env.fake.fail(
        init,
        403,
        {
            "data": {},
            "error": {
                "code": "spam_risk_too_many_posts",
                "message": "The daily post cap is reached.",
                "log_id": "x",
            },
        },
    )
    with pytest.raises(TransientError) as capped:
        await platform.publish(creds, publish_request("x", (video,)))
    assert capped.value.retry_after_s == 3600
    env.fake.fail(
        init,
        429,
        {
            "data": {},
            "error": {"code": "rate_limit_exceeded", "message": "Too many requests", "log_id": "x"},
        },
    )
    with pytest.raises(TransientError):
        await platform.publish(creds, publish_request("x", (video,)))
    env.fake.fail(
        init,
        401,
        {
            "data": {},
            "error": {
                "code": "scope_not_authorized",
                "message": "The user did not authorize the scope.",
                "log_id": "x",
            },
        },
    )
    with pytest.raises(RevokedError):
        await platform.publish(creds, publish_request("x", (video,)))
    env.fake.fail(
        init,
        403,
        {
            "data": {},
            "error": {
                "code": "unaudited_client_can_only_post_to_private_accounts",
                "message": "Unaudited clients post privately.",
                "log_id": "x",
            },
        },
    )
    with pytest.raises(RejectedError):
        await platform.publish(creds, publish_request("x", (video,)))
    with pytest.raises(NotSupportedError):
        await platform.delete(creds, "1")


async def test_reconciliation_and_counts(env: Env, creds: Credentials):
    platform = env.platform()
    video, _ = env.video(1 * MB, seed=7)
    request = publish_request(f"find me {secrets.token_hex(3)}", (video,))
    assert await platform.find_published(creds, request) is None
    published = await platform.publish(creds, request)
    found = await platform.find_published(creds, request)
    assert found is not None and found.platform_post_id == published.platform_post_id
    today = datetime.now(UTC).date()
    report = await platform.fetch_metrics(creds, today, today, [published.platform_post_id])
    assert [(d.day, d.followers) for d in report.account] == [(today, 2048)]
    [post] = report.posts
    assert (post.impressions, post.likes, post.comments, post.shares, post.engagement) == (
        5000,
        300,
        25,
        12,
        337,
    )


def test_video_rules_and_chunk_plan():
    platform = TikTokPlatform(None, {})  # validation needs no HTTP
    image = media_item("http://127.0.0.1:9/a.jpg", b"x")
    assert [p.field for p in platform.validate(PostContent(text="photo", media=(image,)))] == [
        "media"
    ]
    assert [p.field for p in platform.validate(PostContent(text="nothing"))] == ["media"]
    assert chunk_plan(3 * MB, 10 * MB) == (3 * MB, 1)
    assert chunk_plan(8 * MB, 10 * MB) == (8 * MB, 1)
    assert chunk_plan(25 * MB, 10 * MB) == (10 * MB, 2)
    assert chunk_plan(200 * MB, 1 * MB) == (5 * MB, 40)  # at least 5 MB a chunk
    assert chunk_plan(700 * MB, 100 * MB) == (64 * MB, 10)  # at most 64 MB


async def test_once_the_upload_is_complete_publish_never_reads_as_not_posted(
    env: Env, creds: Credentials
):
    """TikTok publishes a Direct Post by itself once the upload is complete: a lost or
    failing status/fetch gives the post by its publish id, never a retryable error."""
    platform = env.platform()
    video, _ = env.video(1 * MB, seed=8)
    before = len(env.fake.videos)
    env.fake.drop("/v2/post/publish/status/fetch/")
    published = await platform.publish(
        creds, publish_request(f"lost {secrets.token_hex(3)}", (video,))
    )
    assert published.platform_post_id.startswith("v_pub_") and published.url is None
    env.fake.fail(
        "/v2/post/publish/status/fetch/",
        429,
        {"data": {}, "error": {"code": "rate_limit_exceeded", "message": "", "log_id": "x"}},
        count=100,
    )
    try:
        again = await platform.publish(
            creds, publish_request(f"busy {secrets.token_hex(3)}", (video,))
        )
    finally:
        env.fake.failures.clear()
    assert again.platform_post_id.startswith("v_pub_")
    assert len(env.fake.videos) == before + 2


async def test_a_crash_between_the_platforms_commit_and_its_answer(env: Env, creds: Credentials):
    """The last chunk's answer is lost: TikTok has the whole video and publishes it. While it
    is processing (not yet listed) ``find_published`` finds it by the publish id this
    process started; once listed, also a fresh process finds it by its title."""
    platform = env.platform()
    video, _ = env.video(1 * MB, seed=8)
    request = publish_request(f"lost answer {secrets.token_hex(3)}", (video,))
    env.fake.processing_polls = 1
    env.fake.drop("/upload/", method="PUT", count=2)  # aiohttp resends an idempotent PUT once
    with pytest.raises(TransientError) as lost:
        await platform.publish(creds, request)
    assert lost.value.status is None  # an unknown outcome: the scheduler reconciles
    restarted = env.platform()
    assert await restarted.find_published(creds, request) is None  # still processing
    found = await platform.find_published(creds, request)
    assert found is not None and found.platform_post_id.startswith("v_pub_")
    [upload] = [
        s for s in env.fake.uploads.values() if s["post"].get("title") == request.content.text
    ]
    assert env.fake.videos[upload["video_id"]]["listed"] is False
    await platform.find_published(creds, request)  # processing ends
    found = await restarted.find_published(creds, request)
    assert found is not None and found.platform_post_id == upload["video_id"]
