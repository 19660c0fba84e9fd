from __future__ import annotations

import hashlib
import io
import os
import pickle
import resource
import signal
import time
from collections.abc import Callable
from pathlib import Path

import av
import pytest
from media_samples import (
    GPS_LATITUDE,
    avif_bytes,
    bomb_png_bytes,
    complement,
    gif_bytes,
    heic_bytes,
    jpeg_bytes,
    mov_bytes,
    mp4_bytes,
    pdf_bytes,
    png_bytes,
    text_bytes,
    truncated,
    webm_bytes,
    webp_bytes,
    write_padded_mp4,
    zip_bytes,
)
from PIL import ExifTags, Image
from pressroom_media.processing import (
    AVIF,
    GIF,
    HEAD_BYTES,
    HEIC,
    JPEG,
    MOV,
    MP4,
    PNG,
    THUMBNAIL_PX,
    VARIANTS,
    WEBM,
    WEBP,
    Detected,
    Limits,
    Processed,
    Processor,
    Rejected,
    Rendition,
    process_file,
    sniff,
)

RED = (200, 30, 30)
DEFAULTS = Limits()


def run(
    tmp: Path, data: bytes, expected: Detected | None = None, limits: Limits = DEFAULTS
) -> Processed:
    """Process ``data`` as an upload; ``expected`` defaults to what sniff says."""
    upload = tmp / "upload.bin"
    upload.write_bytes(data)
    out = tmp / "out"
    out.mkdir(exist_ok=True)
    detected = expected or sniff(data[:HEAD_BYTES])
    assert detected is not None
    return process_file(str(upload), str(out), detected, limits)


def rejected(
    tmp: Path, data: bytes, expected: Detected | None = None, limits: Limits = DEFAULTS
) -> Rejected:
    with pytest.raises(Rejected) as caught:
        run(tmp, data, expected, limits)
    return caught.value


def renditions(result: Processed) -> list[Rendition]:
    return [r for r in [result.display, result.thumbnail, *result.variants] if r is not None]


def close_to(actual: object, expected: tuple[int, ...], tolerance: int = 25) -> bool:
    """Whether a pixel is ``expected``, give or take compression."""
    assert isinstance(actual, tuple)
    return all(abs(a - e) <= tolerance for a, e in zip(actual, expected, strict=False))


def hex_colour(colour: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*colour)


def max_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def bytes_read() -> int | None:
    try:
        with open("/proc/self/io") as stats:
            return next(int(line.split()[1]) for line in stats if line.startswith("rchar:"))
    except OSError:
        return None


# Sniffing


@pytest.mark.unit
@pytest.mark.parametrize(
    ("make", "detected"),
    [
        (jpeg_bytes, JPEG),
        (png_bytes, PNG),
        (webp_bytes, WEBP),
        (gif_bytes, GIF),
        (avif_bytes, AVIF),
        (heic_bytes, HEIC),
        (mp4_bytes, MP4),
        (mov_bytes, MOV),
        (webm_bytes, WEBM),
    ],
)
def test_sniff_recognises_every_accepted_format(
    make: Callable[[], bytes], detected: Detected
) -> None:
    assert sniff(make()[:HEAD_BYTES]) == detected


@pytest.mark.unit
@pytest.mark.parametrize(
    "head",
    [text_bytes(), pdf_bytes(), zip_bytes(), b"", b"\xff\xd8", b"<svg xmlns='x'/>"],
    ids=["text", "pdf", "zip", "empty", "two-bytes", "svg"],
)
def test_sniff_refuses_everything_else(head: bytes) -> None:
    assert sniff(head) is None


def ftyp(major: bytes, *compatible: bytes) -> bytes:
    body = major + b"\0\0\0\0" + b"".join(compatible)
    return (8 + len(body)).to_bytes(4, "big") + b"ftyp" + body + b"\0\0\0\x08free"


@pytest.mark.unit
@pytest.mark.parametrize(
    ("head", "detected"),
    [
        (ftyp(b"mif1", b"mif1", b"heic"), HEIC),
        (ftyp(b"heix", b"mif1"), HEIC),
        (ftyp(b"mif1", b"mif1", b"miaf", b"avif"), AVIF),
        (ftyp(b"avis", b"msf1"), AVIF),
        (ftyp(b"qt  ", b"qt  "), MOV),
        (ftyp(b"mp42", b"isom", b"avc1"), MP4),
        (ftyp(b"3gp5", b"3gp5", b"isom"), MP4),
        (ftyp(b"M4A ", b"M4A ", b"mp42", b"isom"), None),
        (ftyp(b"crx ", b"crx "), None),
        (b"\0\0\0\x08wide\0\0\x10\0mdat", MOV),
    ],
    ids=["heif", "heix", "avif", "avis", "mov", "mp4", "3gp", "m4a-audio", "canon-raw", "old-mov"],
)
def test_sniff_tells_iso_media_apart_by_brand(head: bytes, detected: Detected | None) -> None:
    assert sniff(head) == detected


