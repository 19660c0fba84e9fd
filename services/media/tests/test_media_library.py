"""Quota, usage, the library's list/patch/delete and rebuilding the projections."""

from __future__ import annotations

import asyncio
import io
import uuid
from datetime import UTC, datetime

import pytest
from media_samples import jpeg_bytes, png_bytes
from media_testkit import (
    assert_rebuild_equals_live,
    media_service,
    outbox_types,
    post_event,
    publish,
)
from PIL import Image

pytestmark = pytest.mark.integration


def same_size_pngs(count: int, side: int = 40) -> list[bytes]:
    """Distinct PNGs of exactly the same size (stored, uncompressed), so quota maths is exact."""
    files = []
    for i in range(count):
        image = Image.new("RGB", (side, side), (i * 7 % 256, 255 - i, 42))
        buffer = io.BytesIO()
        image.save(buffer, "PNG", compress_level=0)
        files.append(buffer.getvalue())
    assert len({len(f) for f in files}) == 1 and len(set(files)) == count
    return files


async def test_twenty_concurrent_uploads_on_two_replicas_never_exceed_the_quota(
    fresh_db, kafka_bootstrap, topics, tmp_path
):
    files = same_size_pngs(20)
    size = len(files[0])
    limit = int(size * 7.5)
    async with (
        media_service(fresh_db, kafka_bootstrap, tmp_path, default_quota_bytes=limit) as one,
        media_service(fresh_db, kafka_bootstrap, tmp_path, default_quota_bytes=limit) as two,
    ):
        brand = uuid.uuid4()
        results = await asyncio.gather(
            *(
                (one, two)[i % 2].upload(brand, data, f"{i}.png", content_type="image/png")
                for i, data in enumerate(files)
            )
        )
        statuses = sorted(status for status, _ in results)
        assert statuses.count(201) == 7 and statuses.count(413) == 13, statuses
        refused = next(body for status, body in results if status == 413)
        assert refused["limit_bytes"] == limit and refused["requested_bytes"] == size
        _, quota = await one.call("GET", "/v1/media/quota", brand, "viewer")
        assert quota["used_bytes"] == 7 * size <= limit and quota["reserved_bytes"] == 0
        assert len(one.stored_files()) == 7 * 6  # original, thumbnail and four variants each
        assert one.staged_files() == []
        types = await outbox_types(fresh_db.owner_dsn)
        assert types.count("media.quota.exceeded.v1") == 13
        assert types.count("media.asset.uploaded.v1") == 7


async def test_the_warning_is_raised_once_per_crossing(fresh_db, kafka_bootstrap, topics, tmp_path):
    files = same_size_pngs(12)
    size = len(files[0])
    async with media_service(
        fresh_db, kafka_bootstrap, tmp_path, default_quota_bytes=size * 10
    ) as media:
        brand = uuid.uuid4()
        ids = []
        for i, data in enumerate(files[:9]):  # 80 % is reached by the 8th
            status, asset = await media.upload(brand, data, f"{i}.png", content_type="image/png")
            assert status == 201
            ids.append(asset["id"])
            warnings = (await outbox_types(fresh_db.owner_dsn)).count("media.quota.warning.v1")
            assert warnings == (1 if i >= 7 else 0), i
        status, quota = await media.call("GET", "/v1/media/quota", brand, "viewer")
        assert quota["warning"] is True and quota["percent"] == 90.0
        for asset_id in ids[:2]:  # back to 70 %
            assert (await media.call("DELETE", f"/v1/media/{asset_id}", brand))[0] == 204
        status, quota = await media.call("GET", "/v1/media/quota", brand, "viewer")
        assert quota["warning"] is False and quota["used_bytes"] == 7 * size
        await media.upload(brand, files[9], "9.png", content_type="image/png")  # 80 % again
        await media.upload(brand, files[10], "10.png", content_type="image/png")  # 90 %
        assert (await outbox_types(fresh_db.owner_dsn)).count("media.quota.warning.v1") == 2


