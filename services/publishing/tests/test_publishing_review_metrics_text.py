"""Review: a platform's text is not ours to trust. An error message or a post id holding a
NUL (which PostgreSQL refuses in text and jsonb) must not fail the answer's transaction: that
made the row retry (fetching from the platform again each time) and finally answer
``failed`` with an internal error instead of the platform's own answer."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from pressroom_contracts.events.publishing import PostDay
from pressroom_publishing.metrics_sync import Answer
from test_publishing_metrics_sync import answers, requested, service, sync_request  # noqa: F401
from test_scheduler_sandbox import connected

pytestmark = pytest.mark.integration


async def test_an_answer_holding_a_nul_is_written_once_with_the_text_kept(service):  # noqa: F811
    brand = await connected(service, service.client)
    failed = sync_request(brand, ["sandbox"])
    ok = sync_request(brand, ["sandbox"])
    await requested(service, failed, 1)
    await requested(service, ok, 1)
    wanted = {failed.data["sync_id"], ok.data["sync_id"]}
    claimed: dict[str, Any] = {}
    for _ in range(50):  # both work rows, however the claims split them
        claimed |= {
            str(row["sync_id"]): (lease, row) for lease, row in await service.metrics.claim()
        }
        if wanted <= claimed.keys():
            break
        await asyncio.sleep(0.1)
    lease, row = claimed[failed.data["sync_id"]]
    await service.metrics._settle(lease, row, Answer("failed", error="bad\x00gateway"))
    lease, row = claimed[ok.data["sync_id"]]
    today = datetime.now(UTC).date()
    day = PostDay(platform_post_id="p\x001", date=today, reach=3)
    await service.metrics._settle(lease, row, Answer("ok", posts=[day]))

    [gone] = await answers(service, failed.data["sync_id"])
    assert gone["status"] == "failed" and gone["error"].startswith("bad")
    assert "gateway" in gone["error"]
    [good] = await answers(service, ok.data["sync_id"])
    assert good["status"] == "ok" and good["posts"][0]["reach"] == 3
