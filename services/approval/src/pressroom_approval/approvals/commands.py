"""Approval commands: lock the approval's row, load the aggregate, let it decide, save its
events (projection and outbox in the same go), and record the audit row and the
escalations' change, all in the caller's transaction (the brand's ``tenant_transaction``
or the consumer's, with the brand set).

Locking the ``post_approvals`` row first serializes every writer of one approval: of two
managers deciding at the same moment, the second waits for the first to commit, then finds
the approval decided (409 ``already_decided``) instead of a version conflict.

``decide``, ``add_comment`` and ``get_approval`` are also the review links' entry points
(a reviewer without an account decides with ``role=None``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal

import asyncpg
from pressroom_contracts.events import approval as public
from pressroom_contracts.topics import Topic
from pressroom_kit.auth import ROLE_RANK, Role
from pressroom_kit.errors import Forbidden, Invalid, NotFound
from pressroom_kit.eventstore import RecordedEvent
from pressroom_kit.projections import Projector
from pressroom_kit.repository import Repository
from pydantic import BaseModel

from pressroom_approval import audit, escalations
from pressroom_approval.approvals.domain import Approval, Status, Submission
from pressroom_approval.approvals.projections import APPROVALS
from pressroom_approval.audit import Actor

SOURCE = "/pressroom/approval"
TOPIC = Topic.APPROVAL.value
MAX_COMMENT = 5000


class ApprovalSummary(BaseModel):
    """An approval as the list shows it."""

    id: uuid.UUID
    brand_id: uuid.UUID
    post_id: uuid.UUID
    status: Status
    locked: bool
    submission: int | None
    post_version: int | None
    author: str | None
    platforms: list[str]
    texts: dict[str, str]
    media_by_platform: dict[str, list[uuid.UUID]]
    scheduled_at: datetime | None
    requested_at: datetime
    decided_at: datetime | None
    decided_by: str | None
    reason: str | None
    comment: str | None
    expired_at: datetime | None
    voided_at: datetime | None
    published_at: datetime | None
    created_at: datetime
    updated_at: datetime


class ApprovalView(ApprovalSummary):
    """An approval as the API shows it (and as the review page reads it): with its
    escalation steps (``escalations.escalations_of``)."""

    escalations: list[dict[str, Any]]


COLUMNS = (
    "id, brand_id, post_id, status, locked, submission, post_version, author, platforms, "
    "texts, media_by_platform, scheduled_at, requested_at, decided_at, decided_by, reason, "
    "comment, expired_at, voided_at, published_at, created_at, updated_at"
)


def view_of(row: asyncpg.Record, escalation_events: list[dict[str, Any]]) -> ApprovalView:
    return ApprovalView(**dict(row), escalations=escalation_events)


def _snapshot(approval: Approval) -> dict[str, Any]:
    """What the public events need beside the stored event (kept in its metadata)."""
    return {
        "post_id": str(approval.post_id),
        "submission": approval.submission,
        "author": approval.author,
        "scheduled_at": approval.scheduled_at.isoformat() if approval.scheduled_at else None,
    }


def _public_fields(
    event_type: str, d: dict[str, Any], snap: dict[str, Any]
) -> tuple[str, dict[str, Any]] | None:
    """The public event a stored one becomes and what it carries beside the fields every
    approval event has; None for the events that stay inside the service."""
    match event_type:
        case "ApprovalRequested":
            return public.ApprovalRequested.event_type, {
                "post_id": d["post_id"],
                "submission": d["submission"],
                "author": d["author"],
                "platforms": d["platforms"],
                "scheduled_at": d["scheduled_at"],
                "requested_at": d["requested_at"],
            }
        case "ApprovalApproved":
            return public.ApprovalApproved.event_type, {
                "decided_by": d["by"],
                "comment": d["comment"],
                "decided_at": d["decided_at"],
                "submission": d["submission"],
                "scheduled_at": d["scheduled_at"],
            }
        case "ApprovalRejected":
            return public.ApprovalRejected.event_type, {
                "decided_by": d["by"],
                "reason": d["reason"],
                "decided_at": d["decided_at"],
                "submission": d["submission"],
            }
        case "ApprovalUnlocked":
            return public.ApprovalUnlocked.event_type, {
                "unlocked_by": d["by"],
                "reason": d["reason"],
                "unlocked_at": d["unlocked_at"],
            }
        case "ApprovalExpired":
            return public.ApprovalExpired.event_type, {
                "submission": snap.get("submission"),
                "scheduled_at": snap.get("scheduled_at"),
                "expired_at": d["expired_at"],
            }
    return None  # voided and published stay inside the service


def to_public(event: RecordedEvent) -> list[tuple[str, str, dict[str, Any]]]:
    snap = event.metadata.get("approval", {})
    found = _public_fields(event.type, event.data, snap)
    if found is None:
        return []
    event_type, fields = found
    base = {
        "approval_id": event.stream_id,
        "post_id": snap.get("post_id"),
        "brand_id": str(event.brand_id),
    }
    return [(TOPIC, event_type, {**base, **fields})]


REPOSITORY: Repository[Approval] = Repository(
    Approval, source=SOURCE, projector=Projector([APPROVALS]), to_public=to_public
)


async def save(conn: asyncpg.Connection, approval: Approval, actor: str | None) -> None:
    assert approval.brand_id is not None
    await REPOSITORY.save(
        conn,
        approval,
        brand_id=approval.brand_id,
        actor=actor,
        metadata={"approval": _snapshot(approval)},
    )


async def locked_approval(conn: asyncpg.Connection, approval_id: uuid.UUID) -> Approval:
    """The approval, its row locked for this transaction; the row (under row-level
    security) also proves the approval is the caller's brand's."""
    owned = await conn.fetchval(
        "SELECT 1 FROM post_approvals WHERE id = $1 FOR UPDATE", approval_id
    )
    approval = await REPOSITORY.load(conn, str(approval_id)) if owned else None
    if approval is None:
        raise NotFound(f"no approval {approval_id}", code="no_approval")
    return approval


async def get_approval(conn: asyncpg.Connection, approval_id: uuid.UUID) -> ApprovalView:
    """The approval with its escalation events; NotFound when absent (row-level security
    hides other brands' approvals, so those are absent too)."""
    row = await conn.fetchrow(f"SELECT {COLUMNS} FROM post_approvals WHERE id = $1", approval_id)
    if row is None:
        raise NotFound(f"no approval {approval_id}", code="no_approval")
    return view_of(row, await escalations.escalations_of(conn, approval_id))


def _audit_metadata(approval: Approval, **extra: Any) -> dict[str, Any]:
    return {"submission": approval.submission, **{k: v for k, v in extra.items() if v is not None}}


async def _save_and_audit(
    conn: asyncpg.Connection,
    approval: Approval,
    *,
    brand_id: uuid.UUID,
    approval_id: uuid.UUID,
    actor: Actor,
    action: str,
    now: datetime,
    metadata: dict[str, Any],
    closes: str | None = None,
) -> None:
    """Save the approval's events, close its escalations with ``closes`` as the outcome
    (None: the change leaves them as they are), then write its audit row: every change of
    an approval keeps this order, all in the caller's transaction."""
    await save(conn, approval, actor.id)
    if closes is not None:
        await escalations.on_closed(
            conn, brand_id=brand_id, approval_id=approval_id, at=now, outcome=closes
        )
    await audit.record(
        conn,
        brand_id=brand_id,
        actor=actor,
        action=action,
        at=now,
        post_id=approval.post_id,
        approval_id=approval_id,
        metadata=metadata,
    )


async def decide(
    conn: asyncpg.Connection,
    *,
    brand_id: uuid.UUID,
    approval_id: uuid.UUID,
    decision: Literal["approve", "reject"],
    actor: Actor,
    role: Role | None,
    comment: str | None = None,
    reason: str | None = None,
    scheduled_at: datetime | None = None,
    now: datetime,
) -> ApprovalView:
    """Approve or reject. 403 ``role`` below manager (``role`` None: a review-link
    reviewer, whose link was checked by its caller), 403 ``own_post`` for the author, 404,
    409 ``already_decided`` when it is not pending or expired, 422 for a rejection without
    a reason or a new time that is not in the future."""
    if role is not None and ROLE_RANK[role] < ROLE_RANK["manager"]:
        raise Forbidden(f"deciding needs the manager role; the token has {role}", code="role")
    approval = await locked_approval(conn, approval_id)
    if decision == "approve":
        approval.approve(actor.id, comment=comment, scheduled_at=scheduled_at, now=now)
    else:
        if reason is None or not reason.strip():
            raise Invalid(
                "a rejection needs a reason",
                code="reason_required",
                errors=[{"field": "reason", "message": "required"}],
            )
        approval.reject(actor.id, reason=reason, now=now)
    outcome = "approved" if decision == "approve" else "rejected"
    await _save_and_audit(
        conn,
        approval,
        brand_id=brand_id,
        approval_id=approval_id,
        actor=actor,
        action=f"approval.{outcome}",
        now=now,
        closes=outcome,
        metadata=_audit_metadata(
            approval,
            # Free text is kept out of the chain (it is never erased): only that it exists.
            with_comment=comment is not None or None,
            with_reason=reason is not None or None,
            scheduled_at=scheduled_at.isoformat() if scheduled_at else None,
        ),
    )
    return await get_approval(conn, approval_id)


async def unlock(
    conn: asyncpg.Connection,
    *,
    brand_id: uuid.UUID,
    approval_id: uuid.UUID,
    actor: Actor,
    reason: str | None,
    now: datetime,
) -> ApprovalView:
    """Reopen an approved (locked) approval: pending again, unlocked, a new decision is
    needed (publishing sends the post back to draft). 409 ``not_locked`` otherwise."""
    approval = await locked_approval(conn, approval_id)
    approval.unlock(actor.id, reason=reason, now=now)
    await _save_and_audit(
        conn,
        approval,
        brand_id=brand_id,
        approval_id=approval_id,
        actor=actor,
        action="approval.unlocked",
        now=now,
        metadata=_audit_metadata(approval, with_reason=reason is not None or None),
    )
    return await get_approval(conn, approval_id)


def _comment_out(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": row["id"],
        "approval_id": row["approval_id"],
        "author": {
            "id": row["author_id"],
            "email": row["author_email"],
            "name": row["author_name"],
        },
        "body": row["body"],
        "created_at": row["created_at"],
    }


COMMENT_COLUMNS = "id, approval_id, author_id, author_email, author_name, body, created_at"


async def add_comment(
    conn: asyncpg.Connection,
    *,
    brand_id: uuid.UUID,
    approval_id: uuid.UUID,
    actor: Actor,
    body: str,
    now: datetime,
) -> dict[str, Any]:
    """A comment on the approval (any status: the discussion outlives the decision)."""
    text = body.strip()
    if not text or len(text) > MAX_COMMENT:
        raise Invalid(
            f"a comment has 1 to {MAX_COMMENT} characters",
            code="bad_comment",
            errors=[{"field": "body", "message": f"1 to {MAX_COMMENT} characters"}],
        )
    post_id = await conn.fetchval("SELECT post_id FROM post_approvals WHERE id = $1", approval_id)
    if post_id is None:
        raise NotFound(f"no approval {approval_id}", code="no_approval")
    row = await conn.fetchrow(
        "INSERT INTO approval_comments (id, brand_id, approval_id, author_id, author_email, "
        f"author_name, body, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) "
        f"RETURNING {COMMENT_COLUMNS}",
        uuid.uuid4(),
        brand_id,
        approval_id,
        actor.id,
        actor.email,
        actor.name,
        text,
        now,
    )
    assert row is not None
    await audit.record(
        conn,
        brand_id=brand_id,
        actor=actor,
        action="comment.added",
        at=now,
        post_id=post_id,
        approval_id=approval_id,
        metadata={"comment_id": str(row["id"])},
    )
    return _comment_out(row)


async def list_comments(
    conn: asyncpg.Connection, approval_id: uuid.UUID, *, limit: int, after: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    """In the order they were written; ``after`` is the last comment id of the previous
    page (an id that is no comment of this brand gives an empty page)."""
    exists = await conn.fetchval("SELECT 1 FROM post_approvals WHERE id = $1", approval_id)
    if not exists:
        raise NotFound(f"no approval {approval_id}", code="no_approval")
    rows = await conn.fetch(
        f"SELECT {COMMENT_COLUMNS} FROM approval_comments WHERE approval_id = $1 "
        "AND ($2::uuid IS NULL OR seq > (SELECT seq FROM approval_comments WHERE id = $2)) "
        "ORDER BY seq LIMIT $3",
        approval_id,
        uuid.UUID(after) if after else None,
        limit + 1,
    )
    items = [_comment_out(r) for r in rows[:limit]]
    return items, (str(items[-1]["id"]) if len(rows) > limit else None)


# --- from publishing's events ------------------------------------------------------------------


async def _approval_of_post(
    conn: asyncpg.Connection, post_id: uuid.UUID
) -> tuple[uuid.UUID, Approval] | None:
    approval_id = await conn.fetchval(
        "SELECT id FROM post_approvals WHERE post_id = $1 FOR UPDATE", post_id
    )
    if approval_id is None:
        return None
    approval = await REPOSITORY.load(conn, str(approval_id))
    return (approval_id, approval) if approval is not None else None


async def submitted(
    conn: asyncpg.Connection,
    *,
    brand_id: uuid.UUID,
    post_id: uuid.UUID,
    submission: Submission,
    actor: Actor,
    now: datetime,
) -> bool:
    """Open the post's approval, or reopen it for a newer submission; an older or
    repeated submission changes nothing (False)."""
    found = await _approval_of_post(conn, post_id)
    if found is None:
        approval = Approval.open(brand_id, post_id, submission, now)
        approval_id = uuid.UUID(approval.id)
    else:
        approval_id, approval = found
        if not approval.reopen(submission, now):
            return False
    await save(conn, approval, actor.id)
    # A new round: the escalations cancel what the previous round left pending.
    await escalations.on_requested(
        conn, brand_id=brand_id, approval_id=approval_id, post_id=post_id, requested_at=now
    )
    await audit.record(
        conn,
        brand_id=brand_id,
        actor=actor,
        action="approval.requested",
        at=now,
        post_id=post_id,
        approval_id=approval_id,
        metadata={"submission": submission.submission, "post_version": submission.post_version},
    )
    return True


async def _void_post(
    conn: asyncpg.Connection,
    *,
    brand_id: uuid.UUID,
    post_id: uuid.UUID,
    change: Callable[[Approval], bool],
    outcome: str,
    actor: Actor,
    now: datetime,
) -> bool:
    """Apply publishing's ``change`` to the post's approval (edited, cancelled) and, when it
    voids the approval, save and audit that; False when there is no approval or the change
    voids nothing. Only an open approval (pending, expired) has escalations to close."""
    found = await _approval_of_post(conn, post_id)
    if found is None:
        return False
    approval_id, approval = found
    was = approval.status
    if not change(approval):
        return False
    await _save_and_audit(
        conn,
        approval,
        brand_id=brand_id,
        approval_id=approval_id,
        actor=actor,
        action="approval.voided",
        now=now,
        closes=outcome if was in ("pending", "expired") else None,
        metadata=_audit_metadata(approval, cause=outcome, post_version=approval.post_version),
    )
    return True


async def post_edited(
    conn: asyncpg.Connection,
    *,
    brand_id: uuid.UUID,
    post_id: uuid.UUID,
    version: int | None,
    submission: int | None,
    actor: Actor,
    now: datetime,
) -> bool:
    return await _void_post(
        conn,
        brand_id=brand_id,
        post_id=post_id,
        change=lambda approval: approval.edited(version, submission, now),
        outcome="voided",
        actor=actor,
        now=now,
    )


async def post_cancelled(
    conn: asyncpg.Connection,
    *,
    brand_id: uuid.UUID,
    post_id: uuid.UUID,
    actor: Actor,
    now: datetime,
) -> bool:
    return await _void_post(
        conn,
        brand_id=brand_id,
        post_id=post_id,
        change=lambda approval: approval.cancelled(now),
        outcome="cancelled",
        actor=actor,
        now=now,
    )


async def post_published(
    conn: asyncpg.Connection, *, post_id: uuid.UUID, at: datetime, actor: Actor
) -> bool:
    found = await _approval_of_post(conn, post_id)
    if found is None:
        return False
    _, approval = found
    if not approval.published(at):
        return False
    await save(conn, approval, actor.id)
    return True


async def expire(
    conn: asyncpg.Connection, *, brand_id: uuid.UUID, approval_id: uuid.UUID, now: datetime
) -> bool:
    """Expire the approval if it is still pending and due. Its row is taken with ``SKIP
    LOCKED``: a replica (or a decision) holding it decides first, and this pass moves on."""
    locked = await conn.fetchval(
        "SELECT 1 FROM post_approvals WHERE id = $1 FOR UPDATE SKIP LOCKED", approval_id
    )
    approval = await REPOSITORY.load(conn, str(approval_id)) if locked else None
    if approval is None or not approval.expire(now):
        return False
    await _save_and_audit(
        conn,
        approval,
        brand_id=brand_id,
        approval_id=approval_id,
        actor=audit.SYSTEM,
        action="approval.expired",
        now=now,
        closes="expired",
        metadata=_audit_metadata(
            approval,
            scheduled_at=approval.scheduled_at.isoformat() if approval.scheduled_at else None,
        ),
    )
    return True
