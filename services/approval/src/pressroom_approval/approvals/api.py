"""Approvals over HTTP: viewers read, managers decide and comment, admins unlock. Thin: the
body is parsed here, the rules live in the aggregate and ``commands``."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from litestar import Controller, Request, get, post
from litestar.datastructures import State
from litestar.params import FromPath, FromQuery, JSONBody, Parameter
from pressroom_kit.auth import Principal
from pressroom_kit.db import tenant_transaction
from pressroom_kit.http import requires_role
from pressroom_kit.pagination import Cursor, newest_first
from pressroom_kit.problems import problems
from pressroom_kit.repository import retry_on_conflict
from pressroom_kit.schemas import TIME_PATTERN
from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field

from pressroom_approval.approvals import commands
from pressroom_approval.approvals.commands import MAX_COMMENT, ApprovalSummary, ApprovalView
from pressroom_approval.approvals.domain import Status
from pressroom_approval.audit import actor_from_request

VIEWER = [requires_role("viewer")]
MANAGER = [requires_role("manager")]
ADMIN = [requires_role("admin")]
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(3000, 1, 1, tzinfo=UTC)


def _in_range(value: datetime) -> datetime:
    try:
        utc = value.astimezone(UTC)
    except OverflowError:
        raise ValueError("must be between 2000 and 3000") from None
    if not EARLIEST <= utc < LATEST:
        raise ValueError("must be between 2000-01-01T00:00:00Z and 3000-01-01T00:00:00Z")
    return value


Moment = Annotated[
    AwareDatetime, AfterValidator(_in_range), Field(json_schema_extra={"pattern": TIME_PATTERN})
]
# Free text with something in it besides whitespace (the schema says so: a blank one is 422).
Text = Annotated[str, Field(min_length=1, max_length=MAX_COMMENT, pattern=r"\S")]


class ApproveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    comment: Text | None = None
    scheduled_at: Moment | None = Field(
        default=None,
        description="a new publish time, in the future, for a late decision on an expired "
        "approval (422 `not_expired` otherwise)",
    )


class RejectIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: Text


class UnlockIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: Text | None = None


class CommentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    body: Text


class CommentAuthor(BaseModel):
    id: str
    email: str | None
    name: str | None


class CommentOut(BaseModel):
    id: uuid.UUID
    approval_id: uuid.UUID
    author: CommentAuthor
    body: str
    created_at: datetime


class CommentPage(BaseModel):
    items: list[CommentOut]
    next_cursor: str | None


class ApprovalPage(BaseModel):
    items: list[ApprovalSummary]
    next_cursor: str | None


def _principal(request: Request[Any, Any, Any]) -> Principal:
    principal = request.user
    assert isinstance(principal, Principal) and principal.brand_id is not None
    return principal


def _brand(principal: Principal) -> uuid.UUID:
    assert principal.brand_id is not None
    return principal.brand_id


class ApprovalController(Controller):
    path = "/v1/approvals"
    tags = ["approvals"]
    guards = VIEWER

    @get("/")
    async def list_approvals(
        self,
        request: Request[Any, Any, Any],
        state: State,
        status: FromQuery[Status | None] = None,
        post_id: FromQuery[uuid.UUID | None] = None,
        limit: Annotated[int, Parameter(ge=1, le=200)] = 50,
        cursor: Cursor = None,
    ) -> ApprovalPage:
        """Newest first (by when the post first asked for approval); ``post_id`` finds a
        post's approval."""
        rows, next_cursor = await newest_first(
            state.pool,
            _brand(_principal(request)),
            f"SELECT {commands.COLUMNS} FROM post_approvals",
            [("status = {}", status), ("post_id = {}", post_id)],
            cursor,
            limit,
        )
        return ApprovalPage(
            items=[ApprovalSummary(**dict(r)) for r in rows], next_cursor=next_cursor
        )

    @get("/{approval_id:uuid}")
    async def read(
        self, request: Request[Any, Any, Any], state: State, approval_id: FromPath[uuid.UUID]
    ) -> ApprovalView:
        """The approval with its escalation steps."""
        async with tenant_transaction(state.pool, _brand(_principal(request))) as conn:
            return await commands.get_approval(conn, approval_id)

    async def _decide(
        self,
        request: Request[Any, Any, Any],
        state: State,
        approval_id: uuid.UUID,
        **decision: Any,
    ) -> ApprovalView:
        principal = _principal(request)
        actor = actor_from_request(request, principal)

        async def command() -> ApprovalView:
            async with tenant_transaction(state.pool, _brand(principal)) as conn:
                return await commands.decide(
                    conn,
                    brand_id=_brand(principal),
                    approval_id=approval_id,
                    actor=actor,
                    role=principal.role,
                    now=state.clock(),
                    **decision,
                )

        return await retry_on_conflict(command)

    @post("/{approval_id:uuid}/approve", status_code=200, guards=MANAGER, opt=problems(409))
    async def approve(
        self,
        request: Request[Any, Any, Any],
        state: State,
        approval_id: FromPath[uuid.UUID],
        data: JSONBody[ApproveIn],
    ) -> ApprovalView:
        """Approve (the post is scheduled and locked). 403 `own_post` for the author;
        409 `already_decided` when it is not pending or expired."""
        return await self._decide(
            request,
            state,
            approval_id,
            decision="approve",
            comment=data.comment,
            scheduled_at=data.scheduled_at,
        )

    @post("/{approval_id:uuid}/reject", status_code=200, guards=MANAGER, opt=problems(409))
    async def reject(
        self,
        request: Request[Any, Any, Any],
        state: State,
        approval_id: FromPath[uuid.UUID],
        data: JSONBody[RejectIn],
    ) -> ApprovalView:
        """Reject with a reason. 403 `own_post`; 409 `already_decided`."""
        return await self._decide(
            request, state, approval_id, decision="reject", reason=data.reason
        )

    @post("/{approval_id:uuid}/unlock", status_code=200, guards=ADMIN, opt=problems(409))
    async def unlock(
        self,
        request: Request[Any, Any, Any],
        state: State,
        approval_id: FromPath[uuid.UUID],
        data: JSONBody[UnlockIn] | None = None,
    ) -> ApprovalView:
        """Reopen an approved (locked) approval: pending again, a new decision is needed.
        409 `not_locked` otherwise."""
        principal = _principal(request)
        actor = actor_from_request(request, principal)

        async def command() -> ApprovalView:
            async with tenant_transaction(state.pool, _brand(principal)) as conn:
                return await commands.unlock(
                    conn,
                    brand_id=_brand(principal),
                    approval_id=approval_id,
                    actor=actor,
                    reason=data.reason if data else None,
                    now=state.clock(),
                )

        return await retry_on_conflict(command)

    @get("/{approval_id:uuid}/comments")
    async def comments(
        self,
        request: Request[Any, Any, Any],
        state: State,
        approval_id: FromPath[uuid.UUID],
        limit: Annotated[int, Parameter(ge=1, le=200)] = 100,
        cursor: Annotated[
            str | None,
            Parameter(
                pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$",
                description="`next_cursor` of the previous page",
            ),
        ] = None,
    ) -> CommentPage:
        """Oldest first."""
        async with tenant_transaction(state.pool, _brand(_principal(request))) as conn:
            items, next_cursor = await commands.list_comments(
                conn, approval_id, limit=limit, after=cursor
            )
        return CommentPage(
            items=[CommentOut.model_validate(i) for i in items], next_cursor=next_cursor
        )

    @post("/{approval_id:uuid}/comments", status_code=201, guards=MANAGER)
    async def add_comment(
        self,
        request: Request[Any, Any, Any],
        state: State,
        approval_id: FromPath[uuid.UUID],
        data: JSONBody[CommentIn],
    ) -> CommentOut:
        principal = _principal(request)
        async with tenant_transaction(state.pool, _brand(principal)) as conn:
            comment = await commands.add_comment(
                conn,
                brand_id=_brand(principal),
                approval_id=approval_id,
                actor=actor_from_request(request, principal),
                body=data.body,
                now=state.clock(),
            )
        return CommentOut.model_validate(comment)


CONTROLLERS: list[Any] = [ApprovalController]
