"""The media service over real HTTP, PostgreSQL and the broker, with real files."""

from __future__ import annotations

import asyncio
import io
import time
import uuid
from urllib.parse import parse_qs, urlsplit, urlunsplit

import aiohttp
import pytest
from media_samples import (
    bomb_png_bytes,
    gif_bytes,
    jpeg_bytes,
    mp4_bytes,
    png_bytes,
    text_bytes,
    truncated,
    webm_bytes,
    webp_bytes,
)
from media_testkit import form, media_service
from PIL import Image

pytestmark = pytest.mark.integration


@pytest.fixture
async def media(fresh_db, kafka_bootstrap, topics, tmp_path):
    async with media_service(fresh_db, kafka_bootstrap, tmp_path) as service:
        yield service


async def test_an_image_upload_is_measured_cleaned_and_varied(media):
    brand = uuid.uuid4()
    data = jpeg_bytes(1600, 900, orientation=6, gps=True)
    status, asset = await media.upload(brand, data, "trip.jpg", category="travel", tags="a,b")
    assert status == 201, asset
    assert asset["duplicate"] is False and asset["kind"] == "image"
    assert asset["content_type"] == "image/jpeg" and asset["size_bytes"] == len(data)
    assert asset["category"] == "travel" and asset["metadata"]["tags"] == ["a", "b"]
    # Orientation 6 turns a 1600x900 landscape into a 900x1600 portrait.
    assert (asset["metadata"]["width"], asset["metadata"]["height"]) == (900, 1600)
    assert 1 <= len(asset["metadata"]["colors"]) <= 5
    assert all(c.startswith("#") and len(c) == 7 for c in asset["metadata"]["colors"])
    expected = {
        "square_1080": (1080, 1080),
        "portrait_1080x1350": (1080, 1350),
        "landscape_1200x628": (1200, 628),
        "story_1080x1920": (1080, 1920),
    }
    assert set(expected) <= set(asset["variants"])
    for name, size in expected.items():
        status, headers, body = await media.fetch(asset["variants"][name]["url"])
        assert status == 200 and headers["Content-Type"].startswith("image/")
        image = Image.open(io.BytesIO(body))
        assert image.size == size, name
        assert not image.getexif().get_ifd(0x8825), name  # no GPS

    status, headers, served = await media.fetch(asset["url"])
    assert status == 200 and headers["Content-Type"] == "image/jpeg"
    image = Image.open(io.BytesIO(served))
    assert image.size == (900, 1600)
    exif = image.getexif()
    assert not exif.get_ifd(0x8825) and exif.get(274, 1) == 1  # GPS gone, nothing to rotate
    status, _, thumb = await media.fetch(asset["thumbnail_url"])
    assert status == 200 and max(Image.open(io.BytesIO(thumb)).size) <= 320

    status, same = await media.call("GET", f"/v1/media/{asset['id']}", brand, "viewer")
    assert status == 200 and same["hash"] == asset["hash"]


async def test_the_same_bytes_are_one_asset_per_brand_and_never_shared(media):
    brand_a, brand_b = uuid.uuid4(), uuid.uuid4()
    data = png_bytes(64, 48)
    status, first = await media.upload(brand_a, data, "a.png", content_type="image/png")
    assert status == 201
    files_after_first = media.stored_files()
    status, again = await media.upload(brand_a, data, "renamed.png", content_type="image/png")
    assert status == 200 and again["duplicate"] is True and again["id"] == first["id"]
    assert media.stored_files() == files_after_first
    status, quota = await media.call("GET", "/v1/media/quota", brand_a, "viewer")
    assert quota["used_bytes"] == len(data)

    status, other = await media.upload(brand_b, data, "a.png", content_type="image/png")
    assert status == 201 and other["duplicate"] is False and other["id"] != first["id"]
    assert other["hash"] == first["hash"]
    status, quota_b = await media.call("GET", "/v1/media/quota", brand_b, "viewer")
    assert quota_b["used_bytes"] == len(data)

    async with media.http.get(f"{media.base}/metrics") as response:
        metrics = await response.text()
    for line in (
        'pressroom_media_uploads_total{outcome="duplicate"}',
        'pressroom_media_uploads_total{outcome="created"}',
        'pressroom_media_upload_stage_seconds_count{stage="process"}',
    ):
        assert line in metrics, line