async def test_a_crashed_upload_gives_its_reservation_back(
    fresh_db, kafka_bootstrap, topics, tmp_path
):
    files = same_size_pngs(2)
    size = len(files[0])
    async with media_service(
        fresh_db, kafka_bootstrap, tmp_path, default_quota_bytes=size, reservation_ttl_s=1
    ) as media:
        brand = uuid.uuid4()
        from pressroom_media import handlers

        # A replica reserved the whole quota and died before committing.
        await handlers.reserve(
            media.pool, brand, size, media.settings, filename="lost.png", asset_id=uuid.uuid4()
        )
        status, problem = await media.upload(brand, files[0], "a.png", content_type="image/png")
        assert status == 413 and problem["reserved_bytes"] == size
        await asyncio.sleep(1.1)
        status, _ = await media.upload(brand, files[0], "a.png", content_type="image/png")
        assert status == 201


async def test_usage_from_publishing_events_counts_once(
    fresh_db, kafka_bootstrap, topics, tmp_path
):
    async with media_service(fresh_db, kafka_bootstrap, tmp_path) as media:
        brand, other = uuid.uuid4(), uuid.uuid4()
        _, asset = await media.upload(brand, jpeg_bytes(200, 100))
        _, foreign = await media.upload(other, jpeg_bytes(200, 100, color=(1, 2, 3)))
        post = uuid.uuid4()
        published = post_event("published", brand, post, [asset["id"], foreign["id"]])
        scheduled = post_event("scheduled", brand, post, [asset["id"]])
        # The same post published again under another event id (a retry upstream).
        republished = post_event("published", brand, post, [asset["id"]])
        await publish(
            kafka_bootstrap, "pressroom.publishing.v1", scheduled, published, published, republished
        )
        path = f"/v1/media/{asset['id']}"
        async with asyncio.timeout(30):
            while (await media.call("GET", path, brand, "viewer"))[1]["usage_count"] < 2:
                await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)  # let any duplicate arrive
        _, current = await media.call("GET", path, brand, "viewer")
        assert current["used_in"] == [f"post:{post}"] and current["usage_count"] == 2
        status, usage = await media.call("GET", f"{path}/usage", brand, "viewer")
        assert status == 200
        assert sorted(u["action"] for u in usage["items"]) == ["published:instagram", "scheduled"]
        assert {u["used_by_user"] for u in usage["items"]} == {"user-editor"}
        # Brand B's asset named in brand A's event is untouched.
        _, untouched = await media.call("GET", f"/v1/media/{foreign['id']}", other, "viewer")
        assert untouched["usage_count"] == 0 and untouched["used_in"] == []
        assert (await outbox_types(fresh_db.owner_dsn)).count("media.asset.used.v1") == 2

        # In use: delete is a 409 until forced; then the files are gone.
        status, problem = await media.call("DELETE", path, brand)
        assert status == 409 and problem["used_in"] == [f"post:{post}"]
        files_before = len(media.stored_files())
        status, _ = await media.call("DELETE", f"{path}?force=true", brand)
        assert status == 204
        assert len(media.stored_files()) == files_before - 6
        assert (await media.call("GET", path, brand, "viewer"))[0] == 404
        status, _, _ = await media.fetch(asset["url"])
        assert status == 404


