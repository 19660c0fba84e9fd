"""Publishing's and the gateway's events through the broker and the real inbox consumer:
a submission opens the approval (``approval.requested.v1``), a redelivered or an older one
changes nothing, an edit voids an open approval and a newer submission reopens it, a
cancellation voids, a publication marks; brands and members are kept locally."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from approval_testkit import Service, as_owner, event, eventually, outbox, submitted_event
from pressroom_contracts.topics import Topic

pytestmark = pytest.mark.integration
PUBLISHING = Topic.PUBLISHING.value


def updated_event(
    brand: uuid.UUID,
    post_id: uuid.UUID,
    *,
    version: int,
    submission: int,
    changed: list[str],
    status: str = "awaiting_approval",
):
    return event(
        "publishing.post.updated.v1",
        brand,
        post_id,
        post_id=post_id,
        brand_id=brand,
        changed=changed,
        platforms=["sandbox"],
        status=status,
        updated_by="ann",
        version=version,
        submission=submission,
    )


async def requested(svc: Service, post_id: uuid.UUID) -> list[dict]:
    return [
        d
        for t, d in await outbox(svc.db)
        if t == "approval.requested.v1" and d["post_id"] == str(post_id)
    ]


async def test_a_submission_opens_the_approval_once(svc: Service) -> None:
    brand = uuid.uuid4()
    at = svc.clock.now + timedelta(days=2)
    post_id = uuid.uuid4()
    first = submitted_event(
        brand,
        post_id,
        submission=1,
        version=4,
        author="ann",
        scheduled_at=at,
        platforms=("x", "mastodon"),
    )
    await svc.publish(PUBLISHING, first)
    await svc.wait_row(brand, post_id)
    approval = await svc.approval_of(brand, post_id)
    assert approval["status"] == "pending" and approval["locked"] is False
    assert approval["author"] == "ann" and approval["submission"] == 1
    assert approval["post_version"] == 4 and approval["platforms"] == ["x", "mastodon"]
    assert approval["texts"] == {
        "x": "Hello from the test (x)",
        "mastodon": "Hello from the test (mastodon)",
    }
    assert approval["scheduled_at"].startswith(at.strftime("%Y-%m-%dT%H:%M:%S"))
    # the escalations were scheduled in the same transaction (the brand's default rules)
    assert {e["rule_type"] for e in approval["escalations"]} == {"reminder_24h", "escalate_48h"}

    # The same event redelivered, and a copy resent under a new id: nothing changes.
    resent = submitted_event(
        brand,
        post_id,
        submission=1,
        version=4,
        author="ann",
        scheduled_at=at,
        platforms=("x", "mastodon"),
    )
    older = submitted_event(brand, post_id, submission=0, version=3, author="ann")
    await svc.publish(PUBLISHING, first, resent, older)
    marker = await svc.submit(brand)  # a later event on the same topic: the others are done
    assert marker
    assert len(await requested(svc, post_id)) == 1
    again = await svc.approval_of(brand, post_id)
    assert again["updated_at"] == approval["updated_at"]
    assert len(again["escalations"]) == 2
    (event_data,) = await requested(svc, post_id)
    assert event_data["submission"] == 1 and event_data["author"] == "ann"
    assert event_data["approval_id"] == approval["id"]


async def test_an_edit_voids_and_a_new_submission_reopens(svc: Service) -> None:
    brand = uuid.uuid4()
    post_id = await svc.submit(brand, author="ann", submission=1, version=2)
    approval_id = (await svc.row(brand, post_id))["id"]
    # Publishing's own status bookkeeping is no edit; an edit the approval saw is none either.
    await svc.publish(
        PUBLISHING,
        updated_event(brand, post_id, version=3, submission=1, changed=["status"]),
        updated_event(brand, post_id, version=2, submission=1, changed=["text"]),
    )
    await svc.submit(brand)  # wait for the consumer to get past them
    assert (await svc.row(brand, post_id))["status"] == "pending"

    await svc.publish(
        PUBLISHING,
        updated_event(brand, post_id, version=5, submission=1, changed=["text"], status="draft"),
    )
    row = await svc.wait_row(brand, post_id, lambda r: r["status"] == "voided")
    assert row["post_version"] == 5
    status, body = await svc.call(
        "POST", f"/v1/approvals/{approval_id}/approve", brand, sub="bob", json={}
    )
    assert status == 409
    escalations = (await svc.approval_of(brand, post_id))["escalations"]
    assert {e["status"] for e in escalations} == {"cancelled"}

    await svc.submit(brand, post_id, author="ann", submission=2, version=6)
    reopened = await svc.approval_of(brand, post_id)
    assert reopened["id"] == str(approval_id) and reopened["status"] == "pending"
    assert reopened["voided_at"] is None
    status, body = await svc.call(
        "POST", f"/v1/approvals/{approval_id}/approve", brand, sub="bob", json={}
    )
    assert status == 200 and body["submission"] == 2
    approved = [d for t, d in await outbox(svc.db) if t == "approval.approved.v1"]
    assert [d["submission"] for d in approved] == [2]
    assert len(await requested(svc, post_id)) == 2
    actions = await as_owner(
        svc.db, "SELECT action FROM audit_logs WHERE approval_id = $1 ORDER BY seq", approval_id
    )
    assert [a["action"] for a in actions] == [
        "approval.requested",
        "approval.voided",
        "approval.requested",
        "approval.approved",
    ]


async def test_unlock_then_resubmission_in_either_order(svc: Service) -> None:
    """Unlocked, the approval is pending again; publishing's draft (a status-only update)
    leaves it so, and its next submission reopens it for a new decision."""
    brand = uuid.uuid4()
    post_id = await svc.submit(brand, author="ann", submission=1, version=2)
    approval_id = (await svc.row(brand, post_id))["id"]
    await svc.call("POST", f"/v1/approvals/{approval_id}/approve", brand, sub="bob", json={})
    status, body = await svc.call(
        "POST", f"/v1/approvals/{approval_id}/unlock", brand, role="admin", sub="ada", json={}
    )
    assert status == 200 and body["status"] == "pending"
    await svc.publish(
        PUBLISHING,
        updated_event(brand, post_id, version=4, submission=1, changed=["status"], status="draft"),
    )
    await svc.submit(brand, post_id, author="ann", submission=2, version=5)
    row = await svc.row(brand, post_id)
    assert row["status"] == "pending" and row["submission"] == 2 and not row["locked"]
    # Edited after the unlock instead: voided, then reopened by the submission.
    await svc.call("POST", f"/v1/approvals/{approval_id}/approve", brand, sub="bob", json={})
    await svc.call(
        "POST", f"/v1/approvals/{approval_id}/unlock", brand, role="admin", sub="ada", json={}
    )
    await svc.publish(
        PUBLISHING,
        updated_event(brand, post_id, version=7, submission=2, changed=["text"], status="draft"),
    )
    await svc.wait_row(brand, post_id, lambda r: r["status"] == "voided")
    await svc.submit(brand, post_id, author="ann", submission=3, version=8)


async def test_cancel_voids_and_publish_marks(svc: Service) -> None:
    brand = uuid.uuid4()
    cancelled_post = await svc.submit(brand, author="ann")
    published_post = await svc.submit(brand, author="ann")
    approval_id = (await svc.row(brand, published_post))["id"]
    await svc.call("POST", f"/v1/approvals/{approval_id}/approve", brand, sub="bob", json={})
    at = svc.clock.now
    await svc.publish(
        PUBLISHING,
        event(
            "publishing.post.cancelled.v1",
            brand,
            cancelled_post,
            post_id=cancelled_post,
            brand_id=brand,
            platforms=["sandbox"],
            cancelled_at=at,
            cancelled_by="ann",
        ),
        *[
            event(
                "publishing.post.published.v1",
                brand,
                published_post,
                post_id=published_post,
                brand_id=brand,
                platform=p,
                platform_post_id=f"{p}-1",
                published_at=at + timedelta(seconds=i),
            )
            for i, p in enumerate(["sandbox", "x"])
        ],
    )
    await svc.wait_row(brand, cancelled_post, lambda r: r["status"] == "voided")
    row = await svc.wait_row(brand, published_post, lambda r: r["published_at"] is not None)
    assert row["status"] == "approved" and row["locked"] and row["published_at"] == at


async def test_brands_and_members_are_kept(svc: Service) -> None:
    brand = await svc.brand("Acme", "Europe/Paris")
    await svc.publish(
        Topic.BRANDS.value,
        event(
            "brand.updated.v1",
            brand,
            brand,
            brand_id=brand,
            name="Acme Co",
            timezone="America/New_York",
            changed=["name", "timezone"],
        ),
        event(
            "brand.member_added.v1",
            brand,
            brand,
            brand_id=brand,
            user_id="u1",
            email="u1@example.com",
            role="manager",
        ),
        event(
            "brand.member_added.v1",
            brand,
            brand,
            brand_id=brand,
            user_id="u2",
            email="u2@example.com",
            role="admin",
        ),
        event("brand.member_removed.v1", brand, brand, brand_id=brand, user_id="u2"),
    )

    async def settled():
        brands = await as_owner(
            svc.db, "SELECT name, timezone FROM approval_brands WHERE brand_id = $1", brand
        )
        members = await as_owner(
            svc.db, "SELECT user_id, email, role FROM approval_members WHERE brand_id = $1", brand
        )
        if brands[0]["name"] == "Acme Co" and [m["user_id"] for m in members] == ["u1"]:
            return brands[0], members
        return None

    brand_row, members = await eventually(settled)
    assert brand_row["timezone"] == "America/New_York"
    assert (members[0]["email"], members[0]["role"]) == ("u1@example.com", "manager")


async def test_an_event_whose_brand_does_not_match_is_ignored(svc: Service) -> None:
    brand, other = uuid.uuid4(), uuid.uuid4()
    post_id = uuid.uuid4()
    # the envelope says one brand, the payload another
    forged = submitted_event(other, post_id).model_copy(update={"brandid": brand})
    await svc.publish(PUBLISHING, forged)
    await svc.submit(brand)
    assert await svc.row(other, post_id) is None and await svc.row(brand, post_id) is None


async def test_a_rebuild_of_the_projection_equals_the_live_table(svc: Service) -> None:
    from pressroom_approval.approvals.projections import APPROVALS
    from pressroom_kit import projections
    from pressroom_kit.db import connect

    brand = uuid.uuid4()
    post_id = await svc.submit(brand, author="ann", scheduled_at=svc.clock.now)
    approval_id = (await svc.row(brand, post_id))["id"]
    await svc.expiry.step()
    await svc.call("POST", f"/v1/approvals/{approval_id}/approve", brand, sub="bob", json={})
    await svc.call(
        "POST", f"/v1/approvals/{approval_id}/unlock", brand, role="admin", sub="ada", json={}
    )
    await svc.submit(brand, post_id, author="ann", submission=2, version=5)
    other = await svc.submit(brand, author="ann")
    await svc.call(
        "POST",
        f"/v1/approvals/{(await svc.row(brand, other))['id']}/reject",
        brand,
        sub="bob",
        json={"reason": "no"},
    )
    await svc.call(
        "POST", f"/v1/approvals/{approval_id}/comments", brand, sub="bob", json={"body": "x"}
    )
    conn = await connect(svc.db.owner_dsn)
    try:
        await projections.rebuild(conn, APPROVALS)
        diffs = await projections.verify(conn, APPROVALS)
        assert all(d.equal for d in diffs), [d.samples for d in diffs]
        await projections.swap(conn, APPROVALS)  # comments do not hold on to the rows
    finally:
        await conn.close()
    assert (await svc.row(brand, post_id))["submission"] == 2


async def test_a_handler_failing_midway_is_retried_whole(svc: Service) -> None:
    """The first attempt fails after the approval was saved (scheduling its escalations);
    the transaction rolls back and the inbox runs the handler again: one approval, one
    ``approval.requested.v1``, one audit row."""
    from approval_testkit import owner_execute
    from pressroom_kit.testing.plugin import APP_ROLE

    await owner_execute(
        svc.db,
        "CREATE SEQUENCE test_fault_seq; "
        f"GRANT USAGE ON SEQUENCE test_fault_seq TO {APP_ROLE}; "
        "CREATE FUNCTION test_fail_once() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN IF nextval('test_fault_seq') = 1 THEN RAISE EXCEPTION 'injected fault'; "
        "END IF; RETURN NEW; END $$; "
        "CREATE TRIGGER test_fail_once BEFORE INSERT ON escalation_events "
        "FOR EACH STATEMENT EXECUTE FUNCTION test_fail_once()",
    )
    brand = uuid.uuid4()
    post_id = await svc.submit(brand, author="ann")
    assert len(await requested(svc, post_id)) == 1
    audit = await as_owner(svc.db, "SELECT action FROM audit_logs WHERE post_id = $1", post_id)
    assert [a["action"] for a in audit] == ["approval.requested"]
    approval = await svc.approval_of(brand, post_id)
    assert len(approval["escalations"]) == 2
    (fault,) = await as_owner(svc.db, "SELECT last_value FROM test_fault_seq")
    assert fault["last_value"] >= 2  # the fault did fire, and a later attempt went through