async def test_two_concurrent_uploads_of_the_same_bytes_make_one_asset(media):
    brand = uuid.uuid4()
    data = jpeg_bytes(800, 600, color=(10, 200, 10))
    results = await asyncio.gather(*(media.upload(brand, data) for _ in range(4)))
    ids = {asset["id"] for _, asset in results}
    assert len(ids) == 1
    assert sorted(status for status, _ in results).count(201) == 1
    _status, quota = await media.call("GET", "/v1/media/quota", brand, "viewer")
    assert quota["used_bytes"] == len(data) and quota["reserved_bytes"] == 0
    asset_id = ids.pop()
    assert all(
        str(p.relative_to(media.settings.storage_path())).split("/")[1] == asset_id
        for p in media.stored_files()
    )


@pytest.mark.parametrize(
    ("maker", "kind", "content_type"),
    [
        (lambda: png_bytes(40, 30), "image", "image/png"),
        (lambda: webp_bytes(), "image", "image/webp"),
        (lambda: gif_bytes(frames=3), "image", "image/gif"),
        (lambda: mp4_bytes(seconds=1.0), "video", "video/mp4"),
        (lambda: webm_bytes(seconds=1.0), "video", "video/webm"),
    ],
)
async def test_every_accepted_format(media, maker, kind, content_type):
    status, asset = await media.upload(uuid.uuid4(), maker(), "file.bin", content_type="x/y")
    assert status == 201, asset
    assert asset["kind"] == kind and asset["content_type"] == content_type
    if kind == "video":
        assert asset["metadata"]["duration_s"] == pytest.approx(1.0, abs=0.3)
        assert asset["metadata"]["codec"]
        assert asset["variants"] == {}
        status, _headers, poster = await media.fetch(asset["thumbnail_url"])
        assert status == 200 and Image.open(io.BytesIO(poster)).size[0] <= 320


async def test_a_png_named_jpg_is_stored_as_png(media):
    status, asset = await media.upload(
        uuid.uuid4(), png_bytes(32, 32), "holiday.jpg", content_type="image/jpeg"
    )
    assert status == 201 and asset["content_type"] == "image/png"
    assert asset["url"].split("?")[0].endswith(".png")


async def test_refused_files_leave_nothing_behind(media):
    brand = uuid.uuid4()
    cases = [
        (text_bytes(), "image/png", 415, "unsupported_media_type"),
        (truncated(jpeg_bytes(800, 600)), "image/jpeg", 422, None),
        (truncated(png_bytes(400, 300)), "image/png", 422, None),
    ]
    for data, declared, status_expected, code in cases:
        status, problem = await media.upload(brand, data, "x", content_type=declared)
        assert status == status_expected, problem
        assert problem["status"] == status_expected and problem["detail"]
        if code:
            assert problem["type"].endswith(code)
    status, quota = await media.call("GET", "/v1/media/quota", brand, "viewer")
    assert quota["used_bytes"] == 0 and quota["reserved_bytes"] == 0
    assert media.stored_files() == [] and media.staged_files() == []
    status, listing = await media.call("GET", "/v1/media", brand, "viewer")
    assert listing["items"] == []


async def test_a_decompression_bomb_is_refused_fast(media):
    bomb = bomb_png_bytes(30_000, 30_000)
    started = time.perf_counter()
    status, problem = await media.upload(uuid.uuid4(), bomb, "bomb.png", content_type="image/png")
    assert status == 422 and "bomb" in problem["type"]
    assert time.perf_counter() - started < 2.0
    assert media.stored_files() == []


