"""Metrics for analytics, as wired locally (the sandbox and the token vault): a sync request
over the broker becomes one work row per platform, the worker answers each once with the
sandbox's numbers and our post ids; a redelivery or a resend answers nothing more; no
connection, an unknown platform, a transient failure then success, retries used up; a crash
between the fetch and the answer, and two workers on one request, still answer once."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, date, datetime, timedelta

import pytest
from pressroom_contracts.topics import Topic
from pressroom_kit.db import create_pool
from pressroom_kit.leases import LeaseLost
from pressroom_publishing.metrics_sync import MetricsSync, answer_id
from publishing_testkit import (
    add_media,
    as_owner,
    connect_platform,
    event,
    eventually,
    fake_platform,
    outbox,
    publish_events,
    publishing_service,
    sandbox_service,
)
from sandbox_testkit import SandboxClient
from test_scheduler_running import media_service
from test_scheduler_sandbox import connected

pytestmark = pytest.mark.integration
COLLECTED = "publishing.metrics.collected.v1"


def sync_request(
    brand: uuid.UUID,
    platforms: list[str],
    *,
    sync_id: uuid.UUID | None = None,
    since: date | None = None,
    until: date | None = None,
):
    today = datetime.now(UTC).date()
    sync_id = sync_id or uuid.uuid4()
    return event(
        "analytics.sync.requested.v1",
        brand,
        sync_id,
        sync_id=sync_id,
        brand_id=brand,
        platforms=platforms,
        **{"from": (since or today).isoformat(), "to": (until or today).isoformat()},
        timezone="UTC",
        requested_by="analyst",
        requested_at=datetime.now(UTC).isoformat(),
    )


async def work_rows(service, sync_id) -> dict[str, dict]:
    rows = await as_owner(
        service.db, "SELECT * FROM publishing_metric_syncs WHERE sync_id = $1", sync_id
    )
    return {r["platform"]: dict(r) for r in rows}


async def requested(service, request, count: int) -> dict[str, dict]:
    """Send ``request`` and wait until its work rows are recorded."""
    await publish_events(service.kafka, Topic.ANALYTICS.value, request)

    async def recorded():
        rows = await work_rows(service, request.data["sync_id"])
        return rows if len(rows) >= count else None

    return await eventually(recorded)


async def answers(service, sync_id=None) -> list[dict]:
    return [
        d
        for t, d in await outbox(service.db)
        if t == COLLECTED and (sync_id is None or d["sync_id"] == str(sync_id))
    ]


@pytest.fixture
async def service(fresh_db, kafka_bootstrap, topics):
    known: dict[uuid.UUID, uuid.UUID] = {}
    async with (
        media_service(known) as media,
        sandbox_service(
            fresh_db,
            kafka_bootstrap,
            platform_timeout_s=2.0,
            media_url=media["url"],
            metrics_max_retries=1,
            metrics_retry_base_s=30,
            metrics_lease_s=60,
            # The topics are shared by every test of this process: earlier tests' sync
            # requests (analytics', e2e's) reach this database as well, all due at the same
            # fake instant. One step claims all of them, so a test's own rows are never left
            # behind a full batch of others'.
            metrics_claim_batch=10_000,
        ) as running,
    ):
        running.kafka = kafka_bootstrap
        running.known_media = known
        running.client = SandboxClient(f"{running.base}/sandbox-platform", running.http)
        yield running


async def published(service, brand, text, media_ids=()) -> str:
    post = await service.create(
        brand, content={"text": text, "media_ids": [str(m) for m in media_ids]}
    )
    status, body = await service.call("POST", f"/v1/posts/{post['id']}/submit", brand)
    assert status == 200 and body["status"] == "scheduled", body
    await service.drain()
    out = await service.post(brand, post["id"])
    assert out["status"] == "published", out
    return post["id"]


async def test_a_sync_answers_once_per_platform_with_the_sandboxs_numbers(service):
    brand = await connected(service, service.client)
    image = await add_media(service.db, brand)
    service.known_media[image] = brand
    text_post = await published(service, brand, "words only")
    image_post = await published(service, brand, "with a picture", [image])
    lonely = uuid.uuid4()  # a brand with no connection at all

    request = sync_request(brand, ["sandbox", "tiktok-unknown", "sandbox"])
    rows = await requested(service, request, 2)
    assert set(rows) == {"sandbox", "tiktok-unknown"}
    # Redelivered (same event) and resent (a new event, same sync): nothing new.
    resent = sync_request(brand, ["sandbox"], sync_id=request.data["sync_id"])
    other = sync_request(lonely, ["sandbox"])
    await publish_events(service.kafka, Topic.ANALYTICS.value, request, resent)
    await requested(service, other, 1)
    assert len(await work_rows(service, request.data["sync_id"])) == 2

    calls_before = (await service.client.calls()).get("insights", 0)
    await service.metrics.step()
    await service.metrics.step()  # nothing left of this sync
    mine = {a["platform"]: a for a in await answers(service, request.data["sync_id"])}
    assert set(mine) == {"sandbox", "tiktok-unknown"}
    assert mine["tiktok-unknown"]["status"] == "not_supported"
    ok = mine["sandbox"]
    assert ok["status"] == "ok" and ok["error"] is None
    assert ok["from"] == ok["to"] == datetime.now(UTC).date().isoformat()

    # The same numbers the adapter reads with the brand's token.
    credentials = await service.app.state.credentials.credentials(brand, "sandbox")
    today = datetime.now(UTC).date()
    ids = {
        r["sandbox"]["platform_post_id"]: pid
        for pid, r in [
            (text_post, (await service.post(brand, text_post))["results"]),
            (image_post, (await service.post(brand, image_post))["results"]),
        ]
    }
    report = await service.app.state.platforms["sandbox"].fetch_metrics(
        credentials, today, today, list(ids)
    )
    assert [a["impressions"] for a in ok["account"]] == [d.impressions for d in report.account]
    assert ok["account"][0]["followers"] == report.account[0].followers > 0
    by_post = {p["post_id"]: p for p in ok["posts"]}
    assert set(by_post) == {text_post, image_post}
    assert by_post[text_post]["media_kind"] == "text"
    assert by_post[image_post]["media_kind"] == "image"
    for p in ok["posts"]:
        assert ids[p["platform_post_id"]] == p["post_id"]
        assert p["published_at"] is not None
        [theirs] = [m for m in report.posts if m.platform_post_id == p["platform_post_id"]]
        assert (p["impressions"], p["likes"]) == (theirs.impressions, theirs.likes)
    # The sandbox was asked once for this sync (account, then posts).
    assert (await service.client.calls())["insights"] - calls_before == 2 + 2  # + ours above

    [lonely_answer] = await answers(service, other.data["sync_id"])
    assert lonely_answer["status"] == "not_connected" and lonely_answer["error"]

    ids_out = await as_owner(
        service.db,
        "SELECT event_id FROM outbox WHERE headers->>'ce_type' = $1 AND payload->>'sync_id' = $2",
        COLLECTED,
        str(request.data["sync_id"]),
    )
    assert {r["event_id"] for r in ids_out} == {
        answer_id(brand, request.data["sync_id"], p) for p in ("sandbox", "tiktok-unknown")
    }


async def attempts(service, request) -> int:
    return (await work_rows(service, request.data["sync_id"]))["sandbox"]["attempts"]


def mine(claimed, request):
    """The claim of ``request``'s row among others (the topics are shared between tests, so
    earlier tests' requests may reach this database too)."""
    return [
        (lease, row) for lease, row in claimed if str(row["sync_id"]) == request.data["sync_id"]
    ]


