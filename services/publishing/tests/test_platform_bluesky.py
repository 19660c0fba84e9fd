"""The Bluesky adapter against a fake PDS over real HTTP: app-password sessions, refresh
with rotation, posts with facets by UTF-8 byte offsets and image embeds with alt text,
reconciliation by the reference in the record, errors, counts, and grapheme limits."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from fakes import (
    MediaFiles,
    credentials,
    http_client,
    image_bytes,
    media_item,
    media_server,
    publish_request,
    serve,
)
from fakes.bluesky import DID, HANDLE, PASSWORD, FakeBluesky
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
from pressroom_publishing.platforms.bluesky import REFERENCE_FIELD, BlueskyPlatform
from pressroom_publishing.platforms.text import spans

pytestmark = pytest.mark.integration

FAMILY = "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466"


@dataclass
class Env:
    fake: FakeBluesky
    url: str
    media: MediaFiles
    http: PlatformHTTP

    def platform(self) -> BlueskyPlatform:
        return BlueskyPlatform(self.http, {"service_url": self.url})

    async def connect(self) -> Credentials:
        grant, account = await self.platform().create_session(HANDLE, PASSWORD)
        return credentials(
            "bluesky",
            grant.access_token,
            account.account_id,
            refresh_token=grant.refresh_token,
            **account.extra,
        )


@pytest.fixture(scope="module")
async def env() -> AsyncIterator[Env]:
    fake = FakeBluesky()
    async with serve(fake.app()) as url, media_server() as media, http_client() as http:
        fake.base_url = url
        yield Env(fake, url, media, http)


@pytest.fixture
async def creds(env: Env) -> Credentials:
    env.fake.failures.clear()
    return await env.connect()


def test_the_adapter_is_registered():
    assert adapter_class("bluesky") is BlueskyPlatform


async def test_an_app_password_gives_a_session_on_the_accounts_pds(env: Env):
    platform = env.platform()
    grant, account = await platform.create_session(HANDLE, PASSWORD, env.url)
    assert account.account_id == DID and account.extra == {"service_url": env.url, "handle": HANDLE}
    assert grant.refresh_token and grant.expires_at is not None
    expected = datetime.fromtimestamp(env.fake.now + 7200, UTC)
    assert abs((grant.expires_at - expected).total_seconds()) <= 1
    with pytest.raises(RejectedError) as wrong:
        await platform.create_session(HANDLE, "not-the-password")
    assert wrong.value.code == "AuthenticationRequired"
    with pytest.raises(NotSupportedError):
        await platform.authorization_url(OAuthContext(state="s", redirect_uri="http://x"))


async def test_an_expired_access_token_refreshes_and_the_old_refresh_token_is_spent(
    env: Env, creds: Credentials
):
    platform = env.platform()
    assert (await platform.verify(creds)).account_id == DID
    env.fake.expire_all()
    with pytest.raises(AuthExpiredError) as expired:
        await platform.verify(creds)
    assert expired.value.code == "ExpiredToken"
    grant = await platform.refresh(creds)
    assert grant.refresh_token and grant.refresh_token != creds.refresh_token
    fresh = credentials(
        "bluesky", grant.access_token, DID, refresh_token=grant.refresh_token, **creds.extra
    )
    assert (await platform.verify(fresh)).name == HANDLE
    with pytest.raises(RevokedError):  # rotated: the old one is revoked
        await platform.refresh(creds)

    await platform.revoke(fresh)
    with pytest.raises(RevokedError):
        await platform.refresh(fresh)


async def test_a_post_gets_facets_by_utf8_byte_offsets(env: Env, creds: Credentials):
    platform = env.platform()
    text = "Grüße ✨ @bob.test and @nobody.test: see https://example.com/a. #launch #2024"
    published = await platform.publish(creds, publish_request(text))
    assert published.platform_post_id.startswith(f"at://{DID}/app.bsky.feed.post/")
    rkey = published.platform_post_id.rsplit("/", 1)[-1]
    assert published.url == f"https://bsky.app/profile/{HANDLE}/post/{rkey}"
    record = env.fake.records[rkey]
    raw = text.encode("utf-8")
    found = {
        raw[f["index"]["byteStart"] : f["index"]["byteEnd"]].decode(): f["features"][0]
        for f in record["facets"]
    }
    assert found == {
        "@bob.test": {
            "$type": "app.bsky.richtext.facet#mention",
            "did": "did:plc:bobbobbobbobbobbobbobbob",
        },
        "https://example.com/a": {
            "$type": "app.bsky.richtext.facet#link",
            "uri": "https://example.com/a",
        },
        "#launch": {"$type": "app.bsky.richtext.facet#tag", "tag": "launch"},
    }
    assert record[REFERENCE_FIELD].endswith(":test")


async def test_images_are_uploaded_as_blobs_and_embedded_with_alt_text(
    env: Env, creds: Credentials
):
    platform = env.platform()
    photos = [image_bytes(400_000 + i, seed=i) for i in range(2)]
    items = tuple(
        media_item(env.media.add(data, "image/jpeg"), data, alt_text=f"photo {i}")
        for i, data in enumerate(photos)
    )
    start = len(env.fake.calls)
    published = await platform.publish(creds, publish_request("two photos", items))
    paths = [path for _, path in env.fake.calls[start:]]
    assert paths == [
        "/xrpc/com.atproto.repo.uploadBlob",
        "/xrpc/com.atproto.repo.uploadBlob",
        "/xrpc/com.atproto.repo.createRecord",
    ]
    record = env.fake.records[published.platform_post_id.rsplit("/", 1)[-1]]
    images = record["embed"]["images"]
    assert [image["alt"] for image in images] == ["photo 0", "photo 1"]
    stored = [env.fake.blobs[image["image"]["ref"]["$link"]]["data"] for image in images]
    assert stored == photos

    big = image_bytes(1_000_001)
    too_big = media_item(env.media.add(big, "image/jpeg"), big)
    with pytest.raises(RejectedError) as refused:
        await platform.publish(creds, publish_request("too big", (too_big,)))
    assert refused.value.code == "validation"
    video = media_item("http://127.0.0.1:9/v.mp4", b"x", kind="video", content_type="video/mp4")
    assert [p.field for p in platform.validate(PostContent(text="v", media=(video,)))] == ["media"]


async def test_errors_map_onto_the_interface(env: Env, creds: Credentials):
    platform = env.platform()
    env.fake.fail(
        "/xrpc/com.atproto.repo.createRecord",
        429,
        {"error": "RateLimitExceeded", "message": "Rate Limit Exceeded"},
        headers={"ratelimit-reset": str(int(datetime.now(UTC).timestamp()) + 60)},
    )
    with pytest.raises(TransientError) as limited:
        await platform.publish(creds, publish_request("x"))
    assert limited.value.retry_after_s is not None and 50 < limited.value.retry_after_s <= 60

    env.fake.fail(
        "/xrpc/com.atproto.repo.createRecord",
        502,
        {"error": "UpstreamFailure", "message": "Upstream Failure"},
    )
    with pytest.raises(TransientError):
        await platform.publish(creds, publish_request("x"))

    env.fake.fail(
        "/xrpc/com.atproto.repo.createRecord",
        400,
        {"error": "InvalidRequest", "message": "Invalid app.bsky.feed.post record"},
    )
    with pytest.raises(RejectedError) as rejected:
        await platform.publish(creds, publish_request("x"))
    assert rejected.value.code == "InvalidRequest"

    env.fake.fail(
        "/xrpc/com.atproto.server.getSession",
        400,
        {"error": "AccountTakedown", "message": "Account has been taken down"},
    )
    with pytest.raises(RevokedError):
        await platform.verify(creds)


async def test_an_unknown_outcome_is_found_by_its_reference(env: Env, creds: Credentials):
    platform = env.platform()
    request = publish_request("did this go out?")
    assert await platform.find_published(creds, request) is None
    published = await platform.publish(creds, request)
    found = await platform.find_published(creds, request)
    assert found is not None and found.platform_post_id == published.platform_post_id
    # Same text, another reference: another post.
    assert await platform.find_published(creds, publish_request("did this go out?")) is None
    await platform.delete(creds, published.platform_post_id)
    assert await platform.find_published(creds, request) is None


async def test_metrics_are_todays_counts(env: Env, creds: Credentials):
    platform = env.platform()
    published = await platform.publish(creds, publish_request("count me"))
    today = datetime.now(UTC).date()
    report = await platform.fetch_metrics(
        creds, today - timedelta(days=1), today, [published.platform_post_id]
    )
    assert [(d.day, d.followers) for d in report.account] == [(today, 40)]
    [post] = report.posts
    assert (post.likes, post.shares, post.comments, post.engagement) == (5, 3, 3, 11)


def test_grapheme_and_byte_limits():
    platform = BlueskyPlatform(None, {})  # validation needs no HTTP
    assert platform.validate(PostContent(text="a" * 300)) == []
    assert [p.field for p in platform.validate(PostContent(text="a" * 301))] == ["text"]
    # A family is one grapheme of 25 bytes: 120 fill the 3,000 bytes, 121 do not.
    assert platform.validate(PostContent(text=FAMILY * 120)) == []
    assert [p.field for p in platform.validate(PostContent(text=FAMILY * 121))] == ["text"]
    assert platform.validate(PostContent(text="a\u0308" * 300)) == []
    assert platform.validate(PostContent(text="🇯🇵" * 300)) == []
    assert platform.validate(PostContent(text="🇯🇵" * 301)) != []
    # UAX #29 extended clusters: a Devanagari syllable with its spacing vowel sign is one.
    assert platform.validate(PostContent(text="\u0915\u093f" * 300)) == []


def test_a_bare_domain_is_a_link_facet_like_the_official_client_makes():
    """The Bluesky app's ``detectFacets`` links ``bsky.app`` (a known TLD) as https."""
    [span] = spans("go to bsky.app/profile now, or mail bob@example.com")
    assert (span.kind, span.value) == ("link", "https://bsky.app/profile")
    assert (span.byte_start, span.byte_end) == (6, 22)


async def test_a_crash_between_the_platforms_commit_and_its_answer(env: Env, creds: Credentials):
    platform = env.platform()
    request = publish_request("lost answer")
    records = len(env.fake.records)
    env.fake.drop("/xrpc/com.atproto.repo.createRecord")
    with pytest.raises(TransientError):
        await platform.publish(creds, request)
    assert len(env.fake.records) == records + 1  # it went out
    found = await platform.find_published(creds, request)
    assert found is not None and found.platform_post_id.endswith(max(env.fake.records))


async def test_the_pds_agrees_with_the_grapheme_count(env: Env, creds: Credentials):
    platform = env.platform()
    await platform.publish(creds, publish_request(FAMILY * 120))
    await platform.publish(creds, publish_request("🇯🇵" * 150 + "e\u0301" * 150))
    with pytest.raises(RejectedError) as refused:
        await platform.publish(creds, publish_request(FAMILY * 121))
    assert refused.value.code == "validation"
