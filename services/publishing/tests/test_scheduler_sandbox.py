"""The service as wired for the local stack, end to end: a brand connects the built-in
sandbox through the OAuth consent page, posts go out through the sandbox adapter with the
vault's tokens; a crash between the sandbox's commit and its answer is reconciled, and an
expired token is refreshed with the sandbox and the call repeated. The sandbox counts."""

from __future__ import annotations

import uuid

import pytest
from pressroom_publishing.posts.commands import client_reference
from publishing_testkit import outbox, sandbox_service, targets
from sandbox_testkit import SandboxClient

pytestmark = pytest.mark.integration


async def connected(service, client: SandboxClient) -> uuid.UUID:
    brand = uuid.uuid4()
    status, out = await service.call(
        "POST", "/v1/connections/sandbox/authorize", brand, role="admin"
    )
    assert status == 200, out
    consent = await client.authorize(out["authorization_url"], username=f"u{brand.hex[:6]}")
    async with service.http.get(consent.location, allow_redirects=False) as answer:
        assert answer.status == 200, await answer.text()
    return brand


async def submitted(service, brand, text="Hello from Pressroom") -> str:
    post = await service.create(brand, content={"text": text}, platforms=["sandbox"])
    status, body = await service.call("POST", f"/v1/posts/{post['id']}/submit", brand)
    assert status == 200 and body["status"] == "scheduled", body
    return post["id"]


async def test_posts_go_out_through_the_sandbox_exactly_once(fresh_db, kafka_bootstrap):
    async with sandbox_service(fresh_db, kafka_bootstrap, platform_timeout_s=1.0) as service:
        client = SandboxClient(f"{service.base}/sandbox-platform", service.http)
        brand = await connected(service, client)

        first = await submitted(service, brand)
        assert await service.scheduler.step() == 1
        post = await service.post(brand, first)
        assert post["status"] == "published", post
        sent = await client.posts()
        assert [p["idempotency_key"] for p in sent] == [client_reference(first, "sandbox")]
        assert post["results"]["sandbox"]["url"] == sent[0]["url"]

        # The sandbox commits the post, then hangs past our timeout: reconciled, not resent.
        second = await submitted(service, brand, "second")
        await client.fail("publish", "timeout", delay_s=5, effect=True)
        assert await service.scheduler.step() == 1
        assert (await targets(fresh_db, second))["sandbox"]["attempt_open"] is True
        service.clock.advance(30)
        assert await service.scheduler.step() == 1
        assert (await service.post(brand, second))["status"] == "published"
        assert len(await client.posts()) == 2
        calls = await client.calls()
        assert calls["publish"] == 2 and calls["lookup"] == 1

        # The sandbox expires every token: refreshed once through the vault, then published.
        third = await submitted(service, brand, "third")
        await client.expire_tokens()
        assert await service.scheduler.step() == 1
        assert (await service.post(brand, third))["status"] == "published"
        assert len(await client.posts()) == 3
        assert (await client.calls())["token"] == 2  # the code exchange and one refresh
        published = [d for t, d in await outbox(fresh_db) if t == "publishing.post.published.v1"]
        assert sorted(d["post_id"] for d in published) == sorted([first, second, third])