@pytest.mark.unit
def test_a_png_named_and_declared_jpeg_is_a_png(tmp_path: Path) -> None:
    data = png_bytes()
    assert sniff(data) == PNG
    renamed = tmp_path / "holiday.jpg"
    renamed.write_bytes(data)
    assert process_file(str(renamed), str(tmp_path), PNG, Limits()).content_type == "image/png"
    # trusting the client's word instead of sniff is refused, not mis-processed
    assert rejected(tmp_path, data, JPEG).status == 415


@pytest.mark.unit
@pytest.mark.parametrize(
    ("data", "expected"),
    [(text_bytes(), PNG), (zip_bytes(), JPEG), (jpeg_bytes(), MP4), (png_bytes(), WEBM)],
    ids=["text-as-png", "zip-as-jpeg", "jpeg-as-mp4", "png-as-webm"],
)
def test_content_that_is_not_the_expected_type_is_415(
    tmp_path: Path, data: bytes, expected: Detected
) -> None:
    error = rejected(tmp_path, data, expected)
    assert (error.status, error.code) == (415, "type_mismatch")


# Images


@pytest.mark.unit
def test_dimensions_and_every_variant_have_the_exact_size(tmp_path: Path) -> None:
    result = run(tmp_path, jpeg_bytes(640, 480))
    assert (result.kind, result.width, result.height) == ("image", 640, 480)
    assert (result.duration_s, result.codec) == (None, None)
    assert [v.name for v in result.variants] == list(VARIANTS)
    for variant in result.variants:
        with Image.open(variant.path) as image:
            assert image.format == "JPEG"
            assert image.size == (variant.width, variant.height) == VARIANTS[variant.name]
    for rendition in renditions(result):
        data = Path(rendition.path).read_bytes()
        assert Path(rendition.path).name == f"{rendition.name}.{rendition.extension}"
        assert rendition.size_bytes == len(data)
        assert rendition.sha256 == hashlib.sha256(data).hexdigest()


@pytest.mark.unit
@pytest.mark.parametrize(
    ("size", "thumbnail"),
    [((640, 480), (320, 240)), ((1000, 3000), (107, 320)), ((64, 48), (64, 48))],
)
def test_thumbnail_fits_320_px_and_is_never_enlarged(
    tmp_path: Path, size: tuple[int, int], thumbnail: tuple[int, int]
) -> None:
    result = run(tmp_path, jpeg_bytes(*size))
    assert max(result.thumbnail.width, result.thumbnail.height) <= THUMBNAIL_PX
    with Image.open(result.thumbnail.path) as image:
        assert image.size == (result.thumbnail.width, result.thumbnail.height) == thumbnail


@pytest.mark.unit
def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    result = run(tmp_path, jpeg_bytes(640, 480, RED, orientation=6))
    assert (result.width, result.height) == (480, 640)
    assert result.display is not None
    with Image.open(result.display.path) as display:
        assert display.size == (480, 640)
        assert display.getexif().get(ExifTags.Base.Orientation) is None
        # orientation 6 is a quarter turn clockwise: the left half ends up on top
        assert close_to(display.getpixel((240, 20)), RED)
        assert close_to(display.getpixel((240, 620)), complement(RED))
    with Image.open(result.thumbnail.path) as thumbnail:
        assert thumbnail.size == (240, 320)
        assert close_to(thumbnail.getpixel((120, 10)), RED)


def assert_no_personal_metadata(rendition: Rendition) -> None:
    data = Path(rendition.path).read_bytes()
    for secret in (b"Test Camera", b"Jane Doe", b"Home Street", b"shot at home", b"secret"):
        assert secret not in data, (rendition.name, secret)
    with Image.open(rendition.path) as image:
        assert len(image.getexif()) == 0
        assert not image.getexif().get_ifd(ExifTags.IFD.GPSInfo)
        assert not {"exif", "xmp", "comment"} & image.info.keys()
        assert not getattr(image, "text", None)


