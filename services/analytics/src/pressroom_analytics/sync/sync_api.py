"""``POST /v1/analytics/sync`` (managers) and the sync logs (viewers)."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Any, TypedDict

import asyncpg
from litestar import Controller, Request, Response, get, post
from litestar.datastructures import State
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from pressroom_kit.db import tenant_transaction
from pressroom_kit.errors import NotFound
from pressroom_kit.pagination import Cursor, newest_first
from pydantic import BaseModel, ConfigDict, Field

from pressroom_analytics.sync import requests
from pressroom_analytics.sync.params import MANAGER, VIEWER, Day, PlatformId, who


class SyncIn(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    platforms: list[PlatformId] | None = Field(
        default=None,
        min_length=1,
        max_length=20,
        description="default: the brand's connected platforms",
    )
    since: Day | None = Field(
        default=None, alias="from", description="first local day; default: 6 days before to"
    )
    until: Day | None = Field(
        default=None, alias="to", description="last local day (included); default: today"
    )


class SyncAccepted(BaseModel):
    sync_log_id: uuid.UUID


class PlatformAnswer(TypedDict):
    status: str
    account_days: int
    post_days: int
    error: str | None
    collected_at: str | None


# A TypedDict, so ``from``/``to`` are the keys in the JSON and the OpenAPI document alike.
SyncLogOut = TypedDict(
    "SyncLogOut",
    {
        "id": uuid.UUID,
        "brand_id": uuid.UUID,
        "status": str,
        "trigger": str,
        "platforms": list[str],
        "from": date,
        "to": date,
        "requested_by": str | None,
        "started_at": datetime,
        "finished_at": datetime | None,
        "items_synced": int,
        "items_failed": int,
        "duration_ms": int | None,
        "answers": dict[str, PlatformAnswer],
        "error": str | None,
    },
)


class SyncLogPage(TypedDict):
    items: list[SyncLogOut]
    next_cursor: str | None


_COLUMNS = (
    "SELECT id, brand_id, status, trigger, platforms, from_date, to_date, requested_by, "
    "created_at, started_at, finished_at, items_synced, items_failed, duration_ms, answers, "
    "error FROM analytics_sync_logs"
)


def _log_out(row: asyncpg.Record) -> SyncLogOut:
    answers: dict[str, PlatformAnswer] = {
        p: {
            "status": a["status"],
            "account_days": a.get("account_days", 0),
            "post_days": a.get("post_days", 0),
            "error": a.get("error"),
            "collected_at": a.get("collected_at"),
        }
        for p, a in row["answers"].items()
    }
    return {
        "id": row["id"],
        "brand_id": row["brand_id"],
        "status": row["status"],
        "trigger": row["trigger"],
        "platforms": list(row["platforms"]),
        "from": row["from_date"],
        "to": row["to_date"],
        "requested_by": row["requested_by"],
        "started_at": row["started_at"],
        "finished_at": row["finished_at"],
        "items_synced": row["items_synced"],
        "items_failed": row["items_failed"],
        "duration_ms": row["duration_ms"],
        "answers": answers,
        "error": row["error"],
    }


class SyncController(Controller):
    path = "/v1/analytics"
    tags = ["analytics"]
    guards = VIEWER

    @post("/sync", status_code=202, guards=MANAGER)
    async def sync(
        self,
        request: Request[Any, Any, Any],
        state: State,
        data: JSONBody[SyncIn | None] = None,
    ) -> Response[SyncAccepted]:
        """Ask publishing for the numbers; they come back over the bus. 422 when no platform
        is named and none is known to be connected, when from is after to, or for a range
        longer than 366 days (a backfill splits a longer one)."""
        caller = who(request)
        body = data or SyncIn()
        async with tenant_transaction(state.pool, caller.brand_id) as conn:
            sync_id = await requests.request_sync(
                conn,
                brand_id=caller.brand_id,
                platforms=body.platforms,
                since=body.since,
                until=body.until,
                requested_by=caller.sub,
                trigger="manual",
                now=state.clock(),
            )
        return Response(
            SyncAccepted(sync_log_id=sync_id),
            status_code=202,
            headers={"Location": f"/v1/analytics/sync-logs/{sync_id}"},
        )

    @get("/sync-logs")
    async def sync_logs(
        self,
        request: Request[Any, Any, Any],
        state: State,
        status: FromQuery[str | None] = None,
        cursor: Cursor = None,
        limit: Annotated[int, QueryParameter(ge=1, le=200)] = 50,
    ) -> SyncLogPage:
        """The brand's syncs, newest first; ``status`` filters (any string: an unknown one
        matches nothing)."""
        caller = who(request)
        rows, next_cursor = await newest_first(
            state.pool, caller.brand_id, _COLUMNS, [("status = {}", status)], cursor, limit
        )
        return {"items": [_log_out(r) for r in rows], "next_cursor": next_cursor}

    @get("/sync-logs/{sync_id:uuid}")
    async def sync_log(
        self, request: Request[Any, Any, Any], state: State, sync_id: FromPath[uuid.UUID]
    ) -> SyncLogOut:
        caller = who(request)
        async with tenant_transaction(state.pool, caller.brand_id) as conn:
            row = await conn.fetchrow(f"{_COLUMNS} WHERE id = $1", sync_id)
        if row is None:
            raise NotFound(f"no sync {sync_id}", code="no_sync")
        return _log_out(row)