async def test_transient_failures_are_retried_then_answered_failed(service):
    brand = await connected(service, service.client)
    first = sync_request(brand, ["sandbox"])
    await requested(service, first, 1)
    await service.client.fail("insights", "error_500", count=1)
    await service.metrics.step()
    assert await answers(service, first.data["sync_id"]) == []
    row = (await work_rows(service, first.data["sync_id"]))["sandbox"]
    assert row["status"] == "pending" and row["attempts"] == 1 and row["last_error"]
    await service.metrics.step()
    assert await attempts(service, first) == 1  # not due yet: 30 s
    service.clock.advance(30)
    await service.metrics.step()
    [answer] = await answers(service, first.data["sync_id"])
    assert answer["status"] == "ok"

    # Out of retries (metrics_max_retries = 1): failed, with the platform's error.
    second = sync_request(brand, ["sandbox"])
    await requested(service, second, 1)
    await service.client.fail("insights", "error_500", count=5)
    await service.metrics.step()
    service.clock.advance(30)
    await service.metrics.step()
    [failed] = await answers(service, second.data["sync_id"])
    assert failed["status"] == "failed" and "gave up after 2 attempts" in failed["error"]
    assert "something broke" in failed["error"]  # the sandbox's own message
    await service.client.clear_failures()

    # A range no platform serves in one go: failed at once, saying why.
    today = datetime.now(UTC).date()
    huge = sync_request(brand, ["sandbox"], since=today - timedelta(days=400), until=today)
    backwards = sync_request(brand, ["sandbox"], since=today, until=today - timedelta(days=1))
    await requested(service, huge, 1)
    await requested(service, backwards, 1)
    await service.metrics.step()
    [refused] = await answers(service, huge.data["sync_id"])
    assert refused["status"] == "failed" and "at most 93 days" in refused["error"]
    [reversed_] = await answers(service, backwards.data["sync_id"])
    assert reversed_["status"] == "failed" and "before it starts" in reversed_["error"]


