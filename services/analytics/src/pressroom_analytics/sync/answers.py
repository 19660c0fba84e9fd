"""Publishing's answers (``publishing.metrics.collected.v1``) and how a sync ends.

Each answer runs in the consumer's transaction with the brand set. Order matters:

1. the sync's log row is locked (``FOR UPDATE``) *first*, so two answers of one sync handled
   at once in two partitions (or two replicas) serialize on it: the second sees the first's
   answer and the completion check never loses one. Every row lock is taken before the
   kit's flush, which takes the writers' advisory lock only in the commit's own statement,
   so no transaction waits on a row lock while holding it;
2. the numbers are upserted (``store``), whether or not the log is still open: they are real;
3. the answer is recorded in the log; when every platform asked has answered, the log ends
   ``completed`` (all ok), ``failed`` (none ok) or ``partial``, ``analytics.metrics.synced.v1``
   is staged and ``advisor.after_sync`` runs, all in the same transaction.

An answer for an unknown sync, one that already ended (late after its timeout), or one for a
platform the sync did not ask for, stores its numbers and runs ``advisor.after_sync`` (goals
follow what is stored) but does not reopen or end the log nor announce the sync.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

import asyncpg
from pressroom_contracts import CloudEvent, EventPayload, Topic
from pressroom_contracts.events.analytics import MetricsSynced
from pressroom_contracts.events.publishing import MetricsCollected
from pressroom_kit.logs import get_logger
from pressroom_kit.outbox import OutboxMessage, write_outbox

from pressroom_analytics.sync import store
from pressroom_analytics.sync.requests import SOURCE

log = get_logger(__name__)
Clock = Callable[[], datetime]
Ending = Literal["completed", "partial", "failed", "timed_out"]
AfterSync = Callable[..., Awaitable[None]]
# ``duration_ms`` is an ``integer``: a sync ended after more than 24.8 days (the service down
# that long) says so at most, rather than failing the statement (which, the oldest running
# row first, failed every round of the timeout worker).
MAX_DURATION_MS = 2**31 - 1


def ending(answers: Mapping[str, Mapping[str, Any]], platforms: list[str]) -> Ending:
    """How a sync whose every platform answered ends: ``completed`` when all were ok,
    ``failed`` when none was, ``partial`` otherwise."""
    ok = sum(1 for p in platforms if answers.get(p, {}).get("status") == "ok")
    if ok == len(platforms):
        return "completed"
    return "failed" if ok == 0 else "partial"


def counts(answers: Mapping[str, Mapping[str, Any]], platforms: list[str]) -> tuple[int, int]:
    """``items_synced``: account and post days stored from the answers; ``items_failed``:
    platforms asked that did not answer ok (failed, not connected, not supported, or no answer
    before a timeout)."""
    synced = sum(
        int(a.get("account_days", 0)) + int(a.get("post_days", 0)) for a in answers.values()
    )
    failed = sum(1 for p in platforms if answers.get(p, {}).get("status") != "ok")
    return synced, failed


async def finish(
    conn: asyncpg.Connection,
    row: asyncpg.Record | Mapping[str, Any],
    answers: Mapping[str, Mapping[str, Any]],
    status: Ending,
    now: datetime,
    after_sync: AfterSync,
) -> None:
    """End a locked ``running`` log: counts, duration, ``analytics.metrics.synced.v1``, and
    the advisor's hook, in the caller's transaction."""
    platforms = list(row["platforms"])
    synced, failed = counts(answers, platforms)
    duration_ms = min(
        MAX_DURATION_MS, max(0, int((now - row["started_at"]).total_seconds() * 1000))
    )
    missing = [p for p in platforms if p not in answers]
    errors = [f"{p}: {a['error']}" for p, a in answers.items() if a.get("error")]
    if status == "timed_out":
        errors.append("no answer from " + ", ".join(missing))
    await conn.execute(
        "UPDATE analytics_sync_logs SET status = $2, answers = $3::jsonb, finished_at = $4, "
        "items_synced = $5, items_failed = $6, duration_ms = $7, error = $8 WHERE id = $1",
        row["id"],
        status,
        dict(answers),
        now,
        synced,
        failed,
        duration_ms,
        "; ".join(errors) or None,
    )
    payload = MetricsSynced(
        sync_id=row["id"],
        brand_id=row["brand_id"],
        status=status,
        platforms=platforms,
        items_synced=synced,
        items_failed=failed,
        duration_ms=duration_ms,
        finished_at=now,
    )
    await write_outbox(
        conn,
        [
            OutboxMessage(
                topic=Topic.ANALYTICS.value,
                key=str(row["brand_id"]),
                event=CloudEvent(
                    source=SOURCE,
                    type=MetricsSynced.event_type,
                    subject=str(row["id"]),
                    brandid=row["brand_id"],
                    time=now,
                    data=payload.model_dump(mode="json"),
                ),
            )
        ],
    )
    await after_sync(conn, brand_id=row["brand_id"], now=now)


async def lock_log(conn: asyncpg.Connection, sync_id: UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT id, brand_id, status, platforms, answers, started_at "
        "FROM analytics_sync_logs WHERE id = $1 FOR UPDATE",
        sync_id,
    )


def metrics_collected(clock: Clock, after_sync: AfterSync) -> Callable[..., Awaitable[None]]:
    async def handle(conn: asyncpg.Connection, event: CloudEvent, payload: EventPayload) -> None:
        assert isinstance(payload, MetricsCollected)
        if event.brandid != payload.brand_id:
            log.warning("an answer without a matching brand ignored", event_id=str(event.id))
            return
        now = clock()
        row = await lock_log(conn, payload.sync_id)
        account_days = await store.upsert_account_days(
            conn,
            brand_id=payload.brand_id,
            platform=payload.platform,
            days=payload.account,
            collected_at=payload.collected_at,
            synced_at=now,
            sync_id=payload.sync_id,
        )
        post_days = await store.upsert_post_days(
            conn,
            brand_id=payload.brand_id,
            platform=payload.platform,
            days=payload.posts,
            collected_at=payload.collected_at,
            synced_at=now,
            sync_id=payload.sync_id,
        )
        if row is None or row["status"] != "running":
            if account_days or post_days:  # goals and insights follow the stored numbers
                await after_sync(conn, brand_id=payload.brand_id, now=now)
            log.info(
                "numbers of a sync that is unknown or over stored; its log stays as it is",
                sync_id=str(payload.sync_id),
                platform=payload.platform,
                status=None if row is None else row["status"],
            )
            return
        platforms = list(row["platforms"])
        if payload.platform not in platforms:
            if account_days or post_days:  # stored all the same: goals follow them
                await after_sync(conn, brand_id=payload.brand_id, now=now)
            log.info("an answer for a platform the sync did not ask for", platform=payload.platform)
            return
        answers = dict(row["answers"])
        answers[payload.platform] = {
            "status": payload.status,
            "account_days": account_days,
            "post_days": post_days,
            "error": store.storable(payload.error),
            "collected_at": payload.collected_at.isoformat(),
        }
        if all(p in answers for p in platforms):
            await finish(conn, row, answers, ending(answers, platforms), now, after_sync)
        else:
            await conn.execute(
                "UPDATE analytics_sync_logs SET answers = $2::jsonb WHERE id = $1",
                row["id"],
                dict(answers),
            )

    return handle
