"""Webhook endpoints, deliveries and attempts (admin only)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

import asyncpg
from litestar import Controller, Request, delete, get, patch, post
from litestar.datastructures import State
from litestar.params import FromPath, FromQuery, JSONBody, Parameter
from pressroom_contracts import CloudEvent
from pressroom_kit.auth import Principal
from pressroom_kit.db import tenant_transaction
from pressroom_kit.errors import Conflict, NotFound
from pressroom_kit.http import requires_role
from pressroom_kit.pagination import Cursor, newest_first
from pressroom_kit.schemas import NOT_NULL
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from pressroom_webhook import handlers
from pressroom_webhook.ssrf import validate_url

ADMIN = [requires_role("admin")]
Provider = Literal["generic", "zapier", "make", "slack"]


# What the server takes (ssrf.url_problem): an absolute http(s) URL with a host and no
# credentials. The last label starts with a letter, so the host is a name, never an address
# literal; whether it resolves, and to a public address, is checked when it is set. No
# `format: uri`: the server does not hold path and query to RFC 3986, and a format it does
# not enforce would document a refusal that never comes.
URL_PATTERN = (
    r"^[Hh][Tt][Tt][Pp][Ss]?://(?:[A-Za-z0-9-]{1,63}\.){0,8}[A-Za-z][A-Za-z0-9-]{0,62}"
    r"(?::(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}"
    r"|[1-9][0-9]{0,3}))?(?:[/?#][!-~]*)?$"
)
Url = Annotated[str, Field(max_length=2048, pattern=URL_PATTERN)]
# An exact type or a glob (domain.valid_event_types): printable ASCII without "?", "[" or
# "]". Spelled as explicit ranges: `\s` means different sets in pydantic's Rust regex engine
# and in Python's (which generates test data), so a class with it documents neither.
EventType = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[!->@-Z\\^-~]+$")]


class EndpointCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: Url
    provider: Provider = "generic"
    event_types: list[EventType] = Field(min_length=1, max_length=100)
    description: str = Field(default="", max_length=500)
    enabled: StrictBool = True


class EndpointUpdate(BaseModel):
    """PATCH body: absent fields stay; none of them may be ``null``."""

    model_config = ConfigDict(extra="forbid")
    url: Annotated[Url | None, NOT_NULL] = None
    provider: Annotated[Provider | None, NOT_NULL] = None
    event_types: Annotated[list[EventType] | None, NOT_NULL] = Field(
        default=None, min_length=1, max_length=100
    )
    description: Annotated[str | None, NOT_NULL] = Field(default=None, max_length=500)
    enabled: Annotated[StrictBool | None, NOT_NULL] = None


class EndpointOut(BaseModel):
    id: uuid.UUID
    url: str
    provider: str
    event_types: list[str]
    description: str
    enabled: bool
    disabled_reason: str | None
    created_at: datetime
    updated_at: datetime


class EndpointCreated(EndpointOut):
    secret: str = Field(description="the signing secret; shown only now")


class RotatedSecret(BaseModel):
    secret: str
    previous_valid_until: datetime


class Recover(BaseModel):
    model_config = ConfigDict(extra="forbid")
    since: datetime


class DeliveryOut(BaseModel):
    id: uuid.UUID
    endpoint_id: uuid.UUID
    event_id: uuid.UUID
    event_type: str
    status: str
    attempts: int
    max_attempts: int
    next_attempt_at: datetime
    last_error: str | None
    last_response_code: int | None
    created_at: datetime
    delivered_at: datetime | None


class AttemptOut(BaseModel):
    attempt: int
    status: str
    response_code: int | None
    error: str | None
    backoff_ms: int | None
    response_body: str | None
    duration_ms: int
    attempted_at: datetime


class Page(BaseModel):
    items: list[Any]
    next_cursor: str | None


_ENDPOINT_COLUMNS = (
    "id, url, provider, event_types, description, enabled, disabled_reason, created_at, updated_at"
)


@dataclass(frozen=True)
class Caller:
    sub: str
    brand_id: uuid.UUID


def _who(request: Request[Any, Any, Any]) -> Caller:
    principal = request.user
    assert isinstance(principal, Principal) and principal.brand_id is not None
    return Caller(principal.sub, principal.brand_id)


async def _newest_first(
    pool: asyncpg.Pool,
    brand_id: uuid.UUID,
    select: str,
    model: type[BaseModel],
    filters: Sequence[tuple[str, Any]],
    cursor: str | None,
    limit: int,
    always: str = "TRUE",
) -> Page:
    rows, next_cursor = await newest_first(
        pool, brand_id, select, filters, cursor, limit, always=always
    )
    return Page(items=[model(**dict(r)) for r in rows], next_cursor=next_cursor)


async def _endpoint(pool: asyncpg.Pool, brand_id: uuid.UUID, endpoint_id: uuid.UUID) -> EndpointOut:
    async with tenant_transaction(pool, brand_id) as conn:
        row = await conn.fetchrow(
            f"SELECT {_ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = $1 AND NOT deleted",
            endpoint_id,
        )
    if row is None:
        raise NotFound(f"no webhook endpoint {endpoint_id}", code="no_endpoint")
    return EndpointOut(**dict(row))


class EndpointController(Controller):
    path = "/v1/webhooks/endpoints"
    tags = ["webhooks"]
    guards = ADMIN

    @get("/")
    async def list_endpoints(
        self,
        request: Request[Any, Any, Any],
        state: State,
        limit: Annotated[int, Parameter(ge=1, le=200)] = 50,
        cursor: Cursor = None,
    ) -> Page:
        return await _newest_first(
            state.pool,
            _who(request).brand_id,
            f"SELECT {_ENDPOINT_COLUMNS} FROM webhook_endpoints",
            EndpointOut,
            [],
            cursor,
            limit,
            always="NOT deleted",
        )

    @post("/", status_code=201)
    async def create(
        self, request: Request[Any, Any, Any], state: State, data: JSONBody[EndpointCreate]
    ) -> EndpointCreated:
        who = _who(request)
        settings = state.settings
        url = await validate_url(data.url, state.resolver, require_https=settings.require_https)
        endpoint_id, secret = await handlers.create_endpoint(
            state.pool,
            state.box,
            brand_id=who.brand_id,
            actor=who.sub,
            url=url,
            provider=data.provider,
            event_types=data.event_types,
            description=data.description,
            enabled=data.enabled,
        )
        out = await _endpoint(state.pool, who.brand_id, endpoint_id)
        return EndpointCreated(**out.model_dump(), secret=secret)

    @get("/{endpoint_id:uuid}")
    async def read(
        self, request: Request[Any, Any, Any], state: State, endpoint_id: FromPath[uuid.UUID]
    ) -> EndpointOut:
        return await _endpoint(state.pool, _who(request).brand_id, endpoint_id)

    @patch("/{endpoint_id:uuid}")
    async def update(
        self,
        request: Request[Any, Any, Any],
        state: State,
        endpoint_id: FromPath[uuid.UUID],
        data: JSONBody[EndpointUpdate],
    ) -> EndpointOut:
        who = _who(request)
        if data.url is not None:
            await validate_url(data.url, state.resolver, require_https=state.settings.require_https)
        await handlers.change_endpoint(
            state.pool,
            brand_id=who.brand_id,
            endpoint_id=endpoint_id,
            actor=who.sub,
            decide=lambda e: e.change(
                url=data.url,
                provider=data.provider,
                event_types=data.event_types,
                description=data.description,
                enabled=data.enabled,
            ),
        )
        if data.enabled:
            # A re-enabled endpoint starts with a clean record of failures.
            async with tenant_transaction(state.pool, who.brand_id) as conn:
                await conn.execute(
                    "UPDATE webhook_endpoint_health SET failing_since = NULL "
                    "WHERE endpoint_id = $1",
                    endpoint_id,
                )
        return await _endpoint(state.pool, who.brand_id, endpoint_id)

    @delete("/{endpoint_id:uuid}", status_code=204)
    async def remove(
        self, request: Request[Any, Any, Any], state: State, endpoint_id: FromPath[uuid.UUID]
    ) -> None:
        who = _who(request)
        await handlers.change_endpoint(
            state.pool,
            brand_id=who.brand_id,
            endpoint_id=endpoint_id,
            actor=who.sub,
            decide=lambda e: e.delete(),
        )

    @post("/{endpoint_id:uuid}/rotate-secret", status_code=200)
    async def rotate(
        self, request: Request[Any, Any, Any], state: State, endpoint_id: FromPath[uuid.UUID]
    ) -> RotatedSecret:
        who = _who(request)
        now = state.clock()
        overlap = timedelta(seconds=state.settings.rotation_overlap_s)
        secret = await handlers.rotate_secret(
            state.pool,
            state.box,
            brand_id=who.brand_id,
            endpoint_id=endpoint_id,
            actor=who.sub,
            now=now,
            overlap=overlap,
        )
        return RotatedSecret(secret=secret, previous_valid_until=now + overlap)

    @post("/{endpoint_id:uuid}/test", status_code=202)
    async def send_test(
        self, request: Request[Any, Any, Any], state: State, endpoint_id: FromPath[uuid.UUID]
    ) -> dict[str, Any]:
        who = _who(request)
        endpoint = await _endpoint(state.pool, who.brand_id, endpoint_id)
        if not endpoint.enabled:
            raise Conflict("the endpoint is disabled; enable it to test", code="disabled")
        event = CloudEvent(
            source=handlers.SOURCE,
            type="webhook.test",
            subject=str(endpoint_id),
            brandid=who.brand_id,
            data={"endpoint_id": str(endpoint_id), "message": "Hello from Pressroom"},
        )
        async with tenant_transaction(state.pool, who.brand_id) as conn:
            await handlers.enqueue(
                conn,
                event,
                max_attempts=state.settings.max_attempts,
                now=state.clock(),
                endpoint_ids=[endpoint_id],
            )
        return {"event_id": str(event.id)}

    @post("/{endpoint_id:uuid}/recover", status_code=200)
    async def recover(
        self,
        request: Request[Any, Any, Any],
        state: State,
        endpoint_id: FromPath[uuid.UUID],
        data: JSONBody[Recover],
    ) -> dict[str, int]:
        """Re-queue every failed delivery of the endpoint since ``since``."""
        who = _who(request)
        await _endpoint(state.pool, who.brand_id, endpoint_id)
        async with tenant_transaction(state.pool, who.brand_id) as conn:
            count = await conn.fetchval(
                "WITH r AS (UPDATE webhook_events SET status = 'pending', next_attempt_at = $3, "
                "max_attempts = attempts + $4, updated_at = $3 WHERE endpoint_id = $1 "
                "AND status = 'failed' AND created_at >= $2 RETURNING 1) SELECT count(*) FROM r",
                endpoint_id,
                data.since,
                state.clock(),
                state.settings.max_attempts,
            )
        return {"requeued": int(count)}


class DeliveryController(Controller):
    path = "/v1/webhooks/events"
    tags = ["webhooks"]
    guards = ADMIN

    @get("/")
    async def list_deliveries(
        self,
        request: Request[Any, Any, Any],
        state: State,
        status: FromQuery[Literal["pending", "delivering", "delivered", "failed"] | None] = None,
        endpoint_id: FromQuery[uuid.UUID | None] = None,
        limit: Annotated[int, Parameter(ge=1, le=200)] = 50,
        cursor: Cursor = None,
    ) -> Page:
        return await _newest_first(
            state.pool,
            _who(request).brand_id,
            "SELECT id, endpoint_id, event_id, event_type, status, attempts, max_attempts, "
            "next_attempt_at, last_error, last_response_code, created_at, delivered_at "
            "FROM webhook_events",
            DeliveryOut,
            [("status = {}", status), ("endpoint_id = {}", endpoint_id)],
            cursor,
            limit,
        )

    @get("/{delivery_id:uuid}/attempts")
    async def attempts(
        self, request: Request[Any, Any, Any], state: State, delivery_id: FromPath[uuid.UUID]
    ) -> list[AttemptOut]:
        async with tenant_transaction(state.pool, _who(request).brand_id) as conn:
            if not await conn.fetchval("SELECT 1 FROM webhook_events WHERE id = $1", delivery_id):
                raise NotFound(f"no delivery {delivery_id}", code="no_delivery")
            rows = await conn.fetch(
                "SELECT attempt, status, response_code, error, backoff_ms, response_body, "
                "duration_ms, attempted_at FROM webhook_attempts WHERE webhook_event_id = $1 "
                "ORDER BY attempt",
                delivery_id,
            )
        return [AttemptOut(**dict(r)) for r in rows]

    @post("/{delivery_id:uuid}/replay", status_code=202)
    async def replay(
        self, request: Request[Any, Any, Any], state: State, delivery_id: FromPath[uuid.UUID]
    ) -> DeliveryOut:
        """Deliver again: a new round of up to ``max_attempts`` tries (history is kept)."""
        async with tenant_transaction(state.pool, _who(request).brand_id) as conn:
            row = await conn.fetchrow(
                "UPDATE webhook_events SET status = 'pending', next_attempt_at = $2, "
                "max_attempts = attempts + $3, updated_at = $2 "
                "WHERE id = $1 AND status IN ('delivered', 'failed') "
                "RETURNING id, endpoint_id, event_id, event_type, status, attempts, max_attempts, "
                "next_attempt_at, last_error, last_response_code, created_at, delivered_at",
                delivery_id,
                state.clock(),
                state.settings.max_attempts,
            )
            if row is None:
                exists = await conn.fetchval(
                    "SELECT status FROM webhook_events WHERE id = $1", delivery_id
                )
                if exists is None:
                    raise NotFound(f"no delivery {delivery_id}", code="no_delivery")
                raise Conflict(
                    f"the delivery is {exists}; it will be delivered anyway", code="in_progress"
                )
        return DeliveryOut(**dict(row))
