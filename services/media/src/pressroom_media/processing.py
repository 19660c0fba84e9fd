"""Media processing: sniff uploads, check them, and write the renditions we serve.

``process_file`` is synchronous and CPU-bound; the service runs it through ``Processor``,
which keeps it in worker processes so the event loop never blocks on a decoder.
"""

from __future__ import annotations

import asyncio
import hashlib
import multiprocessing
import os
import struct
import warnings
import zlib
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, BinaryIO, Literal

import av
import filetype
from PIL import ExifTags, Image, ImageOps, JpegImagePlugin, features

VARIANTS: dict[str, tuple[int, int]] = {
    "square_1080": (1080, 1080),
    "portrait_1080x1350": (1080, 1350),
    "landscape_1200x628": (1200, 628),
    "story_1080x1920": (1080, 1920),
}
THUMBNAIL_PX = 320

# Bytes of the file that ``sniff`` sees when process_file re-checks the type.
HEAD_BYTES = 4096
_COLOUR_SAMPLE_PX = 64
_DOMINANT_COLOURS = 5
_SAME_COLOUR = 24  # RGB distance under which two dominant colours are one
# Packets read at most to find the poster; a video is never decoded further than this.
_MAX_POSTER_PACKETS = 300
_COPY_CHUNK = 1 << 20
_TAIL_BYTES = 4096


@dataclass(frozen=True)
class Detected:
    """What the first bytes of an upload say it is."""

    kind: Literal["image", "video"]
    content_type: str
    extension: str


