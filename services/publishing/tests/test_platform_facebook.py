"""The Facebook adapter against a fake Graph API over real HTTP: login, long-lived
exchange and the page token, feed posts, one photo, several photos as unpublished photos
attached to one post, a video, Graph error codes, reconciliation, page and post insights."""

from __future__ import annotations

import json
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
from fakes.facebook import APP_ID, APP_SECRET, OTHER_PAGE_ID, PAGE_ID, FakeFacebook
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
from pressroom_publishing.platforms.facebook import FacebookPlatform

pytestmark = pytest.mark.integration

REDIRECT = "http://127.0.0.1:9/v1/connections/facebook/callback"


@dataclass
class Env:
    fake: FakeFacebook
    url: str
    media: MediaFiles
    http: PlatformHTTP

    def platform(self) -> FacebookPlatform:
        return FacebookPlatform(
            self.http,
            {
                "graph_url": self.url,
                "dialog_url": self.url,
                "client_id": APP_ID,
                "client_secret": APP_SECRET,
            },
        )

    async def connect(self, **extra: str) -> Credentials:
        platform = self.platform()
        context = OAuthContext(state=secrets.token_urlsafe(8), redirect_uri=REDIRECT, extra=extra)
        consent = await follow_consent(self.http, await platform.authorization_url(context))
        grant = await platform.exchange_code(consent["code"], context)
        account = await platform.verify(credentials("facebook", grant.access_token, "?"))
        return credentials("facebook", grant.access_token, account.account_id)


@pytest.fixture(scope="module")
async def env() -> AsyncIterator[Env]:
    fake = FakeFacebook()
    async with serve(fake.app()) as url, media_server() as media, http_client() as http:
        fake.base_url = url
        yield Env(fake, url, media, http)


@pytest.fixture
async def creds(env: Env) -> Credentials:
    env.fake.failures.clear()
    return await env.connect()


def test_the_adapter_is_registered():
    assert adapter_class("facebook") is FacebookPlatform


async def test_login_gives_the_token_of_the_page_the_user_may_post_to(env: Env):
    platform = env.platform()
    context = OAuthContext(state="st", redirect_uri=REDIRECT)
    url = await platform.authorization_url(context)
    assert url.startswith(f"{env.url}/v21.0/dialog/oauth?") and "pages_manage_posts" in url
    consent = await follow_consent(env.http, url)
    grant = await platform.exchange_code(consent["code"], context)
    assert grant.expires_at is None and grant.refresh_token is None
    assert env.fake.page_tokens[grant.access_token] == PAGE_ID  # the page with CREATE_CONTENT
    account = await platform.verify(credentials("facebook", grant.access_token, "?"))
    assert (account.account_id, account.name) == (PAGE_ID, "Acme")
    with pytest.raises(RejectedError):
        await platform.exchange_code(consent["code"], context)  # used
    chosen = await env.connect(page_id=OTHER_PAGE_ID)
    assert chosen.account_id == OTHER_PAGE_ID
    with pytest.raises(AuthExpiredError):
        await platform.refresh(chosen)


async def test_text_link_photo_photos_and_video(env: Env, creds: Credentials):
    platform = env.platform()
    text = await platform.publish(
        creds, publish_request(f"hello {secrets.token_hex(3)}", link="https://example.com")
    )
    assert text.platform_post_id.startswith(f"{PAGE_ID}_")
    assert env.fake.posts[text.platform_post_id]["link"] == "https://example.com"

    photos = [image_bytes(50_000, seed=i) for i in range(3)]
    items = tuple(
        media_item(env.media.add(p, "image/jpeg"), p, alt_text=f"alt {i}")
        for i, p in enumerate(photos)
    )
    single = await platform.publish(
        creds, publish_request(f"one {secrets.token_hex(3)}", items[:1])
    )
    [photo_id] = env.fake.posts[single.platform_post_id]["media"]
    assert (
        env.fake.photos[photo_id]["bytes"] == photos[0]
        and env.fake.photos[photo_id]["alt"] == "alt 0"
    )

    start = len(env.fake.calls)
    multi = await platform.publish(creds, publish_request(f"three {secrets.token_hex(3)}", items))
    assert [p for _, p in env.fake.calls[start:]] == [f"/v21.0/{PAGE_ID}/photos"] * 3 + [
        f"/v21.0/{PAGE_ID}/feed"
    ]
    attached = env.fake.posts[multi.platform_post_id]["media"]
    assert [env.fake.photos[i]["bytes"] for i in attached] == photos
    assert not any(env.fake.photos[i]["published"] for i in attached)

    clip = image_bytes(80_000, seed=9)
    video = media_item(
        env.media.add(clip, "video/mp4"), clip, kind="video", content_type="video/mp4"
    )
    published = await platform.publish(creds, publish_request("watch", (video,)))
    assert env.fake.videos[published.platform_post_id]["bytes"] == clip
    assert (
        published.url == f"https://www.facebook.com/{PAGE_ID}/videos/{published.platform_post_id}"
    )


