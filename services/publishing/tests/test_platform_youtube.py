"""The YouTube adapter against fake Google OAuth, YouTube Data and Analytics APIs over real
HTTP: offline consent with PKCE, refresh without a new refresh token, the resumable upload
in 256 KiB multiples with 308s, resuming after an interrupted chunk, errors (daily quota
until midnight Pacific), reconciliation from the uploads playlist, analytics by day, and
the title and description rules."""

from __future__ import annotations

import secrets
import uuid
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
from fakes.youtube import CHANNEL_ID, CLIENT_ID, CLIENT_SECRET, UNIT, FakeYouTube
from pressroom_publishing.platforms import adapter_class
from pressroom_publishing.platforms.base import (
    AuthExpiredError,
    Credentials,
    MediaItem,
    OAuthContext,
    PlatformHTTP,
    PostContent,
    PublishRequest,
    RejectedError,
    RevokedError,
    TransientError,
)
from pressroom_publishing.platforms.youtube import YouTubePlatform, title_of

pytestmark = pytest.mark.integration

REDIRECT = "http://127.0.0.1:9/v1/connections/youtube/callback"


@dataclass
class Env:
    fake: FakeYouTube
    url: str
    media: MediaFiles
    http: PlatformHTTP

    def platform(self, **config: object) -> YouTubePlatform:
        return YouTubePlatform(
            self.http,
            {
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "auth_url": f"{self.url}/o/oauth2/v2/auth",
                "token_url": f"{self.url}/token",
                "revoke_url": f"{self.url}/revoke",
                "api_url": self.url,
                "analytics_url": self.url,
                "chunk_size": UNIT * 4,
                **config,
            },
        )

    def video(self, size: int, seed: int = 1) -> tuple[MediaItem, bytes]:
        data = image_bytes(size, seed=seed)
        url = self.media.add(data, "video/mp4")
        item = MediaItem(
            media_id=uuid.uuid4(), kind="video", content_type="video/mp4", size_bytes=size, url=url
        )
        return item, data

    async def connect(self) -> Credentials:
        platform = self.platform()
        context = OAuthContext(
            state="s", redirect_uri=REDIRECT, code_verifier=secrets.token_urlsafe(48)
        )
        consent = await follow_consent(self.http, await platform.authorization_url(context))
        grant = await platform.exchange_code(consent["code"], context)
        return credentials(
            "youtube", grant.access_token, CHANNEL_ID, refresh_token=grant.refresh_token
        )


@pytest.fixture(scope="module")
async def env() -> AsyncIterator[Env]:
    fake = FakeYouTube()
    async with serve(fake.app()) as url, media_server() as media, http_client() as http:
        fake.base_url = url
        yield Env(fake, url, media, http)


@pytest.fixture
async def creds(env: Env) -> Credentials:
    env.fake.failures.clear()
    env.fake.interrupt_put = None
    return await env.connect()


def titled(request: PublishRequest, **options: object) -> PublishRequest:
    content = PostContent(text=request.content.text, media=request.content.media, options=options)
    return PublishRequest(post_id=request.post_id, reference=request.reference, content=content)


def test_the_adapter_is_registered():
    assert adapter_class("youtube") is YouTubePlatform


async def test_offline_consent_with_pkce_and_refresh(env: Env):
    platform = env.platform()
    context = OAuthContext(
        state="st", redirect_uri=REDIRECT, code_verifier=secrets.token_urlsafe(48)
    )
    url = await platform.authorization_url(context)
    assert (
        "access_type=offline" in url
        and "prompt=consent" in url
        and "code_challenge_method=S256" in url
    )
    consent = await follow_consent(env.http, url)
    with pytest.raises(RejectedError):
        await platform.exchange_code(
            consent["code"], OAuthContext(state="st", redirect_uri=REDIRECT, code_verifier="v" * 50)
        )
    consent = await follow_consent(env.http, url)
    grant = await platform.exchange_code(consent["code"], context)
    assert grant.refresh_token and grant.expires_at is not None
    assert (grant.expires_at - datetime.now(UTC)).total_seconds() > 3500
    creds = credentials(
        "youtube", grant.access_token, CHANNEL_ID, refresh_token=grant.refresh_token
    )
    account = await platform.verify(creds)
    assert (account.account_id, account.name, account.extra["followers"]) == (
        CHANNEL_ID,
        "Acme TV",
        777,
    )
    renewed = await platform.refresh(creds)
    assert renewed.refresh_token is None  # Google keeps the first one valid
    await platform.revoke(creds)
    with pytest.raises(RevokedError):
        await platform.refresh(creds)
    with pytest.raises(AuthExpiredError):
        await platform.verify(creds)


async def test_a_resumable_upload_in_256_kib_multiples(env: Env, creds: Credentials):
    platform = env.platform()
    video, data = env.video(UNIT * 9 + 1000, seed=2)
    request = titled(publish_request("Launch day\nEverything about it.", (video,)), tags=["launch"])
    published = await platform.publish(creds, request)
    stored = env.fake.videos[published.platform_post_id]
    assert stored["bytes"] == data
    assert stored["snippet"]["title"] == "Launch day" and stored["snippet"]["tags"] == ["launch"]
    assert stored["status"]["privacyStatus"] == "public"
    [session] = [s for s in env.fake.sessions.values() if bytes(s["data"]) == data]
    assert session["chunks"] == [UNIT * 4, UNIT * 4, UNIT + 1000]
    assert published.url == f"https://www.youtube.com/watch?v={published.platform_post_id}"


