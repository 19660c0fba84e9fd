"""Brand and member routes (the gateway's own API)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID
from zoneinfo import available_timezones

import asyncpg
from litestar import Controller, Request, delete, get, patch, post
from litestar.datastructures import State
from litestar.params import FromPath, JSONBody, Parameter
from pressroom_kit.auth import Principal
from pressroom_kit.db import tenant_transaction
from pressroom_kit.errors import NotFound
from pressroom_kit.http import requires_role
from pressroom_kit.pagination import page
from pressroom_kit.schemas import NOT_NULL
from pydantic import BaseModel, ConfigDict, Field
from pydantic.config import JsonDict

from pressroom_gateway import handlers
from pressroom_gateway.domain import Role

TIMEZONES: JsonDict = {"enum": list(sorted(available_timezones()))}
# A members cursor is the hex of the last user id's UTF-8 bytes: every such string is a
# position in byte order, so a well-formed cursor is never refused.
MEMBER_CURSOR = r"^(?:[0-9a-f]{2}){1,800}$"


class BrandCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    timezone: str = Field(default="UTC", json_schema_extra=TIMEZONES)
    settings: dict[str, Any] = Field(default_factory=dict)


class BrandUpdate(BaseModel):
    """PATCH body: absent fields stay; ``settings`` merges key by key, ``null`` removes a key."""

    model_config = ConfigDict(extra="forbid")
    name: Annotated[str | None, NOT_NULL] = Field(default=None, min_length=1, max_length=200)
    timezone: Annotated[str | None, NOT_NULL] = Field(default=None, json_schema_extra=TIMEZONES)
    settings: dict[str, Any] | None = None


class BrandOut(BaseModel):
    id: UUID
    name: str
    timezone: str
    settings: dict[str, Any]
    created_by: str
    created_at: datetime
    updated_at: datetime


class MemberCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user_id: str = Field(min_length=1, max_length=200)
    email: str | None = Field(default=None, max_length=320)
    role: Role


class MemberOut(BaseModel):
    user_id: str
    email: str | None
    role: Role
    added_at: datetime


class MemberPage(BaseModel):
    items: list[MemberOut]
    next_cursor: str | None


def _pool(state: State) -> asyncpg.Pool:
    pool: asyncpg.Pool = state.pool
    return pool


def _principal(request: Request[Any, Any, Any]) -> Principal:
    principal = request.user
    assert isinstance(principal, Principal)
    return principal


async def _read_brand(pool: asyncpg.Pool, brand_id: UUID | None) -> BrandOut:
    async with tenant_transaction(pool, brand_id) as conn:
        row = await conn.fetchrow(
            "SELECT id, name, timezone, settings, created_by, created_at, updated_at "
            "FROM brands WHERE id = $1",
            brand_id,
        )
    if row is None:
        raise NotFound("the token's brand does not exist", code="no_brand")
    return BrandOut(**dict(row))


class BrandController(Controller):
    path = "/v1/brands"
    tags = ["brands"]

    @post("/", opt={"brand_optional": True}, status_code=201)
    async def create_brand(
        self, request: Request[Any, Any, Any], state: State, data: JSONBody[BrandCreate]
    ) -> BrandOut:
        """Create a brand; the caller becomes its admin. Tokens without a brand are accepted."""
        pool = _pool(state)
        brand_id = await handlers.create_brand(
            pool,
            _principal(request),
            name=data.name,
            timezone=data.timezone,
            settings=data.settings,
        )
        return await _read_brand(pool, brand_id)

    @get("/current", guards=[requires_role("viewer")])
    async def current(self, request: Request[Any, Any, Any], state: State) -> BrandOut:
        return await _read_brand(_pool(state), _principal(request).brand_id)

    @patch("/current", guards=[requires_role("admin")])
    async def update(
        self, request: Request[Any, Any, Any], state: State, data: JSONBody[BrandUpdate]
    ) -> BrandOut:
        pool = _pool(state)
        principal = _principal(request)
        await handlers.update_brand(
            pool, principal, name=data.name, timezone=data.timezone, settings=data.settings
        )
        return await _read_brand(pool, principal.brand_id)

    @get("/current/members", guards=[requires_role("admin")])
    async def members(
        self,
        request: Request[Any, Any, Any],
        state: State,
        limit: Annotated[int, Parameter(ge=1, le=200)] = 50,
        cursor: Annotated[
            str | None,
            Parameter(pattern=MEMBER_CURSOR, description="`next_cursor` of the previous page"),
        ] = None,
    ) -> MemberPage:
        after = bytes.fromhex(cursor) if cursor else b""
        brand_id = _principal(request).brand_id
        async with tenant_transaction(_pool(state), brand_id) as conn:
            rows = await conn.fetch(
                "SELECT user_id, email, role, added_at FROM brand_users "
                "WHERE brand_id = $1 AND convert_to(user_id, 'UTF8') > $2 "
                "ORDER BY convert_to(user_id, 'UTF8') LIMIT $3",
                brand_id,
                after,
                limit + 1,
            )
        items, next_cursor = page(
            [MemberOut(**dict(r)) for r in rows],
            limit,
            lambda m: (m.user_id,),
            lambda user_id: user_id.encode().hex(),
        )
        return MemberPage(items=items, next_cursor=next_cursor)

    @post("/current/members", guards=[requires_role("admin")], status_code=201)
    async def add_member(
        self, request: Request[Any, Any, Any], state: State, data: JSONBody[MemberCreate]
    ) -> MemberOut:
        pool = _pool(state)
        principal = _principal(request)
        await handlers.add_member(
            pool, principal, user_id=data.user_id, role=data.role, email=data.email
        )
        async with tenant_transaction(pool, principal.brand_id) as conn:
            row = await conn.fetchrow(
                "SELECT user_id, email, role, added_at FROM brand_users "
                "WHERE brand_id = $1 AND user_id = $2",
                principal.brand_id,
                data.user_id,
            )
        if row is None:
            raise NotFound(f"{data.user_id} is not a member of this brand", code="no_member")
        return MemberOut(**dict(row))

    @delete("/current/members/{user_id:str}", guards=[requires_role("admin")], status_code=204)
    async def remove_member(
        self, request: Request[Any, Any, Any], state: State, user_id: FromPath[str]
    ) -> None:
        await handlers.remove_member(_pool(state), _principal(request), user_id=user_id)