class Rejected(Exception):
    """An upload we will not keep; ``status`` is 415 (wrong type) or 422 (unusable file)."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        # all three go to Exception so that pickling across the process pool keeps them
        super().__init__(status, code, detail)
        self.status = status
        self.code = code
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.status} {self.code}: {self.detail}"


@dataclass(frozen=True)
class Limits:
    max_image_pixels: int = 60_000_000
    max_video_pixels: int = 4096 * 2160
    max_video_duration_s: float = 4 * 3600
    jpeg_quality: int = 88


@dataclass(frozen=True)
class Rendition:
    """One file written into the output folder."""

    name: str
    path: str
    content_type: str
    extension: str
    width: int
    height: int
    size_bytes: int
    sha256: str


@dataclass(frozen=True)
class Processed:
    """Facts about an upload and the renditions made from it."""

    kind: Literal["image", "video"]
    content_type: str
    extension: str
    width: int
    height: int
    duration_s: float | None
    codec: str | None
    colors: list[str]
    display: Rendition | None
    thumbnail: Rendition
    variants: list[Rendition]
    extra: dict[str, Any]


JPEG = Detected("image", "image/jpeg", "jpg")
PNG = Detected("image", "image/png", "png")
GIF = Detected("image", "image/gif", "gif")
WEBP = Detected("image", "image/webp", "webp")
HEIC = Detected("image", "image/heic", "heic")
AVIF = Detected("image", "image/avif", "avif")
MP4 = Detected("video", "video/mp4", "mp4")
MOV = Detected("video", "video/quicktime", "mov")
WEBM = Detected("video", "video/webm", "webm")

_BY_FILETYPE_MIME = {
    "image/jpeg": JPEG,
    "image/png": PNG,
    "image/apng": PNG,
    "image/gif": GIF,
    "image/webp": WEBP,
    "video/webm": WEBM,
}

# ISO-BMFF (mp4, mov, heic, avif) is told apart by the brands in its ``ftyp`` box.
_AVIF_BRANDS = {b"avif", b"avis"}
_HEIC_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs"}
_MOV_BRANDS = {b"qt  "}
_MP4_BRANDS = {
    *(b"iso%d" % n for n in range(2, 10)),
    b"isom",
    b"mp41",
    b"mp42",
    b"avc1",
    b"M4V ",
    b"mmp4",
    b"dash",
    b"MSNV",
    b"f4v ",
}
_AUDIO_BRANDS = {b"M4A ", b"M4B ", b"M4P "}
# QuickTime files from before ``ftyp`` existed start with one of these atoms.
_LEGACY_MOV_ATOMS = {b"moov", b"mdat", b"wide"}


def sniff(head: bytes) -> Detected | None:
    """What the first bytes of an upload are, or None when we do not accept that type."""
    if head[4:8] == b"ftyp":
        detected = _sniff_isobmff(head)
    elif head[4:8] in _LEGACY_MOV_ATOMS:
        detected = MOV
    else:
        guess = filetype.guess(head)
        detected = None if guess is None else _BY_FILETYPE_MIME.get(guess.mime)
    if detected is not None and detected.kind == "image" and not _decodable(detected):
        return None  # HEIC without pillow-heif, AVIF without libavif
    return detected


def _sniff_isobmff(head: bytes) -> Detected | None:
    major = head[8:12]
    if major in _AUDIO_BRANDS:
        return None
    box_end = min(len(head), max(16, int.from_bytes(head[0:4], "big")))
    brands = [major] + [head[i : i + 4] for i in range(16, box_end - 3, 4)]
    # the major brand decides when we know it; otherwise the first family found wins
    for candidates in ([major], brands):
        found = set(candidates)
        for family, detected in (
            (_MOV_BRANDS, MOV),
            (_AVIF_BRANDS, AVIF),
            (_HEIC_BRANDS, HEIC),
            (_MP4_BRANDS, MP4),
        ):
            if found & family:
                return detected
    return None


def process_file(path: str, out_dir: str, expected: Detected, limits: Limits) -> Processed:
    """Check an upload against what ``sniff`` said and write its renditions into ``out_dir``.

    Raises ``Rejected`` when the file is not ``expected`` (415) or cannot be used (422).
    """
    with open(path, "rb") as file:
        found = sniff(file.read(HEAD_BYTES))
    if found is None or found.content_type != expected.content_type:
        raise Rejected(415, "type_mismatch", f"the file is not {expected.content_type}")
    if expected.kind == "video":
        return _process_video(path, out_dir, expected, limits)
    return _process_image(path, out_dir, expected, limits)


# Images


_PILLOW_FORMAT = {
    JPEG.content_type: "JPEG",  # also opens MPO, a JPEG with more images after it
    PNG.content_type: "PNG",
    GIF.content_type: "GIF",
    WEBP.content_type: "WEBP",
    HEIC.content_type: "HEIF",
    AVIF.content_type: "AVIF",
}
_ANIMATABLE = {"GIF", "WEBP", "PNG"}
# JPEG segments that carry no personal data; anything else means the upload gets cleaned.
_CLEAN_JPEG_SEGMENTS = {("APP0", b"JFIF\0"), ("APP2", b"ICC_PROFILE\0"), ("APP14", b"Adobe")}
_METADATA_KEYS = ("exif", "xmp", "comment", "photoshop", "metadata")
# The smallest decoded size from which every variant can still be cut without upscaling.
_VARIANT_COVER = (max(w for w, _ in VARIANTS.values()), max(h for _, h in VARIANTS.values()))


def _decodable(detected: Detected) -> bool:
    Image.init()
    return _PILLOW_FORMAT[detected.content_type] in Image.OPEN


@dataclass(frozen=True)
class _Decoded:
    image: Image.Image  # RGB or RGBA, orientation applied, maybe decoded at a reduced scale
    width: int
    height: int
    format: str
    frames: int
    animated: bool
    reencode_display: bool
    icc_profile: bytes | None
    jpeg_tables: dict[str, Any]


@dataclass(frozen=True)
class _Encoding:
    format: str
    content_type: str
    extension: str
    options: dict[str, Any]


def _process_image(path: str, out_dir: str, expected: Detected, limits: Limits) -> Processed:
    decoded = _decode_image(path, expected, limits)
    image = decoded.image
    has_alpha = image.mode == "RGBA"
    if has_alpha:
        rendition_encoding = _Encoding("PNG", PNG.content_type, PNG.extension, {})
    else:
        rendition_encoding = _jpeg_encoding(limits, decoded.icc_profile)
    source = _reduced_for_variants(image)
    thumbnail_image = _shrunk(source, THUMBNAIL_PX)
    display: Rendition | None
    if decoded.reencode_display:
        display = _write_image(image, out_dir, "display", _display_encoding(decoded, limits))
    else:
        size = (decoded.width, decoded.height)
        display = _stripped_copy(path, out_dir, expected, decoded.format, size)
    return Processed(
        kind="image",
        content_type=expected.content_type,
        extension=expected.extension,
        width=decoded.width,
        height=decoded.height,
        duration_s=None,
        codec=None,
        colors=_dominant_colours(thumbnail_image),
        display=display,
        thumbnail=_write_image(thumbnail_image, out_dir, "thumbnail", rendition_encoding),
        variants=[
            _write_image(
                ImageOps.fit(source, size, Image.Resampling.BICUBIC),
                out_dir,
                name,
                rendition_encoding,
            )
            for name, size in VARIANTS.items()
        ],
        extra={"frames": decoded.frames, "animated": decoded.animated, "has_alpha": has_alpha},
    )


# What Pillow and its plugins raise on broken input. The type was already checked against
# the first bytes, so an image they cannot identify is broken too, not of another type.
_DECODING_ERRORS = (
    OSError,
    SyntaxError,
    EOFError,
    ValueError,
    IndexError,
    KeyError,
    RuntimeError,
    struct.error,
    zlib.error,
)


@contextmanager
def _decoding_errors() -> Iterator[None]:
    """Turn what Pillow raises on hostile or broken input into ``Rejected``."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        # broken EXIF warns as it is parsed; it never reaches a rendition anyway
        warnings.simplefilter("ignore", UserWarning)
        try:
            yield
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise Rejected(422, "decompression_bomb", str(exc)) from exc
        except _DECODING_ERRORS as exc:
            raise Rejected(422, "corrupt_file", f"the image cannot be decoded: {exc}") from exc


