"""The Pinterest adapter against a fake Pinterest API over real HTTP: OAuth with HTTP
Basic client authentication and refresh, pins from image URLs on the chosen board, several
images, a video registered and uploaded as a form, reconciliation by the private note,
errors, daily analytics, and the pin rules."""

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
from fakes.pinterest import BOARD_ID, CLIENT_ID, CLIENT_SECRET, OTHER_BOARD, FakePinterest
from pressroom_publishing.platforms import adapter_class
from pressroom_publishing.platforms.base import (
    AuthExpiredError,
    Credentials,
    OAuthContext,
    PlatformHTTP,
    PostContent,
    PublishRequest,
    RejectedError,
    TransientError,
)
from pressroom_publishing.platforms.pinterest import PinterestPlatform

pytestmark = pytest.mark.integration

REDIRECT = "http://127.0.0.1:9/v1/connections/pinterest/callback"


@dataclass
class Env:
    fake: FakePinterest
    url: str
    media: MediaFiles
    http: PlatformHTTP

    def platform(self) -> PinterestPlatform:
        return PinterestPlatform(
            self.http,
            {
                "api_url": self.url,
                "auth_url": f"{self.url}/oauth/",
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "media_poll_s": 0.01,
            },
        )

    def photo(self, seed: int = 1, alt: str | None = None):
        data = image_bytes(8_000, seed=seed)
        return media_item(self.media.add(data, "image/jpeg"), data, alt_text=alt), data

    async def connect(self) -> Credentials:
        platform = self.platform()
        context = OAuthContext(state=secrets.token_urlsafe(8), redirect_uri=REDIRECT)
        consent = await follow_consent(self.http, await platform.authorization_url(context))
        grant = await platform.exchange_code(consent["code"], context)
        account = await platform.verify(credentials("pinterest", grant.access_token, "?"))
        return credentials(
            "pinterest", grant.access_token, account.account_id, refresh_token=grant.refresh_token
        )


@pytest.fixture(scope="module")
async def env() -> AsyncIterator[Env]:
    fake = FakePinterest()
    async with serve(fake.app()) as url, media_server() as media, http_client() as http:
        fake.base_url = url
        yield Env(fake, url, media, http)


@pytest.fixture
async def creds(env: Env) -> Credentials:
    env.fake.failures.clear()
    return await env.connect()


def with_options(request: PublishRequest, **options: object) -> PublishRequest:
    content = PostContent(
        text=request.content.text,
        media=request.content.media,
        link=request.content.link,
        options=options,
    )
    return PublishRequest(post_id=request.post_id, reference=request.reference, content=content)


def test_the_adapter_is_registered():
    assert adapter_class("pinterest") is PinterestPlatform


async def test_the_code_flow_and_refresh(env: Env):
    platform = env.platform()
    context = OAuthContext(state="st", redirect_uri=REDIRECT)
    consent = await follow_consent(env.http, await platform.authorization_url(context))
    grant = await platform.exchange_code(consent["code"], context)
    assert grant.refresh_token and grant.expires_at is not None
    assert timedelta(days=29) < grant.expires_at - datetime.now(UTC) <= timedelta(days=30)
    assert "pins:write" in grant.scopes
    with pytest.raises(RejectedError):
        await platform.exchange_code(consent["code"], context)
    creds = credentials("pinterest", grant.access_token, "x", refresh_token=grant.refresh_token)
    account = await platform.verify(creds)
    assert account.name == "Acme" and account.extra["followers"] == 960
    # Continuous refresh (``refresh_on``): every refresh answers a new refresh token.
    renewed = await platform.refresh(creds)
    assert renewed.access_token != grant.access_token
    assert renewed.refresh_token and renewed.refresh_token != grant.refresh_token
    assert renewed.refresh_token in env.fake.refresh
    with pytest.raises(AuthExpiredError):
        await platform.refresh(credentials("pinterest", "t", "x", refresh_token="pinr_unknown"))
    with pytest.raises(AuthExpiredError):
        await platform.verify(credentials("pinterest", "pina_unknown", "x"))


