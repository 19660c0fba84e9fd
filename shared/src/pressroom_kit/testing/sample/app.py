"""A small HTTP service built with the kit's app factory, for tests."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
from litestar import Request, get, post
from litestar.params import JSONBody
from pydantic import BaseModel, Field

from pressroom_kit.auth import JWTVerifier, Principal
from pressroom_kit.db import tenant_transaction
from pressroom_kit.health import Heartbeats
from pressroom_kit.http import create_service_app, database_check, requires_role
from pressroom_kit.testing.sample import domain as sample


class NoteCreate(BaseModel):
    title: str = Field(min_length=1, max_length=200)


def build_app(
    verifier: JWTVerifier,
    pool: asyncpg.Pool | None = None,
    topic: str = "sample.notes",
    heartbeats: Heartbeats | None = None,
) -> Any:
    @get("/v1/notes", guards=[requires_role("viewer")])
    async def list_notes(request: Request[Principal, Any, Any]) -> dict[str, Any]:
        assert pool is not None
        async with tenant_transaction(pool, request.user.brand_id) as conn:
            rows = await conn.fetch("SELECT id, title FROM notes ORDER BY id")
        return {"items": [dict(r) for r in rows], "next_cursor": None}

    @post("/v1/notes", guards=[requires_role("manager")])
    async def create_note(
        request: Request[Principal, Any, Any], data: JSONBody[NoteCreate]
    ) -> dict[str, Any]:
        assert pool is not None
        brand = request.user.brand_id
        assert brand is not None  # the kit's brand guard refuses brandless tokens here
        note = sample.Note.write(f"note-{uuid.uuid4()}", brand, data.title)
        async with tenant_transaction(pool, brand) as conn:
            await sample.repository(topic).save(conn, note, brand_id=brand, actor=request.user.sub)
        return {"id": note.id, "title": note.title}

    @get("/v1/whoami", guards=[requires_role("viewer")], opt={"brand_optional": True})
    async def whoami(request: Request[Principal, Any, Any]) -> dict[str, Any]:
        return {"sub": request.user.sub, "brand_id": request.user.brand_id}

    @get("/v1/boom", guards=[requires_role("viewer")])
    async def boom() -> None:
        raise RuntimeError("secret internals")

    readiness = {"database": database_check(pool)} if pool is not None else {}
    return create_service_app(
        name="sample",
        route_handlers=[list_notes, create_note, whoami, boom],
        verifier=verifier,
        heartbeats=heartbeats,
        readiness=readiness,
    )
