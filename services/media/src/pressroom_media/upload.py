"""Receive a multipart upload as it streams in: the file goes to a staging file while its
SHA-256 is computed, its type is decided from its first bytes (a type we do not take is
refused before the rest arrives), and the form fields are kept. Memory stays flat in the
size of the file: data is hashed and written in ~1 MB batches in a thread while the event
loop reads the next one, and large files are synced and dropped from the page cache every
32 MB."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from litestar.exceptions import HTTPException
from pressroom_kit.errors import Invalid, PressroomError
from pressroom_kit.text import check_text
from python_multipart.multipart import MultipartParser, parse_options_header

from pressroom_media.processing import Detected, Rejected

SNIFF_BYTES = 4096
FLUSH_BYTES = 1024 * 1024
SYNC_WINDOW = 32 * 1024 * 1024
MAX_FIELD_BYTES = 8192
MAX_FIELDS_BYTES = 64 * 1024  # all the text fields together
MAX_PARTS = 64
FRAMING_BYTES = 64 * 1024  # boundaries and part headers, generously
FIELDS = {"file", "category", "tags"}


class UnsupportedType(PressroomError):
    status, code, title = 415, "unsupported_media_type", "Unsupported media type"


class TooLarge(PressroomError):
    status, code, title = 413, "too_large", "Content too large"


class BadUpload(PressroomError):
    status, code, title = 400, "bad_upload", "Bad upload"


class Unprocessable(PressroomError):
    status, code, title = 422, "unprocessable_file", "Unprocessable file"


def refusal(rejected: Rejected) -> PressroomError:
    """The problem for a file the processing step refused."""
    if rejected.status == 415:
        return UnsupportedType(rejected.detail, code=rejected.code)
    return Unprocessable(rejected.detail, code=rejected.code)


@dataclass
class Received:
    path: Path
    size: int
    sha256: str
    filename: str | None
    declared_type: str | None
    detected: Detected
    fields: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class _Part:
    name: str = ""
    filename: str | None = None
    content_type: str | None = None
    value: bytearray = field(default_factory=bytearray)


class _Receiver:
    def __init__(
        self, staging: Path, max_bytes: int, sniff: Callable[[bytes], Detected | None]
    ) -> None:
        self.staging, self.max_bytes, self.sniff = staging, max_bytes, sniff
        self.headers: dict[str, str] = {}
        self.header_field = bytearray()
        self.header_value = bytearray()
        self.part = _Part()
        self.fields: dict[str, list[str]] = {}
        self.file_part: _Part | None = None
        self.file: BinaryIO | None = None
        self.path: Path | None = None
        self.hash = hashlib.sha256()
        self.size = 0
        self.pending: list[bytes] = []
        self.pending_bytes = 0
        self.head = b""
        self.detected: Detected | None = None
        self.error: PressroomError | None = None
        self.ended = False
        self.flushing: asyncio.Future[None] | None = None
        self.parts = 0
        self.field_bytes = 0
        self.written = 0
        self.synced = 0

    # Parser callbacks (synchronous, called from parser.write).
    def on_part_begin(self) -> None:
        self.part = _Part()
        self.headers = {}
        self.parts += 1
        if self.parts > MAX_PARTS:
            self._fail(Invalid(f"at most {MAX_PARTS} form parts", code="too_many_parts"))

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self.header_field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self.header_value += data[start:end]

    def on_header_end(self) -> None:
        # Latin-1 keeps the bytes as they are: parse_options_header encodes back to latin-1,
        # and the name and filename it returns are then decoded as UTF-8.
        self.headers[self.header_field.decode("latin-1").lower()] = self.header_value.decode(
            "latin-1"
        )
        self.header_field.clear()
        self.header_value.clear()

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self.headers.get("content-disposition"))
        self.part.name = options.get(b"name", b"").decode("utf-8", "replace")
        if b"filename" in options:
            self.part.filename = self._text(
                options[b"filename"].decode("utf-8", "replace"), "filename"
            )
            self.part.content_type = self.headers.get("content-type")
        if self.part.name not in FIELDS:
            self._fail(
                Invalid(
                    f"unknown form field {self.part.name!r}; send file, category and tags",
                    errors=[{"field": self.part.name or "?", "message": "unknown field"}],
                )
            )
        elif self.part.name == "file":
            if self.file_part is not None:
                self._fail(Invalid("send one file per upload", code="one_file_only"))
            else:
                self.file_part = self.part
                self.path = self.staging / f"{uuid.uuid4().hex}.upload"
                self.file = open(self.path, "wb")  # noqa: SIM115 (closed by close())

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self.error is not None:
            return
        chunk = data[start:end]
        if self.part is self.file_part:
            self.size += len(chunk)
            if self.size > self.max_bytes:
                self._fail(
                    TooLarge(f"a file is at most {self.max_bytes} bytes", code="file_too_large")
                )
                return
            self.pending.append(chunk)
            self.pending_bytes += len(chunk)
            if self.detected is None and len(self.head) < SNIFF_BYTES:
                self.head += chunk[: SNIFF_BYTES - len(self.head)]
                if len(self.head) >= SNIFF_BYTES:
                    self._decide_type()
        else:
            self.part.value += chunk
            self.field_bytes += len(chunk)
            if len(self.part.value) > MAX_FIELD_BYTES or self.field_bytes > MAX_FIELDS_BYTES:
                self._fail(Invalid(f"the field {self.part.name!r} is too long"))

    def on_part_end(self) -> None:
        if self.error is not None:
            return
        if self.part is self.file_part:
            if self.detected is None:
                self._decide_type()
        else:
            value = self._text(self.part.value.decode("utf-8", "replace"), self.part.name)
            self.fields.setdefault(self.part.name, []).append(value)

    def on_end(self) -> None:
        self.ended = True

    def _decide_type(self) -> None:
        if not self.head:
            self._fail(Invalid("the file is empty", errors=[{"field": "file", "message": "empty"}]))
            return
        detected = self.sniff(self.head)
        if detected is None:
            declared = self.file_part.content_type if self.file_part else None
            self._fail(
                UnsupportedType(
                    "the file's content is not an image or video we take (JPEG, PNG, WebP, "
                    f"GIF, HEIC, AVIF, MP4, MOV, WebM); it was declared as {declared or 'nothing'}"
                )
            )
        self.detected = detected

    def _text(self, value: str, field: str) -> str:
        # The kit checks what Litestar parses; this body is parsed here, so its text is too.
        try:
            return check_text(value, field)
        except Invalid as exc:
            self._fail(exc)
            return value

    def _fail(self, error: PressroomError) -> None:
        if self.error is None:
            self.error = error

    # Off-loop work: one batch at a time in a thread while the loop reads the next.
    async def flush(self) -> None:
        """Start hashing and writing what arrived (after the previous batch is done)."""
        await self.wait_flushed()
        batch, self.pending, self.pending_bytes = self.pending, [], 0
        self.flushing = asyncio.ensure_future(asyncio.to_thread(self._write, batch))

    async def wait_flushed(self) -> None:
        if self.flushing is not None:
            flushing, self.flushing = self.flushing, None
            await flushing

    def _write(self, batch: list[bytes]) -> None:
        assert self.file is not None
        for chunk in batch:
            self.hash.update(chunk)
            self.file.write(chunk)
            self.written += len(chunk)
        if self.written - self.synced >= SYNC_WINDOW:
            # Large files go to disk as they arrive and leave the page cache: memory stays
            # flat, and the final fsync before the file is stored has little left to do.
            self.file.flush()
            fd = self.file.fileno()
            os.fdatasync(fd)
            os.posix_fadvise(fd, self.synced, self.written - self.synced, os.POSIX_FADV_DONTNEED)
            self.synced = self.written

    def close(self, *, keep: bool) -> None:
        if self.file is not None:
            self.file.close()
        if not keep and self.path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)


async def _until_disconnect(stream: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The body's chunks; a client that hangs up is a bad upload, not a server error."""
    try:
        async for chunk in stream:
            yield chunk
    except HTTPException as exc:
        if "disconnect" not in str(exc.detail):
            raise
        raise BadUpload("the client disconnected before the upload was complete") from exc


