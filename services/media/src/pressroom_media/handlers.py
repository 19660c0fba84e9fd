"""Asset commands, the brand's quota (reserve, then commit) and the usage consumer."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from pressroom_contracts import CloudEvent, EventPayload
from pressroom_contracts.events.media import (
    MediaAssetDeleted,
    MediaAssetUpdated,
    MediaAssetUploaded,
    MediaAssetUsed,
    MediaQuotaExceeded,
    MediaQuotaWarning,
)
from pressroom_contracts.events.publishing import PostCancelled, PostPublished, PostScheduled
from pressroom_contracts.topics import Topic
from pressroom_kit.cloudevents import new_event
from pressroom_kit.db import tenant_transaction
from pressroom_kit.errors import NotFound, PressroomError
from pressroom_kit.eventstore import RecordedEvent
from pressroom_kit.logs import get_logger
from pressroom_kit.outbox import OutboxMessage, write_outbox
from pressroom_kit.projections import Projector
from pressroom_kit.repository import Repository, retry_on_conflict
from pressroom_kit.telemetry import current_traceparent

from pressroom_media.domain import MediaAsset, Quota
from pressroom_media.projections import MEDIA
from pressroom_media.settings import MediaSettings
from pressroom_media.storage import Storage, asset_prefix

SOURCE = "/pressroom/media"
MEDIA_TOPIC = Topic.MEDIA.value
log = get_logger(__name__)


class QuotaExceeded(PressroomError):
    status, code, title = 413, "quota_exceeded", "Storage quota exceeded"


class UploadExpired(PressroomError):
    status, code, title = 503, "upload_expired", "Upload expired"


class Duplicate(Exception):
    """The brand already has these bytes (found only at commit: a concurrent twin won)."""

    def __init__(self, asset_id: uuid.UUID) -> None:
        super().__init__(str(asset_id))
        self.asset_id = asset_id


def to_public(event: RecordedEvent) -> list[tuple[str, str, dict[str, Any]]]:
    d, asset_id, brand_id = event.data, event.stream_id, event.brand_id
    match event.type:
        case "AssetUploaded":
            messages = [
                (
                    MEDIA_TOPIC,
                    MediaAssetUploaded.event_type,
                    {
                        "asset_id": asset_id,
                        "brand_id": brand_id,
                        "kind": d["kind"],
                        "filename": d["filename"],
                        "content_type": d["content_type"],
                        "size_bytes": d["size_bytes"],
                        "hash": d["hash"],
                        "category": d["category"],
                        "tags": d["tags"],
                        "width": d["metadata"].get("width"),
                        "height": d["metadata"].get("height"),
                        "duration_s": d["metadata"].get("duration_s"),
                        "uploaded_by": event.metadata.get("actor"),
                    },
                )
            ]
            quota = d["quota"]
            if quota.get("warning") == "raised":
                messages.append(
                    (
                        MEDIA_TOPIC,
                        MediaQuotaWarning.event_type,
                        {
                            "brand_id": brand_id,
                            "used_bytes": quota["used_bytes_after"],
                            "limit_bytes": quota["limit_bytes"],
                            "percent": _percent(quota["used_bytes_after"], quota["limit_bytes"]),
                            "warning_threshold": quota["warning_threshold"],
                        },
                    )
                )
            return messages
        case "AssetUpdated":
            return [
                (
                    MEDIA_TOPIC,
                    MediaAssetUpdated.event_type,
                    {"asset_id": asset_id, "brand_id": brand_id, **d},
                )
            ]
        case "AssetUsed":
            return [
                (
                    MEDIA_TOPIC,
                    MediaAssetUsed.event_type,
                    {
                        "asset_id": asset_id,
                        "brand_id": brand_id,
                        "used_in": d["used_in"],
                        "action": d["action"],
                        "usage_count": event.metadata.get("usage_count", 0),
                        "used_by_user": d["used_by_user"],
                    },
                )
            ]
        case "AssetDeleted":
            return [
                (
                    MEDIA_TOPIC,
                    MediaAssetDeleted.event_type,
                    {
                        "asset_id": asset_id,
                        "brand_id": brand_id,
                        "size_bytes": d["size_bytes"],
                        "forced": d["forced"],
                    },
                )
            ]
    return []


REPOSITORY: Repository[MediaAsset] = Repository(
    MediaAsset, source=SOURCE, projector=Projector([MEDIA]), to_public=to_public
)


def _percent(used: int, limit: int) -> float:
    return round(100.0 * used / limit, 2) if limit else 100.0


def quota_limit(settings: MediaSettings, brand_id: uuid.UUID) -> int:
    return settings.quota_overrides.get(brand_id, settings.default_quota_bytes)


async def locked_quota(
    conn: asyncpg.Connection, brand_id: uuid.UUID, settings: MediaSettings, *, now: datetime
) -> Quota:
    """The brand's quota, holding the brand's quota lock until the transaction ends: every
    reservation, commit and delete of one brand happens one at a time."""
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtext('pressroom_media_quota'), hashtext($1))",
        str(brand_id),
    )
    row = await conn.fetchrow(
        "SELECT q.used_bytes, q.warning_active, "
        "(SELECT coalesce(sum(bytes), 0) FROM media_quota_reservations r "
        " WHERE r.brand_id = $1 AND r.expires_at > $2) AS reserved "
        "FROM (SELECT $1::uuid AS brand_id) b LEFT JOIN storage_quotas q USING (brand_id)",
        brand_id,
        now,
    )
    assert row is not None  # the query always yields one row
    return Quota(
        limit_bytes=quota_limit(settings, brand_id),
        warning_threshold=settings.quota_warning_threshold,
        used_bytes=row["used_bytes"] or 0,
        reserved_bytes=int(row["reserved"]),
        warning_active=bool(row["warning_active"]),
    )


def _exceeded(
    brand_id: uuid.UUID, quota: Quota, size: int, filename: str | None, now: datetime
) -> tuple[OutboxMessage, QuotaExceeded]:
    message = OutboxMessage(
        topic=MEDIA_TOPIC,
        key=str(brand_id),
        event=new_event(
            source=SOURCE,
            type=MediaQuotaExceeded.event_type,
            data=MediaQuotaExceeded(
                brand_id=brand_id,
                used_bytes=quota.used_bytes,
                reserved_bytes=quota.reserved_bytes,
                requested_bytes=size,
                limit_bytes=quota.limit_bytes,
                filename=filename,
                refused_at=now,
            ).model_dump(mode="json"),
            event_id=uuid.uuid4(),
            subject=str(brand_id),
            brand_id=brand_id,
            sequence=None,
            time=now,
            traceparent=current_traceparent(),
        ),
    )
    error = QuotaExceeded(
        f"this upload ({size} bytes) would take the brand over its storage quota "
        f"({quota.used_bytes} of {quota.limit_bytes} bytes used"
        + (
            f", {quota.reserved_bytes} reserved by uploads in progress)"
            if quota.reserved_bytes
            else ")"
        ),
        used_bytes=quota.used_bytes,
        reserved_bytes=quota.reserved_bytes,
        limit_bytes=quota.limit_bytes,
        requested_bytes=size,
    )
    return message, error


async def reserve(
    pool: asyncpg.Pool,
    brand_id: uuid.UUID,
    size: int,
    settings: MediaSettings,
    *,
    filename: str | None,
    asset_id: uuid.UUID | None = None,
) -> uuid.UUID:
    """Set ``size`` bytes of the brand's quota aside for an upload in progress, or refuse it
    (413, and a ``media.quota.exceeded`` event). Reservations expire, so a crashed upload
    gives its bytes back (and the sweeper removes the files stored for ``asset_id``). Without
    an ``asset_id`` nothing is held: the quota is only checked (before a body is read)."""
    now = datetime.now(UTC)
    reservation = uuid.uuid4()
    refused: QuotaExceeded | None = None
    async with tenant_transaction(pool, brand_id) as conn:
        quota = await locked_quota(conn, brand_id, settings, now=now)
        if quota.fits(size):
            if asset_id is not None:
                await conn.execute(
                    "INSERT INTO media_quota_reservations (id, brand_id, asset_id, bytes, "
                    "expires_at) VALUES ($1, $2, $3, $4, $5)",
                    reservation,
                    brand_id,
                    asset_id,
                    size,
                    now + timedelta(seconds=settings.reservation_ttl_s),
                )
        else:
            message, refused = _exceeded(brand_id, quota, size, filename, now)
            await write_outbox(conn, [message])
    if refused is not None:
        raise refused
    return reservation


async def release(pool: asyncpg.Pool, brand_id: uuid.UUID, reservation: uuid.UUID) -> None:
    async with tenant_transaction(pool, brand_id) as conn:
        await conn.execute(
            "DELETE FROM media_quota_reservations WHERE id = $1 AND brand_id = $2",
            reservation,
            brand_id,
        )


async def commit_upload(
    pool: asyncpg.Pool,
    settings: MediaSettings,
    *,
    brand_id: uuid.UUID,
    reservation: uuid.UUID,
    asset_id: uuid.UUID,
    actor: str,
    fields: dict[str, Any],
) -> None:
    """Record the upload and turn its reservation into used quota, in one transaction.
    ``Duplicate`` when a concurrent upload of the same bytes committed first."""
    now = datetime.now(UTC)
    size = int(fields["size_bytes"])
    refused: QuotaExceeded | None = None
    try:
        async with tenant_transaction(pool, brand_id) as conn:
            quota = await locked_quota(conn, brand_id, settings, now=now)
            held = await conn.fetchval(
                "DELETE FROM media_quota_reservations WHERE id = $1 AND brand_id = $2 "
                "RETURNING expires_at > $3",
                reservation,
                brand_id,
                now,
            )
            if held is None:
                # The sweeper took it: this upload outlived its reservation and its files
                # may be gone already.
                raise UploadExpired(
                    "the upload took longer than its quota reservation; send it again"
                )
            # A reservation that expired (a very slow upload) must still fit.
            if not held and not quota.fits(size):
                message, refused = _exceeded(brand_id, quota, size, fields["filename"], now)
                await write_outbox(conn, [message])
            else:
                asset = MediaAsset.upload(asset_id, **fields, quota=quota.after(size))
                await REPOSITORY.save(conn, asset, brand_id=brand_id, actor=actor)
    except asyncpg.UniqueViolationError as exc:
        if exc.constraint_name != "media_assets_brand_hash_key":
            raise
        async with tenant_transaction(pool, brand_id) as conn:
            existing = await conn.fetchval(
                "SELECT id FROM media_assets WHERE brand_id = $1 AND hash = $2",
                brand_id,
                fields["hash"],
            )
        if existing is None:
            raise
        raise Duplicate(existing) from exc
    if refused is not None:
        raise refused


async def change_asset(
    pool: asyncpg.Pool,
    *,
    brand_id: uuid.UUID,
    asset_id: uuid.UUID,
    actor: str,
    decide: Callable[[MediaAsset], None],
) -> None:
    async def attempt() -> None:
        async with tenant_transaction(pool, brand_id) as conn:
            asset = await _load(conn, brand_id, asset_id)
            decide(asset)
            await REPOSITORY.save(conn, asset, brand_id=brand_id, actor=actor)

    await retry_on_conflict(attempt)


async def delete_asset(
    pool: asyncpg.Pool,
    settings: MediaSettings,
    *,
    brand_id: uuid.UUID,
    asset_id: uuid.UUID,
    actor: str,
    force: bool,
) -> uuid.UUID:
    """Delete the asset and, in the same transaction, leave a cleanup ticket (an expired
    zero-byte reservation) so the sweeper removes its files should the caller not manage
    to. Returns the ticket, for the caller to drop once the files are gone."""

    async def attempt() -> uuid.UUID:
        now = datetime.now(UTC)
        async with tenant_transaction(pool, brand_id) as conn:
            quota = await locked_quota(conn, brand_id, settings, now=now)
            asset = await _load(conn, brand_id, asset_id)
            asset.delete(force=force, quota=quota)
            await REPOSITORY.save(conn, asset, brand_id=brand_id, actor=actor)
            return await _cleanup_ticket(conn, brand_id, asset_id, now)

    return await retry_on_conflict(attempt)


async def _cleanup_ticket(
    conn: asyncpg.Connection, brand_id: uuid.UUID, asset_id: uuid.UUID, at: datetime
) -> uuid.UUID:
    ticket = uuid.uuid4()
    await conn.execute(
        "INSERT INTO media_quota_reservations (id, brand_id, asset_id, bytes, expires_at) "
        "VALUES ($1, $2, $3, 0, $4)",
        ticket,
        brand_id,
        asset_id,
        at,
    )
    return ticket


async def _load(conn: asyncpg.Connection, brand_id: uuid.UUID, asset_id: uuid.UUID) -> MediaAsset:
    asset = await REPOSITORY.load(conn, str(asset_id))
    if asset is None or asset.brand_id != brand_id or asset.deleted:
        raise NotFound(f"no media asset {asset_id}", code="no_asset")
    return asset


async def record_usage(conn: asyncpg.Connection, event: CloudEvent, payload: EventPayload) -> None:
    """A scheduled or published post uses its media: ``post:<id>`` joins ``used_in``, the
    count goes up and the usage log gets a line, once per (post, action) however often the
    event arrives. A cancelled post gives back its ``scheduled`` use (the uses of platforms
    it was already published on stay): the count goes down, ``used_in`` drops the post when
    nothing else of it remains, and the log gets a ``cancelled`` line, once. Media of another
    brand or already deleted is left alone."""
    if isinstance(payload, PostPublished):
        action, user = f"published:{payload.platform}", payload.published_by
    elif isinstance(payload, PostScheduled):
        action, user = "scheduled", payload.scheduled_by
    elif isinstance(payload, PostCancelled):
        action, user = "scheduled", payload.cancelled_by
    else:
        return
    if event.brandid is None or event.brandid != payload.brand_id:
        log.warning("usage event without a matching brand ignored", event_id=str(event.id))
        return
    used_in = f"post:{payload.post_id}"
    # One order for every handler, so two batches naming the same assets never deadlock.
    for media_id in sorted(set(payload.media_ids), key=str):
        asset = await REPOSITORY.load(conn, str(media_id))
        if asset is None or asset.brand_id != event.brandid:
            log.info("usage of an unknown asset ignored", asset_id=str(media_id))
            continue
        if isinstance(payload, PostCancelled):
            changed = asset.release(
                used_in=used_in,
                action=action,
                released_as="cancelled",
                released_by_user=user,
                source_event=event.id,
            )
        else:
            changed = asset.use(
                used_in=used_in, action=action, used_by_user=user, source_event=event.id
            )
        if changed:
            await REPOSITORY.save(
                conn,
                asset,
                brand_id=event.brandid,
                actor=user,
                metadata={"usage_count": asset.usage_count, "caused_by": str(event.id)},
            )


async def sweep_expired_reservations(
    pool: asyncpg.Pool, storage: Storage, *, now: datetime, batch: int = 100
) -> int:
    """Remove the files of uploads that crashed before committing and of deleted assets whose
    files are still there (both leave an expired reservation behind). A removal that fails
    is ticketed again for the next sweep. Returns how many reservations were swept."""
    rows = await pool.fetch("SELECT * FROM media_claim_expired_reservations($1, $2)", now, batch)
    for row in rows:
        brand_id, asset_id = row["brand_id"], row["asset_id"]
        try:
            async with tenant_transaction(pool, brand_id) as conn:
                live = await conn.fetchval(
                    "SELECT 1 FROM media_assets WHERE id = $1 AND brand_id = $2",
                    asset_id,
                    brand_id,
                )
            if not live:
                removed = await storage.delete_prefix(asset_prefix(brand_id, asset_id))
                log.info("files left behind removed", asset_id=str(asset_id), files=removed)
        except Exception:
            log.exception(
                "removing files left behind failed; retried later", asset_id=str(asset_id)
            )
            async with tenant_transaction(pool, brand_id) as conn:
                await _cleanup_ticket(conn, brand_id, asset_id, now)
    return len(rows)
