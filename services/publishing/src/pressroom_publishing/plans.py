"""Drafts from an approved analytics plan (``analytics.plan.approved.v1``).

One **draft** per slot, in the consumer's transaction: the slot's platform and time, an
empty text (a person writes it; the slot's ``reason``, ``format`` and ``confidence`` are kept
on the post as ``plan_slot`` so the advice is visible without ever being published by
mistake), and the plan's id on the post (``PostCreated.plan_id``, the projection, the API and
the public ``post.created``/``post.published`` events).

Idempotent without a table of its own: the post id is ``uuid5(plan_id, slot_id)``, and a
post whose stream already exists is left alone, so a redelivery or a resend of the plan
creates nothing (nor does a slot repeated within one plan). A draft is not validated
against the brand's connections: a slot for a platform the brand has not connected yet
still becomes a draft, and the usual checks run when it is submitted.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime

import asyncpg
from pressroom_contracts.events.analytics import PlanApproved
from pressroom_contracts.events.analytics import PlanSlot as ContractSlot
from pressroom_kit import eventstore
from pressroom_kit.logs import get_logger

from pressroom_publishing.posts import commands
from pressroom_publishing.posts.api import in_range
from pressroom_publishing.posts.domain import Content, PlanSlot, Post

log = get_logger(__name__)

# A plan is a month of suggestions; more slots than this in one event is not a plan.
MAX_SLOTS = 500
# The API's platform ids (``posts/api.py``): anything else cannot be a post's platform.
PLATFORM_ID = re.compile(r"^[a-z0-9_-]{1,40}$")
REASON_CHARS = 1000


def draft_id(plan_id: uuid.UUID, slot_id: uuid.UUID) -> uuid.UUID:
    """The draft of a slot: the same id for every delivery of the plan."""
    return uuid.uuid5(plan_id, str(slot_id))


def _time(slot: ContractSlot, plan_id: uuid.UUID) -> datetime | None:
    """The slot's time if the API would take it (2000-3000 UTC, with an offset); else the
    draft gets none (a person sets it) and a log line says why."""
    try:
        if slot.scheduled_at.tzinfo is None:
            raise ValueError("no offset")
        return in_range(slot.scheduled_at)
    except ValueError as exc:
        log.warning(
            "a plan slot's time is not usable; the draft has none",
            plan_id=str(plan_id),
            slot_id=str(slot.slot_id),
            error=str(exc),
        )
        return None


async def create_drafts(conn: asyncpg.Connection, plan: PlanApproved) -> list[uuid.UUID]:
    """Create the plan's missing drafts; returns the ids created (none on a redelivery)."""
    if len(plan.slots) > MAX_SLOTS:
        log.warning(
            "a plan with too many slots; only the first are drafted",
            plan_id=str(plan.plan_id),
            slots=len(plan.slots),
            limit=MAX_SLOTS,
        )
    created: list[uuid.UUID] = []
    for slot in plan.slots[:MAX_SLOTS]:
        if not PLATFORM_ID.fullmatch(slot.platform):
            log.warning(
                "a plan slot for a platform id no post can have; skipped",
                plan_id=str(plan.plan_id),
                slot_id=str(slot.slot_id),
            )
            continue
        post_id = draft_id(plan.plan_id, slot.slot_id)
        if await eventstore.current_version(conn, str(post_id)):
            continue  # drafted by an earlier delivery (or an earlier slot of this one)
        post = Post.create(
            post_id,
            brand_id=plan.brand_id,
            author=plan.approved_by,
            content=Content(),
            platforms=[slot.platform],
            overrides={},
            scheduled_at=_time(slot, plan.plan_id),
            requires_approval=None,
            plan_id=plan.plan_id,
            plan_slot=PlanSlot(
                slot_id=slot.slot_id,
                format=slot.format[:40] if slot.format else None,
                reason=slot.reason[:REASON_CHARS] if slot.reason else None,
                confidence=slot.confidence,
            ),
        )
        await commands.save(conn, post, plan.approved_by)
        created.append(post_id)
    if created:
        log.info("plan drafted", plan_id=str(plan.plan_id), drafts=len(created))
    return created