async def test_list_filters_pages_and_patch(fresh_db, kafka_bootstrap, topics, tmp_path):
    async with media_service(fresh_db, kafka_bootstrap, tmp_path) as media:
        brand = uuid.uuid4()
        for i in range(5):
            await media.upload(
                brand,
                png_bytes(20 + i, 20),
                f"summer_{i}.png" if i % 2 else f"winter {i}.png",
                content_type="image/png",
                category="season",
                tags=["hot" if i % 2 else "cold", "all"],
            )
        await media.upload(brand, jpeg_bytes(50, 50), "100%_real.jpg", category="other")

        async def names(query: str) -> list[str]:
            status, body = await media.call("GET", f"/v1/media?{query}", brand, "viewer")
            assert status == 200, body
            return sorted(item["filename"] for item in body["items"])

        assert len(await names("")) == 6
        assert await names("tag=hot") == ["summer_1.png", "summer_3.png"]
        assert await names("q=WINTER") == ["winter 0.png", "winter 2.png", "winter 4.png"]
        assert await names("q=100%25") == ["100%_real.jpg"]
        assert await names("q=_") == ["100%_real.jpg", "summer_1.png", "summer_3.png"]
        assert len(await names("category=season&kind=image")) == 5
        assert await names("kind=video") == []

        seen, cursor = [], None
        while True:
            query = "limit=2" + (f"&cursor={cursor}" if cursor else "")
            _, body = await media.call("GET", f"/v1/media?{query}", brand, "viewer")
            seen += [item["id"] for item in body["items"]]
            cursor = body["next_cursor"]
            if cursor is None:
                break
        assert len(seen) == len(set(seen)) == 6
        status, _ = await media.call("GET", "/v1/media?cursor=nonsense", brand, "viewer")
        assert status == 422

        target = seen[0]
        status, changed = await media.call(
            "PATCH", f"/v1/media/{target}", brand, json={"filename": "new.png", "tags": ["x"]}
        )
        assert (
            status == 200
            and changed["filename"] == "new.png"
            and changed["metadata"]["tags"] == ["x"]
        )
        status, changed = await media.call(
            "PATCH", f"/v1/media/{target}", brand, json={"category": None}
        )
        assert status == 200 and changed["category"] is None
        for bad in ({"filename": None}, {"size_bytes": 1}, {"tags": ["y" * 65]}):
            status, _problem = await media.call("PATCH", f"/v1/media/{target}", brand, json=bad)
            assert status in (400, 422), bad
        assert (await media.call("PATCH", f"/v1/media/{target}", brand, "viewer", json={}))[
            0
        ] == 403
        assert (await media.call("PATCH", f"/v1/media/{uuid.uuid4()}", brand, json={}))[0] == 404

        # The projections rebuilt from the events equal the live tables.
        await assert_rebuild_equals_live(fresh_db.owner_dsn)


async def test_a_body_that_cannot_fit_is_refused_before_it_is_read_unless_a_twin(
    fresh_db, kafka_bootstrap, topics, tmp_path
):
    from media_samples import write_padded_mp4

    first, second = tmp_path / "first.mp4", tmp_path / "second.mp4"
    write_padded_mp4(str(first), 20 * 1024 * 1024)
    write_padded_mp4(str(second), 22 * 1024 * 1024)
    async with media_service(
        fresh_db, kafka_bootstrap, tmp_path / "data", default_quota_bytes=21 * 1024 * 1024
    ) as media:
        brand = uuid.uuid4()
        status, stored = await media.upload(brand, first.read_bytes(), "first.mp4")
        assert status == 201
        # The quota is nearly full, but these may be bytes the brand has: read, then dedup.
        status, twin = await media.upload(brand, first.read_bytes(), "again.mp4")
        assert status == 200 and twin["duplicate"] is True and twin["id"] == stored["id"]
        assert (await outbox_types(fresh_db.owner_dsn)).count("media.quota.exceeded.v1") == 0
        # No asset of about this size: refused from Content-Length alone.
        status, problem = await media.upload(brand, second.read_bytes(), "second.mp4")
        assert status == 413 and problem["type"].endswith("quota_exceeded")
        assert problem["limit_bytes"] == 21 * 1024 * 1024
        assert problem["requested_bytes"] >= 22 * 1024 * 1024 - 128 * 1024
        assert media.staged_files() == []
        assert len(media.stored_files()) == 2  # the first video and its poster
        assert (await outbox_types(fresh_db.owner_dsn)).count("media.quota.exceeded.v1") == 1


