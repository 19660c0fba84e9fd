"""Review of the platform adapters against the platforms' own rules (issue #12): each test
states what the platform's documentation or reference library does and fails where the
adapter's counting differs, so a post passes our validation and is refused by the platform
(or the other way round)."""

from __future__ import annotations

import contextlib
import secrets
import unicodedata
import uuid
from datetime import UTC, date, datetime
from typing import Any

import pytest
from aiohttp import web
from fakes import (
    credentials,
    follow_consent,
    http_client,
    image_bytes,
    media_item,
    media_server,
    publish_request,
    serve,
)
from fakes import instagram as ig_fake
from fakes import pinterest as pn_fake
from fakes import threads as th_fake
from fakes import tiktok as tt_fake
from pressroom_publishing.platforms import linkedin
from pressroom_publishing.platforms.base import (
    MediaItem,
    OAuthContext,
    Platform,
    PlatformHTTP,
    PublishRequest,
    TextCount,
    TransientError,
    count_text,
)
from pressroom_publishing.platforms.instagram import InstagramPlatform
from pressroom_publishing.platforms.pinterest import PinterestPlatform
from pressroom_publishing.platforms.text import mastodon_length, weighted_length
from pressroom_publishing.platforms.threads import ThreadsPlatform
from pressroom_publishing.platforms.tiktok import TikTokPlatform

pytestmark = pytest.mark.integration


def test_x_counts_a_url_without_scheme_as_23() -> None:
    """twitter-text v3 (the counting X's docs point to, "Counting characters") extracts URLs
    without a protocol (``extractUrlsWithoutProtocol`` defaults to true) when the host has a
    valid TLD, and weighs every extracted URL ``transformedURLLength`` 23. 260 letters, a
    space and ``example.com`` weigh 260 + 1 + 23 = 284: over 280, X answers 403/400."""
    assert weighted_length("a" * 260 + " example.com") == 284


def test_x_bare_domain_with_path_counts_23() -> None:
    """``pressroom.dev/some/long/path`` is one URL for twitter-text, weighing 23."""
    assert weighted_length("read pressroom.dev/" + "p" * 60) == 5 + 23


def test_mastodon_counts_only_urls_with_a_scheme() -> None:
    """Mastodon's StatusLengthValidator counts URLs found by
    ``extract_urls_with_indices(text, extract_url_without_protocol: false)``: ``www.``
    without ``http(s)://`` is ordinary text, counted character by character."""
    text = "www." + "a" * 100 + ".com"
    assert mastodon_length(text) == len(text)


@pytest.mark.parametrize(
    ("text", "graphemes"),
    [
        ("\u0915\u093f", 1),  # Devanagari KA + vowel sign I (a SpacingMark, category Mc)
        ("\r\n", 1),  # UAX #29 GB3: CR LF is one cluster
        (unicodedata.normalize("NFD", "\ud55c"), 1),  # Hangul L V T jamo: one syllable
        ("\u0e01\u0e33", 1),  # Thai KO KAI + SARA AM (SpacingMark)
    ],
)
def test_graphemes_follow_uax29_extended_clusters(text: str, graphemes: int) -> None:
    """Bluesky's post lexicon limits ``text`` to 300 ``maxGraphemes``, which the atproto
    lexicon defines as Unicode extended grapheme clusters (UAX #29). SpacingMark (Mc),
    CR LF and Hangul jamo sequences join a cluster; the approximation counts them apart,
    so 300 Hindi syllables are refused as 600."""
    assert count_text(text, TextCount.GRAPHEMES) == graphemes


# --- a failure after the post went out must not read as "not posted" -----------------------

GRAPH_500 = {
    "error": {
        "message": "An unexpected error has occurred. Please retry your request later.",
        "type": "OAuthException",
        "code": 2,
        "is_transient": True,
        "fbtrace_id": "Ab1",
    }
}