async def test_graph_error_codes_map_onto_the_interface(env: Env, creds: Credentials):
    platform = env.platform()

    def graph(code: int, subcode: int | None = None, message: str = "error") -> dict[str, object]:
        error: dict[str, object] = {
            "message": message,
            "type": "OAuthException",
            "code": code,
            "fbtrace_id": "x",
        }
        if subcode is not None:
            error["error_subcode"] = subcode
        return {"error": error}

    feed = f"/v21.0/{PAGE_ID}/feed"
    env.fake.fail(feed, 400, graph(190, 463, "Error validating access token: Session has expired"))
    with pytest.raises(AuthExpiredError):
        await platform.publish(creds, publish_request("x"))
    env.fake.fail(
        feed,
        400,
        graph(190, 458, "Error validating access token: The user has not authorized application"),
    )
    with pytest.raises(RevokedError):
        await platform.publish(creds, publish_request("x"))
    for code in (4, 17, 32, 613):
        usage = {
            PAGE_ID: [{"type": "pages", "call_count": 100, "estimated_time_to_regain_access": 7}]
        }
        env.fake.fail(
            feed,
            400,
            graph(code, message="(#32) Page request limit reached"),
            headers={"X-Business-Use-Case-Usage": json.dumps(usage)},
        )
        with pytest.raises(TransientError) as limited:
            await platform.publish(creds, publish_request("x"))
        assert limited.value.code == str(code) and limited.value.retry_after_s == 420
    env.fake.fail(
        feed,
        500,
        graph(2, message="An unexpected error has occurred. Please retry your request later."),
    )
    with pytest.raises(TransientError):
        await platform.publish(creds, publish_request("x"))
    env.fake.fail(feed, 400, graph(368, message="The action attempted has been deemed abusive"))
    with pytest.raises(RejectedError) as abusive:
        await platform.publish(creds, publish_request("x"))
    assert abusive.value.code == "368"

    # 506 on a retry: the earlier attempt went out; it is found and returned. A 506 for a
    # post that cannot be found stays a refusal.
    text = f"same {secrets.token_hex(3)}"
    first = await platform.publish(creds, publish_request(text))
    again = await platform.publish(creds, publish_request(text))
    assert again.platform_post_id == first.platform_post_id
    env.fake.fail(feed, 400, graph(506, message="(#506) Duplicate status message"))
    with pytest.raises(RejectedError) as duplicate:
        await platform.publish(creds, publish_request(f"never posted {secrets.token_hex(3)}"))
    assert duplicate.value.code == "duplicate"

    gone = media_item(f"{env.media.base_url}/files/missing", b"x")
    with pytest.raises(RejectedError) as missing:
        await platform.publish(creds, publish_request("x", (gone,)))
    assert missing.value.code == "324"

    with pytest.raises(AuthExpiredError):
        await platform.verify(credentials("facebook", "EAAPnot-a-token", PAGE_ID))


async def test_an_unknown_outcome_is_reconciled_from_the_pages_posts(env: Env, creds: Credentials):
    platform = env.platform()
    request = publish_request(f"Did this   go out? {secrets.token_hex(3)}")
    assert await platform.find_published(creds, request) is None
    published = await platform.publish(creds, request)
    found = await platform.find_published(creds, request)
    assert found is not None and found.platform_post_id == published.platform_post_id
    assert found.url == f"https://www.facebook.com/{published.platform_post_id}"
    await platform.delete(creds, published.platform_post_id)
    await platform.delete(creds, published.platform_post_id)  # already gone
    assert await platform.find_published(creds, request) is None


async def test_insights_map_by_day_and_per_post(env: Env, creds: Credentials):
    platform = env.platform()
    published = await platform.publish(creds, publish_request(f"measure {secrets.token_hex(3)}"))
    today = datetime.now(UTC).date()
    since = today - timedelta(days=2)
    report = await platform.fetch_metrics(creds, since, today, [published.platform_post_id])
    assert [d.day for d in report.account] == [since, since + timedelta(days=1), today]
    first = report.account[0]
    assert (first.impressions, first.reach, first.engagement, first.followers) == (
        10 + since.day,
        20 + since.day,
        30 + since.day,
        40 + since.day,
    )
    [post] = report.posts
    assert (post.impressions, post.reach, post.likes, post.comments, post.shares) == (
        500,
        300,
        25,
        6,
        4,
    )
    assert post.engagement == 25 + 6 + 4 + 12


def test_limits():
    platform = FacebookPlatform(None, {})  # validation needs no HTTP
    assert platform.validate(PostContent(text="a" * 63_206)) == []
    assert [p.field for p in platform.validate(PostContent(text="a" * 63_207))] == ["text"]


async def test_a_crash_between_the_platforms_commit_and_its_answer(env: Env, creds: Credentials):
    platform = env.platform()
    request = publish_request(f"lost answer {secrets.token_hex(3)}")
    env.fake.drop(f"/v21.0/{PAGE_ID}/feed")
    with pytest.raises(TransientError):
        await platform.publish(creds, request)
    found = await platform.find_published(creds, request)
    assert found is not None and found.platform_post_id in env.fake.posts