async def test_the_sweeper_removes_what_a_crashed_upload_stored(
    fresh_db, kafka_bootstrap, topics, tmp_path
):
    from pressroom_media import handlers

    async with media_service(
        fresh_db, kafka_bootstrap, tmp_path / "data", reservation_ttl_s=1, sweep_interval_s=3600
    ) as media:
        brand = uuid.uuid4()
        status, kept = await media.upload(brand, jpeg_bytes(120, 80))
        assert status == 201
        files_of_kept = media.stored_files()
        # A replica reserved, stored its files, and died before committing.
        lost = uuid.uuid4()
        reservation = await handlers.reserve(
            media.pool, brand, 1000, media.settings, filename="lost.jpg", asset_id=lost
        )
        staged = tmp_path / "lost.jpg"
        staged.write_bytes(jpeg_bytes(60, 40))
        await media.app.state.storage.put_file(f"{brand}/{lost}/original.jpg", str(staged), "x")
        assert len(media.stored_files()) == len(files_of_kept) + 1
        await asyncio.sleep(1.1)
        swept = await handlers.sweep_expired_reservations(
            media.pool, media.app.state.storage, now=datetime.now(UTC)
        )
        assert swept == 1
        assert media.stored_files() == files_of_kept
        assert (await media.call("GET", f"/v1/media/{kept['id']}", brand, "viewer"))[0] == 200
        # Had it been alive after all, its commit is refused: its files may be gone.
        with pytest.raises(handlers.UploadExpired):
            await handlers.commit_upload(
                media.pool,
                media.settings,
                brand_id=brand,
                reservation=reservation,
                asset_id=lost,
                actor="u",
                fields={"size_bytes": 1000, "filename": "lost.jpg"},
            )


async def test_files_a_delete_could_not_remove_are_swept_later(
    fresh_db, kafka_bootstrap, topics, tmp_path
):
    from pressroom_media import handlers

    async with media_service(
        fresh_db, kafka_bootstrap, tmp_path / "data", sweep_interval_s=3600
    ) as media:
        brand = uuid.uuid4()
        _, asset = await media.upload(brand, jpeg_bytes(100, 100))
        storage = media.app.state.storage
        real = storage.delete_prefix

        async def storage_down(prefix: str) -> int:
            raise OSError("storage unreachable")

        storage.delete_prefix = storage_down
        try:
            status, _ = await media.call("DELETE", f"/v1/media/{asset['id']}", brand)
        finally:
            storage.delete_prefix = real
        assert status == 204  # the asset is gone; its files are ticketed
        assert (await media.call("GET", f"/v1/media/{asset['id']}", brand, "viewer"))[0] == 404
        assert len(media.stored_files()) == 6
        status, quota = await media.call("GET", "/v1/media/quota", brand, "viewer")
        assert quota["used_bytes"] == 0 and quota["reserved_bytes"] == 0
        swept = await handlers.sweep_expired_reservations(
            media.pool, storage, now=datetime.now(UTC)
        )
        assert swept == 1 and media.stored_files() == []


async def test_two_replicas_record_usage_of_the_same_assets_from_different_partitions(
    fresh_db, kafka_bootstrap, topics, tmp_path
):
    """Both replicas save the same assets' streams at once, each post naming them in
    another order: the batch that loses a race runs again on fresh state instead of failing,
    rows are locked in one order (no deadlock), every post is counted once, nothing is
    dead-lettered."""
    group = f"media-{uuid.uuid4().hex[:8]}"
    async with (
        media_service(fresh_db, kafka_bootstrap, tmp_path, consumer_group=group) as one,
        media_service(fresh_db, kafka_bootstrap, tmp_path, consumer_group=group) as two,
    ):
        async with asyncio.timeout(30):
            for replica in (one, two):
                while (await replica.http.get(f"{replica.base}/readyz")).status != 200:
                    await asyncio.sleep(0.1)
        brand = uuid.uuid4()
        _, x = await one.upload(brand, jpeg_bytes(120, 80))
        _, y = await one.upload(brand, jpeg_bytes(120, 80, color=(9, 9, 9)))
        posts = [uuid.uuid4() for _ in range(30)]
        await publish(
            kafka_bootstrap,
            "pressroom.publishing.v1",
            *(
                post_event("scheduled", brand, post, [x["id"], y["id"]][:: 1 - 2 * (i % 2)])
                for i, post in enumerate(posts)
            ),
        )
        for asset in (x, y):
            path = f"/v1/media/{asset['id']}"
            async with asyncio.timeout(40):
                while (await one.call("GET", path, brand, "viewer"))[1]["usage_count"] < 30:
                    await asyncio.sleep(0.1)
            _, current = await two.call("GET", path, brand, "viewer")
            assert current["usage_count"] == 30
            assert sorted(current["used_in"]) == sorted(f"post:{p}" for p in posts)
        assert (await outbox_types(fresh_db.owner_dsn)).count("media.asset.used.v1") == 60