@pytest.mark.unit
def test_gps_and_exif_are_gone_from_every_rendition(tmp_path: Path) -> None:
    data = jpeg_bytes(gps=True)
    with Image.open(io.BytesIO(data)) as original:
        assert original.getexif().get_ifd(ExifTags.IFD.GPSInfo)[2] == GPS_LATITUDE
    result = run(tmp_path, data)
    assert result.display is not None and result.display.content_type == "image/jpeg"
    assert len(renditions(result)) == 2 + len(VARIANTS)
    for rendition in renditions(result):
        assert_no_personal_metadata(rendition)


def frames_of(path: str) -> list[bytes]:
    with Image.open(path) as image:
        frames = []
        for index in range(getattr(image, "n_frames", 1)):
            image.seek(index)
            frames.append(image.convert("RGBA").tobytes())
        return frames


@pytest.mark.unit
@pytest.mark.parametrize(
    ("make", "display_type"),
    [
        (lambda: png_bytes(metadata=True), "image/png"),
        (lambda: webp_bytes(metadata=True), "image/webp"),
        (lambda: webp_bytes(frames=3, metadata=True), "image/webp"),
        (lambda: gif_bytes(frames=3, comment=b"secret"), "image/gif"),
    ],
    ids=["png", "webp", "animated-webp", "animated-gif"],
)
def test_metadata_is_cut_from_the_container_without_touching_the_pixels(
    tmp_path: Path, make: Callable[[], bytes], display_type: str
) -> None:
    data = make()
    source = tmp_path / "upload.bin"
    result = run(tmp_path, data)
    assert result.display is not None and result.display.content_type == display_type
    assert result.display.size_bytes < len(data)
    assert_no_personal_metadata(result.display)
    # every frame survives bit for bit, so animations stay animations
    assert frames_of(result.display.path) == frames_of(str(source))
    for rendition in renditions(result):
        assert_no_personal_metadata(rendition)


@pytest.mark.unit
@pytest.mark.parametrize("make", [heic_bytes, avif_bytes], ids=["heic", "avif"])
def test_heic_and_avif_with_exif_get_a_clean_jpeg_display(
    tmp_path: Path, make: Callable[[], bytes]
) -> None:
    result = run(tmp_path, make())
    assert (result.width, result.height) == (64, 48)
    assert result.display is not None and result.display.content_type == "image/jpeg"
    for rendition in renditions(result):
        assert_no_personal_metadata(rendition)


@pytest.mark.unit
@pytest.mark.parametrize(
    "make",
    [jpeg_bytes, png_bytes, webp_bytes, gif_bytes, lambda: webp_bytes(frames=2)],
    ids=["jpeg", "png", "webp", "gif", "animated-webp"],
)
def test_an_upload_without_metadata_is_served_as_it_is(
    tmp_path: Path, make: Callable[[], bytes]
) -> None:
    result = run(tmp_path, make())
    assert result.display is None
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        Path(r.path).name for r in renditions(result)
    )


@pytest.mark.unit
@pytest.mark.parametrize(
    "make", [jpeg_bytes, png_bytes, gif_bytes, webp_bytes], ids=["jpeg", "png", "gif", "webp"]
)
def test_data_appended_to_an_image_is_not_served(tmp_path: Path, make: Callable[[], bytes]) -> None:
    result = run(tmp_path, make() + zip_bytes())
    assert result.display is not None
    assert b"photo.jpg" not in Path(result.display.path).read_bytes()
    with Image.open(result.display.path) as display:
        display.load()


@pytest.mark.unit
def test_orientation_of_a_webp_is_applied_in_a_new_webp(tmp_path: Path) -> None:
    result = run(tmp_path, webp_bytes(64, 48, orientation=6))
    assert (result.width, result.height) == (48, 64)
    assert result.display is not None and result.display.content_type == "image/webp"
    assert (result.display.width, result.display.height) == (48, 64)
    assert_no_personal_metadata(result.display)


@pytest.mark.unit
def test_animated_gif_renditions_come_from_the_first_frame(tmp_path: Path) -> None:
    result = run(tmp_path, gif_bytes(frames=3, color=(250, 200, 0)))
    assert result.extra["frames"] == 3 and result.extra["animated"] is True
    with Image.open(result.variants[0].path) as square:
        assert close_to(square.getpixel((100, 540)), (250, 200, 0))


@pytest.mark.unit
def test_dominant_colours_most_frequent_first(tmp_path: Path) -> None:
    image = Image.new("RGB", (80, 40), (20, 120, 220))
    image.paste((240, 180, 10), (60, 0, 80, 40))
    out = io.BytesIO()
    image.save(out, "PNG")
    assert run(tmp_path, out.getvalue()).colors == ["#1478dc", "#f0b40a"]