def _decode_image(path: str, expected: Detected, limits: Limits) -> _Decoded:
    with (
        _decoding_errors(),
        Image.open(path, formats=[_PILLOW_FORMAT[expected.content_type]]) as im,
    ):
        width, height = im.size
        # the header is all that has been read so far: refuse before any pixel is allocated
        if width * height > limits.max_image_pixels:
            raise Rejected(
                422,
                "decompression_bomb",
                f"{width}x{height} is more than {limits.max_image_pixels} pixels",
            )
        frames = getattr(im, "n_frames", 1)
        animated = frames > 1 and im.format in _ANIMATABLE
        orientation = 1 if animated else _orientation(im)
        if orientation in (5, 6, 7, 8):
            width, height = height, width
        reencode = orientation != 1 or (im.format not in _STRIPPERS and _has_metadata(im, path))
        if isinstance(im, JpegImagePlugin.JpegImageFile) and not reencode:
            im.draft(None, _VARIANT_COVER)
        im.load()
        icc = im.info.get("icc_profile")
        jpeg_tables = _jpeg_tables(im) if reencode else {}
        fmt = im.format or ""
        image = ImageOps.exif_transpose(im) if orientation != 1 else im
        image = _rgb_or_rgba(image)
        # encoders copy some of info (a JPEG comment, for one) into what they write
        image.info = {}
    return _Decoded(
        image=image,
        width=width,
        height=height,
        format=fmt,
        frames=frames,
        animated=animated,
        reencode_display=reencode,
        # a CMYK or grey profile would be wrong on the RGB pixels we write
        icc_profile=icc if isinstance(icc, bytes) and icc[16:20] == b"RGB " else None,
        jpeg_tables=jpeg_tables,
    )


def _orientation(im: Image.Image) -> int:
    value = im.getexif().get(ExifTags.Base.Orientation, 1)
    return value if value in range(1, 9) else 1


def _has_metadata(im: Image.Image, path: str) -> bool:
    if isinstance(im, JpegImagePlugin.JpegImageFile):
        return not _ends_at_jpeg_eoi(path) or any(
            not any(marker == m and data.startswith(p) for m, p in _CLEAN_JPEG_SEGMENTS)
            for marker, data in im.applist
        )
    return any(im.info.get(key) for key in _METADATA_KEYS)


def _ends_at_jpeg_eoi(path: str) -> bool:
    """False when something (a second image, a video, an archive) follows the JPEG: the file
    must end with the end-of-image marker and hold no second start-of-image (inside scan
    data a 0xFF byte is always stuffed, so ``FF D8 FF`` there means another image)."""
    with open(path, "rb") as file:
        file.seek(max(0, os.path.getsize(path) - _TAIL_BYTES))
        if not file.read().rstrip(b"\0").endswith(b"\xff\xd9"):
            return False
        file.seek(3)
        carry = b""
        while chunk := file.read(1 << 20):
            if b"\xff\xd8\xff" in carry + chunk:
                return False
            carry = chunk[-2:]
    return True


