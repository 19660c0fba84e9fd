"""The service on S3 storage (a SeaweedFS S3 server the tests start): uploads land in the
bucket, signed URLs serve them with ranges, and a delete empties the asset's prefix."""

from __future__ import annotations

import uuid

import pytest
from media_samples import jpeg_bytes
from media_testkit import media_service
from pressroom_media.storage import S3Storage

pytestmark = pytest.mark.integration


async def test_uploads_are_stored_and_served_from_s3(
    fresh_db, kafka_bootstrap, topics, tmp_path, s3_server
):
    bucket = f"media-{uuid.uuid4().hex[:12]}"
    async with media_service(
        fresh_db,
        kafka_bootstrap,
        tmp_path,
        storage_backend="s3",
        s3_endpoint_url=s3_server.endpoint_url,
        s3_bucket=bucket,
        s3_region=s3_server.region,
        s3_access_key=s3_server.access_key,
        s3_secret_key=s3_server.secret_key,
    ) as media:
        brand = uuid.uuid4()
        data = jpeg_bytes(900, 600, gps=True)
        status, asset = await media.upload(brand, data, "s3.jpg")
        assert status == 201, asset
        assert media.stored_files() == []  # nothing on local disk
        assert media.staged_files() == []

        storage: S3Storage = media.app.state.storage
        prefix = f"{brand}/{asset['id']}/"
        keys = [f"{prefix}{name}" for name in ("original.jpg", "thumbnail.jpg")]
        for key in keys:
            assert await storage.stat(key) is not None, key

        status, headers, body = await media.fetch(asset["url"])
        assert status == 200 and headers["Content-Type"] == "image/jpeg"
        status, headers, part = await media.fetch(asset["url"], Range="bytes=2-9")
        assert status == 206 and part == body[2:10]
        status, headers, tail = await media.fetch(asset["url"], Range="bytes=-4")
        assert status == 206 and tail == body[-4:]

        status, again = await media.upload(brand, data, "again.jpg")
        assert status == 200 and again["duplicate"] is True

        assert (await media.call("DELETE", f"/v1/media/{asset['id']}", brand))[0] == 204
        assert await storage.delete_prefix(prefix) == 0  # already empty
        status, _, _ = await media.fetch(asset["url"])
        assert status == 404
