"""At most once per platform, ever: two scheduler replicas on separate pools share 200 due
posts on two platforms; a replica that crashes mid-publication is reconciled by the other
through the platform (no second post); a platform that cannot be asked leaves the outcome
``unconfirmed`` for a person to settle; a cancel racing a claim wins cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import Counter

import pytest
from pressroom_publishing.posts import commands
from pressroom_publishing.posts.domain import Content
from publishing_testkit import (
    Action,
    another_replica,
    as_owner,
    connect_platform,
    eventually,
    fake_platform,
    outbox,
    publishing_service,
    targets,
)

pytestmark = pytest.mark.integration


@pytest.fixture
async def service(fresh_db, kafka_bootstrap):
    async with (
        fake_platform() as platform,
        publishing_service(
            fresh_db, kafka_bootstrap, platform, claim_batch=16, lease_s=60.0
        ) as service,
    ):
        service.platform = platform
        yield service


def counting_claims(scheduler, counts: Counter[str], name: str) -> None:
    original = scheduler.claim

    async def claim(limit):
        rows = await original(limit)
        counts[name] += len(rows)
        return rows

    scheduler.claim = claim


async def scheduled(service, brand, platforms, text="hello"):
    post_id = await commands.create_post(
        service.pool,
        service.app.state.platforms,
        brand_id=brand,
        actor="author",
        content=Content(text=text),
        platforms=list(platforms),
        overrides={},
        scheduled_at=None,
        requires_approval=None,
    )
    await commands.submit_post(
        service.pool,
        service.app.state.platforms,
        brand_id=brand,
        post_id=post_id,
        actor="author",
        now=service.clock(),
    )
    return str(post_id)


async def test_two_replicas_publish_200_posts_on_two_platforms_exactly_once(service):
    brands = [uuid.uuid4() for _ in range(4)]
    for brand in brands:
        await connect_platform(service.db, brand, "sandbox")
        await connect_platform(service.db, brand, "x")
    post_ids = []
    for i in range(200):
        post_ids.append(await scheduled(service, brands[i % 4], ("sandbox", "x"), f"post {i}"))
    counts: Counter[str] = Counter()
    async with another_replica(service) as other:
        counting_claims(service.scheduler, counts, "a")
        counting_claims(other, counts, "b")
        stop = asyncio.Event()
        runs = [asyncio.create_task(s.run(stop)) for s in (service.scheduler, other)]

        async def all_published():
            rows = await as_owner(
                service.db,
                "SELECT count(*) AS n FROM publishing_targets WHERE status = 'published'",
            )
            return rows[0]["n"] == 400

        try:
            await eventually(all_published, timeout=60)
        finally:
            stop.set()
            await asyncio.gather(*runs)
    created = service.platform.creations()
    assert len(created) == 400 and set(created.values()) == {1}
    assert service.platform.calls["sandbox:publish"] + service.platform.calls["x:publish"] == 400
    assert counts["a"] > 0 and counts["b"] > 0 and counts["a"] + counts["b"] == 400
    rows = await as_owner(
        service.db, "SELECT status, count(*) AS n FROM publishing_jobs GROUP BY 1"
    )
    assert {r["status"]: r["n"] for r in rows} == {"published": 200}
    logs = await as_owner(
        service.db, "SELECT count(*) AS n, max(attempt) AS top FROM publishing_logs"
    )
    assert logs[0]["n"] == 400 and logs[0]["top"] == 1
    types = Counter(t for t, _ in await outbox(service.db))
    assert types["publishing.post.published.v1"] == 400


async def crash_mid_call(service, brand, platform):
    """Replica A sends the post, then dies before recording the outcome."""
    hang = asyncio.Event()
    service.platform.fail_next(platform, Action(create_then_wait=hang))
    before = len(service.platform.created)
    step = asyncio.create_task(service.scheduler.step())

    async def sent():
        return len(service.platform.created) > before

    await eventually(sent)
    step.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await step
    hang.set()


async def test_a_crash_after_the_platform_call_is_reconciled_without_a_second_post(service):
    brand = uuid.uuid4()
    await connect_platform(service.db, brand, "sandbox")
    pid = await scheduled(service, brand, ("sandbox",))
    await crash_mid_call(service, brand, "sandbox")
    target = (await targets(service.db, pid))["sandbox"]
    assert target["status"] == "publishing" and target["attempt_open"] is True
    async with another_replica(service) as other:
        assert await other.step() == 0  # the crashed replica's lease still holds
        service.clock.advance(61)
        assert await other.step() == 1
    post = await service.post(brand, pid)
    assert post["status"] == "published", post
    assert post["results"]["sandbox"]["platform_post_id"] == service.platform.created[0]["id"]
    assert len(service.platform.created) == 1
    assert service.platform.calls["sandbox:publish"] == 1
    _, logs = await service.call("GET", f"/v1/posts/{pid}/logs", brand, role="viewer")
    assert [(r["attempt"], r["status"]) for r in logs] == [(1, "found")]


async def test_a_crash_before_the_platform_call_publishes_once_after_checking(service):
    brand = uuid.uuid4()
    await connect_platform(service.db, brand, "sandbox")
    pid = await scheduled(service, brand, ("sandbox",))
    # What a replica leaves when it dies right after recording the attempt.
    await as_owner(
        service.db,
        "UPDATE publishing_targets SET status = 'publishing', attempts = 1, attempt_open = true, "
        "lease_token = gen_random_uuid(), lease_until = $2 WHERE post_id = $1",
        uuid.UUID(pid),
        service.clock(),
    )
    await service.scheduler.step()
    post = await service.post(brand, pid)
    assert post["status"] == "published"
    assert len(service.platform.created) == 1
    assert service.platform.calls["sandbox:find"] == 1
    assert (await targets(service.db, pid))["sandbox"]["attempts"] == 2


async def test_unconfirmed_when_the_platform_cannot_be_asked_then_a_person_settles_it(service):
    brand = uuid.uuid4()
    await connect_platform(service.db, brand, "mastodon")
    pid = await scheduled(service, brand, ("mastodon",))
    await crash_mid_call(service, brand, "mastodon")
    service.clock.advance(61)
    assert await service.scheduler.step() == 1
    post = await service.post(brand, pid)
    assert post["results"]["mastodon"]["status"] == "unconfirmed"
    assert "cannot be asked" in post["last_error"]
    unconfirmed = [d for t, d in await outbox(service.db) if t == "publishing.post.unconfirmed.v1"]
    assert unconfirmed == [
        {
            "post_id": pid,
            "brand_id": str(brand),
            "platform": "mastodon",
            "attempt": 1,
            "client_reference": commands.client_reference(pid, "mastodon"),
            "attempted_at": unconfirmed[0]["attempted_at"],
        }
    ]
    service.clock.advance(3600)
    assert await service.scheduler.step() == 0
    assert len(service.platform.created) == 1

    path = f"/v1/posts/{pid}/platforms/mastodon"
    status, body = await service.call("POST", f"{path}/mark-published", brand, json={})
    assert status == 422 and body["errors"][0]["field"] == "platform_post_id"
    status, body = await service.call("POST", f"{path}/retry", brand, role="viewer")
    assert status == 403
    status, body = await service.call("POST", f"/v1/posts/{pid}/platforms/x/retry", brand)
    assert status == 404 and body["type"].endswith("/no_platform")
    found = service.platform.created[0]
    status, settled = await service.call(
        "POST",
        f"{path}/mark-published",
        brand,
        sub="editor-1",
        json={"platform_post_id": found["id"], "url": found["url"]},
    )
    assert status == 200, settled
    assert settled["status"] == "published"
    assert settled["results"]["mastodon"]["platform_post_id"] == found["id"]
    published = [d for t, d in await outbox(service.db) if t == "publishing.post.published.v1"]
    assert published[0]["published_by"] == "editor-1"
    status, body = await service.call("POST", f"{path}/retry", brand)
    assert status == 409 and body["type"].endswith("/not_unconfirmed")


async def test_a_person_can_send_an_unconfirmed_platform_again(service):
    brand = uuid.uuid4()
    await connect_platform(service.db, brand, "mastodon")
    pid = await scheduled(service, brand, ("mastodon",))
    await as_owner(
        service.db,
        "UPDATE publishing_targets SET status = 'publishing', attempts = 1, attempt_open = true, "
        "lease_token = gen_random_uuid(), lease_until = $2 WHERE post_id = $1",
        uuid.UUID(pid),
        service.clock(),
    )
    await service.scheduler.step()
    assert (await service.post(brand, pid))["results"]["mastodon"]["status"] == "unconfirmed"
    assert not service.platform.created
    status, _ = await service.call("POST", f"/v1/posts/{pid}/platforms/mastodon/retry", brand)
    assert status == 200
    await service.scheduler.step()
    post = await service.post(brand, pid)
    assert post["status"] == "published" and len(service.platform.created) == 1


async def test_a_cancel_after_the_claim_keeps_the_post_from_going_out(service):
    brand = uuid.uuid4()
    await connect_platform(service.db, brand, "sandbox")
    pid = await scheduled(service, brand, ("sandbox",))
    claimed = await service.scheduler.claim(10)
    assert len(claimed) == 1
    status, body = await service.call("POST", f"/v1/posts/{pid}/cancel", brand)
    assert status == 200 and body["status"] == "cancelled"
    lease, row = claimed[0]
    await service.scheduler.publish_target(lease, row["brand_id"])
    assert service.platform.calls["sandbox:publish"] == 0
    assert (await targets(service.db, pid))["sandbox"]["status"] == "cancelled"
    assert (await service.post(brand, pid))["status"] == "cancelled"
