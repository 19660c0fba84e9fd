"""Deciding on an approval: who may (a manager or admin who is not the author), once per
submission (409 after), with real concurrency (two managers at the same moment: one wins),
the lock and the unlock, and the events carrying the submission decided on."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from approval_testkit import Service, as_owner, code, outbox, owner_execute

pytestmark = pytest.mark.integration


async def open_approval(svc: Service, brand: uuid.UUID, **options: object) -> str:
    post_id = await svc.submit(brand, author="ann", **options)
    row = await svc.row(brand, post_id)
    assert row is not None
    return str(row["id"])


async def test_the_author_cannot_approve_their_own_post(svc: Service) -> None:
    brand = uuid.uuid4()
    approval_id = await open_approval(svc, brand)
    status, body = await svc.call(
        "POST", f"/v1/approvals/{approval_id}/approve", brand, sub="ann", json={}
    )
    assert status == 403 and code(body) == "own_post"
    status, body = await svc.call(
        "POST",
        f"/v1/approvals/{approval_id}/reject",
        brand,
        role="admin",
        sub="ann",
        json={"reason": "mine"},
    )
    assert status == 403 and code(body) == "own_post"


async def test_a_viewer_cannot_decide(svc: Service) -> None:
    brand = uuid.uuid4()
    approval_id = await open_approval(svc, brand)
    status, body = await svc.call(
        "POST", f"/v1/approvals/{approval_id}/approve", brand, role="viewer", sub="val", json={}
    )
    assert status == 403 and code(body) == "role"
    status, body = await svc.call("GET", f"/v1/approvals/{approval_id}", brand, role="viewer")
    assert status == 200 and body["status"] == "pending"


async def test_approve_locks_and_a_second_decision_is_409(svc: Service) -> None:
    brand = uuid.uuid4()
    approval_id = await open_approval(svc, brand, submission=3)
    status, body = await svc.call(
        "POST",
        f"/v1/approvals/{approval_id}/approve",
        brand,
        sub="bob",
        json={"comment": "Looks good"},
    )
    assert status == 200, body
    assert body["status"] == "approved" and body["locked"] is True
    assert body["decided_by"] == "bob" and body["comment"] == "Looks good"
    for path, payload in (("approve", {}), ("reject", {"reason": "late"})):
        status, again = await svc.call(
            "POST", f"/v1/approvals/{approval_id}/{path}", brand, sub="cat", json=payload
        )
        assert status == 409 and code(again) == "already_decided"
    events = [(t, d) for t, d in await outbox(svc.db) if t == "approval.approved.v1"]
    assert len(events) == 1
    assert events[0][1]["submission"] == 3 and events[0][1]["decided_by"] == "bob"
    audit = await as_owner(
        svc.db, "SELECT action FROM audit_logs WHERE brand_id = $1 ORDER BY seq", brand
    )
    assert [r["action"] for r in audit] == ["approval.requested", "approval.approved"]


async def test_reject_needs_a_reason_and_carries_the_submission(svc: Service) -> None:
    brand = uuid.uuid4()
    approval_id = await open_approval(svc, brand, submission=2)
    for payload in ({}, {"reason": ""}, {"reason": None}):
        status, body = await svc.call(
            "POST", f"/v1/approvals/{approval_id}/reject", brand, sub="bob", json=payload
        )
        assert status == 422, (payload, body)
    status, body = await svc.call(
        "POST",
        f"/v1/approvals/{approval_id}/reject",
        brand,
        sub="bob",
        json={"reason": "Wrong logo"},
    )
    assert status == 200 and body["status"] == "rejected" and body["reason"] == "Wrong logo"
    assert body["locked"] is False
    rejected = [d for t, d in await outbox(svc.db) if t == "approval.rejected.v1"]
    assert [(d["submission"], d["reason"], d["post_id"]) for d in rejected] == [
        (2, "Wrong logo", body["post_id"])
    ]


async def test_two_managers_at_the_same_moment_one_wins(svc: Service) -> None:
    brand = uuid.uuid4()
    approval_id = await open_approval(svc, brand)
    for _ in range(3):  # a few rounds: each needs a fresh approval
        results = await asyncio.gather(
            svc.call("POST", f"/v1/approvals/{approval_id}/approve", brand, sub="bob", json={}),
            svc.call(
                "POST",
                f"/v1/approvals/{approval_id}/reject",
                brand,
                sub="cat",
                json={"reason": "no"},
            ),
            svc.call("POST", f"/v1/approvals/{approval_id}/approve", brand, sub="dan", json={}),
        )
        statuses = sorted(s for s, _ in results)
        assert statuses == [200, 409, 409], results
        assert all(code(b) == "already_decided" for s, b in results if s == 409)
        post_id = uuid.UUID(
            (await svc.call("GET", f"/v1/approvals/{approval_id}", brand))[1]["post_id"]
        )
        row = await svc.row(brand, post_id)
        assert row is not None
        await svc.submit(
            brand,
            post_id,
            author="ann",
            submission=row["submission"] + 1,
            version=row["post_version"] + 2,
        )
    decisions = [
        t for t, _ in await outbox(svc.db) if t in ("approval.approved.v1", "approval.rejected.v1")
    ]
    assert len(decisions) == 3


async def test_unlock_reopens_an_approved_approval(svc: Service) -> None:
    brand = uuid.uuid4()
    approval_id = await open_approval(svc, brand)
    status, body = await svc.call(
        "POST", f"/v1/approvals/{approval_id}/unlock", brand, role="admin", sub="ada", json={}
    )
    assert status == 409 and code(body) == "not_locked"
    await svc.call("POST", f"/v1/approvals/{approval_id}/approve", brand, sub="bob", json={})
    status, body = await svc.call(
        "POST", f"/v1/approvals/{approval_id}/unlock", brand, role="manager", sub="bob", json={}
    )
    assert status == 403
    status, body = await svc.call(
        "POST",
        f"/v1/approvals/{approval_id}/unlock",
        brand,
        role="admin",
        sub="ada",
        json={"reason": "typo in the caption"},
    )
    assert status == 200, body
    assert body["status"] == "pending" and body["locked"] is False
    # without a body too, once approved again
    await svc.call("POST", f"/v1/approvals/{approval_id}/approve", brand, sub="bob", json={})
    status, body = await svc.call(
        "POST", f"/v1/approvals/{approval_id}/unlock", brand, role="admin", sub="ada"
    )
    assert status == 200 and body["status"] == "pending", body
    unlocked = [d for t, d in await outbox(svc.db) if t == "approval.unlocked.v1"]
    assert [(d["unlocked_by"], d["reason"]) for d in unlocked] == [
        ("ada", "typo in the caption"),
        ("ada", None),
    ]


async def test_a_failure_after_the_decision_leaves_nothing_behind(svc: Service) -> None:
    """The decision, its projection, its outbox event, the escalations' change and the audit
    row commit together: a statement failing after the first (here, closing the escalations)
    leaves the approval pending with no event and no audit row, and the decision can be made
    again once the fault is gone."""
    brand = uuid.uuid4()
    approval_id = await open_approval(svc, brand)
    await owner_execute(
        svc.db,
        "CREATE FUNCTION test_refuse() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'injected fault'; END $$; "
        "CREATE TRIGGER test_refuse BEFORE UPDATE ON escalation_events "
        "FOR EACH ROW EXECUTE FUNCTION test_refuse()",
    )
    path = f"/v1/approvals/{approval_id}/approve"
    status, _ = await svc.call("POST", path, brand, sub="bob", json={})
    assert status == 500
    status, body = await svc.call("GET", f"/v1/approvals/{approval_id}", brand, role="viewer")
    assert body["status"] == "pending" and body["locked"] is False
    assert not [t for t, _ in await outbox(svc.db) if t == "approval.approved.v1"]
    decided = await as_owner(
        svc.db,
        "SELECT 1 FROM audit_logs WHERE approval_id = $1 AND action = 'approval.approved'",
        uuid.UUID(approval_id),
    )
    assert decided == []
    await owner_execute(svc.db, "DROP TRIGGER test_refuse ON escalation_events")
    status, body = await svc.call("POST", path, brand, sub="bob", json={})
    assert status == 200 and body["status"] == "approved"
    assert len([t for t, _ in await outbox(svc.db) if t == "approval.approved.v1"]) == 1
