"""Goals, insights and plans over HTTP: viewers read, managers write. Thin: parse, run the
feature's function in the caller's brand transaction, map the result."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Annotated, Any, Literal

from litestar import Controller, Request, delete, get, patch, post
from litestar.datastructures import State
from litestar.params import FromPath, FromQuery, JSONBody, Parameter
from pressroom_kit.auth import Principal
from pressroom_kit.db import tenant_transaction
from pressroom_kit.errors import Conflict, Invalid, NotFound
from pressroom_kit.http import requires_role
from pressroom_kit.schemas import NOT_NULL
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, StrictFloat

from pressroom_analytics.advisor import goals, insights, plans
from pressroom_analytics.advisor.events import brand_timezone

VIEWER = [requires_role("viewer")]
MANAGER = [requires_role("manager")]
PLATFORM_PATTERN = r"^[a-z0-9_-]+$"
PlatformId = Annotated[str, Field(min_length=1, max_length=40, pattern=PLATFORM_PATTERN)]
MONTH_PATTERN = r"^(20[0-9]{2}|2[1-9][0-9]{2})-(0[1-9]|1[0-2])$"
MAX_MONTHS_AHEAD = 24
MAX_GOAL_SPAN = timedelta(days=3660)  # about ten years
_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")


def _iso_date(value: Any) -> Any:
    """Only ``YYYY-MM-DD`` is a date here (lax pydantic would read a number as a timestamp)."""
    if isinstance(value, date):
        return value
    if not isinstance(value, str) or not _DATE.match(value):
        raise ValueError("must be a date YYYY-MM-DD")
    return date.fromisoformat(value)


IsoDate = Annotated[date, BeforeValidator(_iso_date), Field(json_schema_extra={"format": "date"})]
Target = Annotated[StrictFloat, Field(gt=0, le=1e15, allow_inf_nan=False)]
Name = Annotated[str, Field(min_length=1, max_length=200)]


@dataclass(frozen=True)
class Caller:
    sub: str
    brand_id: uuid.UUID


def _who(request: Request[Any, Any, Any]) -> Caller:
    principal = request.user
    assert isinstance(principal, Principal) and principal.brand_id is not None
    return Caller(principal.sub, principal.brand_id)


def _invalid(field: str, message: str) -> Invalid:
    return Invalid(f"{field} {message}", errors=[{"field": field, "message": message}])


# --- goals ------------------------------------------------------------------------------------


class GoalCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    metric: goals.Metric
    target: Target = Field(description="engagementRate: a fraction (0.05 is 5%)")
    deadline: IsoDate = Field(description="the last day counted, in the brand's timezone")
    platform: PlatformId | None = Field(default=None, description="null: all platforms together")
    name: Name | None = None


class GoalUpdate(BaseModel):
    """PATCH body: absent fields stay as they are."""

    model_config = ConfigDict(extra="forbid")
    name: Name | None = Field(default=None, description="`null` removes the name")
    target: Annotated[Target | None, NOT_NULL] = None
    deadline: Annotated[IsoDate | None, NOT_NULL] = None


class GoalOut(BaseModel):
    id: uuid.UUID
    name: str | None
    metric: str
    platform: str | None
    target: float
    current: float
    progress: float = Field(description="current / target, at most 1")
    status: Literal["active", "achieved", "missed"]
    start_date: date
    deadline: date
    measured_at: datetime | None
    achieved_at: datetime | None
    missed_at: datetime | None
    created_by: str | None
    created_at: datetime
    updated_at: datetime


class GoalList(BaseModel):
    items: list[GoalOut]


async def _check_deadline(conn: Any, brand_id: uuid.UUID, deadline: date, now: datetime) -> Any:
    tz = await brand_timezone(conn, brand_id)
    today = now.astimezone(tz).date()
    if deadline < today:
        raise _invalid("deadline", f"is in the past (today is {today} in {tz.key})")
    if deadline > today + MAX_GOAL_SPAN:
        raise _invalid("deadline", f"is more than {MAX_GOAL_SPAN.days} days ahead")
    return tz, today


async def _goal(conn: Any, goal_id: uuid.UUID) -> Any:
    row = await conn.fetchrow(
        f"SELECT {goals.GOAL_COLUMNS} FROM analytics_goals WHERE id = $1 FOR UPDATE", goal_id
    )
    if row is None:
        raise NotFound(f"no goal {goal_id}", code="no_goal")
    return row


class GoalController(Controller):
    path = "/v1/analytics/goals"
    tags = ["goals"]
    guards = VIEWER

    @post("/", status_code=201, guards=MANAGER)
    async def create(
        self, request: Request[Any, Any, Any], state: State, data: JSONBody[GoalCreate]
    ) -> GoalOut:
        """A goal measured from today (the brand's timezone) to its deadline; achieved at
        once (and announced) when the synced numbers already reach it."""
        who = _who(request)
        now = state.clock()
        async with tenant_transaction(state.pool, who.brand_id) as conn:
            tz, today = await _check_deadline(conn, who.brand_id, data.deadline, now)
            goal_id = uuid.uuid4()
            await conn.execute(
                "INSERT INTO analytics_goals (id, brand_id, name, metric, platform, target, "
                "start_date, deadline, due_at, status, created_by, created_at, updated_at) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'active', $10, $11, $11)",
                goal_id,
                who.brand_id,
                data.name,
                data.metric,
                data.platform,
                data.target,
                today,
                data.deadline,
                goals.due_at(data.deadline, tz),
                who.sub,
                now,
            )
            await goals.refresh(conn, await _goal(conn, goal_id), now)
            return GoalOut(**goals.goal_out(await _goal(conn, goal_id)))

    @get("/")
    async def list_goals(
        self,
        request: Request[Any, Any, Any],
        state: State,
        status: FromQuery[Literal["active", "achieved", "missed"] | None] = None,
    ) -> GoalList:
        who = _who(request)
        async with tenant_transaction(state.pool, who.brand_id) as conn:
            rows = await conn.fetch(
                f"SELECT {goals.GOAL_COLUMNS} FROM analytics_goals "
                "WHERE $1::text IS NULL OR status = $1 ORDER BY created_at DESC, id DESC",
                status,
            )
        return GoalList(items=[GoalOut(**goals.goal_out(r)) for r in rows])

    @get("/{goal_id:uuid}")
    async def read(
        self, request: Request[Any, Any, Any], state: State, goal_id: FromPath[uuid.UUID]
    ) -> GoalOut:
        who = _who(request)
        async with tenant_transaction(state.pool, who.brand_id) as conn:
            row = await conn.fetchrow(
                f"SELECT {goals.GOAL_COLUMNS} FROM analytics_goals WHERE id = $1", goal_id
            )
        if row is None:
            raise NotFound(f"no goal {goal_id}", code="no_goal")
        return GoalOut(**goals.goal_out(row))

    @patch("/{goal_id:uuid}", guards=MANAGER)
    async def update(
        self,
        request: Request[Any, Any, Any],
        state: State,
        goal_id: FromPath[uuid.UUID],
        data: JSONBody[GoalUpdate],
    ) -> GoalOut:
        """Rename, change the target or the deadline of an active goal (409 once it ended);
        its progress is measured again at once."""
        who = _who(request)
        now = state.clock()
        given = data.model_fields_set
        async with tenant_transaction(state.pool, who.brand_id) as conn:
            goal = await _goal(conn, goal_id)
            if goal["status"] != "active":
                raise Conflict(f"goal {goal_id} is {goal['status']}", code="goal_ended")
            name = data.name if "name" in given else goal["name"]
            target = data.target if data.target is not None else goal["target"]
            deadline, due = goal["deadline"], goal["due_at"]
            if data.deadline is not None:
                tz, _ = await _check_deadline(conn, who.brand_id, data.deadline, now)
                deadline, due = data.deadline, goals.due_at(data.deadline, tz)
            await conn.execute(
                "UPDATE analytics_goals SET name = $2, target = $3, deadline = $4, due_at = $5, "
                "updated_at = $6 WHERE id = $1",
                goal_id,
                name,
                target,
                deadline,
                due,
                now,
            )
            await goals.refresh(conn, await _goal(conn, goal_id), now)
            return GoalOut(**goals.goal_out(await _goal(conn, goal_id)))

    @delete("/{goal_id:uuid}", status_code=204, guards=MANAGER)
    async def remove(
        self, request: Request[Any, Any, Any], state: State, goal_id: FromPath[uuid.UUID]
    ) -> None:
        who = _who(request)
        async with tenant_transaction(state.pool, who.brand_id) as conn:
            deleted = await conn.fetchval(
                "DELETE FROM analytics_goals WHERE id = $1 RETURNING id", goal_id
            )
        if deleted is None:
            raise NotFound(f"no goal {goal_id}", code="no_goal")


# --- insights ---------------------------------------------------------------------------------


class InsightOut(BaseModel):
    id: uuid.UUID
    category: Literal["timing", "format", "frequency"]
    type: Literal["best_hour", "best_weekday", "media_vs_text", "video_vs_image", "frequency"]
    platform: str = Field(description="`all` when the brand has no measured post at all")
    kind: Literal["insight", "insufficient_data"]
    title: str
    explanation: str
    evidence: dict[str, Any]
    sample_size: int
    confidence: float
    weight: float
    score: float = Field(description="weight x confidence; the list is ranked by it")
    generated_at: datetime


class InsightList(BaseModel):
    items: list[InsightOut]


class FeedbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    feedback: insights.Feedback


class FeedbackOut(BaseModel):
    insight_id: uuid.UUID
    feedback: str
    category: str
    type: str
    previous_weight: float
    new_weight: float


class InsightController(Controller):
    path = "/v1/analytics/insights"
    tags = ["insights"]
    guards = VIEWER

    @get("/")
    async def list_insights(
        self,
        request: Request[Any, Any, Any],
        state: State,
        platform: Annotated[str | None, Parameter(pattern=PLATFORM_PATTERN, max_length=40)] = None,
    ) -> InsightList:
        """The latest insights (regenerated after each sync), best score first."""
        who = _who(request)
        async with tenant_transaction(state.pool, who.brand_id) as conn:
            items = await insights.ranked(conn, platform)
        return InsightList(items=[InsightOut(**vars(i)) for i in items])

    @post("/{insight_id:uuid}/feedback", status_code=200, guards=MANAGER)
    async def feedback(
        self,
        request: Request[Any, Any, Any],
        state: State,
        insight_id: FromPath[uuid.UUID],
        data: JSONBody[FeedbackIn],
    ) -> FeedbackOut:
        """accepted x1.2, rejected x0.7, dismissed x0.9 on the weight of the insight's
        (category, type), clamped to [0.1, 5]."""
        who = _who(request)
        async with tenant_transaction(state.pool, who.brand_id) as conn:
            result = await insights.give_feedback(
                conn, who.brand_id, insight_id, data.feedback, actor=who.sub, now=state.clock()
            )
        return FeedbackOut(**vars(result))


# --- plans ------------------------------------------------------------------------------------


class PlanCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    month: str = Field(pattern=MONTH_PATTERN, description="YYYY-MM, this month or later")
    regenerate: StrictBool = Field(
        default=False, description="replace the month's plan when it is not approved yet"
    )


class SlotOut(BaseModel):
    id: uuid.UUID
    platform: str
    scheduled_at: datetime
    local_time: str = Field(description="the slot's wall time in the plan's timezone")
    format: str | None
    confidence: float
    reason: str | None


class PlanOut(BaseModel):
    id: uuid.UUID
    month: str
    status: Literal["draft", "approved"]
    timezone: str
    summary: dict[str, Any]
    generated_by: str | None
    generated_at: datetime
    approved_by: str | None
    approved_at: datetime | None
    slot_count: int
    created_count: int = Field(description="posts publishing created from the plan")
    published_count: int = Field(description="distinct posts of the plan published")
    slots: list[SlotOut] | None = None


class PlanList(BaseModel):
    items: list[PlanOut]


def _check_month(month: str, now: datetime, tz: Any) -> None:
    today = now.astimezone(tz).date()
    year, number = (int(x) for x in month.split("-"))
    ahead = (year - today.year) * 12 + (number - today.month)
    if ahead < 0:
        raise _invalid("month", f"is in the past (this month is {today:%Y-%m} in {tz.key})")
    if ahead > MAX_MONTHS_AHEAD:
        raise _invalid("month", f"is more than {MAX_MONTHS_AHEAD} months ahead")


async def _plan(conn: Any, plan_id: uuid.UUID) -> PlanOut:
    row = await plans.read(conn, plan_id)
    return PlanOut(**plans.plan_out(row, await plans.slots_of(conn, plan_id)))


class PlanController(Controller):
    path = "/v1/analytics/plans"
    tags = ["plans"]
    guards = VIEWER

    @post("/", status_code=201, guards=MANAGER)
    async def create(
        self, request: Request[Any, Any, Any], state: State, data: JSONBody[PlanCreate]
    ) -> PlanOut:
        """The month's plan; 409 ``plan_exists`` unless ``regenerate``, 409 ``plan_approved``
        for an approved one."""
        who = _who(request)
        now = state.clock()
        async with tenant_transaction(state.pool, who.brand_id) as conn:
            _check_month(data.month, now, await brand_timezone(conn, who.brand_id))
            plan_id = await plans.generate(
                conn,
                who.brand_id,
                data.month,
                regenerate=data.regenerate,
                actor=who.sub,
                now=now,
            )
            return await _plan(conn, plan_id)

    @get("/")
    async def list_plans(
        self,
        request: Request[Any, Any, Any],
        state: State,
        month: Annotated[str | None, Parameter(pattern=MONTH_PATTERN)] = None,
    ) -> PlanList:
        who = _who(request)
        async with tenant_transaction(state.pool, who.brand_id) as conn:
            rows = await plans.listing(conn, month)
        return PlanList(items=[PlanOut(**plans.plan_out(r, None)) for r in rows])

    @get("/{plan_id:uuid}")
    async def read(
        self, request: Request[Any, Any, Any], state: State, plan_id: FromPath[uuid.UUID]
    ) -> PlanOut:
        who = _who(request)
        async with tenant_transaction(state.pool, who.brand_id) as conn:
            return await _plan(conn, plan_id)

    @post("/{plan_id:uuid}/approve", status_code=200, guards=MANAGER)
    async def approve(
        self, request: Request[Any, Any, Any], state: State, plan_id: FromPath[uuid.UUID]
    ) -> PlanOut:
        """Approved: ``analytics.plan.approved.v1`` carries the slots (publishing creates a
        draft per slot); 409 when already approved."""
        who = _who(request)
        async with tenant_transaction(state.pool, who.brand_id) as conn:
            await plans.approve(conn, who.brand_id, plan_id, actor=who.sub, now=state.clock())
            return await _plan(conn, plan_id)


CONTROLLERS: list[Any] = [GoalController, InsightController, PlanController]
