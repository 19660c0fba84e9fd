"""The media library API (``/v1/media``) and signed file serving (``/media-files``)."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

import asyncpg
from litestar import Controller, Request, Response, delete, get, patch, post
from litestar.datastructures import State
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import (
    OpenAPIFormat,
    OpenAPIMediaType,
    OpenAPIType,
    Operation,
    RequestBody,
    Schema,
)
from litestar.params import FromPath, FromQuery, JSONBody, Parameter
from pressroom_kit.auth import Principal
from pressroom_kit.db import tenant_transaction
from pressroom_kit.errors import NotFound
from pressroom_kit.http import requires_role
from pressroom_kit.logs import get_logger
from pressroom_kit.pagination import Cursor, newest_first
from pressroom_kit.problems import problems
from pressroom_kit.schemas import NOT_NULL
from pressroom_kit.text import nfc
from pydantic import BaseModel, ConfigDict, Field

from pressroom_media import handlers
from pressroom_media.signing import UrlSigner
from pressroom_media.storage import asset_prefix

log = get_logger(__name__)
VIEWER = [requires_role("viewer")]
MANAGER = [requires_role("manager")]
_COLUMNS = (
    "id, brand_id, kind, category, filename, content_type, size_bytes, hash, tags, metadata, "
    "files, used_in, usage_count, uploaded_by, created_at, updated_at"
)


class Variant(BaseModel):
    url: str
    width: int
    height: int
    content_type: str
    size_bytes: int


class AssetOut(BaseModel):
    id: uuid.UUID
    brand_id: uuid.UUID
    kind: Literal["image", "video"]
    category: str | None
    filename: str
    content_type: str
    size_bytes: int
    hash: str
    url: str
    thumbnail_url: str
    metadata: dict[str, Any]
    variants: dict[str, Variant]
    used_in: list[str]
    usage_count: int
    uploaded_by: str | None
    created_at: datetime
    updated_at: datetime


class UploadOut(AssetOut):
    duplicate: bool


class AssetPage(BaseModel):
    items: list[AssetOut]
    next_cursor: str | None


class AssetUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    filename: Annotated[str | None, NOT_NULL] = Field(default=None, min_length=1, max_length=255)
    category: str | None = Field(default=None, max_length=64, description="`null` clears it")
    tags: Annotated[list[Annotated[str, Field(max_length=64)]] | None, NOT_NULL] = Field(
        default=None, max_length=50
    )


class UsageOut(BaseModel):
    id: uuid.UUID
    used_in: str
    action: str
    used_by_user: str | None
    created_at: datetime


class UsagePage(BaseModel):
    items: list[UsageOut]
    next_cursor: str | None


class QuotaOut(BaseModel):
    limit_bytes: int
    used_bytes: int
    reserved_bytes: int
    percent: float
    warning_threshold: float
    warning: bool


def _brand(request: Request[Any, Any, Any]) -> tuple[str, uuid.UUID]:
    principal = request.user
    assert isinstance(principal, Principal) and principal.brand_id is not None
    return principal.sub, principal.brand_id


def asset_out(row: asyncpg.Record, signer: UrlSigner, now: float) -> AssetOut:
    files: dict[str, Any] = row["files"]
    metadata = {**row["metadata"], "tags": list(row["tags"])}
    variants = {
        name: Variant(
            url=signer.url(f["key"], now),
            width=f["width"],
            height=f["height"],
            content_type=f["content_type"],
            size_bytes=f["size_bytes"],
        )
        for name, f in files.items()
        if name not in ("original", "thumbnail")
    }
    return AssetOut(
        id=row["id"],
        brand_id=row["brand_id"],
        kind=row["kind"],
        category=row["category"],
        filename=row["filename"],
        content_type=row["content_type"],
        size_bytes=row["size_bytes"],
        hash=row["hash"],
        url=signer.url(files["original"]["key"], now),
        thumbnail_url=signer.url(files["thumbnail"]["key"], now),
        metadata=metadata,
        variants=variants,
        used_in=list(row["used_in"]),
        usage_count=row["usage_count"],
        uploaded_by=row["uploaded_by"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


async def read_asset(state: State, brand_id: uuid.UUID, asset_id: uuid.UUID) -> AssetOut:
    async with tenant_transaction(state.pool, brand_id) as conn:
        row = await conn.fetchrow(
            f"SELECT {_COLUMNS} FROM media_assets WHERE id = $1 AND brand_id = $2",
            asset_id,
            brand_id,
        )
    if row is None:
        raise NotFound(f"no media asset {asset_id}", code="no_asset")
    return asset_out(row, state.signer, time.time())


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


@dataclass
class UploadOperation(Operation):
    """The upload's OpenAPI entry: the handler reads the body as a stream, so Litestar cannot
    infer the multipart form it expects."""

    def __post_init__(self) -> None:
        text = Schema(type=OpenAPIType.STRING)
        self.request_body = RequestBody(
            required=True,
            content={
                "multipart/form-data": OpenAPIMediaType(
                    schema=Schema(
                        type=OpenAPIType.OBJECT,
                        required=["file"],
                        additional_properties=False,
                        properties={
                            "file": Schema(
                                type=OpenAPIType.STRING,
                                format=OpenAPIFormat.BINARY,
                                min_length=1,
                                description="JPEG, PNG, WebP, GIF, HEIC, AVIF, MP4, MOV or WebM",
                            ),
                            "category": text,
                            "tags": Schema(
                                type=OpenAPIType.STRING,
                                description="comma-separated; the field may also repeat",
                            ),
                        },
                    )
                )
            },
        )


class MediaController(Controller):
    path = "/v1/media"
    tags = ["media"]

    @post(
        "/",
        guards=MANAGER,
        request_max_body_size=None,
        status_code=201,
        summary="Upload a file (multipart: file, category, tags)",
        operation_class=UploadOperation,
        opt=problems(409, 413, 415, 503),
        responses={
            200: ResponseSpec(
                UploadOut, description="the brand already has these bytes (duplicate: true)"
            )
        },
    )
    async def upload(self, request: Request[Any, Any, Any], state: State) -> Response[UploadOut]:
        """Streams the ``file`` part to storage while hashing it. 201 with the new asset; 200
        with ``duplicate: true`` and the existing asset when the brand already has these bytes;
        413 over the quota or the size limit; 415 for a type we do not take; 422 for a
        corrupt file or a decompression bomb."""
        actor, brand_id = _brand(request)
        length = request.headers.get("content-length")
        asset_id, duplicate = await state.uploads.upload(
            brand_id=brand_id,
            actor=actor,
            stream=request.stream(),
            content_type=request.headers.get("content-type"),
            content_length=int(length) if length and length.isdigit() else None,
        )
        asset = await read_asset(state, brand_id, asset_id)
        return Response(
            UploadOut(**asset.model_dump(), duplicate=duplicate),
            status_code=200 if duplicate else 201,
        )

    @get("/", guards=VIEWER)
    async def list_assets(
        self,
        request: Request[Any, Any, Any],
        state: State,
        category: FromQuery[str | None] = None,
        tag: FromQuery[str | None] = None,
        q: Annotated[str | None, Parameter(max_length=200)] = None,
        kind: FromQuery[Literal["image", "video"] | None] = None,
        limit: Annotated[int, Parameter(ge=1, le=200)] = 50,
        cursor: Cursor = None,
    ) -> AssetPage:
        _, brand_id = _brand(request)
        rows, next_cursor = await newest_first(
            state.pool,
            brand_id,
            f"SELECT {_COLUMNS} FROM media_assets",
            [
                ("brand_id = {}", brand_id),
                ("category = {}", nfc(category.strip()) if category is not None else None),
                ("tags @> ARRAY[{}]::text[]", nfc(tag.strip()) if tag is not None else None),
                ("filename ILIKE {}", _like(nfc(q)) if q else None),
                ("kind = {}", kind),
            ],
            cursor,
            limit,
        )
        now = time.time()
        return AssetPage(
            items=[asset_out(r, state.signer, now) for r in rows], next_cursor=next_cursor
        )

    @get("/quota", guards=VIEWER)
    async def quota(self, request: Request[Any, Any, Any], state: State) -> QuotaOut:
        _, brand_id = _brand(request)
        async with tenant_transaction(state.pool, brand_id) as conn:
            row = await conn.fetchrow(
                "SELECT (SELECT used_bytes FROM storage_quotas WHERE brand_id = $1) AS used, "
                "(SELECT warning_active FROM storage_quotas WHERE brand_id = $1) AS warning, "
                "(SELECT coalesce(sum(bytes), 0) FROM media_quota_reservations "
                " WHERE brand_id = $1 AND expires_at > now()) AS reserved",
                brand_id,
            )
        assert row is not None  # the query always yields one row
        settings = state.settings
        limit = handlers.quota_limit(settings, brand_id)
        used = row["used"] or 0
        return QuotaOut(
            limit_bytes=limit,
            used_bytes=used,
            reserved_bytes=int(row["reserved"]),
            percent=round(100.0 * used / limit, 2) if limit else 100.0,
            warning_threshold=settings.quota_warning_threshold,
            warning=bool(row["warning"]),
        )

    @get("/{asset_id:uuid}", guards=VIEWER)
    async def read(
        self, request: Request[Any, Any, Any], state: State, asset_id: FromPath[uuid.UUID]
    ) -> AssetOut:
        return await read_asset(state, _brand(request)[1], asset_id)

    @patch("/{asset_id:uuid}", guards=MANAGER)
    async def update(
        self,
        request: Request[Any, Any, Any],
        state: State,
        asset_id: FromPath[uuid.UUID],
        data: JSONBody[AssetUpdate],
    ) -> AssetOut:
        actor, brand_id = _brand(request)
        clear = (
            {"category"} if "category" in data.model_fields_set and data.category is None else set()
        )
        await handlers.change_asset(
            state.pool,
            brand_id=brand_id,
            asset_id=asset_id,
            actor=actor,
            decide=lambda a: a.change(
                filename=data.filename, category=data.category, tags=data.tags, clear=clear
            ),
        )
        return await read_asset(state, brand_id, asset_id)

    @delete("/{asset_id:uuid}", guards=MANAGER, status_code=204)
    async def remove(
        self,
        request: Request[Any, Any, Any],
        state: State,
        asset_id: FromPath[uuid.UUID],
        force: FromQuery[bool] = False,
    ) -> None:
        """409 while posts use the asset, unless ``force=true``; the files go with it."""
        actor, brand_id = _brand(request)
        ticket = await handlers.delete_asset(
            state.pool,
            state.settings,
            brand_id=brand_id,
            asset_id=asset_id,
            actor=actor,
            force=force,
        )
        try:
            await state.storage.delete_prefix(asset_prefix(brand_id, asset_id))
        except Exception:
            # The asset is deleted; its ticket makes the sweeper remove the files later.
            log.exception("removing a deleted asset's files failed", asset_id=str(asset_id))
            return
        await handlers.release(state.pool, brand_id, ticket)

    @get("/{asset_id:uuid}/usage", guards=VIEWER)
    async def usage(
        self,
        request: Request[Any, Any, Any],
        state: State,
        asset_id: FromPath[uuid.UUID],
        limit: Annotated[int, Parameter(ge=1, le=200)] = 50,
        cursor: Cursor = None,
    ) -> UsagePage:
        _, brand_id = _brand(request)
        await read_asset(state, brand_id, asset_id)
        rows, next_cursor = await newest_first(
            state.pool,
            brand_id,
            "SELECT id, used_in, action, used_by_user, created_at FROM media_usage_logs",
            [("brand_id = {}", brand_id), ("asset_id = {}", asset_id)],
            cursor,
            limit,
        )
        return UsagePage(items=[UsageOut(**dict(r)) for r in rows], next_cursor=next_cursor)
