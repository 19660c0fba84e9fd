"""The X adapter against a fake X API over real HTTP: OAuth 2 with PKCE and a confidential
client, rotating refresh, the chunked media upload in order with documented segment sizes,
posts, reconciliation despite t.co links, errors, public metrics, weighted counting."""

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
from fakes.x import CLIENT_ID, CLIENT_SECRET, MAX_SEGMENT, USER_ID, USERNAME, FakeX
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
from pressroom_publishing.platforms.x import XPlatform

pytestmark = pytest.mark.integration

REDIRECT = "http://127.0.0.1:9/v1/connections/x/callback"
FAMILY = "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466"


@dataclass
class Env:
    fake: FakeX
    url: str
    media: MediaFiles
    http: PlatformHTTP

    def platform(self, **config: object) -> XPlatform:
        return XPlatform(
            self.http,
            {
                "api_url": self.url,
                "auth_url": f"{self.url}/i/oauth2/authorize",
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                **config,
            },
        )

    async def connect(self) -> Credentials:
        platform = self.platform()
        context = OAuthContext(
            state=secrets.token_urlsafe(8),
            redirect_uri=REDIRECT,
            code_verifier=secrets.token_urlsafe(48),
        )
        consent = await follow_consent(self.http, await platform.authorization_url(context))
        grant = await platform.exchange_code(consent["code"], context)
        return credentials(
            "x", grant.access_token, USER_ID, refresh_token=grant.refresh_token, username=USERNAME
        )


@pytest.fixture(scope="module")
async def env() -> AsyncIterator[Env]:
    fake = FakeX()
    async with serve(fake.app()) as url, media_server() as media, http_client() as http:
        fake.base_url = url
        yield Env(fake, url, media, http)


@pytest.fixture
async def creds(env: Env) -> Credentials:
    env.fake.failures.clear()
    return await env.connect()


def test_the_adapter_is_registered():
    assert adapter_class("x") is XPlatform


async def test_the_code_flow_with_pkce_and_basic_client_auth(env: Env):
    platform = env.platform()
    context = OAuthContext(
        state="st", redirect_uri=REDIRECT, code_verifier=secrets.token_urlsafe(48)
    )
    url = await platform.authorization_url(context)
    assert url.startswith(f"{env.url}/i/oauth2/authorize?") and "offline.access" in url
    consent = await follow_consent(env.http, url)
    assert consent["state"] == "st"
    wrong = OAuthContext(state="st", redirect_uri=REDIRECT, code_verifier="v" * 50)
    with pytest.raises(RejectedError):
        await platform.exchange_code(consent["code"], wrong)  # wrong verifier; the code is spent

    consent = await follow_consent(env.http, url)
    grant = await platform.exchange_code(consent["code"], context)
    assert grant.refresh_token and grant.expires_at is not None
    assert timedelta(seconds=7190) < grant.expires_at - datetime.now(UTC) <= timedelta(seconds=7200)
    with pytest.raises(RejectedError):
        await platform.exchange_code(consent["code"], context)  # single use

    unauthenticated = env.platform(client_secret=None)
    consent = await follow_consent(env.http, url)
    with pytest.raises(RejectedError) as refused:
        await unauthenticated.exchange_code(consent["code"], context)
    assert refused.value.code == "unauthorized_client"

    creds = credentials("x", grant.access_token, USER_ID, refresh_token=grant.refresh_token)
    account = await platform.verify(creds)
    assert (account.account_id, account.extra["username"]) == (USER_ID, USERNAME)


async def test_refresh_rotates_and_an_expired_token_is_auth_expired(env: Env, creds: Credentials):
    platform = env.platform()
    env.fake.expire_access()
    with pytest.raises(AuthExpiredError):
        await platform.publish(creds, publish_request("x"))
    grant = await platform.refresh(creds)
    assert grant.refresh_token != creds.refresh_token
    with pytest.raises(AuthExpiredError):  # the old refresh token is spent
        await platform.refresh(creds)
    fresh = credentials("x", grant.access_token, USER_ID, refresh_token=grant.refresh_token)
    assert (await platform.verify(fresh)).account_id == USER_ID
    await platform.revoke(fresh)
    with pytest.raises(AuthExpiredError):
        await platform.verify(fresh)
    with pytest.raises(AuthExpiredError):
        await platform.refresh(fresh)


