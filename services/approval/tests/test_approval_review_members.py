"""Hostile review of the members copy: a removal must outlast a resent, older
``brand.member_added.v1`` (a publisher resending under a new id after the removal went
out). Otherwise the removed member is back in ``approval_members`` and keeps getting the
brand's escalation emails."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from approval_testkit import Service, as_owner, event, eventually
from pressroom_contracts.topics import Topic

pytestmark = pytest.mark.integration


async def test_a_resent_older_member_added_does_not_undo_a_removal(svc: Service) -> None:
    brand = uuid.uuid4()
    t0 = datetime.now(UTC).replace(microsecond=0)
    added = event(
        "brand.member_added.v1",
        brand,
        brand,
        brand_id=brand,
        user_id="u2",
        email="u2@example.com",
        role="admin",
    ).model_copy(update={"time": t0})
    removed = event(
        "brand.member_removed.v1", brand, brand, brand_id=brand, user_id="u2"
    ).model_copy(update={"time": t0 + timedelta(seconds=5)})
    resent = added.model_copy(update={"id": uuid.uuid4()})  # the same fact, a new event id
    # A later member the test can wait for: its arrival means the resend was handled.
    marker = event(
        "brand.member_added.v1",
        brand,
        brand,
        brand_id=brand,
        user_id="u3",
        email="u3@example.com",
        role="viewer",
    ).model_copy(update={"time": t0 + timedelta(seconds=10)})
    await svc.publish(Topic.BRANDS.value, added, removed, resent, marker)

    async def settled() -> list[str] | None:
        rows = await as_owner(
            svc.db, "SELECT user_id FROM approval_members WHERE brand_id = $1 ORDER BY 1", brand
        )
        users = [r["user_id"] for r in rows]
        return users if "u3" in users else None

    assert await eventually(settled) == ["u3"]


async def test_a_member_added_after_the_removal_is_back(svc: Service) -> None:
    brand = uuid.uuid4()
    t0 = datetime.now(UTC).replace(microsecond=0)
    first = event(
        "brand.member_added.v1",
        brand,
        brand,
        brand_id=brand,
        user_id="u2",
        email="u2@example.com",
        role="admin",
    ).model_copy(update={"time": t0})
    removed = event(
        "brand.member_removed.v1", brand, brand, brand_id=brand, user_id="u2"
    ).model_copy(update={"time": t0 + timedelta(seconds=5)})
    again = event(
        "brand.member_added.v1",
        brand,
        brand,
        brand_id=brand,
        user_id="u2",
        email="u2@new.example",
        role="manager",
    ).model_copy(update={"time": t0 + timedelta(seconds=10)})
    await svc.publish(Topic.BRANDS.value, first, removed, again)

    async def settled() -> tuple[str, str] | None:
        rows = await as_owner(
            svc.db, "SELECT email, role FROM approval_members WHERE brand_id = $1", brand
        )
        return (rows[0]["email"], rows[0]["role"]) if rows else None

    assert await eventually(settled) == ("u2@new.example", "manager")