async def _publish_like_the_scheduler(
    platform: Platform, creds: Any, request: PublishRequest
) -> None:
    """scheduler.py ``_attempt``: a ``TransientError`` that carries an HTTP status is a
    plain retry (``reopen=False``, no ``find_published``); only one without a status is
    reconciled first. So the adapter must not raise one with a status once the post is
    live; here the retry is made as the scheduler would make it."""
    try:
        await platform.publish(creds, request)
    except TransientError as exc:
        if exc.status is None:
            assert await platform.find_published(creds, request) is not None
            return
        await platform.publish(creds, request)


async def _connect(platform: Platform, http: PlatformHTTP, name: str) -> Any:
    context = OAuthContext(state=secrets.token_urlsafe(8), redirect_uri="http://127.0.0.1:9/cb")
    consent = await follow_consent(http, await platform.authorization_url(context))
    grant = await platform.exchange_code(consent["code"], context)
    account = await platform.verify(credentials(name, grant.access_token, "?"))
    return credentials(name, grant.access_token, account.account_id)


async def test_threads_permalink_read_failing_after_threads_publish_double_posts() -> None:
    """threads.py publish: after ``threads_publish`` answered the id, a ``GET /{id}`` for the
    permalink that fails 500 (Graph code 2, "retry your request later") raises
    ``TransientError(status=500)``; the scheduler retries and a second post goes out."""
    fake = th_fake.FakeThreads()
    async with serve(fake.app()) as url, http_client() as http:
        fake.base_url = url
        platform = ThreadsPlatform(
            http,
            {
                "graph_url": url,
                "auth_url": f"{url}/oauth/authorize",
                "client_id": th_fake.APP_ID,
                "client_secret": th_fake.APP_SECRET,
                "poll_s": 0.01,
            },
        )
        creds = await _connect(platform, http, "threads")
        next_id = str(18000000000000000 + len(fake.media) + 1)
        fake.fail(f"{th_fake.V}/{next_id}", 500, GRAPH_500, method="GET")
        await _publish_like_the_scheduler(platform, creds, publish_request("hello threads"))
        assert len(fake.media) == 1, "the post went out twice"


async def test_instagram_permalink_read_failing_after_media_publish_double_posts() -> None:
    """instagram.py publish: the same ``GET /{media-id}?fields=permalink,timestamp`` after
    ``media_publish``; its failure makes the scheduler publish the photo a second time."""
    fake = ig_fake.FakeInstagram()
    async with serve(fake.app()) as url, media_server() as media, http_client() as http:
        fake.base_url = url
        platform = InstagramPlatform(
            http,
            {
                "graph_url": url,
                "oauth_api_url": url,
                "auth_url": f"{url}/oauth/authorize",
                "client_id": ig_fake.APP_ID,
                "client_secret": ig_fake.APP_SECRET,
                "poll_s": 0.01,
            },
        )
        creds = await _connect(platform, http, "instagram")
        data = image_bytes(10_000)
        photo = media_item(media.add(data, "image/jpeg"), data)
        next_id = str(18000000000000000 + len(fake.media) + 1)
        fake.fail(f"{ig_fake.V}/{next_id}", 500, GRAPH_500, method="GET")
        await _publish_like_the_scheduler(platform, creds, publish_request("kite", (photo,)))
        assert len(fake.media) == 1, "the photo went out twice"


