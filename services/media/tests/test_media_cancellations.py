"""A cancelled post gives back the usage its ``scheduled`` event recorded."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from media_samples import jpeg_bytes
from media_testkit import (
    Service,
    assert_rebuild_equals_live,
    media_service,
    outbox_types,
    post_event,
    publish,
)

pytestmark = pytest.mark.integration

TOPIC = "pressroom.publishing.v1"


async def until_used(media: Service, brand: uuid.UUID, asset_id: str, count: int) -> None:
    """Wait for the sentinel: events of one post share a partition, so once its use is
    counted every earlier event of that post has been handled."""
    async with asyncio.timeout(30):
        while (await media.call("GET", f"/v1/media/{asset_id}", brand, "viewer"))[1][
            "usage_count"
        ] < count:
            await asyncio.sleep(0.05)


async def test_a_cancelled_post_releases_its_scheduled_usage_once(
    fresh_db, kafka_bootstrap, topics, tmp_path
):
    async with media_service(fresh_db, kafka_bootstrap, tmp_path) as media:
        brand = uuid.uuid4()
        uploads = [
            await media.upload(brand, jpeg_bytes(90, 60, color=(i * 40, 10, 10))) for i in range(5)
        ]
        assert all(status == 201 for status, _ in uploads)
        scheduled_only, partly_published, other_post, draft_only, sentinel = (
            a["id"] for _, a in uploads
        )
        post, other, draft = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        cancelled = post_event("cancelled", brand, post, [scheduled_only, partly_published])
        await publish(
            kafka_bootstrap,
            TOPIC,
            post_event("scheduled", brand, post, [scheduled_only, partly_published]),
            post_event("published", brand, post, [partly_published], platform="instagram"),
            post_event("scheduled", brand, other, [other_post]),
            post_event("scheduled", brand, other, [scheduled_only]),  # in another post too
            cancelled,
            cancelled,  # redelivered
            post_event("cancelled", brand, post, [scheduled_only, partly_published]),  # again
            post_event("cancelled", brand, draft, [draft_only]),  # never scheduled
        )
        await publish(
            kafka_bootstrap,
            TOPIC,
            post_event("scheduled", brand, post, [sentinel]),
            post_event("scheduled", brand, other, [sentinel]),
            post_event("scheduled", brand, draft, [sentinel]),
        )
        await until_used(media, brand, sentinel, 3)

        async def asset(asset_id: str) -> dict:
            status, body = await media.call("GET", f"/v1/media/{asset_id}", brand, "viewer")
            assert status == 200
            return body

        async def actions(asset_id: str) -> list[tuple[str, str, str | None]]:
            _, log = await media.call("GET", f"/v1/media/{asset_id}/usage", brand, "viewer")
            return sorted((u["used_in"], u["action"], u["used_by_user"]) for u in log["items"])

        # Scheduled for the cancelled post and for another one: only the other one remains.
        current = await asset(scheduled_only)
        assert current["used_in"] == [f"post:{other}"] and current["usage_count"] == 1
        assert await actions(scheduled_only) == sorted(
            [
                (f"post:{other}", "scheduled", "user-editor"),
                (f"post:{post}", "cancelled", "user-canceller"),
                (f"post:{post}", "scheduled", "user-editor"),
            ]
        )
        # Published on one platform before the rest was cancelled: that use stays.
        current = await asset(partly_published)
        assert current["used_in"] == [f"post:{post}"] and current["usage_count"] == 1
        assert [a for _, a, _ in await actions(partly_published)] == [
            "cancelled",
            "published:instagram",
            "scheduled",
        ]
        # Untouched: another post's asset, and one named only by a cancelled draft.
        assert (await asset(other_post))["usage_count"] == 1
        current = await asset(draft_only)
        assert current["used_in"] == [] and current["usage_count"] == 0
        assert await actions(draft_only) == []
        # A release is not a use: no media.asset.used.v1 for it.
        assert (await outbox_types(fresh_db.owner_dsn)).count("media.asset.used.v1") == 8

        # The rebuilt projections agree with the live ones.
        await assert_rebuild_equals_live(fresh_db.owner_dsn)

        # Delete: in use by the partly published post (409), free once only cancelled.
        status, problem = await media.call("DELETE", f"/v1/media/{partly_published}", brand)
        assert status == 409 and problem["used_in"] == [f"post:{post}"]
        await publish(
            kafka_bootstrap, TOPIC, post_event("cancelled", brand, other, [scheduled_only])
        )
        async with asyncio.timeout(30):
            while (await asset(scheduled_only))["usage_count"] != 0:
                await asyncio.sleep(0.05)
        assert (await asset(scheduled_only))["used_in"] == []
        status, _ = await media.call("DELETE", f"/v1/media/{scheduled_only}", brand)
        assert status == 204