async def test_a_crash_between_fetch_and_answer_and_two_workers_answer_once(service):
    brand = await connected(service, service.client)
    request = sync_request(brand, ["sandbox"])
    await requested(service, request, 1)
    settings = service.app.state.settings
    pool = await create_pool(service.db.app_dsn, min_size=1, max_size=5)
    try:
        other = MetricsSync(
            pool,
            settings,
            service.app.state.platforms,
            service.app.state.credentials,
            clock=service.clock,
        )
        crashing = service.metrics
        [(lease, row)] = mine(await crashing.claim(), request)
        outcome = await crashing.collect(row)  # fetched ... and the worker dies here
        assert outcome.status == "ok"
        await other.step()
        assert await attempts(service, request) == 1  # leased: not taken
        assert await answers(service, request.data["sync_id"]) == []
        service.clock.advance(settings.metrics_lease_s + 1)
        await other.step()  # the lease ran out: fetched again, answered
        assert await attempts(service, request) == 2
        with pytest.raises(LeaseLost):  # the stalled worker's late answer is refused
            await crashing._settle(lease, row, outcome)
        [answer] = await answers(service, request.data["sync_id"])
        assert answer["status"] == "ok"

        # A worker killed in the middle of its fetch (its task cancelled while the sandbox
        # holds the request): nothing answered; after its lease the next claim answers.
        killed = sync_request(brand, ["sandbox"])
        await requested(service, killed, 1)
        before = (await service.client.calls()).get("insights", 0)
        await service.client.fail("insights", "timeout", delay_s=10)
        [(lease, row)] = mine(await crashing.claim(), killed)
        task = asyncio.create_task(crashing.work(lease, row))

        async def held():
            return (await service.client.calls()).get("insights", 0) > before

        await eventually(held)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await service.client.clear_failures()
        await other.step()
        assert await answers(service, killed.data["sync_id"]) == []
        service.clock.advance(settings.metrics_lease_s + 1)
        await other.step()
        [answer] = await answers(service, killed.data["sync_id"])
        assert answer["status"] == "ok"
        assert await attempts(service, killed) == 2

        # Two workers at once on one request: one claims it, one answer.
        again = sync_request(brand, ["sandbox"])
        await requested(service, again, 1)
        claimed = [mine(c, again) for c in await asyncio.gather(crashing.claim(), other.claim())]
        assert sorted(len(c) for c in claimed) == [0, 1]
        [(lease, row)] = claimed[0] or claimed[1]
        await (crashing if claimed[0] else other).work(lease, row)
        await asyncio.gather(crashing.step(), other.step())
        assert len(await answers(service, again.data["sync_id"])) == 1
        assert await attempts(service, again) == 1
    finally:
        await pool.close()


async def test_the_running_worker_answers_and_beats_for_readyz(fresh_db, kafka_bootstrap, topics):
    async with (
        fake_platform() as platform,
        publishing_service(fresh_db, kafka_bootstrap, platform, run_scheduler=True) as service,
    ):
        brand = uuid.uuid4()
        await connect_platform(fresh_db, brand, "sandbox")
        request = sync_request(brand, ["sandbox", "pinterest"])
        await publish_events(kafka_bootstrap, Topic.ANALYTICS.value, request)

        async def answered():
            found = await answers(service, request.data["sync_id"])
            return found if len(found) == 2 else None

        by_platform = {a["platform"]: a for a in await eventually(answered)}
        assert by_platform["sandbox"]["status"] == "ok"  # the fake reports no numbers
        assert by_platform["sandbox"]["account"] == by_platform["sandbox"]["posts"] == []
        assert by_platform["pinterest"]["status"] == "not_connected"

        _, ready = await service.call("GET", "/readyz", brand)
        beat = ready["checks"]["metrics_sync"]
        assert beat["ok"] is True and beat["detail"].endswith("claimed"), ready
