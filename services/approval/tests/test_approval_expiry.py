"""Expiry on the fake clock: a pending approval expires when its post's time passes (not
before), once even with two workers racing; a late decision is still taken, approve with a
new time that must be in the future."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest
from approval_testkit import Service, as_owner, code, outbox
from pressroom_approval.approvals.expiry import ExpiryWorker
from pressroom_kit.db import create_pool

pytestmark = pytest.mark.integration


async def test_expires_at_the_posts_time_then_a_late_approval_with_a_new_time(
    svc: Service,
) -> None:
    brand = uuid.uuid4()
    at = svc.clock.now + timedelta(hours=3)
    post_id = await svc.submit(brand, author="ann", scheduled_at=at, submission=4)
    unscheduled = await svc.submit(brand, author="ann")  # no time: never expires
    approval_id = (await svc.row(brand, post_id))["id"]

    # (The consumer replays the topic from its start, so other tests' approvals are in this
    # database too: the assertions look at this brand's rows, not at the steps' counts.)
    svc.clock.advance(3 * 3600 - 1)
    await svc.expiry.step()
    assert (await svc.row(brand, post_id))["status"] == "pending"
    svc.clock.advance(1)
    assert await svc.expiry.step() >= 1
    assert await svc.expiry.step() == 0
    approval = await svc.approval_of(brand, post_id)
    assert approval["status"] == "expired" and approval["expired_at"] is not None
    assert {e["status"] for e in approval["escalations"]} == {"cancelled"}
    assert (await svc.row(brand, unscheduled))["status"] == "pending"
    (expired,) = [
        d
        for t, d in await outbox(svc.db)
        if t == "approval.expired.v1" and d["brand_id"] == str(brand)
    ]
    assert expired["submission"] == 4 and expired["post_id"] == str(post_id)
    assert expired["scheduled_at"].startswith(at.strftime("%Y-%m-%dT%H:%M:%S"))

    path = f"/v1/approvals/{approval_id}/approve"
    past = (svc.clock.now - timedelta(minutes=1)).isoformat()
    status, body = await svc.call("POST", path, brand, sub="bob", json={"scheduled_at": past})
    assert status == 422 and code(body) == "scheduled_in_past"
    status, body = await svc.call("POST", path, brand, sub="bob", json={"scheduled_at": "soon"})
    assert status == 422
    later = svc.clock.now + timedelta(hours=1)
    status, body = await svc.call(
        "POST", path, brand, sub="bob", json={"scheduled_at": later.isoformat()}
    )
    assert status == 200, body
    assert body["status"] == "approved" and body["locked"] is True
    (approved,) = [d for t, d in await outbox(svc.db) if t == "approval.approved.v1"]
    assert approved["submission"] == 4
    assert approved["scheduled_at"].startswith(later.strftime("%Y-%m-%dT%H:%M:%S"))
    actions = await as_owner(
        svc.db,
        "SELECT action, actor_id FROM audit_logs WHERE approval_id = $1 ORDER BY seq",
        approval_id,
    )
    assert [(a["action"], a["actor_id"]) for a in actions] == [
        ("approval.requested", "ann"),
        ("approval.expired", "system"),
        ("approval.approved", "bob"),
    ]


async def test_a_new_time_is_only_for_an_expired_approval(svc: Service) -> None:
    brand = uuid.uuid4()
    post_id = await svc.submit(brand, author="ann", scheduled_at=svc.clock.now + timedelta(days=1))
    approval_id = (await svc.row(brand, post_id))["id"]
    later = (svc.clock.now + timedelta(days=2)).isoformat()
    status, body = await svc.call(
        "POST",
        f"/v1/approvals/{approval_id}/approve",
        brand,
        sub="bob",
        json={"scheduled_at": later},
    )
    assert status == 422 and code(body) == "not_expired"
    # an expired approval can also be rejected late
    svc.clock.advance(86400)
    await svc.expiry.step()
    assert (await svc.row(brand, post_id))["status"] == "expired"
    status, body = await svc.call(
        "POST", f"/v1/approvals/{approval_id}/reject", brand, sub="bob", json={"reason": "late"}
    )
    assert status == 200 and body["status"] == "rejected"


async def test_two_workers_expire_each_approval_once(svc: Service) -> None:
    brands = [uuid.uuid4(), uuid.uuid4()]
    at = svc.clock.now + timedelta(minutes=5)
    posts = [await svc.submit(b, author="ann", scheduled_at=at) for b in brands for _ in range(6)]
    svc.clock.advance(600)
    pool = await create_pool(svc.db.app_dsn, min_size=1, max_size=10)
    try:
        other = ExpiryWorker(pool, svc.clock, batch=50)
        results = await asyncio.gather(svc.expiry.step(), other.step(), svc.expiry.step())
    finally:
        await pool.close()
    assert sum(results) >= len(posts)
    ours = {str(b) for b in brands}
    expired = [
        d for t, d in await outbox(svc.db) if t == "approval.expired.v1" and d["brand_id"] in ours
    ]
    assert sorted(d["post_id"] for d in expired) == sorted(str(p) for p in posts)
    audit = await as_owner(
        svc.db,
        "SELECT count(*) AS n FROM audit_logs "
        "WHERE action = 'approval.expired' AND brand_id = ANY($1::uuid[])",
        brands,
    )
    assert audit[0]["n"] == len(posts)


async def test_the_worker_runs_on_its_own_and_beats(fresh_db, kafka_bootstrap, topics) -> None:
    from approval_testkit import approval_service

    async with approval_service(
        fresh_db, kafka_bootstrap, run_workers=True, expiry_interval_s=0.05
    ) as svc:
        brand = uuid.uuid4()
        post_id = await svc.submit(
            brand, author="ann", scheduled_at=svc.clock.now + timedelta(seconds=30)
        )
        svc.clock.advance(31)
        await svc.wait_row(brand, post_id, lambda r: r["status"] == "expired")
        async with svc.http.get(svc.base + "/readyz") as answer:
            ready = await answer.json()
        expiry = ready["checks"]["expiry"]
        assert expiry["ok"] is True and expiry["age_s"] < 5, ready
