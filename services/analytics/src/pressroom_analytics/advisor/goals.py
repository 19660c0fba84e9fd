"""Goals: a target for one metric by a deadline, its progress from the synced daily metrics,
and the two endings, each announced once.

Progress (``current``), over the goal's window [the day it was created, its deadline] in
the brand's timezone, on its platform or all platforms together:

- ``reach``, ``engagement``, ``impressions``: the sum of the daily values in the window;
- ``followers``: the latest daily value on or before the deadline (summed over platforms);
- ``engagementRate``: engagement / reach of the window's totals (0 when reach is 0), a
  fraction (a target of 0.05 is 5%), never an average of daily rates.

A goal becomes ``achieved`` the first time ``current >= target`` (after a sync, or when it
is created or edited), ``missed`` when its deadline day ends still active (the deadline
worker). Both are a guarded status change (``WHERE status = 'active'`` on a locked row), so
``analytics.goal.achieved|missed.v1`` is written once however many syncs, redeliveries or
replicas race; the event goes out through the outbox in that same transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

import asyncpg
from pressroom_contracts.events.analytics import GoalAchieved, GoalMissed
from pressroom_kit.db import tenant_transaction
from pressroom_kit.health import Heartbeats
from pressroom_kit.logs import get_logger

from pressroom_analytics.advisor.events import emit

log = get_logger(__name__)

Metric = Literal["reach", "engagement", "followers", "impressions", "engagementRate"]
GOAL_COLUMNS = (
    "id, brand_id, name, metric, platform, target, start_date, deadline, due_at, status, "
    "current, measured_at, achieved_at, missed_at, created_by, created_at, updated_at"
)


def due_at(deadline: date, tz: ZoneInfo) -> datetime:
    """The instant the deadline day ends in ``tz`` (the next local midnight)."""
    return datetime.combine(deadline + timedelta(days=1), time(0), tzinfo=tz).astimezone(
        ZoneInfo("UTC")
    )


async def measure(
    conn: asyncpg.Connection, metric: str, platform: str | None, start: date, deadline: date
) -> float:
    """The goal's ``current`` from ``analytics_metrics`` (see the module's docstring)."""
    if metric == "followers":
        value = await conn.fetchval(
            "SELECT coalesce(sum(followers), 0) FROM ("
            " SELECT DISTINCT ON (platform) followers FROM analytics_metrics"
            " WHERE date <= $1 AND ($2::text IS NULL OR platform = $2)"
            " ORDER BY platform, date DESC) latest",
            deadline,
            platform,
        )
        return float(value)
    row = await conn.fetchrow(
        "SELECT coalesce(sum(reach), 0) AS reach, coalesce(sum(engagement), 0) AS engagement, "
        "coalesce(sum(impressions), 0) AS impressions FROM analytics_metrics "
        "WHERE date BETWEEN $1 AND $2 AND ($3::text IS NULL OR platform = $3)",
        start,
        deadline,
        platform,
    )
    assert row is not None  # an aggregate always yields a row
    if metric == "engagementRate":
        reach = float(row["reach"])
        return float(row["engagement"]) / reach if reach else 0.0
    return float(row[metric])


async def _achieved(
    conn: asyncpg.Connection, goal: asyncpg.Record, current: float, now: datetime
) -> bool:
    changed = await conn.fetchval(
        "UPDATE analytics_goals SET status = 'achieved', current = $2, measured_at = $3, "
        "achieved_at = $3, updated_at = $3 WHERE id = $1 AND status = 'active' RETURNING id",
        goal["id"],
        current,
        now,
    )
    if changed is None:
        return False
    await emit(
        conn,
        GoalAchieved(
            goal_id=goal["id"],
            brand_id=goal["brand_id"],
            metric=goal["metric"],
            platform=goal["platform"],
            target=goal["target"],
            current=current,
            deadline=goal["deadline"],
            achieved_at=now,
        ),
        brand_id=goal["brand_id"],
        subject=goal["id"],
        now=now,
    )
    return True


async def refresh(conn: asyncpg.Connection, goal: asyncpg.Record, now: datetime) -> bool:
    """Measure an active goal (locked by the caller) and store ``current``; True when it
    reached its target now (achieved and announced)."""
    current = await measure(
        conn, goal["metric"], goal["platform"], goal["start_date"], goal["deadline"]
    )
    if current >= goal["target"]:
        return await _achieved(conn, goal, current, now)
    await conn.execute(
        "UPDATE analytics_goals SET current = $2, measured_at = $3 WHERE id = $1",
        goal["id"],
        current,
        now,
    )
    return False


async def refresh_brand(conn: asyncpg.Connection, now: datetime) -> int:
    """Every active goal of the transaction's brand after new metrics; returns how many were
    achieved. Rows are locked in id order (two syncs of a brand cannot deadlock), and a goal
    the deadline worker decided meanwhile is no longer ``active`` when the lock is granted."""
    goals = await conn.fetch(
        f"SELECT {GOAL_COLUMNS} FROM analytics_goals WHERE status = 'active' ORDER BY id FOR UPDATE"
    )
    return sum([await refresh(conn, goal, now) for goal in goals])


async def decide_due(conn: asyncpg.Connection, goal_id: uuid.UUID, now: datetime) -> str | None:
    """End a goal whose deadline passed: achieved if the final numbers reach the target,
    else missed (announced). ``SKIP LOCKED``: a goal another replica is deciding is its."""
    goal = await conn.fetchrow(
        f"SELECT {GOAL_COLUMNS} FROM analytics_goals WHERE id = $1 AND status = 'active' "
        "AND due_at <= $2 FOR UPDATE SKIP LOCKED",
        goal_id,
        now,
    )
    if goal is None:
        return None
    current = await measure(
        conn, goal["metric"], goal["platform"], goal["start_date"], goal["deadline"]
    )
    if current >= goal["target"]:
        return "achieved" if await _achieved(conn, goal, current, now) else None
    await conn.execute(
        "UPDATE analytics_goals SET status = 'missed', current = $2, measured_at = $3, "
        "missed_at = $3, updated_at = $3 WHERE id = $1",
        goal_id,
        current,
        now,
    )
    await emit(
        conn,
        GoalMissed(
            goal_id=goal_id,
            brand_id=goal["brand_id"],
            metric=goal["metric"],
            platform=goal["platform"],
            target=goal["target"],
            current=current,
            deadline=goal["deadline"],
            missed_at=now,
        ),
        brand_id=goal["brand_id"],
        subject=goal_id,
        now=now,
    )
    return "missed"


async def follow_timezone(conn: asyncpg.Connection, tz: ZoneInfo) -> int:
    """The brand's timezone changed: its active goals' deadlines end at midnight of the new
    zone (a deadline is a local date). Returns how many goals moved."""
    rows = await conn.fetch(
        "SELECT id, deadline FROM analytics_goals WHERE status = 'active' ORDER BY id FOR UPDATE"
    )
    await conn.executemany(
        "UPDATE analytics_goals SET due_at = $2 WHERE id = $1",
        [(r["id"], due_at(r["deadline"], tz)) for r in rows],
    )
    return len(rows)


class GoalDeadlines:
    """The deadline worker: finds active goals past their deadline across brands
    (``analytics_goals_due``, SECURITY DEFINER) and decides each in its brand's own
    transaction. Safe with several replicas (``decide_due`` locks with ``SKIP LOCKED`` and
    re-checks the status). Tests call ``step()`` on a fake clock."""

    beat_name = "goal-deadlines"

    def __init__(
        self,
        pool: asyncpg.Pool,
        clock: Callable[[], datetime],
        *,
        poll_s: float = 5.0,
        batch: int = 100,
        heartbeats: Heartbeats | None = None,
    ) -> None:
        self.pool = pool
        self.clock = clock
        self.poll_s = poll_s
        self.batch = batch
        self.heartbeats = heartbeats
        if heartbeats is not None:
            heartbeats.register(self.beat_name, max_age=max(60.0, poll_s * 6))

    async def step(self) -> dict[str, int]:
        """One pass; returns how many goals ended each way."""
        now = self.clock()
        async with self.pool.acquire() as conn:
            due = await conn.fetch(
                "SELECT id, brand_id FROM analytics_goals_due($1, $2)", now, self.batch
            )
        outcome: dict[str, int] = {"missed": 0, "achieved": 0}
        for row in due:
            async with tenant_transaction(self.pool, row["brand_id"]) as conn:
                decided = await decide_due(conn, row["id"], now)
            if decided is not None:
                outcome[decided] += 1
                log.info("goal ended", goal_id=str(row["id"]), status=decided)
        return outcome

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                outcome = await self.step()
                if self.heartbeats is not None:
                    self.heartbeats.beat(self.beat_name, detail=f"{outcome}")
            except Exception as exc:  # the next pass tries again; the supervisor logs crashes
                log.exception("goal deadline pass failed")
                if self.heartbeats is not None:
                    self.heartbeats.beat(self.beat_name, ok=False, detail=str(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.poll_s)


def goal_out(row: asyncpg.Record) -> dict[str, Any]:
    target = row["target"]
    return {
        "id": row["id"],
        "name": row["name"],
        "metric": row["metric"],
        "platform": row["platform"],
        "target": target,
        "current": row["current"],
        "progress": min(1.0, row["current"] / target) if target else 0.0,
        "status": row["status"],
        "start_date": row["start_date"],
        "deadline": row["deadline"],
        "measured_at": row["measured_at"],
        "achieved_at": row["achieved_at"],
        "missed_at": row["missed_at"],
        "created_by": row["created_by"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }
