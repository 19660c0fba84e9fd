"""The expiry worker: a pending approval whose post's time has passed is ``expired`` (the
post does not go out until a late decision), with ``approval.expired.v1``.

Safe with several replicas: candidates come from a cross-brand scan
(``approval_expiry_candidates``, a function owned by the tables' owner, which only names
them); each is then taken with ``FOR UPDATE SKIP LOCKED`` in its brand's own transaction and
checked again by the aggregate, so a row another replica (or a decision) holds is skipped
and one that was decided meanwhile is left alone. Time is the injected clock's.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg
from pressroom_kit.db import tenant_transaction
from pressroom_kit.health import Heartbeats
from pressroom_kit.logs import get_logger
from pressroom_kit.repository import retry_on_conflict

from pressroom_approval.approvals import commands

log = get_logger(__name__)


@dataclass
class ExpiryWorker:
    pool: asyncpg.Pool
    clock: Callable[[], datetime]
    interval_s: float = 5.0
    batch: int = 200
    heartbeats: Heartbeats = field(default_factory=Heartbeats)

    beat_name = "expiry"

    def __post_init__(self) -> None:
        self.heartbeats.register(self.beat_name, max_age=max(30.0, self.interval_s * 10))

    async def step(self) -> int:
        """One pass: expire every due approval (up to ``batch``); how many it expired."""
        now = self.clock()
        async with self.pool.acquire() as conn:
            candidates = await conn.fetch(
                "SELECT id, brand_id FROM approval_expiry_candidates($1, $2)", now, self.batch
            )
        expired = 0
        for row in candidates:

            async def one(row: asyncpg.Record = row) -> bool:
                async with tenant_transaction(self.pool, row["brand_id"]) as conn:
                    return await commands.expire(
                        conn, brand_id=row["brand_id"], approval_id=row["id"], now=now
                    )

            if await retry_on_conflict(one):
                expired += 1
        return expired

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                expired = await self.step()
                self.heartbeats.beat(self.beat_name, detail=f"{expired} expired")
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("expiry pass failed; retrying", error=str(exc))
                self.heartbeats.beat(self.beat_name, ok=False, detail=str(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval_s)