def _jpeg_tables(im: Image.Image) -> dict[str, Any]:
    """The source's quantisation tables, so a cleaned JPEG keeps the uploader's quality."""
    tables = getattr(im, "quantization", None)
    if im.mode != "RGB" or not tables or len(tables) < 2:
        return {}
    return {"qtables": tables, "subsampling": JpegImagePlugin.get_sampling(im)}


def _rgb_or_rgba(image: Image.Image) -> Image.Image:
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):
        image = image.convert("I").point(lambda v: v * (1 / 256), "L")
    if image.has_transparency_data:
        image = image.convert("RGBA")
        if image.getchannel("A").getextrema()[0] == 255:
            return image.convert("RGB")
        return image
    return image if image.mode == "RGB" else image.convert("RGB")


def _reduced_for_variants(image: Image.Image) -> Image.Image:
    """The image shrunk by a whole factor, as far as every variant's crop stays full size."""
    # four crops from the reduced image cost a fraction of four from a large original
    scale = max(max(w / image.width, h / image.height) for w, h in VARIANTS.values())
    factor = int(1 / scale)
    return image.reduce(factor) if factor > 1 else image


def _shrunk(image: Image.Image, longest: int) -> Image.Image:
    scale = longest / max(image.size)
    if scale >= 1:
        return image
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS, reducing_gap=2.0)


def _dominant_colours(image: Image.Image) -> list[str]:
    """Up to five "#rrggbb", most frequent first (transparent pixels do not count)."""
    small = _shrunk(image, _COLOUR_SAMPLE_PX)
    quantized = small.convert("RGB").quantize(_DOMINANT_COLOURS, Image.Quantize.MEDIANCUT)
    mask = None
    if small.mode == "RGBA":
        mask = small.getchannel("A").point(lambda a: 255 if a >= 128 else 0)
    counts = quantized.histogram(mask)
    palette = quantized.getpalette() or []
    # median cut splits a big flat area into near-identical shades; count those as one
    kept: list[tuple[int, tuple[int, ...]]] = []
    for index in sorted((i for i, n in enumerate(counts) if n), key=lambda i: -counts[i]):
        colour = tuple(palette[3 * index : 3 * index + 3])
        for k, (count, other) in enumerate(kept):
            if sum((a - b) ** 2 for a, b in zip(colour, other, strict=True)) < _SAME_COLOUR**2:
                kept[k] = (count + counts[index], other)
                break
        else:
            kept.append((counts[index], colour))
    return ["#{:02x}{:02x}{:02x}".format(*colour) for _, colour in kept]


def _jpeg_encoding(limits: Limits, icc_profile: bytes | None) -> _Encoding:
    # baseline: progressive JPEG costs several times the encoding time
    options = {"quality": limits.jpeg_quality, "optimize": False, "icc_profile": icc_profile}
    return _Encoding("JPEG", JPEG.content_type, JPEG.extension, options)


def _display_encoding(decoded: _Decoded, limits: Limits) -> _Encoding:
    if decoded.format == "WEBP":
        options = {"quality": limits.jpeg_quality, "icc_profile": decoded.icc_profile}
        return _Encoding("WEBP", WEBP.content_type, WEBP.extension, options)
    if decoded.format == "PNG" or decoded.image.mode == "RGBA":
        options = {"icc_profile": decoded.icc_profile}
        return _Encoding("PNG", PNG.content_type, PNG.extension, options)
    # the copy people look at: progressive, and with the uploader's quantisation if known
    jpeg = _jpeg_encoding(limits, decoded.icc_profile)
    options = jpeg.options | {"progressive": True} | decoded.jpeg_tables
    return _Encoding(jpeg.format, jpeg.content_type, jpeg.extension, options)


def _write_image(image: Image.Image, out_dir: str, name: str, encoding: _Encoding) -> Rendition:
    path = os.path.join(os.path.abspath(out_dir), f"{name}.{encoding.extension}")
    options = {k: v for k, v in encoding.options.items() if v is not None}
    image.save(path, format=encoding.format, **options)
    return _rendition(name, path, encoding.content_type, encoding.extension, image.size)


def _rendition(
    name: str, path: str, content_type: str, extension: str, size: tuple[int, int]
) -> Rendition:
    with open(path, "rb") as file:
        digest = hashlib.file_digest(file, "sha256").hexdigest()
    return Rendition(
        name=name,
        path=path,
        content_type=content_type,
        extension=extension,
        width=size[0],
        height=size[1],
        size_bytes=os.path.getsize(path),
        sha256=digest,
    )


