"""One upload from first byte to committed asset.

receive (stream to staging, hash, sniff) -> same bytes already in the brand? return that
asset -> reserve quota -> process in the worker pool -> store every file -> commit (event,
projections, quota) -> clean up. Any failure after the reservation gives the bytes back and
removes what was stored; nothing half-done stays visible.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
from pressroom_kit.db import tenant_transaction
from pressroom_kit.errors import Invalid, PressroomError
from pressroom_kit.logs import get_logger

from pressroom_media import handlers
from pressroom_media.domain import StoredFile, clean_category, clean_filename, clean_tags
from pressroom_media.metrics import UPLOAD_STAGE, UPLOADED_BYTES, UPLOADS
from pressroom_media.processing import Processed, Processor, Rejected, Rendition, sniff
from pressroom_media.settings import MediaSettings
from pressroom_media.storage import Storage, asset_prefix
from pressroom_media.upload import (
    FRAMING_BYTES,
    MAX_FIELDS_BYTES,
    Received,
    TooLarge,
    receive,
    refusal,
)

log = get_logger(__name__)
MULTIPART_OVERHEAD = MAX_FIELDS_BYTES + FRAMING_BYTES
EARLY_QUOTA_CHECK_BYTES = 8 * 1024 * 1024


class Uploads:
    def __init__(
        self,
        pool: asyncpg.Pool,
        storage: Storage,
        processor: Processor,
        settings: MediaSettings,
        staging: Path,
    ) -> None:
        self.pool, self.storage, self.processor, self.settings = pool, storage, processor, settings
        self.staging = staging

    async def upload(
        self,
        *,
        brand_id: uuid.UUID,
        actor: str,
        stream: AsyncIterator[bytes],
        content_type: str | None,
        content_length: int | None,
    ) -> tuple[uuid.UUID, bool]:
        """Store one upload; returns the asset id and whether it was already there."""
        try:
            asset_id, duplicate = await self._upload(
                brand_id, actor, stream, content_type, content_length
            )
        except PressroomError as refused:
            UPLOADS.labels(str(refused.status)).inc()
            raise
        except Exception:
            UPLOADS.labels("failed").inc()
            raise
        UPLOADS.labels("duplicate" if duplicate else "created").inc()
        return asset_id, duplicate

    async def _upload(
        self,
        brand_id: uuid.UUID,
        actor: str,
        stream: AsyncIterator[bytes],
        content_type: str | None,
        content_length: int | None,
    ) -> tuple[uuid.UUID, bool]:
        if content_length is not None:
            await self._early_refusal(brand_id, content_length)
        started = time.perf_counter()
        # Another replica starting may have swept this replica's idle staging folder.
        self.staging.mkdir(parents=True, exist_ok=True)
        received = await receive(
            stream,
            content_type,
            self.staging,
            max_bytes=self.settings.max_upload_bytes,
            sniff=sniff,
        )
        timings = {"receive_ms": round((time.perf_counter() - started) * 1000)}
        try:
            return await self._accept(brand_id, actor, received, timings)
        finally:
            with contextlib.suppress(FileNotFoundError):
                received.path.unlink()

    async def _early_refusal(self, brand_id: uuid.UUID, content_length: int) -> None:
        """Refuse a body that cannot fit before reading it. The file is the body less the
        multipart framing and fields; when the brand has an asset of about that size the
        body may be a duplicate (200, no quota), so then it is read first."""
        if content_length > self.settings.max_upload_bytes + MULTIPART_OVERHEAD:
            raise TooLarge(
                f"a file is at most {self.settings.max_upload_bytes} bytes", code="file_too_large"
            )
        if content_length <= EARLY_QUOTA_CHECK_BYTES:
            return
        smallest = content_length - MULTIPART_OVERHEAD
        async with tenant_transaction(self.pool, brand_id) as conn:
            maybe_twin = await conn.fetchval(
                "SELECT 1 FROM media_assets WHERE brand_id = $1 "
                "AND size_bytes BETWEEN $2 AND $3 LIMIT 1",
                brand_id,
                smallest,
                content_length,
            )
        if not maybe_twin:
            await handlers.reserve(self.pool, brand_id, smallest, self.settings, filename=None)

    async def _accept(
        self, brand_id: uuid.UUID, actor: str, received: Received, timings: dict[str, int]
    ) -> tuple[uuid.UUID, bool]:
        detected = received.detected
        tags = clean_tags(
            [t for value in received.fields.get("tags", []) for t in value.split(",")]
        )
        categories = received.fields.get("category", [])
        if len(categories) > 1:
            raise Invalid("send one category", errors=[{"field": "category", "message": "one"}])
        category = clean_category(categories[0] if categories else None)
        filename = clean_filename(received.filename, detected.extension)

        existing = await self._existing(brand_id, received.sha256)
        if existing is not None:
            return existing, True

        asset_id = uuid.uuid4()
        reservation = await handlers.reserve(
            self.pool, brand_id, received.size, self.settings, filename=filename, asset_id=asset_id
        )
        work = self.staging / asset_id.hex
        stored = False
        try:
            work.mkdir(parents=True)
            step = time.perf_counter()
            try:
                processed = await self.processor.process(str(received.path), str(work), detected)
            except Rejected as rejected:
                raise refusal(rejected) from None
            stored = True
            timings["process_ms"] = round((time.perf_counter() - step) * 1000)
            step = time.perf_counter()
            files = await self._store(brand_id, asset_id, received, processed)
            timings["store_ms"] = round((time.perf_counter() - step) * 1000)
            step = time.perf_counter()
            await handlers.commit_upload(
                self.pool,
                self.settings,
                brand_id=brand_id,
                reservation=reservation,
                asset_id=asset_id,
                actor=actor,
                fields={
                    "brand_id": brand_id,
                    "kind": processed.kind,
                    "filename": filename,
                    "content_type": processed.content_type,
                    "size_bytes": received.size,
                    "hash": received.sha256,
                    "category": category,
                    "tags": tags,
                    "metadata": _metadata(processed),
                    "files": files,
                },
            )
            timings["commit_ms"] = round((time.perf_counter() - step) * 1000)
            for stage, ms in timings.items():
                UPLOAD_STAGE.labels(stage.removesuffix("_ms")).observe(ms / 1000)
            UPLOADED_BYTES.inc(received.size)
            log.info(
                "upload stored",
                asset_id=str(asset_id),
                size_bytes=received.size,
                kind=processed.kind,
                **timings,
            )
            return asset_id, False
        except handlers.Duplicate as twin:
            await self._undo(brand_id, asset_id, reservation, stored)
            return twin.asset_id, True
        except BaseException:
            await self._undo(brand_id, asset_id, reservation, stored)
            raise
        finally:
            await asyncio.to_thread(shutil.rmtree, work, True)

    async def _existing(self, brand_id: uuid.UUID, sha256: str) -> uuid.UUID | None:
        async with tenant_transaction(self.pool, brand_id) as conn:
            found: uuid.UUID | None = await conn.fetchval(
                "SELECT id FROM media_assets WHERE brand_id = $1 AND hash = $2", brand_id, sha256
            )
        return found

    async def _store(
        self,
        brand_id: uuid.UUID,
        asset_id: uuid.UUID,
        received: Received,
        processed: Processed,
    ) -> dict[str, StoredFile]:
        prefix = asset_prefix(brand_id, asset_id)
        original = processed.display
        if original is None:  # served as uploaded
            original = Rendition(
                name="original",
                path=str(received.path),
                content_type=processed.content_type,
                extension=processed.extension,
                width=processed.width,
                height=processed.height,
                size_bytes=received.size,
                sha256=received.sha256,
            )
        renditions = {"original": original, "thumbnail": processed.thumbnail}
        renditions.update({v.name: v for v in processed.variants})
        files = {
            name: StoredFile(
                key=f"{prefix}{name}.{r.extension}",
                content_type=r.content_type,
                width=r.width,
                height=r.height,
                size_bytes=r.size_bytes,
            )
            for name, r in renditions.items()
        }
        # Every put finishes (or fails) before a failure is reported, so the clean-up that
        # follows never races a put still in flight.
        results = await asyncio.gather(
            *(
                self.storage.put_file(files[name].key, r.path, r.content_type)
                for name, r in renditions.items()
            ),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return files

    async def _undo(
        self, brand_id: uuid.UUID, asset_id: uuid.UUID, reservation: uuid.UUID, stored: bool
    ) -> None:
        """Give the reservation back and remove stored files; never hides the first error."""
        try:
            if stored:
                await self.storage.delete_prefix(asset_prefix(brand_id, asset_id))
            await handlers.release(self.pool, brand_id, reservation)
        except Exception:
            log.exception("cleanup after a failed upload did not finish", asset_id=str(asset_id))


def _metadata(processed: Processed) -> dict[str, Any]:
    return {
        "width": processed.width,
        "height": processed.height,
        "duration_s": processed.duration_s,
        "codec": processed.codec,
        "colors": processed.colors,
        **processed.extra,
    }


def prepare_staging(root: Path, max_age_s: float) -> Path:
    """This process's own staging folder under ``root`` (replicas may share ``root``); the
    leftovers of crashed processes older than ``max_age_s`` are removed."""
    root.mkdir(parents=True, exist_ok=True)
    cutoff = time.time() - max_age_s
    for entry in root.iterdir():
        with contextlib.suppress(OSError):
            if entry.stat().st_mtime < cutoff:
                if entry.is_dir():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink()
    mine = root / f"p{os.getpid()}-{uuid.uuid4().hex[:8]}"
    mine.mkdir()
    return mine