async def test_image_images_and_video_pins(env: Env, creds: Credentials):
    platform = env.platform()
    image, data = env.photo(1, alt="a blue mug")
    request = with_options(
        publish_request("Our mug", (image,), link="https://shop.example/mug"), title="Mug"
    )
    single = await platform.publish(creds, request)
    pin = env.fake.pins[single.platform_post_id]
    assert pin["board_id"] == BOARD_ID and pin["_images"] == [data]
    assert (pin["title"], pin["link"], pin["alt_text"]) == (
        "Mug",
        "https://shop.example/mug",
        "a blue mug",
    )
    assert single.url == f"https://www.pinterest.com/pin/{single.platform_post_id}/"

    items = (env.photo(2)[0], env.photo(3)[0], env.photo(4)[0])
    several = await platform.publish(
        creds, with_options(publish_request("three", items), board_id=OTHER_BOARD)
    )
    assert env.fake.pins[several.platform_post_id]["board_id"] == OTHER_BOARD
    assert len(env.fake.pins[several.platform_post_id]["_images"]) == 3

    clip = image_bytes(300_000, seed=5)
    video = media_item(
        env.media.add(clip, "video/mp4"), clip, kind="video", content_type="video/mp4"
    )
    start = len(env.fake.calls)
    published = await platform.publish(creds, publish_request("video", (video,)))
    assert [p for _, p in env.fake.calls[start:]] == [
        "/v5/boards",
        "/v5/media",
        "/s3-upload",
        f"/v5/media/{env.fake.pins[published.platform_post_id]['_source']['media_id']}",
        f"/v5/media/{env.fake.pins[published.platform_post_id]['_source']['media_id']}",
        "/v5/pins",
    ]
    media_id = env.fake.pins[published.platform_post_id]["_source"]["media_id"]
    assert env.fake.media[media_id]["bytes"] == clip


async def test_errors(env: Env, creds: Credentials):
    platform = env.platform()
    image, _ = env.photo(6)
    env.fake.fail(
        "/v5/pins",
        429,
        {"code": 8, "message": "You have exceeded your rate limit. Try again later."},
        headers={"Retry-After": "12"},
    )
    with pytest.raises(TransientError) as limited:
        await platform.publish(creds, publish_request("x", (image,)))
    assert limited.value.retry_after_s == 12
    env.fake.fail("/v5/pins", 500, {"code": 1, "message": "Something went wrong"})
    with pytest.raises(TransientError):
        await platform.publish(creds, publish_request("x", (image,)))
    gone = media_item(f"{env.media.base_url}/files/missing", b"x")
    with pytest.raises(RejectedError) as fetch:
        await platform.publish(creds, publish_request("x", (gone,)))
    assert fetch.value.message == "Sorry! We could not fetch the image."
    with pytest.raises(RejectedError):
        await platform.publish(creds, with_options(publish_request("x", (image,)), board_id="404"))


async def test_an_unknown_outcome_is_found_by_the_private_note(env: Env, creds: Credentials):
    platform = env.platform()
    request = publish_request("did it pin?", (env.photo(7)[0],))
    assert await platform.find_published(creds, request) is None
    published = await platform.publish(creds, request)
    found = await platform.find_published(creds, request)
    assert found is not None and found.platform_post_id == published.platform_post_id
    assert (
        await platform.find_published(creds, publish_request("did it pin?", request.content.media))
        is None
    )
    await platform.delete(creds, published.platform_post_id)
    await platform.delete(creds, published.platform_post_id)
    assert await platform.find_published(creds, request) is None


async def test_daily_analytics(env: Env, creds: Credentials):
    platform = env.platform()
    published = await platform.publish(creds, publish_request("measure", (env.photo(8)[0],)))
    today = datetime.now(UTC).date()
    since = today - timedelta(days=2)
    report = await platform.fetch_metrics(creds, since, today, [published.platform_post_id])
    assert [d.day for d in report.account] == [
        since,
        since + timedelta(days=1),
    ]  # today is not ready
    assert (report.account[0].impressions, report.account[0].engagement) == (
        1000 + since.day,
        1001 + since.day,
    )
    first = report.posts[0]
    # IMPRESSION, SAVE, PIN_CLICK, OUTBOUND_CLICK, TOTAL_COMMENTS = 10..14 + day
    d = since.day
    assert (first.impressions, first.shares, first.comments) == (10 + d, 11 + d, 14 + d)
    assert first.engagement == (11 + d) + (14 + d) + (12 + d) + (13 + d)


def test_pin_rules():
    platform = PinterestPlatform(None, {})  # validation needs no HTTP
    image = media_item("http://127.0.0.1:9/a.jpg", b"x")
    assert platform.validate(PostContent(text="a" * 500, media=(image,))) == []
    assert [p.field for p in platform.validate(PostContent(text="a" * 501, media=(image,)))] == [
        "text"
    ]
    assert [p.field for p in platform.validate(PostContent(text="no media"))] == ["media"]
    assert platform.validate(PostContent(text="six", media=(image,) * 6)) != []
    titled = PostContent(text="t", media=(image,), options={"title": "x" * 101})
    assert [p.field for p in platform.validate(titled)] == ["options.title"]


async def test_a_crash_between_the_platforms_commit_and_its_answer(env: Env, creds: Credentials):
    platform = env.platform()
    request = publish_request("lost answer", (env.photo(9)[0],))
    env.fake.drop("/v5/pins")
    with pytest.raises(TransientError):
        await platform.publish(creds, request)
    found = await platform.find_published(creds, request)
    assert found is not None and found.platform_post_id in env.fake.pins