# Lossless cleaning: copy the container, leaving out the chunks that carry metadata.


def _stripped_copy(
    path: str, out_dir: str, expected: Detected, fmt: str, size: tuple[int, int]
) -> Rendition | None:
    """A copy of a PNG, GIF or WebP without its metadata; None when it had none to remove."""
    strip = _STRIPPERS.get(fmt)
    if strip is None:
        return None
    target = os.path.join(os.path.abspath(out_dir), f"display.{expected.extension}")
    with open(path, "rb") as src, open(target, "wb") as dst:
        removed = strip(src, dst)
    if not removed:
        os.remove(target)
        return None
    return _rendition("display", target, expected.content_type, expected.extension, size)


def _read_exactly(src: BinaryIO, count: int) -> bytes:
    data = src.read(count)
    if len(data) != count:
        raise Rejected(422, "corrupt_file", "the file ends in the middle of a block")
    return data


def _copy(src: BinaryIO, dst: BinaryIO, count: int) -> None:
    while count > 0:
        chunk = _read_exactly(src, min(count, _COPY_CHUNK))
        dst.write(chunk)
        count -= len(chunk)


# Ancillary PNG chunks that change how the image looks; all others (text, eXIf, tIME,
# private chunks) are dropped. Critical chunks are always kept.
_PNG_KEEP = {
    b"tRNS",
    b"gAMA",
    b"cHRM",
    b"sRGB",
    b"iCCP",
    b"cICP",
    b"mDCV",
    b"cLLI",
    b"sBIT",
    b"pHYs",
    b"bKGD",
    b"acTL",
    b"fcTL",
    b"fdAT",
}


def _strip_png(src: BinaryIO, dst: BinaryIO) -> bool:
    dst.write(_read_exactly(src, 8))
    removed = False
    while True:
        header = _read_exactly(src, 8)
        length, kind = struct.unpack(">I4s", header)
        if kind[0] & 0x20 and kind not in _PNG_KEEP:
            src.seek(length + 4, os.SEEK_CUR)
            removed = True
            continue
        dst.write(header)
        _copy(src, dst, length + 4)
        if kind == b"IEND":
            # anything after IEND is not part of the image
            return removed or bool(src.read(1))


# Application extensions that animation needs; XMP and unknown ones are dropped.
_GIF_KEEP_APPLICATIONS = {b"NETSCAPE2.0", b"ANIMEXTS1.0", b"ICCRGBG1012"}


def _gif_sub_blocks(src: BinaryIO, dst: BinaryIO | None) -> None:
    while True:
        size = _read_exactly(src, 1)
        if dst is not None:
            dst.write(size)
        if size == b"\0":
            return
        data = _read_exactly(src, size[0])
        if dst is not None:
            dst.write(data)


def _gif_colour_table(flags: int) -> int:
    return 3 * 2 ** ((flags & 0x07) + 1) if flags & 0x80 else 0


def _strip_gif(src: BinaryIO, dst: BinaryIO) -> bool:
    screen = _read_exactly(src, 13)
    dst.write(screen)
    _copy(src, dst, _gif_colour_table(screen[10]))
    removed = False
    while True:
        introducer = _read_exactly(src, 1)
        if introducer == b";":
            dst.write(introducer)
            return removed or bool(src.read(1))
        if introducer == b",":
            descriptor = _read_exactly(src, 9)
            dst.write(introducer + descriptor)
            _copy(src, dst, _gif_colour_table(descriptor[8]) + 1)  # + LZW code size
            _gif_sub_blocks(src, dst)
        elif introducer == b"!":
            label = _read_exactly(src, 1)
            if label == b"\xfe":
                _gif_sub_blocks(src, None)
                removed = True
            elif label == b"\xff":
                size = _read_exactly(src, 1)
                application = _read_exactly(src, size[0])
                if application[:11] in _GIF_KEEP_APPLICATIONS:
                    dst.write(introducer + label + size + application)
                    _gif_sub_blocks(src, dst)
                else:
                    _gif_sub_blocks(src, None)
                    removed = True
            else:
                dst.write(introducer + label)
                _gif_sub_blocks(src, dst)
        else:
            raise Rejected(422, "corrupt_file", "unknown block in GIF")