async def test_a_video_goes_through_the_chunked_upload_in_order(env: Env, creds: Credentials):
    platform = env.platform()  # default 4 MiB segments
    clip = image_bytes(9 * 1024 * 1024 + 123, seed=5)
    video = media_item(
        env.media.add(clip, "video/mp4"), clip, kind="video", content_type="video/mp4"
    )
    start = len(env.fake.calls)
    published = await platform.publish(
        creds, publish_request(f"clip {secrets.token_hex(3)}", (video,))
    )
    [(media_id, upload)] = list(env.fake.uploads.items())[-1:]
    assert upload["media_category"] == "tweet_video" and upload["total_bytes"] == len(clip)
    assert [len(s) for s in upload["segments"]] == [
        4 * 1024 * 1024,
        4 * 1024 * 1024,
        1024 * 1024 + 123,
    ]
    assert all(len(s) <= MAX_SEGMENT for s in upload["segments"])
    assert b"".join(upload["segments"]) == clip
    assert env.fake.calls[start:] == [
        ("POST", "/2/media/upload/initialize"),
        ("POST", f"/2/media/upload/{media_id}/append"),
        ("POST", f"/2/media/upload/{media_id}/append"),
        ("POST", f"/2/media/upload/{media_id}/append"),
        ("POST", f"/2/media/upload/{media_id}/finalize"),
        ("GET", "/2/media/upload"),
        ("GET", "/2/media/upload"),
        ("POST", "/2/tweets"),
    ]
    assert env.fake.tweets[published.platform_post_id]["media_keys"] == [f"13_{media_id}"]
    assert published.url == f"https://x.com/{USERNAME}/status/{published.platform_post_id}"


async def test_images_upload_without_processing(env: Env, creds: Credentials):
    platform = env.platform(chunk_size=64 * 1024)
    photos = [image_bytes(150_000, seed=i) for i in range(2)]
    items = tuple(media_item(env.media.add(p, "image/jpeg"), p) for p in photos)
    published = await platform.publish(
        creds, publish_request(f"photos {secrets.token_hex(3)}", items)
    )
    assert len(env.fake.tweets[published.platform_post_id]["media_keys"]) == 2
    latest = list(env.fake.uploads.values())[-2:]
    assert [b"".join(u["segments"]) for u in latest] == photos
    assert [len(s) for s in latest[0]["segments"]] == [65536, 65536, 150_000 - 131072]

    failing = image_bytes(1000)
    item = media_item(
        env.media.add(failing, "video/mp4"), failing, kind="video", content_type="video/mp4"
    )
    env.fake.status_polls = 1
    uploads = len(env.fake.uploads)
    env.fake.fail(
        "/2/media/upload",
        200,
        {
            "data": {
                "id": "x",
                "processing_info": {
                    "state": "failed",
                    "error": {
                        "code": 1,
                        "name": "InvalidMedia",
                        "message": "Unsupported video codec",
                    },
                },
            }
        },
        method="GET",
    )
    with pytest.raises(RejectedError) as failed:
        await platform.publish(creds, publish_request("bad codec", (item,)))
    assert failed.value.code == "InvalidMedia" and len(env.fake.uploads) == uploads + 1
    env.fake.status_polls = 2


async def test_errors_map_onto_the_interface(env: Env, creds: Credentials):
    platform = env.platform()
    reset = int(datetime.now(UTC).timestamp()) + 90
    env.fake.fail(
        "/2/tweets",
        429,
        {
            "title": "Too Many Requests",
            "detail": "Too Many Requests",
            "type": "about:blank",
            "status": 429,
        },
        headers={
            "x-rate-limit-limit": "100",
            "x-rate-limit-remaining": "0",
            "x-rate-limit-reset": str(reset),
        },
    )
    with pytest.raises(TransientError) as limited:
        await platform.publish(creds, publish_request("x"))
    assert 80 < (limited.value.retry_after_s or 0) <= 90

    daily = int(datetime.now(UTC).timestamp()) + 3600
    env.fake.fail(
        "/2/tweets",
        429,
        {
            "title": "Too Many Requests",
            "detail": "Too Many Requests",
            "type": "about:blank",
            "status": 429,
        },
        headers={
            "x-rate-limit-reset": str(reset),
            "x-user-limit-24hour-remaining": "0",
            "x-user-limit-24hour-reset": str(daily),
        },
    )
    with pytest.raises(TransientError) as capped:
        await platform.publish(creds, publish_request("x"))
    assert (capped.value.retry_after_s or 0) > 3500

    # A duplicate refusal on a retry: the earlier attempt went out, so it is found and
    # returned; a refusal naming a post that cannot be found stays a refusal.
    text = f"same {secrets.token_hex(3)}"
    first = await platform.publish(creds, publish_request(text))
    again = await platform.publish(creds, publish_request(text))
    assert again.platform_post_id == first.platform_post_id
    duplicate_body = {
        "title": "Forbidden",
        "detail": "You are not allowed to create a Tweet with duplicate content.",
        "type": "about:blank",
        "status": 403,
    }
    env.fake.fail("/2/tweets", 403, duplicate_body)
    with pytest.raises(RejectedError) as duplicate:
        await platform.publish(creds, publish_request(f"never posted {secrets.token_hex(3)}"))
    assert duplicate.value.code == "duplicate"

    env.fake.fail(
        "/2/tweets",
        400,
        {
            "errors": [{"message": "Your media IDs are invalid.", "parameters": {}}],
            "title": "Invalid Request",
            "detail": "One or more parameters to your request was invalid.",
            "type": "https://api.twitter.com/2/problems/invalid-request",
        },
    )
    with pytest.raises(RejectedError) as invalid:
        await platform.publish(creds, publish_request("x"))
    assert invalid.value.code == "invalid-request"

    env.fake.fail("/2/tweets", 503, "Service Unavailable")
    with pytest.raises(TransientError):
        await platform.publish(creds, publish_request("x"))


