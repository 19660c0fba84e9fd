"""Review: a sync still running when the service comes back after a long outage (more
than 24.8 days: 2**31 ms) must still end; its duration does not fit ``integer``, and a
failing oldest row used to fail every round of the timeout worker, so no sync ever timed
out again."""

from __future__ import annotations

import uuid

import pytest
from analytics_testkit import analytics_service, brand_created, connected

pytestmark = pytest.mark.integration


async def test_a_sync_older_than_int32_milliseconds_still_times_out(
    fresh_db, kafka_bootstrap, topics
):
    brand = uuid.uuid4()
    async with analytics_service(fresh_db, kafka_bootstrap, sync_timeout_s=300) as svc:
        await svc.inject(brand_created(brand), connected(brand, "sandbox"))
        old = await svc.sync(brand)
        svc.clock.advance(30 * 86400)
        recent = await svc.sync(brand)
        svc.clock.advance(301)
        assert await svc.workers.step_timeouts() == 2
        for request in (old, recent):
            log = await svc.sync_log(brand, request.sync_id)
            assert log["status"] == "timed_out", log
        assert (await svc.sync_log(brand, recent.sync_id))["duration_ms"] == 301_000