_WEBP_KEEP = {b"VP8 ", b"VP8L", b"VP8X", b"ALPH", b"ANIM", b"ANMF", b"ICCP"}
_VP8X_EXIF_AND_XMP = 0x08 | 0x04


def _strip_webp(src: BinaryIO, dst: BinaryIO) -> bool:
    riff = _read_exactly(src, 12)
    if riff[:4] != b"RIFF" or riff[8:] != b"WEBP":
        raise Rejected(422, "corrupt_file", "not a RIFF WebP container")
    dst.write(riff)
    remaining = int.from_bytes(riff[4:8], "little") - 4
    removed = False
    while remaining >= 8:
        header = _read_exactly(src, 8)
        kind, size = header[:4], int.from_bytes(header[4:], "little")
        padded = size + (size & 1)
        remaining -= 8 + padded
        if kind not in _WEBP_KEEP:
            src.seek(padded, os.SEEK_CUR)
            removed = True
        elif kind == b"VP8X":
            data = bytearray(_read_exactly(src, padded))
            data[0] &= ~_VP8X_EXIF_AND_XMP & 0xFF
            dst.write(header + data)
        else:
            dst.write(header)
            _copy(src, dst, padded)
    # the RIFF size counts everything after its own field
    size = dst.seek(0, os.SEEK_END) - 8
    dst.seek(4)
    dst.write(size.to_bytes(4, "little"))
    return removed or bool(src.read(1))


_STRIPPERS = {"PNG": _strip_png, "GIF": _strip_gif, "WEBP": _strip_webp}


# Videos


_AV_FORMATS = {
    MP4.content_type: {"mov", "mp4"},
    MOV.content_type: {"mov", "mp4"},
    WEBM.content_type: {"webm", "matroska"},
}
# Display-matrix rotation (counter-clockwise degrees, as PyAV reports it) to Pillow's.
_ROTATIONS = {
    90: Image.Transpose.ROTATE_90,
    -90: Image.Transpose.ROTATE_270,
    180: Image.Transpose.ROTATE_180,
    -180: Image.Transpose.ROTATE_180,
}


def _process_video(path: str, out_dir: str, expected: Detected, limits: Limits) -> Processed:
    try:
        with av.open(path, metadata_errors="ignore") as container:
            if not set(container.format.name.split(",")) & _AV_FORMATS[expected.content_type]:
                raise Rejected(415, "type_mismatch", f"the file is not {expected.content_type}")
            if not container.streams.video:
                raise Rejected(415, "no_video_stream", "the file has no video")
            stream = container.streams.video[0]
            if stream.codec_context is None:
                raise Rejected(415, "unsupported_codec", "no decoder for the video stream")
            width, height = stream.codec_context.width, stream.codec_context.height
            if width * height > limits.max_video_pixels:
                raise Rejected(
                    422,
                    "video_too_large",
                    f"{width}x{height} is more than {limits.max_video_pixels} pixels",
                )
            duration = _duration(container, stream)
            if duration is not None and duration > limits.max_video_duration_s:
                raise Rejected(
                    422,
                    "video_too_long",
                    f"{duration:.0f} s is longer than {limits.max_video_duration_s:.0f} s",
                )
            frame = _poster_frame(container, stream, duration)
            rotation = frame.rotation
            poster: Image.Image = frame.to_image()  # type: ignore[no-untyped-call]
            extra = {
                "frames": stream.frames or None,
                "fps": round(float(stream.average_rate), 3) if stream.average_rate else None,
                "has_audio": bool(container.streams.audio),
                "bit_rate": container.bit_rate or None,
                "rotation": rotation,
            }
            codec = stream.codec_context.name
    except av.FFmpegError as exc:
        raise Rejected(422, "corrupt_file", f"the video cannot be read: {exc}") from exc
    if rotation in _ROTATIONS:
        poster = poster.transpose(_ROTATIONS[rotation])
    if abs(rotation) == 90:
        width, height = height, width
    thumbnail_image = _shrunk(poster, THUMBNAIL_PX)
    encoding = _jpeg_encoding(limits, None)
    return Processed(
        kind="video",
        content_type=expected.content_type,
        extension=expected.extension,
        width=width,
        height=height,
        duration_s=duration,
        codec=codec,
        colors=_dominant_colours(thumbnail_image),
        display=None,
        thumbnail=_write_image(thumbnail_image, out_dir, "thumbnail", encoding),
        variants=[],
        extra=extra,
    )


