"""``analytics.*`` events, published by the analytics service.

A sync is a request on the bus (``sync.requested``): platform tokens never leave
publishing, which answers with one ``publishing.metrics.collected.v1`` per platform; when
the answers are stored (or the wait timed out) ``metrics.synced`` reports the sync. Goals
end ``achieved`` (once, when reached) or ``missed`` (once, at the deadline). A monthly plan
is ``generated`` and, once ``approved``, publishing creates one draft post per slot.
"""

from __future__ import annotations

from datetime import date as date_
from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from pressroom_contracts.envelope import EventPayload
from pressroom_contracts.registry import register


@register
class SyncRequested(EventPayload):
    """Publishing fetches each platform's numbers for the dates ``from``..``to``
    (inclusive, in the brand's timezone) and answers ``publishing.metrics.collected.v1``."""

    event_type = "analytics.sync.requested.v1"
    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True)

    sync_id: UUID
    brand_id: UUID
    platforms: list[str] = Field(description="the platforms to fetch")
    since: date_ = Field(alias="from")
    until: date_ = Field(alias="to")
    timezone: str = Field(default="UTC", description="the brand's timezone for day boundaries")
    requested_by: str | None = Field(default=None, description="null for the daily sync")
    requested_at: datetime


@register
class MetricsSynced(EventPayload):
    """A sync ended: every platform answered (``completed``, ``partial`` when some failed),
    or the answers did not all come in time (``timed_out``)."""

    event_type = "analytics.metrics.synced.v1"

    sync_id: UUID
    brand_id: UUID
    status: Literal["completed", "partial", "failed", "timed_out"]
    platforms: list[str] = Field(default_factory=list)
    items_synced: int = 0
    items_failed: int = 0
    duration_ms: int = 0
    finished_at: datetime


@register
class GoalAchieved(EventPayload):
    event_type = "analytics.goal.achieved.v1"

    goal_id: UUID
    brand_id: UUID
    metric: str
    platform: str | None = Field(default=None, description="null: all platforms together")
    target: float
    current: float
    deadline: date_
    achieved_at: datetime


@register
class GoalMissed(EventPayload):
    event_type = "analytics.goal.missed.v1"

    goal_id: UUID
    brand_id: UUID
    metric: str
    platform: str | None = None
    target: float
    current: float
    deadline: date_
    missed_at: datetime


class PlanSlot(BaseModel):
    """One suggested post of a monthly plan."""

    model_config = ConfigDict(frozen=True)

    slot_id: UUID
    platform: str
    scheduled_at: datetime = Field(description="when to post (UTC; chosen in the brand's timezone)")
    format: str | None = Field(default=None, description="text, image or video, when advised")
    confidence: float = Field(ge=0, le=1)
    reason: str | None = None


@register
class PlanGenerated(EventPayload):
    event_type = "analytics.plan.generated.v1"

    plan_id: UUID
    brand_id: UUID
    month: str = Field(description="YYYY-MM")
    slots: int = Field(description="how many slots the plan has")
    generated_by: str | None = None
    generated_at: datetime


@register
class PlanApproved(EventPayload):
    """Publishing creates one draft post per slot (the post carries the plan's id)."""

    event_type = "analytics.plan.approved.v1"

    plan_id: UUID
    brand_id: UUID
    month: str
    slots: list[PlanSlot]
    approved_by: str | None = None
    approved_at: datetime