async def test_bad_requests_are_clear_problems(media):
    brand = uuid.uuid4()
    status, problem = await media.call("POST", "/v1/media", brand, json={"file": "x"})
    assert status == 415 and problem["type"].endswith("multipart_required")

    body = form(png_bytes(), "a.png", content_type="image/png", colour="red")
    status, problem = await media.call("POST", "/v1/media", brand, data=body)
    assert status == 422 and problem["errors"][0]["field"] == "colour"

    no_file = aiohttp.MultipartWriter("form-data")
    no_file.append("x").set_content_disposition("form-data", name="category")
    status, problem = await media.call("POST", "/v1/media", brand, data=no_file)
    assert status == 422 and problem["errors"][0]["field"] == "file"

    two = form(png_bytes(), "a.png", content_type="image/png")
    two.add_field("file", png_bytes(8, 8), filename="b.png", content_type="image/png")
    status, problem = await media.call("POST", "/v1/media", brand, data=two)
    assert status == 422 and problem["type"].endswith("one_file_only")

    headers = {"Content-Type": "multipart/form-data; boundary=xyz"}
    status, problem = await media.call(
        "POST",
        "/v1/media",
        brand,
        data=b"--xyz\r\nContent-Disposition: form-data; name=",
        headers=headers,
    )
    assert status == 400

    status, problem = await media.upload(brand, png_bytes(), "a.png", tags="x" * 100)
    assert status == 422 and problem["errors"][0]["field"] == "tags"
    status, problem = await media.upload(
        brand, png_bytes(), "a.png", tags=",".join(f"t{i}" for i in range(1000))
    )
    assert status == 422 and problem["errors"][0]["message"] == "too many"
    many = form(png_bytes(), "a.png", content_type="image/png", tags=["a"] * 100)
    status, problem = await media.call("POST", "/v1/media", brand, data=many)
    assert status == 422 and problem["type"].endswith("too_many_parts")
    status, problem = await media.upload(brand, png_bytes(), "a.png", category="c" * 9000)
    assert status == 422
    status, problem = await media.upload(brand, b"", "empty.png", content_type="image/png")
    assert status == 422 and problem["detail"] == "the file is empty"
    long_boundary = "b" * 300
    status, problem = await media.call(
        "POST",
        "/v1/media",
        brand,
        data=f"--{long_boundary}\r\n".encode(),
        headers={"Content-Type": f"multipart/form-data; boundary={long_boundary}"},
    )
    assert status == 400
    status, problem = await media.call(
        "POST", "/v1/media", brand, "viewer", data=form(png_bytes(), "a.png")
    )
    assert status == 403
    assert media.stored_files() == [] and media.staged_files() == []


