"""Review: a brand event delivered late (older than the one already applied) leaves the
brand's timezone as it is (``store.upsert_brand``), and so must leave the goals' deadlines:
they end at midnight of the zone the brand has, never of an outdated one."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from analytics_testkit import FakeClock, analytics_service, as_owner, event
from pressroom_contracts.events.brands import BrandCreated, BrandUpdated
from pressroom_kit.testing.plugin import TestDatabase
from test_analytics_goals import START, create

pytestmark = pytest.mark.integration


async def test_a_late_older_brand_event_does_not_move_deadlines(
    fresh_db: TestDatabase, kafka_bootstrap: str, topics: None
) -> None:
    brand = uuid.uuid4()
    now = datetime.now(UTC)
    newer = event(
        BrandCreated.event_type,
        brand,
        brand,
        BrandCreated(brand_id=brand, name="B", timezone="Asia/Tokyo", created_by="u"),
        source="/pressroom/gateway",
        time=now,
    )
    older = event(
        BrandUpdated.event_type,
        brand,
        brand,
        BrandUpdated(brand_id=brand, name="B", timezone="America/Los_Angeles", changed=[]),
        source="/pressroom/gateway",
        time=now - timedelta(hours=1),
    )
    async with analytics_service(fresh_db, kafka_bootstrap, clock=FakeClock(START)) as svc:
        created = await create(svc, brand, metric="reach", target=10, deadline="2027-03-12")
        await svc.inject(newer)
        await svc.inject(older)  # delivered late: the brand stays in Tokyo
        zone = await as_owner(
            fresh_db, "SELECT timezone FROM analytics_brands WHERE brand_id = $1", brand
        )
        assert zone[0]["timezone"] == "Asia/Tokyo"
        rows = await as_owner(
            fresh_db, "SELECT due_at FROM analytics_goals WHERE id = $1", uuid.UUID(created["id"])
        )
        assert rows[0]["due_at"] == datetime(2027, 3, 12, 15, tzinfo=UTC)  # midnight in Tokyo
