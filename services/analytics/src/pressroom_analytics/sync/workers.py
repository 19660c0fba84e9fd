"""The sync feature's background work, safe with any number of replicas:

- **timeouts**: a ``running`` log older than ``sync_timeout_s`` ends ``timed_out`` (with what
  arrived counted) and ``analytics.metrics.synced.v1`` says so. The overdue rows are found
  across brands by ``analytics_overdue_syncs``; each is then locked ``FOR UPDATE`` in its
  brand's transaction and rechecked, so an answer committing at the same moment or another
  replica's worker finishes it once (the other finds it no longer running).
- **daily sync**: from ``daily_sync_hour_utc`` on, once per brand with a connected platform
  and UTC day, a sync of the last ``daily_sync_days`` local days before today. The claim is a
  row in ``analytics_daily_syncs`` (primary key brand and day) inserted in the transaction
  that requests the sync, so two replicas request it once: the second's insert waits for
  the first's commit and then does nothing.

``step_timeouts``/``step_daily`` do one round on the injected clock (tests call them);
``run`` loops them every ``worker_poll_s`` and beats ``sync-workers``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from uuid import UUID

import asyncpg
from pressroom_kit.db import tenant_transaction
from pressroom_kit.errors import Invalid
from pressroom_kit.health import Heartbeats
from pressroom_kit.logs import get_logger

from pressroom_analytics.settings import AnalyticsSettings
from pressroom_analytics.sync import answers, requests, store

log = get_logger(__name__)
BEAT = "sync-workers"
BATCH = 200


class SyncWorkers:
    def __init__(
        self,
        pool: asyncpg.Pool,
        settings: AnalyticsSettings,
        clock: Callable[[], datetime],
        after_sync: answers.AfterSync,
        heartbeats: Heartbeats | None = None,
    ) -> None:
        self.pool = pool
        self.settings = settings
        self.clock = clock
        self.after_sync = after_sync
        self.heartbeats = heartbeats or Heartbeats()

    async def step_timeouts(self) -> int:
        """End every overdue ``running`` sync; how many this call ended.

        One sync whose ending fails (its brand's goals cannot be refreshed, say) stays
        ``running`` for the next round and is logged; the syncs behind it still end: the
        round pages past it by ``(started_at, id)``."""
        now = self.clock()
        cutoff = now - timedelta(seconds=self.settings.sync_timeout_s)
        ended = 0
        after: tuple[datetime, UUID] = (datetime.min.replace(tzinfo=UTC), UUID(int=0))
        while True:
            async with self.pool.acquire() as conn:
                overdue = await conn.fetch(
                    "SELECT id, brand_id, started_at "
                    "FROM analytics_overdue_syncs_after($1, $2, $3, $4)",
                    cutoff,
                    *after,
                    BATCH,
                )
            for row in overdue:
                try:
                    ended += await self._time_out(row["id"], row["brand_id"], cutoff, now)
                except (
                    asyncpg.PostgresConnectionError,
                    asyncpg.InterfaceError,
                    asyncpg.OperatorInterventionError,
                    OSError,
                ):
                    raise  # the database is away: the round fails, the heartbeat says so
                except Exception as exc:
                    log.warning(
                        "an overdue sync could not be ended; trying again next round",
                        sync_id=str(row["id"]),
                        brand_id=str(row["brand_id"]),
                        error=repr(exc),
                    )
            if len(overdue) < BATCH:
                return ended
            after = (overdue[-1]["started_at"], overdue[-1]["id"])

    async def _time_out(
        self, sync_id: UUID, brand_id: UUID, cutoff: datetime, now: datetime
    ) -> int:
        async with tenant_transaction(self.pool, brand_id) as conn:
            row = await answers.lock_log(conn, sync_id)
            if row is None or row["status"] != "running" or row["started_at"] >= cutoff:
                return 0
            await answers.finish(conn, row, dict(row["answers"]), "timed_out", now, self.after_sync)
        log.info("sync timed out", sync_id=str(sync_id), brand_id=str(brand_id))
        return 1

    async def step_daily(self) -> int:
        """Request today's daily sync of every due brand; how many this call requested."""
        now = self.clock().astimezone(UTC)
        if now.hour < self.settings.daily_sync_hour_utc:
            return 0
        day = now.date()
        requested = 0
        seen: set[UUID] = set()
        while True:
            async with self.pool.acquire() as conn:
                due = [
                    r["brand_id"]
                    for r in await conn.fetch(
                        "SELECT brand_id FROM analytics_daily_due($1, $2)", day, BATCH
                    )
                    if r["brand_id"] not in seen
                ]
            for brand_id in due:
                seen.add(brand_id)
                requested += await self._request_daily(brand_id, now)
            if not due:
                return requested

    async def _request_daily(self, brand_id: UUID, now: datetime) -> int:
        days = max(1, self.settings.daily_sync_days)
        async with tenant_transaction(self.pool, brand_id) as conn:
            platforms = await store.connected_platforms(conn)
            if not platforms:
                return 0
            today = store.local_day(now, await store.brand_zone(conn))
            sync_id = await conn.fetchval(
                "INSERT INTO analytics_daily_syncs (brand_id, day, sync_id) "
                "VALUES ($1, $2, gen_random_uuid()) ON CONFLICT DO NOTHING RETURNING sync_id",
                brand_id,
                now.date(),
            )
            if sync_id is None:
                return 0  # another replica requested it
            try:
                made = await requests.request_sync(
                    conn,
                    brand_id=brand_id,
                    platforms=platforms,
                    since=today - timedelta(days=days),
                    until=today - timedelta(days=1),
                    requested_by=None,
                    trigger="daily",
                    now=now,
                )
            except Invalid as exc:  # cannot happen for a sane setting; never loop on it
                log.warning("daily sync not requested", brand_id=str(brand_id), error=str(exc))
                return 0
            await conn.execute(
                "UPDATE analytics_daily_syncs SET sync_id = $3 WHERE brand_id = $1 AND day = $2",
                brand_id,
                now.date(),
                made,
            )
        return 1

    async def run(self, stop: asyncio.Event) -> None:
        self.heartbeats.register(BEAT, max_age=max(30.0, self.settings.worker_poll_s * 6))
        while not stop.is_set():
            try:
                timed_out = await self.step_timeouts()
                daily = await self.step_daily()
                self.heartbeats.beat(BEAT, detail=f"timed out {timed_out}, daily {daily}")
            except Exception as exc:  # the database away for a while: beat failing, go on
                log.warning("sync workers round failed", error=repr(exc))
                self.heartbeats.beat(BEAT, ok=False, detail=repr(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.settings.worker_poll_s)