async def test_signed_urls_expire_and_refuse_tampering(media):
    status, asset = await media.upload(uuid.uuid4(), jpeg_bytes(300, 200))
    url = asset["url"]
    status, headers, body = await media.fetch(url)
    assert status == 200 and len(body) == int(headers["Content-Length"])
    etag = headers["ETag"]

    status, headers, _ = await media.fetch(url, **{"If-None-Match": etag})
    assert status == 304
    async with media.http.head(url.replace(media.settings.public_base_url, media.base)) as head:
        assert head.status == 200 and head.headers["ETag"] == etag
        assert head.headers["Content-Length"] == str(len(body)) and await head.read() == b""
    status, headers, part = await media.fetch(url, Range="bytes=10-19")
    assert status == 206 and part == body[10:20]
    assert headers["Content-Range"] == f"bytes 10-19/{len(body)}"
    status, _, tail = await media.fetch(url, Range="bytes=-5")
    assert status == 206 and tail == body[-5:]
    status, _, rest = await media.fetch(url, Range=f"bytes={len(body) - 3}-")
    assert status == 206 and rest == body[-3:]
    status, headers, _ = await media.fetch(url, Range=f"bytes={len(body)}-")
    assert status == 416 and headers["Content-Range"] == f"bytes */{len(body)}"
    for ignored in ("bytes=5-3", "bytes=" + "9" * 5000 + "-", "items=0-1", "bytes=0-1,5-6"):
        status, _, whole = await media.fetch(url, Range=ignored)
        assert status == 200 and whole == body, ignored

    parts = urlsplit(url)
    query = parse_qs(parts.query)
    tampered_sig = query["signature"][0][:-2] + (
        "AA" if not query["signature"][0].endswith("AA") else "BB"
    )
    for bad_query in (
        f"expires={query['expires'][0]}&signature={tampered_sig}",
        f"expires={int(query['expires'][0]) + 3600}&signature={query['signature'][0]}",
        f"expires={query['expires'][0]}",
        "",
    ):
        status, _, _body_bad = await media.fetch(urlunsplit(parts._replace(query=bad_query)))
        assert status == 403, bad_query
    other_key = parts.path.replace("original", "thumbnail")
    status, _, _ = await media.fetch(urlunsplit(parts._replace(path=other_key)))
    assert status == 403

    # An expired link: signed in the past by the service's own signer.
    signer = media.app.state.signer
    key = parts.path.split("/media-files/", 1)[1]
    old = signer.url(key, time.time() - signer.ttl_s - 7200)
    status, _, _ = await media.fetch(old)
    assert status == 403


async def test_a_client_that_hangs_up_mid_upload_leaves_nothing(media):
    from media_testkit import token

    brand = uuid.uuid4()
    host, port = media.base.removeprefix("http://").split(":")
    _reader, writer = await asyncio.open_connection(host, int(port))
    head = (
        b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n'
        b"Content-Type: image/jpeg\r\n\r\n"
    )
    partial = head + jpeg_bytes(2000, 1500)[:200_000]
    writer.write(
        f"POST /v1/media HTTP/1.1\r\nHost: {host}\r\n"
        f"Authorization: Bearer {token('manager', brand)}\r\n"
        "Content-Type: multipart/form-data; boundary=b\r\n"
        f"Content-Length: {len(partial) + 5_000_000}\r\n\r\n".encode()
        + partial
    )
    await writer.drain()
    async with asyncio.timeout(10):
        while not media.staged_files():
            await asyncio.sleep(0.02)
    writer.close()
    async with asyncio.timeout(10):
        while media.staged_files():
            await asyncio.sleep(0.05)
    assert media.stored_files() == []
    _status, quota = await media.call("GET", "/v1/media/quota", brand, "viewer")
    assert quota["used_bytes"] == 0 and quota["reserved_bytes"] == 0


async def test_file_urls_start_with_the_gateway_on_its_configured_port(
    fresh_db, kafka_bootstrap, topics, tmp_path, monkeypatch
):
    """No media URL setting: file URLs follow ``PRESSROOM_PUBLIC_URL``'s default, the local
    gateway on ``PRESSROOM_GATEWAY_PORT``."""
    monkeypatch.delenv("PRESSROOM_PUBLIC_URL", raising=False)
    monkeypatch.delenv("PRESSROOM_MEDIA_PUBLIC_BASE_URL", raising=False)
    monkeypatch.setenv("PRESSROOM_GATEWAY_PORT", "9000")
    async with media_service(fresh_db, kafka_bootstrap, tmp_path, public_base_url="") as media:
        assert media.settings.public_base_url == "http://127.0.0.1:9000"
        status, asset = await media.upload(uuid.uuid4(), jpeg_bytes(64, 48))
        assert status == 201, asset
        urls = [
            asset["url"],
            asset["thumbnail_url"],
            *(v["url"] for v in asset["variants"].values()),
        ]
        assert all(u.startswith("http://127.0.0.1:9000/media-files/") for u in urls), urls
        status, _, body = await media.fetch(asset["url"])
        assert status == 200 and body