async def receive(
    stream: AsyncIterator[bytes],
    content_type: str | None,
    staging: Path,
    *,
    max_bytes: int,
    sniff: Callable[[bytes], Detected | None],
) -> Received:
    """Read a ``multipart/form-data`` body with one ``file`` part into ``staging``."""
    mime, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if mime != b"multipart/form-data" or not boundary:
        raise UnsupportedType(
            "upload with Content-Type multipart/form-data and a part named file",
            code="multipart_required",
        )
    receiver = _Receiver(staging, max_bytes, sniff)
    max_body = max_bytes + MAX_FIELDS_BYTES + FRAMING_BYTES
    try:
        parser = MultipartParser(
            boundary,
            {
                "on_part_begin": receiver.on_part_begin,
                "on_header_field": receiver.on_header_field,
                "on_header_value": receiver.on_header_value,
                "on_header_end": receiver.on_header_end,
                "on_headers_finished": receiver.on_headers_finished,
                "on_part_data": receiver.on_part_data,
                "on_part_end": receiver.on_part_end,
                "on_end": receiver.on_end,
            },
        )
    except Exception as exc:  # e.g. a boundary longer than the standard allows
        raise BadUpload(f"the multipart body cannot be parsed: {exc}") from exc
    keep = False
    body_bytes = 0
    try:
        async for chunk in _until_disconnect(stream):
            body_bytes += len(chunk)
            if body_bytes > max_body:
                raise TooLarge(f"a file is at most {max_bytes} bytes", code="file_too_large")
            try:
                parser.write(chunk)
            except Exception as exc:  # the library's MultipartParseError and friends
                raise BadUpload(f"the multipart body is malformed: {exc}") from exc
            if receiver.error is not None:
                raise receiver.error
            if receiver.pending_bytes >= FLUSH_BYTES:
                await receiver.flush()
        if not receiver.ended:
            raise BadUpload("the multipart body ended early (no closing boundary)")
        if receiver.file_part is None or receiver.detected is None:
            raise Invalid(
                "the upload has no file", errors=[{"field": "file", "message": "required"}]
            )
        await receiver.flush()
        await receiver.wait_flushed()
        assert receiver.path is not None
        keep = True
        return Received(
            path=receiver.path,
            size=receiver.size,
            sha256=receiver.hash.hexdigest(),
            filename=receiver.file_part.filename,
            declared_type=receiver.file_part.content_type,
            detected=receiver.detected,
            fields=receiver.fields,
        )
    finally:
        with contextlib.suppress(Exception):
            await receiver.wait_flushed()  # the thread must let go of the file first
        receiver.close(keep=keep)
