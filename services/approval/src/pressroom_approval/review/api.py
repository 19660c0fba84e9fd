"""Review links over the JSON API: managers create, list and revoke them.

A link is for one approval of the caller's brand; any number of reviewers may each have
their own. The token is handed out once, in the ``url`` of the creation's answer: the list
never shows it (whoever can list links is not thereby a reviewer).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any
from uuid import UUID

from litestar import Controller, Request, delete, get, post
from litestar.datastructures import State
from litestar.params import FromPath, JSONBody
from pressroom_kit.auth import Principal
from pressroom_kit.db import tenant_transaction
from pressroom_kit.errors import Conflict, NotFound
from pressroom_kit.http import requires_role
from pressroom_kit.problems import problems
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from pressroom_approval import audit
from pressroom_approval.approvals.commands import get_approval
from pressroom_approval.approvals.domain import DECIDABLE
from pressroom_approval.review import links, tokens
from pressroom_approval.review.links import LinkStatus, ReviewLink

VIEWER = [requires_role("viewer")]
MANAGER = [requires_role("manager")]
MAX_HOURS = 720
EMAIL_PATTERN = r"^[^@\s<>\"',;]+@[^@\s<>\"',;]+\.[^@\s<>\"',;]+$"

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Email = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=254, pattern=EMAIL_PATTERN)
]


class ReviewLinkCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name = Field(description="the reviewer's name, shown on the page and in the audit log")
    email: Email | None = Field(
        default=None, description="the reviewer's email: the decision's actor is client:<email>"
    )
    expires_in_hours: int = Field(
        ge=1, le=MAX_HOURS, strict=True, description=f"1 to {MAX_HOURS} hours (30 days)"
    )


class ReviewLinkOut(BaseModel):
    id: UUID
    approval_id: UUID
    name: str
    email: str | None
    status: LinkStatus
    created_by: str
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    used_at: datetime | None
    used_decision: str | None


class ReviewLinkCreated(ReviewLinkOut):
    url: str = Field(description="the reviewer's page; shown only here, once")


def link_out(link: ReviewLink, now: datetime) -> dict[str, Any]:
    return {
        "id": link.id,
        "approval_id": link.approval_id,
        "name": link.name,
        "email": link.email,
        "status": link.status(now),
        "created_by": link.created_by,
        "created_at": link.created_at,
        "expires_at": link.expires_at,
        "revoked_at": link.revoked_at,
        "used_at": link.used_at,
        "used_decision": link.used_decision,
    }


class ReviewLinkController(Controller):
    path = "/v1/approvals/{approval_id:uuid}/review-links"
    tags = ["review links"]

    @post("/", guards=MANAGER, status_code=201, opt=problems(409))
    async def create(
        self,
        request: Request[Principal, Any, Any],
        state: State,
        approval_id: FromPath[UUID],
        data: JSONBody[ReviewLinkCreate],
    ) -> ReviewLinkCreated:
        """A signed link for a reviewer without an account (409 when the approval is not
        waiting for a decision)."""
        who = request.user
        assert who.brand_id is not None
        now: datetime = state.clock()
        # Whole seconds: the token carries the expiry in seconds, the row must say the same.
        expires_at = now.replace(microsecond=0) + timedelta(hours=data.expires_in_hours)
        async with tenant_transaction(state.pool, who.brand_id) as conn:
            approval = await get_approval(conn, approval_id)
            if approval.status not in DECIDABLE:
                raise Conflict(
                    f"this approval is {approval.status}: there is nothing to review",
                    code="approval_closed",
                )
            link = await links.create_link(
                conn,
                brand_id=who.brand_id,
                approval_id=approval_id,
                name=data.name,
                email=data.email,
                created_by=who.sub,
                now=now,
                expires_at=expires_at,
            )
            await audit.record(
                conn,
                brand_id=who.brand_id,
                actor=audit.actor_from_request(request, who),
                action="review_link.created",
                at=now,
                post_id=approval.post_id,
                approval_id=approval_id,
                # Chained and never erased: ids and times only; the reviewer's name and
                # email stay in review_links, which erasure clears.
                metadata={"link_id": str(link.id), "expires_at": link.expires_at.isoformat()},
            )
        token = tokens.sign_link(
            state.settings.link_signing_key.get_secret_value(),
            tokens.LinkClaims(link.id, link.brand_id, link.expires_at),
        )
        url = f"{state.settings.public_url}/review/{token}"
        return ReviewLinkCreated(**link_out(link, now), url=url)

    @get("/", guards=VIEWER)
    async def list_links(
        self, request: Request[Principal, Any, Any], state: State, approval_id: FromPath[UUID]
    ) -> list[ReviewLinkOut]:
        """The approval's links, oldest first, with their status (never their token)."""
        who = request.user
        now: datetime = state.clock()
        async with tenant_transaction(state.pool, who.brand_id) as conn:
            await get_approval(conn, approval_id)
            found = await links.links_of(conn, approval_id)
        return [ReviewLinkOut(**link_out(link, now)) for link in found]

    @delete("/{link_id:uuid}", guards=MANAGER, status_code=204)
    async def revoke(
        self,
        request: Request[Principal, Any, Any],
        state: State,
        approval_id: FromPath[UUID],
        link_id: FromPath[UUID],
    ) -> None:
        """Revoke a link: its page and its form answer 410 from now on. Revoking a revoked
        link again is a 204 that changes nothing."""
        who = request.user
        assert who.brand_id is not None
        now: datetime = state.clock()
        async with tenant_transaction(state.pool, who.brand_id) as conn:
            link, revoked = await links.revoke_link(
                conn, approval_id=approval_id, link_id=link_id, by=who.sub, now=now
            )
            if link is None:
                raise NotFound(f"review link {link_id} of approval {approval_id} does not exist")
            if revoked:
                approval = await get_approval(conn, approval_id)
                await audit.record(
                    conn,
                    brand_id=who.brand_id,
                    actor=audit.actor_from_request(request, who),
                    action="review_link.revoked",
                    at=now,
                    post_id=approval.post_id,
                    approval_id=approval_id,
                    metadata={"link_id": str(link.id)},
                )