async def test_an_interrupted_chunk_resumes_where_the_session_stopped(env: Env, creds: Credentials):
    platform = env.platform()
    video, data = env.video(UNIT * 10, seed=3)
    env.fake.puts = 0
    env.fake.interrupt_put = 2  # the second chunk arrives half
    published = await platform.publish(
        creds, titled(publish_request("resumed", (video,)), privacy="unlisted")
    )
    assert env.fake.videos[published.platform_post_id]["bytes"] == data
    assert env.fake.videos[published.platform_post_id]["status"]["privacyStatus"] == "unlisted"
    [session] = [s for s in env.fake.sessions.values() if bytes(s["data"]) == data]
    assert session["chunks"] == [UNIT * 4, UNIT * 2, UNIT * 2, UNIT * 2]

    video, _ = env.video(UNIT * 10, seed=4)
    env.fake.puts = 0
    env.fake.interrupt_put = 1
    with pytest.raises(TransientError):
        await env.platform(resumes=0).publish(creds, publish_request("no resumes", (video,)))


async def test_errors(env: Env, creds: Credentials):
    platform = env.platform()
    video, _ = env.video(UNIT, seed=5)
    env.fake.fail(
        "/upload/youtube/v3/videos",
        403,
        {
            "error": {
                "code": 403,
                "message": "The request cannot be completed because you have exceeded your quota.",
                "errors": [{"domain": "youtube.quota", "reason": "quotaExceeded"}],
            }
        },
    )
    with pytest.raises(TransientError) as quota:
        await platform.publish(creds, publish_request("x", (video,)))
    assert (
        quota.value.code == "quotaExceeded" and 60 <= (quota.value.retry_after_s or 0) <= 25 * 3600
    )
    env.fake.fail(
        "/upload/youtube/v3/videos",
        400,
        {
            "error": {
                "code": 400,
                "message": "The user has exceeded the number of videos they may upload.",
                "errors": [{"domain": "youtube.video", "reason": "uploadLimitExceeded"}],
            }
        },
    )
    with pytest.raises(TransientError):
        await platform.publish(creds, publish_request("x", (video,)))
    env.fake.fail(
        "/upload/youtube/v3/videos",
        403,
        {
            "error": {
                "code": 403,
                "message": "Forbidden",
                "errors": [{"domain": "youtube.common", "reason": "forbidden"}],
            }
        },
    )
    with pytest.raises(RejectedError) as forbidden:
        await platform.publish(creds, publish_request("x", (video,)))
    assert forbidden.value.code == "forbidden"


async def test_reconciliation_delete_and_analytics(env: Env, creds: Credentials):
    platform = env.platform()
    video, _ = env.video(UNIT, seed=6)
    request = publish_request(f"Find me {secrets.token_hex(3)}\nA description.", (video,))
    assert await platform.find_published(creds, request) is None
    published = await platform.publish(creds, request)
    found = await platform.find_published(creds, request)
    assert found is not None and found.platform_post_id == published.platform_post_id

    today = datetime.now(UTC).date()
    since = today - timedelta(days=1)
    report = await platform.fetch_metrics(creds, since, today, [published.platform_post_id])
    # views, likes, comments, shares: 50/100/150/200 + day for the channel, 5/10/15/20 + day
    # for a video
    assert [(d.day, d.impressions) for d in report.account] == [
        (since, 50 + since.day),
        (today, 50 + today.day),
    ]
    assert report.account[0].engagement == (100 + since.day) + (150 + since.day) + (200 + since.day)
    assert report.account[-1].followers == 777
    first = report.posts[0]
    assert (first.impressions, first.likes, first.comments, first.shares) == (
        5 + since.day,
        10 + since.day,
        15 + since.day,
        20 + since.day,
    )

    await platform.delete(creds, published.platform_post_id)
    await platform.delete(creds, published.platform_post_id)
    assert await platform.find_published(creds, request) is None


def test_title_and_description_rules():
    platform = YouTubePlatform(None, {})  # validation needs no HTTP
    clip = MediaItem(media_id=uuid.uuid4(), kind="video", content_type="video/mp4", size_bytes=10)
    assert title_of(PostContent(text="\n  First line  \nrest")) == "First line"
    assert title_of(PostContent(text="x" * 300)) == "x" * 100
    assert platform.validate(PostContent(text="ok", media=(clip,))) == []
    assert [p.field for p in platform.validate(PostContent(text="a <b> c", media=(clip,)))] == [
        "text"
    ]
    assert platform.validate(PostContent(text="é" * 2500, media=(clip,))) == []  # 5,000 bytes
    assert platform.validate(PostContent(text="é" * 2501, media=(clip,))) != []
    assert (
        platform.validate(PostContent(text="t", media=(clip,), options={"title": "y" * 101})) != []
    )
    image = media_item("http://127.0.0.1:9/a.jpg", b"x")
    assert [p.field for p in platform.validate(PostContent(text="photo", media=(image,)))] == [
        "media"
    ]


async def test_a_lost_answer_to_the_last_chunk_is_recovered_from_the_session(
    env: Env, creds: Credentials
):
    """The upload completed but its answer was lost: asking the session where to resume
    answers the video itself, so the attempt succeeds with the one video."""
    platform = env.platform()
    video, data = env.video(UNIT, seed=9)
    before = len(env.fake.videos)
    env.fake.drop("/upload/session/", method="PUT")
    published = await platform.publish(creds, publish_request("lost answer", (video,)))
    assert len(env.fake.videos) == before + 1
    assert env.fake.videos[published.platform_post_id]["bytes"] == data
