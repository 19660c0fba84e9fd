"""Real media files for tests, made with Pillow and PyAV.

Images are two-coloured: the left half has ``color``, the right half its complement, so a
test can tell whether an image was rotated, flipped or cropped.
"""

from __future__ import annotations

import functools
import io
import struct
import zipfile
import zlib
from fractions import Fraction
from pathlib import Path

import av
import pytest
from PIL import ExifTags, Image, PngImagePlugin, features

Color = tuple[int, int, int]

GPS_LATITUDE = (52.0, 22.0, 12.5)
GPS_LONGITUDE = (4.0, 53.0, 40.1)


def complement(color: Color) -> Color:
    """The colour of the right half of every sample image."""
    r, g, b = color
    return (255 - r, 255 - g, 255 - b)


def two_colour_image(width: int, height: int, color: Color) -> Image.Image:
    image = Image.new("RGB", (width, height), color)
    image.paste(complement(color), (width // 2, 0, width, height))
    return image


def personal_exif(*, orientation: int | None = None, gps: bool = False) -> Image.Exif:
    """EXIF as a phone writes it: camera, time and, with ``gps``, where the photo was taken."""
    exif = Image.Exif()
    if orientation is not None:
        exif[ExifTags.Base.Orientation] = orientation
    if gps:
        exif[ExifTags.Base.Make] = "Pressroom"
        exif[ExifTags.Base.Model] = "Test Camera 1"
        exif[ExifTags.Base.DateTime] = "2024:05:06 07:08:09"
        exif[ExifTags.Base.Software] = "media_samples"
        gps_ifd = exif.get_ifd(ExifTags.IFD.GPSInfo)
        gps_ifd[ExifTags.GPS.GPSLatitudeRef] = "N"
        gps_ifd[ExifTags.GPS.GPSLatitude] = GPS_LATITUDE
        gps_ifd[ExifTags.GPS.GPSLongitudeRef] = "E"
        gps_ifd[ExifTags.GPS.GPSLongitude] = GPS_LONGITUDE
    return exif


def _encoded(image: Image.Image, format: str, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format=format, **options)
    return out.getvalue()


def jpeg_bytes(
    width: int = 640,
    height: int = 480,
    color: Color = (200, 30, 30),
    *,
    orientation: int | None = None,
    gps: bool = False,
    quality: int = 90,
) -> bytes:
    """A JPEG; ``gps`` adds camera, time and GPS position to the EXIF."""
    options: dict[str, object] = {"quality": quality}
    if orientation is not None or gps:
        options["exif"] = personal_exif(orientation=orientation, gps=gps).tobytes()
    if gps:
        options["comment"] = b"shot at home"
    return _encoded(two_colour_image(width, height, color), "JPEG", **options)


def png_bytes(
    width: int = 64,
    height: int = 48,
    color: Color = (0, 128, 255),
    alpha: bool = False,
    *,
    metadata: bool = False,
) -> bytes:
    """A PNG; with ``alpha`` the right half is fully transparent, ``metadata`` adds text + EXIF."""
    image = two_colour_image(width, height, color)
    if alpha:
        image.putalpha(0)
        image.paste((*color, 255), (0, 0, width // 2, height))
    options: dict[str, object] = {}
    if metadata:
        info = PngImagePlugin.PngInfo()
        info.add_text("Author", "Jane Doe")
        info.add_itxt("Comment", "taken at 12 Home Street", zip=True)
        options["pnginfo"] = info
        options["exif"] = personal_exif(gps=True).tobytes()
    return _encoded(image, "PNG", **options)


def webp_bytes(
    width: int = 64,
    height: int = 48,
    color: Color = (30, 160, 60),
    *,
    frames: int = 1,
    metadata: bool = False,
    orientation: int | None = None,
) -> bytes:
    """A lossless WebP, animated when ``frames`` > 1; ``metadata`` adds EXIF (GPS) and XMP."""
    images = [two_colour_image(width, height, color) for _ in range(frames)]
    for i, image in enumerate(images[1:], start=1):
        image.paste((i * 40 % 256, 0, 0), (0, 0, 4, 4))
    options: dict[str, object] = {"lossless": True}
    if metadata or orientation is not None:
        options["exif"] = personal_exif(orientation=orientation, gps=metadata).tobytes()
    if metadata:
        options["xmp"] = b'<x:xmpmeta xmlns:x="adobe:ns:meta/">Jane Doe</x:xmpmeta>'
    if frames > 1:
        options.update(save_all=True, append_images=images[1:], duration=100, loop=0)
    return _encoded(images[0], "WEBP", **options)


def gif_bytes(
    frames: int = 3,
    width: int = 64,
    height: int = 48,
    color: Color = (250, 200, 0),
    *,
    comment: bytes | None = None,
) -> bytes:
    """A GIF, animated when ``frames`` > 1, with an optional comment block."""
    images = [two_colour_image(width, height, color) for _ in range(frames)]
    for i, image in enumerate(images[1:], start=1):
        image.paste((0, i * 60 % 256, 0), (0, 0, 4, 4))
    options: dict[str, object] = {}
    if frames > 1:
        options.update(save_all=True, append_images=images[1:], duration=100, loop=0)
    if comment is not None:
        options["comment"] = comment
    return _encoded(images[0], "GIF", **options)


def avif_bytes(width: int = 64, height: int = 48, color: Color = (120, 40, 200)) -> bytes:
    """An AVIF with GPS EXIF; skips the test when Pillow cannot encode AVIF."""
    if not features.check("avif"):
        pytest.skip("Pillow was built without AVIF")
    image = two_colour_image(width, height, color)
    return _encoded(image, "AVIF", exif=personal_exif(gps=True).tobytes())


def heic_bytes(width: int = 64, height: int = 48, color: Color = (10, 90, 140)) -> bytes:
    """A HEIC with GPS EXIF; skips the test when pillow-heif has no HEVC encoder."""
    try:
        import pillow_heif
    except ImportError:
        pytest.skip("pillow-heif is not installed")
    if not pillow_heif.libheif_info().get("HEIF"):
        pytest.skip("libheif has no HEVC encoder")
    heif = pillow_heif.from_pillow(two_colour_image(width, height, color))
    out = io.BytesIO()
    heif.save(out, exif=personal_exif(gps=True).tobytes())
    return out.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


@functools.cache
def bomb_png_bytes(width: int = 30_000, height: int = 30_000) -> bytes:
    """A valid 1-bit PNG of ``width`` x ``height`` black pixels that is only kilobytes long."""
    row = b"\x00" * (1 + (width + 7) // 8)
    compressor = zlib.compressobj(9)
    parts = [compressor.compress(row) for _ in range(height)]
    parts.append(compressor.flush())
    return b"".join(
        [
            b"\x89PNG\r\n\x1a\n",
            _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)),
            _png_chunk(b"IDAT", b"".join(parts)),
            _png_chunk(b"IEND", b""),
        ]
    )


def truncated(data: bytes, keep: float = 0.5) -> bytes:
    return data[: int(len(data) * keep)]


def _video_bytes(
    container_format: str,
    codec: str,
    seconds: float,
    width: int,
    height: int,
    fps: int,
    *,
    audio: bool,
    rotation: int,
    options: dict[str, str] | None = None,
) -> bytes:
    out = io.BytesIO()
    with av.open(out, "w", format=container_format) as container:
        video = container.add_stream(codec, rate=fps, options=options or {})
        assert isinstance(video, av.VideoStream)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        if rotation:
            video.set_display_rotation(rotation)
        sound = container.add_stream(_AUDIO_CODEC[container_format], rate=48000) if audio else None
        assert sound is None or isinstance(sound, av.AudioStream)
        frame_count = max(1, round(seconds * fps))
        for i in range(frame_count):
            # the colour drifts so that the first frame and the frame at 1 s differ
            image = two_colour_image(width, height, (200, 30, i * 255 // frame_count))
            frame = av.VideoFrame.from_image(image)  # type: ignore[no-untyped-call]
            frame.pts, frame.time_base = i, Fraction(1, fps)
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        if sound is not None:
            _mux_silence(container, sound, seconds)
    return out.getvalue()


_AUDIO_CODEC = {"mp4": "aac", "mov": "aac", "webm": "libopus"}


def _mux_silence(
    container: av.container.OutputContainer, sound: av.AudioStream, seconds: float
) -> None:
    rate, samples = sound.rate, sound.codec_context.frame_size or 1024
    for start in range(0, int(seconds * rate), samples):
        frame = av.AudioFrame(format=sound.format.name, layout=sound.layout.name, samples=samples)
        for plane in frame.planes:
            plane.update(bytes(plane.buffer_size))
        frame.sample_rate, frame.pts, frame.time_base = rate, start, Fraction(1, rate)
        container.mux(sound.encode(frame))
    container.mux(sound.encode(None))


def _h264() -> tuple[str, dict[str, str]]:
    if "libx264" in av.codecs_available:
        return "libx264", {"preset": "ultrafast"}
    return "mpeg4", {}


def mp4_bytes(
    seconds: float = 2.0,
    width: int = 320,
    height: int = 240,
    fps: int = 25,
    *,
    audio: bool = False,
    rotation: int = 0,
) -> bytes:
    """An H.264 MP4 (MPEG-4 Part 2 without libx264); ``rotation`` is counter-clockwise."""
    codec, options = _h264()
    return _video_bytes(
        "mp4", codec, seconds, width, height, fps, audio=audio, rotation=rotation, options=options
    )


def mov_bytes(
    seconds: float = 2.0, width: int = 320, height: int = 240, fps: int = 25, *, audio: bool = False
) -> bytes:
    """A QuickTime movie with H.264 video."""
    codec, options = _h264()
    return _video_bytes(
        "mov", codec, seconds, width, height, fps, audio=audio, rotation=0, options=options
    )


def webm_bytes(
    seconds: float = 2.0, width: int = 320, height: int = 240, fps: int = 25, *, audio: bool = False
) -> bytes:
    """A WebM with VP9 video (VP8 when libvpx-vp9 is missing)."""
    codec = "libvpx-vp9" if "libvpx-vp9" in av.codecs_available else "libvpx"
    options = {"deadline": "realtime", "cpu-used": "8"}
    return _video_bytes(
        "webm", codec, seconds, width, height, fps, audio=audio, rotation=0, options=options
    )


def write_padded_mp4(path: str | Path, total_bytes: int) -> None:
    """A small MP4 followed by a top-level ``free`` box that makes the file ``total_bytes`` long.

    The padding is a sparse hole, so a 300 MB file costs neither time nor disk.
    """
    video = mp4_bytes()
    padding = total_bytes - len(video)
    if padding < 16:
        raise ValueError("total_bytes leaves no room for the free box")
    # a 64-bit box size when the padding does not fit the 32-bit one
    if padding < 2**32:
        header = struct.pack(">I4s", padding, b"free")
    else:
        header = struct.pack(">I4sQ", 1, b"free", padding)
    with open(path, "wb") as file:
        file.write(video + header)
        file.truncate(total_bytes)


def text_bytes() -> bytes:
    return b"Not an image at all, just some text that claims to be one.\n" * 20


def pdf_bytes() -> bytes:
    return b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


def zip_bytes() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("photo.jpg", jpeg_bytes(32, 32))
    return out.getvalue()
