"""Posts and the calendar over HTTP: viewers read, managers write."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

import asyncpg
from litestar import Controller, Request, get, patch, post
from litestar.datastructures import State
from litestar.params import FromPath, FromQuery, JSONBody, Parameter, QueryParameter
from pressroom_kit.auth import Principal
from pressroom_kit.db import tenant_transaction
from pressroom_kit.errors import Invalid, NotFound
from pressroom_kit.http import requires_role
from pressroom_kit.pagination import Cursor, newest_first
from pressroom_kit.schemas import NOT_NULL
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
)

from pressroom_publishing.posts import calendar, commands
from pressroom_publishing.posts.domain import Content, Override, PostStatus, ResultStatus

VIEWER = [requires_role("viewer")]
MANAGER = [requires_role("manager")]
MAX_TEXT = 20_000
MAX_MEDIA = 20

# Any id-shaped string is taken here; validation answers an id it does not know with a 422
# naming `platforms.<id>` and the ids it knows.
PLATFORM_PATTERN = r"^[a-z0-9_-]+$"
PlatformId = Annotated[str, Field(min_length=1, max_length=40, pattern=PLATFORM_PATTERN)]
# RFC 3339 with an offset, as a pattern: a bare number is no time (lax parsers take it as
# seconds since 1970). Years 2001-2998, so that whatever the offset the instant is inside
# EARLIEST..LATEST (which the server checks, for 2000 and 2999 with their offsets).
TIME_PATTERN = (
    r"^(200[1-9]|20[1-9][0-9]|2[1-8][0-9]{2}|29[0-8][0-9]|299[0-8])-(0[1-9]|1[0-2])"
    r"-(0[1-9]|[12][0-9]|3[01])[Tt ]([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
    r"(\.[0-9]{1,9})?([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$"
)
# Times a post may be scheduled at or filtered by, in UTC: the extremes of a calendar time
# with an offset are no instant Python or asyncpg can hold (0001-01-01T00:00+14:00 is in
# year 0), and no post is meant for them.
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(3000, 1, 1, tzinfo=UTC)
RANGE = "between 2000-01-01T00:00:00Z and 3000-01-01T00:00:00Z"


def in_range(value: datetime) -> datetime:
    """``value`` if it is an instant between ``EARLIEST`` and ``LATEST``."""
    try:
        utc = value.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"must be {RANGE}") from None
    if not EARLIEST <= utc < LATEST:
        raise ValueError(f"must be {RANGE}")
    return value


Moment = Annotated[
    AwareDatetime, AfterValidator(in_range), Field(json_schema_extra={"pattern": TIME_PATTERN})
]
OptionName = Annotated[str, Field(min_length=1, max_length=40, pattern=r"^[a-z][a-z0-9_]*$")]
OptionText = Annotated[str, Field(max_length=1000)]
OptionValue = (
    StrictBool | StrictInt | OptionText | Annotated[list[OptionText], Field(max_length=50)]
)
Link = Annotated[
    str, Field(min_length=8, max_length=2048, pattern=r"^[Hh][Tt][Tt][Pp][Ss]?://[!-~]+$")
]


class ContentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(default="", max_length=MAX_TEXT)
    media_ids: list[uuid.UUID] = Field(default_factory=list, max_length=MAX_MEDIA)
    link: Link | None = None


class OverrideIn(BaseModel):
    """A platform's own text and/or media in place of the post's."""

    model_config = ConfigDict(extra="forbid")
    text: str | None = Field(default=None, max_length=MAX_TEXT)
    media_ids: list[uuid.UUID] | None = Field(default=None, max_length=MAX_MEDIA)
    options: dict[OptionName, OptionValue] | None = Field(
        default=None,
        max_length=20,
        description="the platform's own choices, checked by its adapter: Pinterest "
        "`board_id`, `title`; YouTube `title`, `privacy`, `tags`; TikTok `privacy_level`",
    )


class PostCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    content: ContentIn
    platforms: list[PlatformId] = Field(min_length=1, max_length=20)
    overrides: dict[str, OverrideIn] = Field(
        default_factory=dict, description="per platform id; only the post's platforms"
    )
    scheduled_at: Moment | None = Field(
        default=None, description="when to publish; none: at once when submitted"
    )
    requires_approval: StrictBool | None = Field(
        default=None, description="the post's own setting; null follows the brand's"
    )


class ContentPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: Annotated[str | None, NOT_NULL] = Field(default=None, max_length=MAX_TEXT)
    media_ids: Annotated[list[uuid.UUID] | None, NOT_NULL] = Field(
        default=None, max_length=MAX_MEDIA
    )
    link: Link | None = Field(default=None, description="`null` removes the link")


class PostUpdate(BaseModel):
    """PATCH body: absent fields stay as they are."""

    model_config = ConfigDict(extra="forbid")
    content: ContentPatch | None = Field(default=None, description="`null` changes nothing")
    platforms: Annotated[list[PlatformId] | None, NOT_NULL] = Field(
        default=None, min_length=1, max_length=20
    )
    overrides: dict[str, OverrideIn] | None = Field(
        default=None, description="replaces the overrides; `null` removes them"
    )
    scheduled_at: Moment | None = Field(
        default=None, description="`null`: publish at once when submitted"
    )
    requires_approval: StrictBool | None = Field(
        default=None, description="`null` follows the brand's setting"
    )


class MarkPublished(BaseModel):
    """A person looked on the platform: the unconfirmed attempt went out as this post."""

    model_config = ConfigDict(extra="forbid")
    platform_post_id: str = Field(min_length=1, max_length=200)
    url: Link | None = None


class ContentOut(BaseModel):
    text: str
    media_ids: list[uuid.UUID]
    link: str | None


class OverrideOut(BaseModel):
    text: str | None
    media_ids: list[uuid.UUID] | None
    options: dict[str, OptionValue] | None = None


class ResultOut(BaseModel):
    status: ResultStatus
    platform_post_id: str | None
    url: str | None
    error: str | None


class PlanSlotOut(BaseModel):
    slot_id: uuid.UUID
    format: str | None = None
    reason: str | None = None
    confidence: float | None = None


class PostOut(BaseModel):
    id: uuid.UUID
    brand_id: uuid.UUID
    status: PostStatus
    content: ContentOut
    platforms: list[str]
    overrides: dict[str, OverrideOut]
    scheduled_at: datetime | None
    requires_approval: bool | None
    approval_locked: bool
    author: str | None
    results: dict[str, ResultOut]
    retry_count: int
    published_at: datetime | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    plan_id: uuid.UUID | None = Field(
        default=None, description="the analytics plan the draft was made from"
    )
    plan_slot: PlanSlotOut | None = Field(
        default=None, description="the plan's advice for this draft (format, reason)"
    )
    approval_expired_at: datetime | None = Field(
        default=None,
        description="the approval was still pending when the post's time passed: it waits "
        "for a late decision (cleared by a new submission)",
    )


class PostPage(BaseModel):
    items: list[PostOut]
    next_cursor: str | None


class LogOut(BaseModel):
    id: int
    platform: str
    attempt: int
    status: Literal[
        "started", "published", "retrying", "failed", "unconfirmed", "found", "not_found"
    ]
    client_reference: str
    platform_post_id: str | None
    url: str | None
    error_code: str | None
    message: str | None
    details: dict[str, Any]
    started_at: datetime
    finished_at: datetime | None


class CalendarPost(BaseModel):
    id: uuid.UUID
    status: PostStatus
    time: datetime = Field(description="scheduled_at, or published_at for a post without one")
    platforms: list[str]
    text: str


class CalendarDay(BaseModel):
    date: date
    posts: list[CalendarPost]


class Calendar(BaseModel):
    timezone: str
    days: list[CalendarDay] = Field(description="the days of the range that have posts")


_COLUMNS = (
    "id, brand_id, status, text, media_ids, link, platforms, overrides, scheduled_at, "
    "requires_approval, approval_locked, author, results, retry_count, published_at, "
    "last_error, created_at, updated_at, plan_id, plan_slot, approval_expired_at"
)


@dataclass(frozen=True)
class Caller:
    sub: str
    brand_id: uuid.UUID


def _who(request: Request[Any, Any, Any]) -> Caller:
    principal = request.user
    assert isinstance(principal, Principal) and principal.brand_id is not None
    return Caller(principal.sub, principal.brand_id)


def _instant(value: str | None, name: str) -> datetime | None:
    """An RFC 3339 time (matched by ``TIME_PATTERN``) as an aware datetime."""
    if value is None:
        return None
    text = value.replace("t", "T").replace(" ", "T").replace("z", "+00:00").replace("Z", "+00:00")
    try:
        return in_range(datetime.fromisoformat(text))
    except ValueError as exc:
        message = str(exc) if "between" in str(exc) else "not a calendar time"
        raise Invalid(
            f"{name} is not a time {RANGE}", errors=[{"field": name, "message": message}]
        ) from None


async def _in_flight(
    conn: asyncpg.Connection, post_ids: Sequence[uuid.UUID]
) -> set[tuple[uuid.UUID, str]]:
    """(post, platform) pairs a scheduler is publishing right now (work state, so not in
    the projection)."""
    rows = await conn.fetch(
        "SELECT post_id, platform FROM publishing_targets "
        "WHERE post_id = ANY($1::uuid[]) AND status = 'publishing'",
        list(post_ids),
    )
    return {(r["post_id"], r["platform"]) for r in rows}


def _post_out(row: asyncpg.Record, in_flight: set[tuple[uuid.UUID, str]]) -> PostOut:
    results = {}
    for platform, result in row["results"].items():
        if (row["id"], platform) in in_flight and result["status"] == "pending":
            result = {**result, "status": "publishing"}
        results[platform] = ResultOut(**result)
    return PostOut(
        id=row["id"],
        brand_id=row["brand_id"],
        status=row["status"],
        content=ContentOut(text=row["text"], media_ids=row["media_ids"], link=row["link"]),
        platforms=row["platforms"],
        overrides={
            p: OverrideOut(
                text=o.get("text"), media_ids=o.get("media_ids"), options=o.get("options")
            )
            for p, o in row["overrides"].items()
        },
        scheduled_at=row["scheduled_at"],
        requires_approval=row["requires_approval"],
        approval_locked=row["approval_locked"],
        author=row["author"],
        results=results,
        retry_count=row["retry_count"],
        published_at=row["published_at"],
        last_error=row["last_error"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        plan_id=row["plan_id"],
        plan_slot=PlanSlotOut(**row["plan_slot"]) if row["plan_slot"] else None,
        approval_expired_at=row["approval_expired_at"],
    )


async def read_post(pool: asyncpg.Pool, brand_id: uuid.UUID, post_id: uuid.UUID) -> PostOut:
    async with tenant_transaction(pool, brand_id) as conn:
        row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM publishing_jobs WHERE id = $1", post_id)
        if row is None:
            raise NotFound(f"no post {post_id}", code="no_post")
        return _post_out(row, await _in_flight(conn, [post_id]))


def _overrides(value: dict[str, OverrideIn] | None) -> dict[str, Override]:
    return {
        p: Override(text=o.text, media_ids=o.media_ids, options=o.options)
        for p, o in (value or {}).items()
    }


class PostController(Controller):
    path = "/v1/posts"
    tags = ["posts"]
    guards = VIEWER

    @post("/", status_code=201, guards=MANAGER)
    async def create(
        self, request: Request[Any, Any, Any], state: State, data: JSONBody[PostCreate]
    ) -> PostOut:
        """A draft post; 422 names every problem per platform and field."""
        who = _who(request)
        post_id = await commands.create_post(
            state.pool,
            state.platforms,
            brand_id=who.brand_id,
            actor=who.sub,
            content=Content(
                text=data.content.text, media_ids=data.content.media_ids, link=data.content.link
            ),
            platforms=list(data.platforms),
            overrides=_overrides(data.overrides),
            scheduled_at=data.scheduled_at,
            requires_approval=data.requires_approval,
        )
        return await read_post(state.pool, who.brand_id, post_id)

    @get("/")
    async def list_posts(
        self,
        request: Request[Any, Any, Any],
        state: State,
        status: FromQuery[PostStatus | None] = None,
        platform: FromQuery[PlatformId | None] = None,
        since: Annotated[
            str | None,
            QueryParameter(
                name="from", pattern=TIME_PATTERN, description="scheduled at or after (RFC 3339)"
            ),
        ] = None,
        until: Annotated[
            str | None,
            QueryParameter(
                name="to", pattern=TIME_PATTERN, description="scheduled before (RFC 3339)"
            ),
        ] = None,
        limit: Annotated[int, Parameter(ge=1, le=200)] = 50,
        cursor: Cursor = None,
    ) -> PostPage:
        who = _who(request)
        rows, next_cursor = await newest_first(
            state.pool,
            who.brand_id,
            f"SELECT {_COLUMNS} FROM publishing_jobs",
            [
                ("status = {}", status),
                ("{} = ANY(platforms)", platform),
                ("scheduled_at >= {}", _instant(since, "from")),
                ("scheduled_at < {}", _instant(until, "to")),
            ],
            cursor,
            limit,
        )
        async with tenant_transaction(state.pool, who.brand_id) as conn:
            in_flight = await _in_flight(conn, [r["id"] for r in rows])
        return PostPage(items=[_post_out(r, in_flight) for r in rows], next_cursor=next_cursor)

    @get("/{post_id:uuid}")
    async def read(
        self, request: Request[Any, Any, Any], state: State, post_id: FromPath[uuid.UUID]
    ) -> PostOut:
        return await read_post(state.pool, _who(request).brand_id, post_id)

    @patch("/{post_id:uuid}", guards=MANAGER)
    async def update(
        self,
        request: Request[Any, Any, Any],
        state: State,
        post_id: FromPath[uuid.UUID],
        data: JSONBody[PostUpdate],
    ) -> PostOut:
        """Edit or reschedule; 409 when the post is locked by its approval, publishing or
        published."""
        who = _who(request)
        given = data.model_fields_set
        changes: dict[str, Any] = {}
        if data.content is not None:
            for name in data.content.model_fields_set:
                changes[name] = getattr(data.content, name)
        if "platforms" in given:
            changes["platforms"] = list(data.platforms or [])
        if "overrides" in given:
            changes["overrides"] = _overrides(data.overrides)
        if "scheduled_at" in given:
            changes["scheduled_at"] = data.scheduled_at
        if "requires_approval" in given:
            changes["requires_approval"] = data.requires_approval
        await commands.edit_post(
            state.pool,
            state.platforms,
            brand_id=who.brand_id,
            post_id=post_id,
            actor=who.sub,
            changes=changes,
            now=state.clock(),
        )
        return await read_post(state.pool, who.brand_id, post_id)

    @post("/{post_id:uuid}/submit", status_code=200, guards=MANAGER)
    async def submit(
        self, request: Request[Any, Any, Any], state: State, post_id: FromPath[uuid.UUID]
    ) -> PostOut:
        """To ``awaiting_approval`` when the post (or else its brand) requires approval,
        otherwise ``scheduled``."""
        who = _who(request)
        await commands.submit_post(
            state.pool,
            state.platforms,
            brand_id=who.brand_id,
            post_id=post_id,
            actor=who.sub,
            now=state.clock(),
            checks=state.get("live_checks"),
        )
        return await read_post(state.pool, who.brand_id, post_id)

    @post("/{post_id:uuid}/cancel", status_code=200, guards=MANAGER)
    async def cancel(
        self, request: Request[Any, Any, Any], state: State, post_id: FromPath[uuid.UUID]
    ) -> PostOut:
        who = _who(request)
        await commands.cancel_post(
            state.pool, brand_id=who.brand_id, post_id=post_id, actor=who.sub, now=state.clock()
        )
        return await read_post(state.pool, who.brand_id, post_id)

    @post("/{post_id:uuid}/retry", status_code=200, guards=MANAGER)
    async def retry(
        self, request: Request[Any, Any, Any], state: State, post_id: FromPath[uuid.UUID]
    ) -> PostOut:
        """Publish the failed platforms again, each with a fresh budget of retries."""
        who = _who(request)
        await commands.retry_post(
            state.pool, brand_id=who.brand_id, post_id=post_id, actor=who.sub, now=state.clock()
        )
        return await read_post(state.pool, who.brand_id, post_id)

    @post(
        "/{post_id:uuid}/platforms/{platform:str}/mark-published", status_code=200, guards=MANAGER
    )
    async def mark_published(
        self,
        request: Request[Any, Any, Any],
        state: State,
        post_id: FromPath[uuid.UUID],
        platform: Annotated[str, Parameter(max_length=40, pattern=PLATFORM_PATTERN)],
        data: JSONBody[MarkPublished],
    ) -> PostOut:
        """Settle an ``unconfirmed`` platform: it did go out, as ``platform_post_id``."""
        who = _who(request)
        await commands.resolve_platform(
            state.pool,
            brand_id=who.brand_id,
            post_id=post_id,
            platform=platform,
            actor=who.sub,
            outcome="published",
            platform_post_id=data.platform_post_id,
            url=data.url,
            now=state.clock(),
        )
        return await read_post(state.pool, who.brand_id, post_id)

    @post("/{post_id:uuid}/platforms/{platform:str}/retry", status_code=200, guards=MANAGER)
    async def retry_platform(
        self,
        request: Request[Any, Any, Any],
        state: State,
        post_id: FromPath[uuid.UUID],
        platform: Annotated[str, Parameter(max_length=40, pattern=PLATFORM_PATTERN)],
    ) -> PostOut:
        """Settle an ``unconfirmed`` platform: it did not go out; publish it again."""
        who = _who(request)
        await commands.resolve_platform(
            state.pool,
            brand_id=who.brand_id,
            post_id=post_id,
            platform=platform,
            actor=who.sub,
            outcome="retry",
            platform_post_id=None,
            url=None,
            now=state.clock(),
        )
        return await read_post(state.pool, who.brand_id, post_id)

    @get("/{post_id:uuid}/logs")
    async def logs(
        self, request: Request[Any, Any, Any], state: State, post_id: FromPath[uuid.UUID]
    ) -> list[LogOut]:
        """Every attempt on every platform, oldest first."""
        async with tenant_transaction(state.pool, _who(request).brand_id) as conn:
            if not await conn.fetchval("SELECT 1 FROM publishing_jobs WHERE id = $1", post_id):
                raise NotFound(f"no post {post_id}", code="no_post")
            rows = await conn.fetch(
                "SELECT id, platform, attempt, status, client_reference, platform_post_id, url, "
                "error_code, message, details, started_at, finished_at FROM publishing_logs "
                "WHERE post_id = $1 ORDER BY id",
                post_id,
            )
        return [LogOut(**dict(r)) for r in rows]


class CalendarController(Controller):
    path = "/v1/calendar"
    tags = ["posts"]
    guards = VIEWER

    @get("/")
    async def calendar(
        self,
        request: Request[Any, Any, Any],
        state: State,
        first: Annotated[date, QueryParameter(name="from", description="first local day")],
        last: Annotated[date, QueryParameter(name="to", description="last local day (included)")],
    ) -> Calendar:
        """Posts by day in the brand's timezone (the local date of each post's time); a
        range that ends before it starts has no days."""
        who = _who(request)
        async with tenant_transaction(state.pool, who.brand_id) as conn:
            zone_name = await conn.fetchval("SELECT timezone FROM publishing_brands")
            zone = calendar.brand_zone(zone_name)
            start, end = calendar.local_range(first, last, zone)
            rows = await conn.fetch(
                "SELECT id, status, coalesce(scheduled_at, published_at) AS when, platforms, "
                "text FROM publishing_jobs WHERE coalesce(scheduled_at, published_at) >= $1 "
                "AND coalesce(scheduled_at, published_at) < $2",
                start,
                end,
            )
        days = [
            CalendarDay(
                date=day,
                posts=[
                    CalendarPost(
                        id=p["id"],
                        status=p["status"],
                        time=p["when"],
                        platforms=p["platforms"],
                        text=p["text"],
                    )
                    for p in posts
                ],
            )
            for day, posts in calendar.by_day([dict(r) for r in rows], zone)
        ]
        return Calendar(timezone=zone.key, days=days)
