"""Every failure class with its retry schedule, on the controllable clock: 5xx, 429 with
Retry-After, a timeout (reconciled, not posted twice), an expired token refreshed once, a
revoked connection, a rejection, a missing connection; platforms fail independently."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from publishing_testkit import (
    Action,
    as_owner,
    connect_platform,
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
            fresh_db, kafka_bootstrap, platform, platform_timeout_s=0.5, retry_base_s=30.0
        ) as service,
    ):
        service.platform = platform
        yield service


async def due_post(service, platforms=("sandbox",), **body):
    brand = uuid.uuid4()
    for platform in platforms:
        await connect_platform(service.db, brand, platform)
    post = await service.create(brand, platforms=list(platforms), **body)
    status, answer = await service.call("POST", f"/v1/posts/{post['id']}/submit", brand)
    assert status == 200 and answer["status"] == "scheduled", answer
    return brand, post["id"]


async def logs(service, brand, pid):
    status, rows = await service.call("GET", f"/v1/posts/{pid}/logs", brand, role="viewer")
    assert status == 200
    return rows


async def test_server_errors_back_off_exponentially_then_give_up_and_retry_on_request(service):
    brand, pid = await due_post(service)
    service.platform.fail_next("sandbox", *[Action(status=500)] * 4)
    start = service.clock()
    assert await service.scheduler.step() == 1
    for delay in (30, 60, 120):
        target = (await targets(service.db, pid))["sandbox"]
        assert target["status"] == "pending" and target["error_code"] == "transient"
        assert target["due_at"] == service.clock() + timedelta(seconds=delay)
        service.clock.advance(delay - 1)
        assert await service.scheduler.step() == 0  # not due yet
        service.clock.advance(1)
        assert await service.scheduler.step() == 1
    post = await service.post(brand, pid)
    assert post["status"] == "failed", post
    assert "gave up after 4 attempts" in post["results"]["sandbox"]["error"]
    assert service.clock() - start == timedelta(seconds=210)
    assert service.platform.calls["sandbox:publish"] == 4 and not service.platform.created
    assert [r["status"] for r in await logs(service, brand, pid)] == ["retrying"] * 3 + ["failed"]
    failed = [d for t, d in await outbox(service.db) if t == "publishing.post.failed.v1"]
    assert failed[0]["error_code"] == "retries_exhausted" and failed[0]["attempts"] == 4

    status, retried = await service.call("POST", f"/v1/posts/{pid}/retry", brand)
    assert status == 200 and retried["status"] == "publishing" and retried["retry_count"] == 1
    assert await service.scheduler.step() == 1
    post = await service.post(brand, pid)
    assert post["status"] == "published" and post["results"]["sandbox"]["platform_post_id"]
    assert [r["attempt"] for r in await logs(service, brand, pid)] == [1, 2, 3, 4, 5]


async def test_a_429_waits_at_least_its_retry_after(service):
    brand, pid = await due_post(service)
    service.platform.fail_next("sandbox", Action(status=429, headers={"Retry-After": "300"}))
    await service.scheduler.step()
    target = (await targets(service.db, pid))["sandbox"]
    assert target["due_at"] == service.clock() + timedelta(seconds=300)
    service.clock.advance(299)
    assert await service.scheduler.step() == 0
    service.clock.advance(1)
    assert await service.scheduler.step() == 1
    assert (await service.post(brand, pid))["status"] == "published"


async def test_a_timeout_is_reconciled_with_the_platform_and_never_posted_twice(service):
    brand, pid = await due_post(service)
    service.platform.fail_next("sandbox", Action(create_then_wait=3.0))  # goes out, no answer
    await service.scheduler.step()
    target = (await targets(service.db, pid))["sandbox"]
    assert target["status"] == "pending" and target["attempt_open"] is True
    service.clock.advance(30)
    await service.scheduler.step()
    post = await service.post(brand, pid)
    assert post["status"] == "published"
    assert post["results"]["sandbox"]["platform_post_id"] == service.platform.created[0]["id"]
    assert len(service.platform.created) == 1
    assert service.platform.calls["sandbox:publish"] == 1
    assert service.platform.calls["sandbox:find"] == 1
    assert [r["status"] for r in await logs(service, brand, pid)] == ["found"]


async def test_a_timeout_where_the_platform_cannot_be_asked_is_unconfirmed(service):
    brand, pid = await due_post(service, platforms=("mastodon",))
    service.platform.fail_next("mastodon", Action(create_then_wait=3.0))
    await service.scheduler.step()
    post = await service.post(brand, pid)
    assert post["results"]["mastodon"]["status"] == "unconfirmed"
    assert post["status"] == "publishing"
    service.clock.advance(3600)
    assert await service.scheduler.step() == 0  # never retried by itself
    unconfirmed = [d for t, d in await outbox(service.db) if t == "publishing.post.unconfirmed.v1"]
    assert unconfirmed[0]["platform"] == "mastodon" and unconfirmed[0]["attempt"] == 1


async def test_an_expired_token_is_refreshed_once_and_the_attempt_repeated(service):
    brand, pid = await due_post(service)
    creds = await service.credentials.credentials(brand, "sandbox")
    service.platform.expired_tokens.add(creds.access_token)
    await service.scheduler.step()
    post = await service.post(brand, pid)
    assert post["status"] == "published"
    assert service.credentials.refreshes == 1
    assert service.platform.calls["sandbox:publish"] == 2 and len(service.platform.created) == 1
    assert [r["attempt"] for r in await logs(service, brand, pid)] == [1]


async def test_a_dead_refresh_token_fails_the_platform_with_the_reason(service):
    brand, pid = await due_post(service)
    creds = await service.credentials.credentials(brand, "sandbox")
    service.platform.expired_tokens.add(creds.access_token)
    service.credentials.dead_refresh.add("sandbox")
    await service.scheduler.step()
    post = await service.post(brand, pid)
    assert post["status"] == "failed"
    assert (await targets(service.db, pid))["sandbox"]["error_code"] == "connection_expired"
    assert "refresh token is dead" in post["last_error"]


async def test_a_revoked_connection_fails_the_post_and_is_marked(service):
    brand, pid = await due_post(service)
    creds = await service.credentials.credentials(brand, "sandbox")
    service.platform.revoked_tokens.add(creds.access_token)
    await service.scheduler.step()
    post = await service.post(brand, pid)
    assert post["status"] == "failed"
    assert (await targets(service.db, pid))["sandbox"]["error_code"] == "revoked"
    assert "revoked" in post["results"]["sandbox"]["error"]
    rows = await as_owner(
        service.db, "SELECT status FROM platform_connections WHERE brand_id = $1", brand
    )
    assert rows[0]["status"] == "revoked"
    assert service.credentials.refreshes == 0


async def test_a_rejection_fails_at_once_with_the_platforms_code(service):
    brand, pid = await due_post(service, platforms=("sandbox", "x"))
    service.platform.fail_next("x", Action(status=422, code="duplicate_content"))
    await service.scheduler.step()
    post = await service.post(brand, pid)
    assert post["status"] == "partially_published", post
    assert post["results"]["sandbox"]["status"] == "published"
    assert post["results"]["x"]["status"] == "failed"
    assert "duplicate_content" in post["results"]["x"]["error"]
    x_logs = [r for r in await logs(service, brand, pid) if r["platform"] == "x"]
    assert [(r["status"], r["error_code"]) for r in x_logs] == [("failed", "duplicate_content")]
    types = [t for t, _ in await outbox(service.db)]
    assert types.count("publishing.post.published.v1") == 1
    assert types.count("publishing.post.failed.v1") == 1
    status, retried = await service.call("POST", f"/v1/posts/{pid}/retry", brand)
    assert status == 200 and retried["results"]["x"]["status"] == "pending"
    await service.scheduler.step()
    post = await service.post(brand, pid)
    assert post["status"] == "published" and len(service.platform.created) == 2


async def test_a_connection_gone_before_the_time_fails_with_a_clear_error(service):
    brand, pid = await due_post(service)
    await as_owner(service.db, "DELETE FROM platform_connections WHERE brand_id = $1", brand)
    await service.scheduler.step()
    post = await service.post(brand, pid)
    assert post["status"] == "failed"
    assert post["last_error"] == "sandbox: the brand has no sandbox connection"
    assert service.platform.calls["sandbox:publish"] == 0
