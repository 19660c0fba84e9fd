"""The storage backends behave the same: the local folder and S3 (a real SeaweedFS)."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import time
import tracemalloc
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from aiohttp import web
from pressroom_kit.embedded import free_port
from pressroom_media.settings import MediaSettings
from pressroom_media.storage import (
    MULTIPART_THRESHOLD,
    LocalStorage,
    S3Storage,
    Storage,
    create_storage,
)
from seaweed_testkit import EmbeddedS3, s3_client

pytestmark = pytest.mark.integration

MB = 1024 * 1024
BAD_KEYS = ["../x", "/etc/passwd", "a//b", "a\\b", "", "a/../../b", "a/./b", "a/", "a\x00b"]


def s3_storage(server: EmbeddedS3, bucket: str) -> S3Storage:
    return S3Storage(
        bucket=bucket,
        endpoint_url=server.endpoint_url,
        region=server.region,
        access_key=server.access_key,
        secret_key=server.secret_key,
    )


@pytest.fixture(params=["local", "s3"])
def unstarted_storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    if request.param == "local":
        return LocalStorage(tmp_path / "media")
    server: EmbeddedS3 = request.getfixturevalue("s3_server")
    return s3_storage(server, f"test-{uuid.uuid4().hex[:20]}")


@pytest.fixture
async def storage(
    unstarted_storage: Storage, request: pytest.FixtureRequest
) -> AsyncIterator[Storage]:
    await unstarted_storage.start()
    try:
        yield unstarted_storage
    finally:
        await unstarted_storage.close()
        if isinstance(unstarted_storage, S3Storage):
            async with s3_client(request.getfixturevalue("s3_server")) as client:
                await client.delete_bucket(Bucket=unstarted_storage.bucket)


@pytest.fixture
def source(tmp_path: Path) -> Callable[[bytes], str]:
    """Write bytes to a fresh staging file, as the upload spooler would."""
    staging = tmp_path / "staging"
    staging.mkdir(exist_ok=True)

    def write(data: bytes) -> str:
        path = staging / uuid.uuid4().hex
        path.write_bytes(data)
        return str(path)

    return write


async def read_all(storage: Storage, key: str, start: int = 0, end: int | None = None) -> bytes:
    return b"".join([chunk async for chunk in storage.read(key, start, end)])


def sample(size: int) -> bytes:
    return bytes(index % 251 for index in range(size))


def write_sparse(path: Path, size: int) -> None:
    with open(path, "wb") as file:
        file.truncate(size)


def write_random(path: Path, megabytes: int, tail: bytes) -> str:
    """Write random megabytes then ``tail``; return the sha256 of it all."""
    digest = hashlib.sha256()
    with open(path, "wb") as file:
        for block in [*(os.urandom(MB) for _ in range(megabytes)), tail]:
            digest.update(block)
            file.write(block)
    return digest.hexdigest()


async def names(folder: Path) -> list[str]:
    return sorted([entry.name async for entry in anyio.Path(folder).iterdir()])


async def test_put_then_stat_and_read_back(
    storage: Storage, source: Callable[[bytes], str]
) -> None:
    data = sample(300_000)
    path = source(data)

    await storage.put_file("brand/asset/original.jpg", path, "image/jpeg")

    stored = await storage.stat("brand/asset/original.jpg")
    assert stored is not None
    assert (stored.key, stored.size) == ("brand/asset/original.jpg", len(data))
    assert await read_all(storage, "brand/asset/original.jpg") == data
    assert not await anyio.Path(path).exists(), "put_file consumes its source"


async def test_byte_ranges_are_inclusive(storage: Storage, source: Callable[[bytes], str]) -> None:
    data = sample(10_240)
    await storage.put_file("b/a/file.bin", source(data), "application/octet-stream")

    assert await read_all(storage, "b/a/file.bin", 0, 0) == data[:1]
    assert await read_all(storage, "b/a/file.bin", 100, 5_000) == data[100:5_001]
    assert await read_all(storage, "b/a/file.bin", 9_000) == data[9_000:]
    assert await read_all(storage, "b/a/file.bin", 10_239, 10_239) == data[-1:]
    assert await read_all(storage, "b/a/file.bin", 10_000, 20_000) == data[10_000:]
    assert await read_all(storage, "b/a/file.bin", 10_240) == b""


async def test_reads_stream_in_chunks(storage: Storage, source: Callable[[bytes], str]) -> None:
    data = sample(100_000)
    await storage.put_file("b/a/file.bin", source(data), "application/octet-stream")

    chunks = [chunk async for chunk in storage.read("b/a/file.bin", 10, 90_009, chunk_size=8192)]

    assert b"".join(chunks) == data[10:90_010]
    assert len(chunks) > 1 and all(len(chunk) <= 8192 for chunk in chunks)


async def test_empty_object(storage: Storage, source: Callable[[bytes], str]) -> None:
    await storage.put_file("b/a/empty.txt", source(b""), "text/plain")

    stored = await storage.stat("b/a/empty.txt")
    assert stored is not None and stored.size == 0
    assert await read_all(storage, "b/a/empty.txt") == b""


async def test_missing_object(storage: Storage) -> None:
    assert await storage.stat("b/a/missing.jpg") is None
    with pytest.raises(FileNotFoundError):
        await read_all(storage, "b/a/missing.jpg")
    with pytest.raises(FileNotFoundError):
        await read_all(storage, "b/a/missing.jpg", 5, 10)


async def test_a_folder_is_not_an_object(storage: Storage, source: Callable[[bytes], str]) -> None:
    await storage.put_file("b/a/file.bin", source(b"x"), "application/octet-stream")

    assert await storage.stat("b/a") is None
    with pytest.raises(FileNotFoundError):
        await read_all(storage, "b/a")


async def test_put_replaces_an_existing_object(
    storage: Storage, source: Callable[[bytes], str]
) -> None:
    await storage.put_file("b/a/file.bin", source(b"first version"), "text/plain")
    await storage.put_file("b/a/file.bin", source(b"second"), "text/plain")

    assert await read_all(storage, "b/a/file.bin") == b"second"


async def test_put_of_a_missing_source_fails_and_stores_nothing(
    storage: Storage, tmp_path: Path
) -> None:
    with pytest.raises(FileNotFoundError):
        await storage.put_file("b/a/file.bin", str(tmp_path / "nothing-here"), "text/plain")

    assert await storage.stat("b/a/file.bin") is None


async def test_delete(storage: Storage, source: Callable[[bytes], str]) -> None:
    await storage.put_file("b/a/file.bin", source(b"data"), "text/plain")

    await storage.delete("b/a/file.bin")
    await storage.delete("b/a/file.bin")
    await storage.delete("b/never/existed.bin")

    assert await storage.stat("b/a/file.bin") is None


async def test_delete_prefix_removes_only_that_asset(
    storage: Storage, source: Callable[[bytes], str]
) -> None:
    keys = ["b/a1/original.jpg", "b/a1/thumb.webp", "b/a1/frames/0001.jpg", "b/a10/x.jpg", "b/a2/y"]
    for key in keys:
        await storage.put_file(key, source(key.encode()), "image/jpeg")

    assert await storage.delete_prefix("b/a1/") == 3
    assert await storage.delete_prefix("b/a1/") == 0

    for key in keys[:3]:
        assert await storage.stat(key) is None
    for key in keys[3:]:
        assert await read_all(storage, key) == key.encode()


async def test_delete_prefix_matches_partial_names(
    storage: Storage, source: Callable[[bytes], str]
) -> None:
    for key in ["b/a/frame-1.jpg", "b/a/frame-2.jpg", "b/a/original.jpg"]:
        await storage.put_file(key, source(b"x"), "image/jpeg")

    assert await storage.delete_prefix("b/a/frame-") == 2
    assert await storage.stat("b/a/original.jpg") is not None


async def test_delete_prefix_in_batches(
    storage: Storage, source: Callable[[bytes], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Several list_objects_v2 pages and delete_objects batches on S3.
    if isinstance(storage, S3Storage):
        monkeypatch.setattr(storage, "delete_batch", 10)
    count = 35
    await asyncio.gather(
        *(
            storage.put_file(f"b/a/{index:05d}", source(b"x"), "text/plain")
            for index in range(count)
        )
    )

    assert await storage.delete_prefix("b/a/") == count
    assert await storage.stat("b/a/00000") is None


async def test_concurrent_puts_of_different_keys(
    storage: Storage, source: Callable[[bytes], str]
) -> None:
    blobs = {f"b/{index % 3}/file-{index}.bin": os.urandom(50_000 + index) for index in range(24)}

    await asyncio.gather(
        *(storage.put_file(key, source(data), "image/png") for key, data in blobs.items())
    )

    for key, data in blobs.items():
        assert await read_all(storage, key) == data


@pytest.fixture(params=["local", "s3"])
def unconnected_storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    """Checks of keys and ranges come before any I/O: no server needed."""
    if request.param == "local":
        return LocalStorage(tmp_path / "media")
    return unreachable_storage(free_port())


@pytest.mark.parametrize("key", BAD_KEYS)
async def test_keys_that_could_escape_are_rejected(
    unconnected_storage: Storage, source: Callable[[bytes], str], key: str
) -> None:
    storage = unconnected_storage
    path = source(b"x")
    with pytest.raises(ValueError, match="invalid storage key"):
        await storage.put_file(key, path, "text/plain")
    with pytest.raises(ValueError, match="invalid storage key"):
        await storage.stat(key)
    with pytest.raises(ValueError, match="invalid storage key"):
        storage.read(key)
    with pytest.raises(ValueError, match="invalid storage key"):
        await storage.delete(key)
    assert await anyio.Path(path).exists()


@pytest.mark.parametrize("prefix", ["", "/", "../", "a//", "/etc/"])
async def test_dangerous_prefixes_are_rejected(unconnected_storage: Storage, prefix: str) -> None:
    with pytest.raises(ValueError, match="invalid storage key"):
        await unconnected_storage.delete_prefix(prefix)


async def test_bad_ranges_are_rejected(unconnected_storage: Storage) -> None:
    with pytest.raises(ValueError, match="invalid byte range"):
        unconnected_storage.read("b/a/file.bin", -1)
    with pytest.raises(ValueError, match="invalid byte range"):
        unconnected_storage.read("b/a/file.bin", 10, 9)


async def test_local_key_stays_under_root(tmp_path: Path, source: Callable[[bytes], str]) -> None:
    storage = LocalStorage(tmp_path / "media")
    await storage.start()

    await storage.put_file("brand/asset/original.jpg", source(b"data"), "image/jpeg")

    stored = anyio.Path(tmp_path / "media" / "brand" / "asset" / "original.jpg")
    assert await stored.read_bytes() == b"data"
    assert await names(tmp_path) == ["media", "staging"]


async def test_local_delete_prefix_removes_empty_folders(
    tmp_path: Path, source: Callable[[bytes], str]
) -> None:
    root = tmp_path / "media"
    storage = LocalStorage(root)
    await storage.start()
    await storage.put_file("b/a1/frames/1.jpg", source(b"x"), "image/jpeg")
    await storage.put_file("b/a1/original.jpg", source(b"x"), "image/jpeg")
    await storage.put_file("b/a2/original.jpg", source(b"x"), "image/jpeg")
    await storage.put_file("c/a3/original.jpg", source(b"x"), "image/jpeg")

    assert await storage.delete_prefix("b/a1/") == 2
    assert await names(root / "b") == ["a2"]

    await storage.delete("b/a2/original.jpg")
    assert await storage.delete_prefix("c/") == 1
    assert await names(root) == []


async def test_local_put_across_filesystems_copies_then_replaces(
    tmp_path: Path, source: Callable[[bytes], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_rename(src: Any, dst: Any) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "rename", no_rename)
    storage = LocalStorage(tmp_path / "media")
    await storage.start()
    data = sample(3 * MB + 5)
    path = source(data)

    await storage.put_file("b/a/original.mp4", path, "video/mp4")

    assert await read_all(storage, "b/a/original.mp4") == data
    assert not await anyio.Path(path).exists()
    assert await names(tmp_path / "media" / "b" / "a") == ["original.mp4"]


async def test_local_memory_stays_flat_for_a_200_mb_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_rename(src: Any, dst: Any) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "rename", no_rename)  # take the copying path
    storage = LocalStorage(tmp_path / "media")
    await storage.start()
    size = 200 * MB
    path = tmp_path / "big.bin"
    write_sparse(path, size)

    tracemalloc.start()
    try:
        await storage.put_file("b/a/big.bin", str(path), "application/octet-stream")
        digest = hashlib.sha256()
        async for chunk in storage.read("b/a/big.bin"):
            digest.update(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert digest.hexdigest() == hashlib.sha256(bytes(size)).hexdigest()
    assert peak < 16 * MB, f"peak {peak / MB:.1f} MB"


async def test_s3_large_file_goes_up_in_parts(
    s3_server: EmbeddedS3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = s3_storage(s3_server, f"test-{uuid.uuid4().hex[:20]}")
    await storage.start()
    size = 40 * MB + 123
    assert size > MULTIPART_THRESHOLD
    path = tmp_path / "big.bin"
    expected = write_random(path, 40, b"t" * 123)

    parts: list[int] = []
    upload_part = storage._client.upload_part

    async def counting_upload_part(**kwargs: Any) -> Any:
        parts.append(len(kwargs["Body"]))
        return await upload_part(**kwargs)

    monkeypatch.setattr(storage._client, "upload_part", counting_upload_part)
    try:
        tracemalloc.start()
        try:
            await storage.put_file("b/a/video.mp4", str(path), "video/mp4")
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()

        assert len(parts) == 6 and max(parts) <= 8 * MB
        # One part read from disk plus one being sent, never the whole 40 MB.
        assert peak < 24 * MB, f"peak {peak / MB:.1f} MB"
        assert not await anyio.Path(path).exists()
        stored = await storage.stat("b/a/video.mp4")
        assert stored is not None and stored.size == size
        actual = hashlib.sha256()
        async for chunk in storage.read("b/a/video.mp4"):
            actual.update(chunk)
        assert actual.hexdigest() == expected
        tail = await read_all(storage, "b/a/video.mp4", size - 200, size - 1)
        assert tail.endswith(b"t" * 123) and len(tail) == 200
    finally:
        await storage.close()
        async with s3_client(s3_server) as client:
            await client.delete_bucket(Bucket=storage.bucket)


async def test_s3_failed_multipart_upload_is_aborted(
    s3_server: EmbeddedS3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = s3_storage(s3_server, f"test-{uuid.uuid4().hex[:20]}")
    await storage.start()
    path = tmp_path / "big.bin"
    write_sparse(path, 20 * MB)
    upload_part = storage._client.upload_part

    async def failing_second_part(**kwargs: Any) -> Any:
        if kwargs["PartNumber"] == 2:
            raise ConnectionResetError("network went away")
        return await upload_part(**kwargs)

    monkeypatch.setattr(storage._client, "upload_part", failing_second_part)
    try:
        with pytest.raises(ConnectionResetError):
            await storage.put_file("b/a/video.mp4", str(path), "video/mp4")

        assert await anyio.Path(path).exists(), "a failed put leaves its source"
        assert await storage.stat("b/a/video.mp4") is None
        async with s3_client(s3_server) as client:
            uploads = await client.list_multipart_uploads(Bucket=storage.bucket)
        assert uploads.get("Uploads", []) == []
    finally:
        await storage.close()
        async with s3_client(s3_server) as client:
            await client.delete_bucket(Bucket=storage.bucket)


async def test_s3_start_creates_the_bucket_once(s3_server: EmbeddedS3) -> None:
    bucket = f"test-{uuid.uuid4().hex[:20]}"
    first, second = s3_storage(s3_server, bucket), s3_storage(s3_server, bucket)
    await first.start()
    await second.start()
    try:
        await first.check()
        await second.check()
    finally:
        await first.close()
        await second.close()
        async with s3_client(s3_server) as client:
            await client.delete_bucket(Bucket=bucket)


def unreachable_storage(port: int) -> S3Storage:
    return S3Storage(
        bucket="pressroom-media",
        endpoint_url=f"http://127.0.0.1:{port}",
        region="us-east-1",
        access_key="key",
        secret_key="secret",
        connect_timeout=0.5,
        read_timeout=0.5,
        max_attempts=1,
    )


async def test_s3_start_fails_fast_when_unreachable() -> None:
    storage = unreachable_storage(free_port())
    began = time.monotonic()

    with pytest.raises(Exception, match="Could not connect"):
        await storage.start()

    assert time.monotonic() - began < 5
    with pytest.raises(RuntimeError, match="not awaited"):
        await storage.check()


async def test_s3_readiness_fails_when_the_store_goes_away() -> None:
    # A stand-in S3 that answers HeadBucket, then disappears.
    async def ok(request: web.Request) -> web.Response:
        return web.Response(status=200)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", ok)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    storage = unreachable_storage(port)
    try:
        await storage.start()
        await storage.check()

        await runner.cleanup()
        began = time.monotonic()
        with pytest.raises(Exception, match=r"Could not connect|Connection was closed"):
            await storage.check()
        assert time.monotonic() - began < 5
    finally:
        await storage.close()
        await runner.cleanup()


def test_create_storage_follows_settings(tmp_path: Path) -> None:
    local = create_storage(MediaSettings(storage_backend="local", data_dir=tmp_path))
    assert isinstance(local, LocalStorage)

    s3 = create_storage(
        MediaSettings(
            storage_backend="s3",
            s3_bucket="media",
            s3_endpoint_url="http://127.0.0.1:1",
            s3_access_key="key",
            s3_secret_key="secret",
        )
    )
    assert isinstance(s3, S3Storage) and s3.bucket == "media"