@pytest.mark.unit
def test_dominant_colours_of_a_photo_merge_compression_noise(tmp_path: Path) -> None:
    colors = run(tmp_path, jpeg_bytes(color=RED, quality=60)).colors
    assert len(colors) == 2
    found = [tuple(bytes.fromhex(c[1:])) for c in colors]
    assert any(close_to(c, RED) for c in found)
    assert any(close_to(c, complement(RED)) for c in found)


@pytest.mark.unit
def test_transparent_png_keeps_alpha_in_png_renditions(tmp_path: Path) -> None:
    color = (0, 128, 255)
    result = run(tmp_path, png_bytes(64, 48, color, alpha=True))
    assert result.extra["has_alpha"] is True
    # the transparent half does not count as a colour
    assert result.colors == [hex_colour(color)]
    for rendition in [result.thumbnail, *result.variants]:
        assert rendition.content_type == "image/png"
        with Image.open(rendition.path) as image:
            assert image.mode == "RGBA"
            assert image.getchannel("A").getextrema() == (0, 255)


@pytest.mark.unit
def test_decompression_bomb_is_refused_from_the_header(tmp_path: Path) -> None:
    data = bomb_png_bytes(30_000, 30_000)
    assert len(data) < 200_000
    rss_before = max_rss_bytes()
    started = time.perf_counter()
    error = rejected(tmp_path, data)
    assert time.perf_counter() - started < 0.5
    assert (error.status, error.code) == (422, "decompression_bomb")
    # 900 million pixels would need 900 MB at one byte each
    assert max_rss_bytes() - rss_before < 50_000_000


@pytest.mark.unit
def test_images_over_the_configured_pixel_limit_are_refused(tmp_path: Path) -> None:
    error = rejected(tmp_path, jpeg_bytes(640, 480), limits=Limits(max_image_pixels=640 * 479))
    assert (error.status, error.code) == (422, "decompression_bomb")


@pytest.mark.unit
@pytest.mark.parametrize(
    "data",
    [truncated(jpeg_bytes()), truncated(png_bytes(640, 480)), truncated(mp4_bytes())],
    ids=["jpeg", "png", "mp4"],
)
def test_truncated_files_are_422(tmp_path: Path, data: bytes) -> None:
    error = rejected(tmp_path, data)
    assert (error.status, error.code) == (422, "corrupt_file")


# Videos


@pytest.mark.unit
@pytest.mark.parametrize(
    ("make", "detected", "codecs"),
    [
        (lambda: mp4_bytes(2.0, 320, 240, audio=True), MP4, {"h264", "mpeg4"}),
        (lambda: mov_bytes(2.0, 320, 240), MOV, {"h264", "mpeg4"}),
        (lambda: webm_bytes(2.0, 320, 240), WEBM, {"vp9", "vp8"}),
    ],
    ids=["mp4", "mov", "webm"],
)
def test_video_is_probed_and_gets_a_poster_thumbnail(
    tmp_path: Path, make: Callable[[], bytes], detected: Detected, codecs: set[str]
) -> None:
    result = run(tmp_path, make())
    assert (result.kind, result.content_type, result.extension) == (
        "video",
        detected.content_type,
        detected.extension,
    )
    assert (result.width, result.height) == (320, 240)
    assert result.duration_s == pytest.approx(2.0, abs=0.1)
    assert result.codec in codecs
    assert result.extra["fps"] == pytest.approx(25)
    assert result.extra["has_audio"] is (detected == MP4)
    assert (result.display, result.variants) == (None, [])
    assert len(result.colors) >= 2
    with Image.open(result.thumbnail.path) as poster:
        assert (poster.format, poster.size) == ("JPEG", (320, 240))
        assert close_to(poster.getpixel((10, 120)), (200, 30, 0), 40)


@pytest.mark.unit
@pytest.mark.parametrize("make", [mp4_bytes, webm_bytes], ids=["mp4", "webm"])
def test_poster_of_a_longer_video_is_the_frame_at_one_second(
    tmp_path: Path, make: Callable[..., bytes]
) -> None:
    # the sample's blue channel climbs from 0 to 255 over its 3 s: 85 at 1 s
    result = run(tmp_path, make(3.0))
    with Image.open(result.thumbnail.path) as poster:
        assert close_to(poster.getpixel((10, 120)), (200, 30, 85), 30)