async def test_tiktok_status_fetch_failing_after_the_upload_double_posts() -> None:
    """tiktok.py ``_wait``: once ``video/init`` is accepted and every chunk is uploaded,
    TikTok publishes the Direct Post by itself (the Content Posting API's "Get Post Status"
    only reports on it). A 500 ``internal_error`` from ``status/fetch`` raises
    ``TransientError(status=500)``; the scheduler's retry makes a second ``video/init`` and a
    second upload: two videos. (The fake creates the video only when its status is polled,
    so the existing tests cannot see this.)"""
    fake = tt_fake.FakeTikTok()
    async with serve(fake.app()) as url, media_server() as media, http_client() as http:
        fake.base_url = url
        platform = TikTokPlatform(
            http,
            {
                "api_url": url,
                "auth_url": f"{url}/v2/auth/authorize/",
                "client_key": tt_fake.CLIENT_KEY,
                "client_secret": tt_fake.CLIENT_SECRET,
                "poll_s": 0.01,
            },
        )
        context = OAuthContext(
            state="s", redirect_uri="http://127.0.0.1:9/cb", code_verifier=secrets.token_urlsafe(48)
        )
        consent = await follow_consent(http, await platform.authorization_url(context))
        grant = await platform.exchange_code(consent["code"], context)
        creds = credentials("tiktok", grant.access_token, tt_fake.OPEN_ID, username="acme")
        data = image_bytes(200_000)
        video = MediaItem(
            media_id=uuid.uuid4(),
            kind="video",
            content_type="video/mp4",
            size_bytes=len(data),
            url=media.add(data, "video/mp4"),
            duration_s=10.0,
        )
        fake.fail(
            "/v2/post/publish/status/fetch/",
            500,
            {"data": {}, "error": {"code": "internal_error", "message": "", "log_id": "x"}},
            method="POST",
        )
        with contextlib.suppress(TransientError):
            await _publish_like_the_scheduler(platform, creds, publish_request("clip", (video,)))
        uploaded = [s for s in fake.uploads.values() if s.get("done")]
        assert len(uploaded) == 1, f"{len(uploaded)} complete Direct Posts for one post"


class S3LikePinterest(pn_fake.FakePinterest):
    """The fake, with the one thing real S3 does that it leaves out: a request body sent
    with ``Transfer-Encoding: chunked`` is refused with 501 ``NotImplemented`` ("A header
    you provided implies functionality that is not implemented", ``<Header>``
    Transfer-Encoding), and one without ``Content-Length`` with 411
    ``MissingContentLength``."""

    async def s3_upload(self, request: web.Request) -> web.Response:
        if "chunked" in request.headers.get("Transfer-Encoding", "").lower():
            return web.Response(
                status=501,
                text="<Error><Code>NotImplemented</Code><Header>Transfer-Encoding</Header></Error>",
            )
        if request.headers.get("Content-Length") is None:
            return web.Response(status=411, text="<Error><Code>MissingContentLength</Code></Error>")
        return await super().s3_upload(request)


async def test_pinterest_video_upload_is_a_form_post_s3_accepts() -> None:
    """pinterest.py ``_upload_video``: ``POST /v5/media`` answers an ``upload_url`` on
    Amazon S3 (``pinterest-media-upload.s3-accelerate.amazonaws.com``) with the form fields
    of an S3 POST policy. The adapter streams the file as an ``AsyncIterablePayload``
    of unknown length, so aiohttp sends the multipart body chunked; S3 answers 501, the
    adapter calls that transient, and every video pin fails after its retries."""
    fake = S3LikePinterest()
    async with serve(fake.app()) as url, media_server() as media, http_client() as http:
        fake.base_url = url
        platform = PinterestPlatform(
            http,
            {
                "api_url": url,
                "auth_url": f"{url}/oauth/",
                "client_id": pn_fake.CLIENT_ID,
                "client_secret": pn_fake.CLIENT_SECRET,
                "media_poll_s": 0.01,
            },
        )
        creds = await _connect(platform, http, "pinterest")
        clip = image_bytes(300_000, seed=5)
        video = media_item(
            media.add(clip, "video/mp4"), clip, kind="video", content_type="video/mp4"
        )
        published = await platform.publish(creds, publish_request("video", (video,)))
        assert fake.pins[published.platform_post_id]


def test_linkedin_default_version_is_still_served() -> None:
    """linkedin.py ``DEFAULT_VERSION = "202510"``. LinkedIn's Marketing "Migrations" page:
    "Developers using LinkedIn Marketing APIs version 202510 (October 2025) to migrate to
    the latest versions. | October 15, 2026". Past that date every call with the default
    config answers 426 (the adapter's ``version_retired``): no LinkedIn post goes out
    unless each deployment overrides ``version``."""
    version = linkedin.DEFAULT_VERSION
    # "supported and stable for a minimum of one year before sunset" (Versioning); 202510
    # went on October 15, 2026, a year after its release month.
    sunset = date(int(version[:4]) + 1, int(version[4:6]), 15)
    assert datetime.now(UTC).date() < sunset, f"LinkedIn-Version {version} is sunset"