def _duration(container: av.container.InputContainer, stream: av.VideoStream) -> float | None:
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / av.time_base
    return None


def _poster_frame(
    container: av.container.InputContainer, stream: av.VideoStream, duration: float | None
) -> av.VideoFrame:
    """The first frame, or the one at about 1 s when the video is longer than 2 s."""
    time_base = stream.time_base
    target = None
    if duration is not None and duration > 2 and time_base:
        target = float((stream.start_time or 0) * time_base) + 1.0
        try:
            # lands on the keyframe at or before the target; decoding goes forward from there
            container.seek(int(target / time_base), stream=stream)
        except av.FFmpegError:
            target = None
    latest: av.VideoFrame | None = None
    for count, packet in enumerate(container.demux(stream)):
        if count >= _MAX_POSTER_PACKETS:
            break
        try:
            frames = packet.decode()
        except av.InvalidDataError:
            continue
        for frame in frames:
            if target is None or frame.time is None or frame.time >= target:
                return frame
            latest = frame
    if latest is None:
        raise Rejected(422, "corrupt_file", "no frame of the video can be decoded")
    return latest


# Worker pool


def _register_plugins() -> None:
    try:
        import pillow_heif
    except ImportError:
        return
    pillow_heif.register_heif_opener()
    if not features.check("avif") and hasattr(pillow_heif, "register_avif_opener"):
        pillow_heif.register_avif_opener()


_register_plugins()


def _init_worker(limits: Limits) -> None:
    # Pillow's own guard, behind the explicit pixel check in _decode_image
    Image.MAX_IMAGE_PIXELS = limits.max_image_pixels


def _ready() -> int:
    return os.getpid()


class Processor:
    """Runs process_file in a process pool so the event loop never blocks."""

    def __init__(self, workers: int, limits: Limits, timeout_s: float = 120.0) -> None:
        self._workers = workers
        self._limits = limits
        self._timeout_s = timeout_s
        self._slots: asyncio.Semaphore | None = None
        self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        # spawn: the parent runs an event loop and threads, which fork would copy half-way
        return ProcessPoolExecutor(
            self._workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=(self._limits,),
        )

    async def process(self, path: str, out_dir: str, expected: Detected) -> Processed:
        """``process_file`` in a worker. At most one job per worker runs at a time, so the
        timeout counts processing, not waiting. A job whose pool broke under it (another
        job's timeout or crash) runs once more on the new pool; a file that breaks the pool
        twice, or overruns, is refused (422)."""
        loop = asyncio.get_running_loop()
        if self._slots is None:
            self._slots = asyncio.Semaphore(self._workers)
        async with self._slots:
            for attempt in (1, 2):
                pool = self._pool
                try:
                    return await asyncio.wait_for(
                        loop.run_in_executor(
                            pool, process_file, path, out_dir, expected, self._limits
                        ),
                        self._timeout_s,
                    )
                except TimeoutError as exc:
                    self._replace(pool, kill=True)
                    raise Rejected(
                        422,
                        "processing_timeout",
                        f"processing took longer than {self._timeout_s:g} s",
                    ) from exc
                except BrokenProcessPool as exc:
                    self._replace(pool, kill=False)
                    if attempt == 2:
                        raise Rejected(
                            422, "processing_failed", "the file crashed the media decoder"
                        ) from exc
        raise AssertionError("unreachable")

    def _replace(self, pool: ProcessPoolExecutor, *, kill: bool) -> None:
        if pool is not self._pool:
            return  # another call already replaced it
        self._pool = self._new_pool()
        if kill:
            # A running call cannot be cancelled and Python 3.11 has no public way to stop
            # one worker; killing them frees the slots (the other calls that were running
            # on this pool then run again on the new one).
            for worker in list((pool._processes or {}).values()):
                worker.kill()
        pool.shutdown(wait=False, cancel_futures=True)

    async def warm(self) -> None:
        """Start every worker now (a spawned worker takes a second or two to import Pillow
        and PyAV) rather than on the first upload."""
        loop = asyncio.get_running_loop()
        await asyncio.gather(
            *(loop.run_in_executor(self._pool, _ready) for _ in range(self._workers * 2))
        )

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