async def test_an_unknown_outcome_is_reconciled_despite_tco_links(env: Env, creds: Credentials):
    platform = env.platform()
    photo = image_bytes(5000, seed=7)
    item = media_item(env.media.add(photo, "image/jpeg"), photo)
    request = publish_request(
        f"Q&A <today> {secrets.token_hex(3)} https://example.com/agenda, or pressroom.dev/faq",
        (item,),
    )
    assert await platform.find_published(creds, request) is None
    published = await platform.publish(creds, request)
    stored = env.fake.tweets[published.platform_post_id]["text"]
    assert "t.co" in stored and "&amp;" in stored
    found = await platform.find_published(creds, request)
    assert found is not None and found.platform_post_id == published.platform_post_id
    assert await platform.find_published(creds, publish_request(request.content.text)) is None

    await platform.delete(creds, published.platform_post_id)
    assert published.platform_post_id not in env.fake.tweets
    assert await platform.find_published(creds, request) is None


async def test_metrics_map_public_metrics(env: Env, creds: Credentials):
    platform = env.platform()
    published = await platform.publish(creds, publish_request(f"m {secrets.token_hex(3)}"))
    today = datetime.now(UTC).date()
    report = await platform.fetch_metrics(creds, today, today, [published.platform_post_id])
    assert [(d.day, d.followers) for d in report.account] == [(today, 1200)]
    [post] = report.posts
    assert (post.impressions, post.likes, post.comments, post.shares, post.engagement) == (
        900,
        10,
        2,
        5,
        20,
    )


def test_weighted_counting():
    platform = XPlatform(None, {})  # validation needs no HTTP
    assert count_text("a" * 280, TextCount.WEIGHTED) == 280
    assert platform.validate(PostContent(text="a" * 280)) == []
    assert platform.validate(PostContent(text="a" * 281)) != []
    # CJK counts 2: 140 fit, 141 do not.
    assert platform.validate(PostContent(text="漢" * 140)) == []
    assert platform.validate(PostContent(text="漢" * 141)) != []
    # An emoji sequence counts 2 whatever its code points.
    assert count_text(FAMILY, TextCount.WEIGHTED) == 2
    assert platform.validate(PostContent(text=FAMILY * 140)) == []
    assert platform.validate(PostContent(text=FAMILY * 141)) != []
    # A URL counts 23 whatever its length; combining marks are normalised first.
    url = "https://example.com/" + "x" * 200
    assert count_text(f"{'a' * 256} {url}", TextCount.WEIGHTED) == 280
    assert count_text("e\u0301" * 280, TextCount.WEIGHTED) == 280
    assert platform.validate(PostContent(text="e\u0301" * 280)) == []
    # Without a scheme too, when the host ends in a known TLD (``extractUrlsWithoutProtocol``);
    # not in an address, nor after ``.``/``-``/``/``, nor an unknown TLD.
    assert count_text("www.example.org/x, then", TextCount.WEIGHTED) == 23 + 6
    assert count_text("bob@example.com", TextCount.WEIGHTED) == 15
    assert count_text("v1.2.3 a.b.c", TextCount.WEIGHTED) == 12


async def test_a_crash_between_the_platforms_commit_and_its_answer(env: Env, creds: Credentials):
    """X has no idempotency key: only reconciliation keeps the retry from posting twice
    (X would refuse the duplicate text anyway)."""
    platform = env.platform()
    request = publish_request(f"lost answer {secrets.token_hex(3)}")
    env.fake.drop("/2/tweets")
    with pytest.raises(TransientError):
        await platform.publish(creds, request)
    found = await platform.find_published(creds, request)
    assert found is not None and found.platform_post_id in env.fake.tweets
    # Had the retry gone out without asking first, X's duplicate refusal gives the post.
    retried = await platform.publish(creds, request)
    assert retried.platform_post_id == found.platform_post_id
    assert len([t for t in env.fake.tweets.values() if t["raw"] == request.content.text]) == 1
