"""Publishing to the sandbox through the adapter over real HTTP: idempotent by reference,
found again by reference, and every failure mode turned into the right error class."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from pressroom_publishing.platforms.base import (
    AuthExpiredError,
    MediaItem,
    PostContent,
    PublishRequest,
    RejectedError,
    RevokedError,
    TransientError,
)
from sandbox_testkit import SandboxEnv, sandbox_env

pytestmark = pytest.mark.integration

FAMILY = "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466"  # one grapheme


@pytest.fixture(scope="module")
async def env() -> AsyncIterator[SandboxEnv]:
    async with sandbox_env() as shared:
        yield shared


@pytest.fixture(autouse=True)
def _fresh(env: SandboxEnv) -> None:
    env.fresh()


def request(
    text: str = "Hello from Pressroom", *, media: tuple[MediaItem, ...] = ()
) -> PublishRequest:
    post_id = uuid.uuid4()
    return PublishRequest(
        post_id=post_id,
        reference=f"{post_id}:sandbox",
        content=PostContent(text=text, media=media, link="https://example.com/launch"),
    )


def image(url: str | None = "https://cdn.example.com/a.jpg") -> MediaItem:
    return MediaItem(
        media_id=uuid.uuid4(), kind="image", content_type="image/jpeg", size_bytes=1000, url=url
    )


async def test_a_post_goes_out_with_its_url_and_its_page(env: SandboxEnv):
    platform = env.platform()
    credentials = await env.connect("acme")
    published = await platform.publish(credentials, request(media=(image(),)))
    assert published.url == f"{env.base_url}/@acme/{published.platform_post_id}"
    assert published.published_at is not None
    async with env.session.get(published.url) as page:
        assert page.status == 200
        assert "Hello from Pressroom" in await page.text()
    async with env.session.get(
        f"{env.base_url}/@someone-else/{published.platform_post_id}"
    ) as page:
        assert page.status == 404
    [stored] = await env.client.posts()
    assert stored["media"] == [
        {"url": "https://cdn.example.com/a.jpg", "kind": "image", "content_type": "image/jpeg"}
    ]
    assert stored["link"] == "https://example.com/launch"


async def test_the_same_reference_twice_or_concurrently_makes_one_post(env: SandboxEnv):
    platform = env.platform()
    credentials = await env.connect()
    once = request()
    first = await platform.publish(credentials, once)
    again = await platform.publish(credentials, once)
    assert again.platform_post_id == first.platform_post_id
    racing = request()
    results = await asyncio.gather(*(platform.publish(credentials, racing) for _ in range(10)))
    assert len({r.platform_post_id for r in results}) == 1
    posts = await env.client.posts()
    assert sorted(p["idempotency_key"] for p in posts) == sorted([once.reference, racing.reference])
    assert (await env.client.calls())["publish"] == 12


async def test_references_belong_to_one_account(env: SandboxEnv):
    platform = env.platform()
    alice = await env.connect("alice")
    bob = await env.connect("bob")
    shared = request()
    a = await platform.publish(alice, shared)
    assert await platform.find_published(bob, shared) is None
    b = await platform.publish(bob, shared)
    assert a.platform_post_id != b.platform_post_id


async def test_find_published_tells_whether_an_attempt_went_out(env: SandboxEnv):
    platform = env.platform()
    credentials = await env.connect()
    attempt = request()
    assert await platform.find_published(credentials, attempt) is None
    published = await platform.publish(credentials, attempt)
    found = await platform.find_published(credentials, attempt)
    assert found == published
    await platform.delete(credentials, published.platform_post_id)
    await platform.delete(credentials, published.platform_post_id)  # already gone: fine
    assert await platform.find_published(credentials, attempt) is None
    async with env.session.get(published.url or "") as page:
        assert page.status == 404
    async with env.session.get(
        f"{env.base_url}/v1/posts/{published.platform_post_id}",
        headers={"Authorization": f"Bearer {credentials.access_token}"},
    ) as answer:
        assert answer.status == 404
        assert (await answer.json())["error"]["code"] == "not_found"


async def test_a_crash_between_the_platforms_commit_and_its_answer(env: SandboxEnv):
    """The post is created but the answer is a 500: the attempt is retried or reconciled
    by reference, and either way there is one post."""
    platform = env.platform()
    credentials = await env.connect()
    attempt = request()
    await env.client.fail("publish", "error_500", effect=True)
    with pytest.raises(TransientError):
        await platform.publish(credentials, attempt)
    found = await platform.find_published(credentials, attempt)
    assert found is not None
    retried = await platform.publish(credentials, attempt)
    assert retried.platform_post_id == found.platform_post_id
    assert len(await env.client.posts()) == 1


async def test_each_failure_mode_is_its_error_class(env: SandboxEnv):
    platform = env.platform()
    credentials = await env.connect()
    attempt = request()

    await env.client.fail("publish", "error_500")
    with pytest.raises(TransientError) as broken:
        await platform.publish(credentials, attempt)
    assert (broken.value.status, broken.value.retry_after_s) == (500, None)

    await env.client.fail("publish", "rate_limited", retry_after_s=30)
    with pytest.raises(TransientError) as limited:
        await platform.publish(credentials, attempt)
    assert (limited.value.status, limited.value.retry_after_s) == (429, 30)

    await env.client.fail("publish", "token_expired")
    with pytest.raises(AuthExpiredError):
        await platform.publish(credentials, attempt)

    await env.client.fail("publish", "token_revoked")
    with pytest.raises(RevokedError):
        await platform.publish(credentials, attempt)

    await env.client.fail("publish", "rejected", code="spam_detected", message="looks like spam")
    with pytest.raises(RejectedError) as rejected:
        await platform.publish(credentials, attempt)
    assert (rejected.value.code, rejected.value.message) == ("spam_detected", "looks like spam")
    assert rejected.value.status == 422

    assert await env.client.posts() == []
    await platform.publish(credentials, attempt)
    assert len(await env.client.posts()) == 1


async def test_a_platform_that_does_not_answer_is_a_quick_transient_error(env: SandboxEnv):
    platform = env.platform(timeout_s=0.3)
    credentials = await env.connect()
    await env.client.fail("publish", "timeout", delay_s=20)
    started = time.monotonic()
    with pytest.raises(TransientError) as slow:
        await platform.publish(credentials, request())
    assert time.monotonic() - started < 2
    assert "timed out" in slow.value.message
    # The platform notices the hang-up and lets go of the request (no 20 s leftover).
    async with asyncio.timeout(5):
        while env.state.held():
            await asyncio.sleep(0.01)
    assert env.state.posts == {}


async def test_a_held_request_answers_504_when_its_delay_is_shorter(env: SandboxEnv):
    platform = env.platform(timeout_s=5)
    credentials = await env.connect()
    await env.client.fail("me", "timeout", delay_s=0.05)
    with pytest.raises(TransientError) as slow:
        await platform.verify(credentials)
    assert slow.value.status == 504


async def test_count_and_any_and_clearing(env: SandboxEnv):
    platform = env.platform()
    credentials = await env.connect()
    await env.client.fail("any", "error_500", count=2)
    with pytest.raises(TransientError):
        await platform.verify(credentials)
    with pytest.raises(TransientError):
        await platform.find_published(credentials, request())
    await platform.verify(credentials)
    await env.client.fail("publish", "error_500", count=5)
    await env.client.clear_failures()
    await platform.publish(credentials, request())
    calls = await env.client.calls()
    assert (calls["me"], calls["lookup"], calls["publish"]) == (3, 1, 1)


async def test_the_platform_refuses_what_its_capabilities_refuse(env: SandboxEnv):
    platform = env.platform()
    credentials = await env.connect()
    assert platform.validate(request(FAMILY * 500).content) == []
    await platform.publish(credentials, request(FAMILY * 500))

    too_long = request(FAMILY * 501)
    assert [p.field for p in platform.validate(too_long.content)] == ["text"]
    with pytest.raises(RejectedError) as long_text:
        await platform.publish(credentials, too_long)
    assert long_text.value.code == "text_too_long"

    crowded = request(media=tuple(image() for _ in range(5)))
    assert [p.field for p in platform.validate(crowded.content)] == ["media"]
    with pytest.raises(RejectedError) as images:
        await platform.publish(credentials, crowded)
    assert images.value.code == "too_many_images"

    with pytest.raises(RejectedError):
        await platform.publish(credentials, request(media=(image(None),)))


async def test_bad_post_bodies_are_4xx_never_500(env: SandboxEnv):
    credentials = await env.connect()
    headers = {"Authorization": f"Bearer {credentials.access_token}"}
    bodies: list[object] = [
        [],
        {"text": 5},
        {"text": ""},
        {"text": "x", "media": "nope"},
        {"text": "x", "media": [{"url": "ftp://x", "kind": "image", "content_type": "image/png"}]},
        {"text": "x", "media": [{"url": "https://x", "kind": "gif", "content_type": "image/gif"}]},
        {"text": "x", "link": "javascript:1"},
        {
            "text": "x",
            "media": [{"url": "https://x", "kind": "image", "content_type": "video/mp4"}],
        },
    ]
    for body in bodies:
        async with env.session.post(
            f"{env.base_url}/v1/posts", json=body, headers=headers
        ) as answer:
            assert 400 <= answer.status < 500, body
            assert "code" in (await answer.json())["error"]
    async with env.session.post(
        f"{env.base_url}/v1/posts", data=b"{not json", headers=headers
    ) as answer:
        assert answer.status == 400
    async with env.session.post(
        f"{env.base_url}/v1/posts", json={"text": "x"}, headers={**headers, "Idempotency-Key": "é"}
    ) as answer:
        assert answer.status == 400
    async with env.session.post(f"{env.base_url}/v1/posts", json={"text": "x"}) as answer:
        assert answer.status == 401
        assert (await answer.json())["error"]["code"] == "unauthorized"
    async with env.session.get(f"{env.base_url}/v1/nothing/here") as answer:
        assert answer.status == 404


@pytest.mark.parametrize(
    "body",
    [
        {"operation": "publish"},
        {"operation": "everything", "mode": "error_500"},
        {"operation": "publish", "mode": "error_500", "count": 0},
        {"operation": "publish", "mode": "error_500", "delay_s": -1},
        {"operation": "publish", "mode": "error_500", "effect": "yes"},
    ],
)
async def test_bad_control_requests_are_400(env: SandboxEnv, body: dict[str, object]):
    async with env.session.post(f"{env.base_url}/_control/failures", json=body) as answer:
        assert answer.status == 400
    async with env.session.post(
        f"{env.base_url}/_control/settings", json={"token_lifetime_s": -1}
    ) as answer:
        assert answer.status == 400


async def test_media_urls_are_fetched_when_the_platform_is_set_to(env: SandboxEnv):
    async def file(request: web.Request) -> web.Response:
        if request.match_info["name"] == "missing.jpg":
            return web.Response(status=404)
        return web.Response(body=b"\xff\xd8\xff", content_type="image/jpeg")

    app = web.Application()
    app.router.add_get("/{name}", file)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        await env.client.settings(fetch_media=True)
        platform = env.platform()
        credentials = await env.connect()
        live = image(f"http://127.0.0.1:{port}/ok.jpg")
        await platform.publish(credentials, request(media=(live,)))
        with pytest.raises(RejectedError) as unreachable:
            await platform.publish(
                credentials, request(media=(image(f"http://127.0.0.1:{port}/missing.jpg"),))
            )
        assert unreachable.value.code == "media_unreachable"
    finally:
        await runner.cleanup()