@pytest.mark.unit
def test_rotation_metadata_of_a_video_is_applied(tmp_path: Path) -> None:
    result = run(tmp_path, mp4_bytes(width=320, height=240, rotation=90))
    assert (result.width, result.height) == (240, 320)
    assert result.extra["rotation"] == 90
    with Image.open(result.thumbnail.path) as poster:
        assert poster.size == (240, 320)
        # a quarter turn counter-clockwise puts the left (red) half at the bottom
        assert close_to(poster.getpixel((120, 300)), (200, 30, 0), 40)


@pytest.mark.unit
def test_video_limits(tmp_path: Path) -> None:
    data = mp4_bytes(2.0, 320, 240)
    too_long = rejected(tmp_path, data, limits=Limits(max_video_duration_s=1.5))
    too_large = rejected(tmp_path, data, limits=Limits(max_video_pixels=320 * 239))
    assert (too_long.status, too_long.code) == (422, "video_too_long")
    assert (too_large.status, too_large.code) == (422, "video_too_large")


@pytest.mark.slow
def test_a_300_mb_mp4_is_processed_without_reading_it(tmp_path: Path) -> None:
    path = tmp_path / "big.mp4"
    write_padded_mp4(path, 300_000_000)
    assert path.stat().st_size == 300_000_000
    with av.open(str(path)) as container:
        assert container.streams.video[0].frames == 50
    read_before, rss_before = bytes_read(), max_rss_bytes()
    started = time.perf_counter()
    result = process_file(str(path), str(tmp_path), MP4, Limits())
    assert time.perf_counter() - started < 1.0
    assert result.duration_s == pytest.approx(2.0, abs=0.1)
    assert max_rss_bytes() - rss_before < 50_000_000
    read_after = bytes_read()
    if read_before is not None and read_after is not None:
        assert read_after - read_before < 5_000_000


# The worker pool


@pytest.mark.unit
def test_rejected_survives_pickling() -> None:
    error = pickle.loads(pickle.dumps(Rejected(422, "corrupt_file", "broken")))
    assert (error.status, error.code, error.detail) == (422, "corrupt_file", "broken")
    assert str(error) == "422 corrupt_file: broken"


async def test_processor_gives_the_same_result_as_process_file(tmp_path: Path) -> None:
    upload = tmp_path / "upload.jpg"
    upload.write_bytes(jpeg_bytes(orientation=6, gps=True))
    text = tmp_path / "upload.txt"
    text.write_bytes(text_bytes())
    processor = Processor(workers=1, limits=Limits())
    try:
        in_pool = await processor.process(str(upload), str(tmp_path), JPEG)
        with pytest.raises(Rejected) as caught:
            await processor.process(str(text), str(tmp_path), PNG)
    finally:
        processor.close()
    assert in_pool == process_file(str(upload), str(tmp_path), JPEG, Limits())
    assert (caught.value.status, caught.value.code) == (415, "type_mismatch")


async def test_processor_replaces_a_dead_worker_and_times_out(tmp_path: Path) -> None:
    upload = tmp_path / "upload.png"
    upload.write_bytes(png_bytes())
    processor = Processor(workers=1, limits=Limits())
    try:
        await processor.process(str(upload), str(tmp_path), PNG)
        broken = processor._pool
        for pid in list(broken._processes):
            os.kill(pid, signal.SIGKILL)
        # The job meets the broken pool, which is replaced, and runs again on the new one.
        assert (await processor.process(str(upload), str(tmp_path), PNG)).width == 64
        assert processor._pool is not broken
    finally:
        processor.close()

    # a fresh pool cannot even start its worker within 10 ms
    impatient = Processor(workers=1, limits=Limits(), timeout_s=0.01)
    try:
        with pytest.raises(Rejected) as caught:
            await impatient.process(str(upload), str(tmp_path), PNG)
    finally:
        impatient.close()
    assert (caught.value.status, caught.value.code) == (422, "processing_timeout")


@pytest.mark.unit
def test_a_clean_jpeg_hiding_a_second_one_with_gps_is_cleaned(tmp_path: Path) -> None:
    from media_samples import jpeg_bytes

    upload = tmp_path / "twice.jpg"
    upload.write_bytes(jpeg_bytes(64, 48) + jpeg_bytes(32, 24, gps=True))
    result = process_file(str(upload), str(tmp_path), JPEG, Limits())
    assert result.display is not None
    assert b"GPS" not in Path(result.display.path).read_bytes()
