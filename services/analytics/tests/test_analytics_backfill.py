"""``pressroom analytics backfill``: a 100-day range becomes monthly syncs over HTTP (at most
two in flight), each answered here as publishing would; the progress covers every day, the
metrics hold one row per day, and the exit status says whether every piece completed."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import date

import pytest
from analytics_testkit import (
    analytics_service,
    answer,
    as_owner,
    brand_created,
    connected,
    days,
    outbox,
    token,
)
from pressroom_analytics.sync.backfill import BackfillError, backfill
from pressroom_contracts.events.analytics import SyncRequested
from pressroom_deploy import cli

pytestmark = pytest.mark.integration


@contextlib.asynccontextmanager
async def publishing_stand_in(svc, fail: str | None = None):  # type: ignore[no-untyped-def]
    """Answers every sync request that appears in the outbox (``fail``: this platform's
    answer is a failure)."""
    answered: set[str] = set()
    in_flight: list[int] = []

    async def loop() -> None:
        while True:
            pending = [
                SyncRequested.model_validate(p)
                for p in await outbox(svc.db, SyncRequested.event_type)
                if p["sync_id"] not in answered
            ]
            in_flight.append(len(pending))
            for request in pending:
                answered.add(str(request.sync_id))
                await svc.inject(
                    *[
                        answer(request, p, status="failed", error="boom")
                        if p == fail
                        else answer(request, p, account=days(request, p))
                        for p in request.platforms
                    ]
                )
            await asyncio.sleep(0.05)

    task = asyncio.create_task(loop())
    try:
        yield in_flight
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_backfill_splits_the_range_and_reports_progress(fresh_db, kafka_bootstrap, topics):
    brand = uuid.uuid4()
    async with analytics_service(fresh_db, kafka_bootstrap) as svc:
        await svc.inject(brand_created(brand), connected(brand, "sandbox"))
        done: list[int] = []
        async with publishing_stand_in(svc) as in_flight:
            result = await backfill(
                svc.base,
                token("manager", brand),
                date(2026, 11, 1),
                date(2027, 2, 8),
                chunk_days=31,
                parallel=2,
                poll_s=0.05,
                progress=lambda n, log: done.append(n),
            )
        assert result.ok and result.statuses == {"completed": 4}
        assert [(log["from"], log["to"]) for log in result.logs] == [
            ("2026-11-01", "2026-12-01"),
            ("2026-12-02", "2027-01-01"),
            ("2027-01-02", "2027-02-01"),
            ("2027-02-02", "2027-02-08"),
        ]
        assert sum(done) == 100
        assert max(in_flight) <= 2
        rows = await as_owner(
            fresh_db,
            "SELECT count(DISTINCT date) AS n FROM analytics_metrics WHERE brand_id = $1",
            brand,
        )
        assert rows[0]["n"] == 100

        with pytest.raises(BackfillError, match="422"):
            await backfill(
                svc.base,
                token("manager", brand),
                date(2027, 1, 1),
                date(2027, 1, 2),
                platforms=["Bad Id"],
            )
        with pytest.raises(BackfillError, match="403"):
            await backfill(svc.base, token("viewer", brand), date(2027, 1, 1), date(2027, 1, 2))


async def test_the_command_line_exits_1_when_a_piece_did_not_complete(
    fresh_db, kafka_bootstrap, topics
):
    brand = uuid.uuid4()
    async with analytics_service(fresh_db, kafka_bootstrap) as svc:
        await svc.inject(brand_created(brand), connected(brand, "sandbox"), connected(brand, "x"))
        args = [
            "analytics",
            "backfill",
            "--brand",
            str(brand),
            "--from",
            "2027-01-01",
            "--to",
            "2027-01-20",
            "--url",
            svc.base,
            "--token",
            token("manager", brand),
            "--chunk-days",
            "10",
        ]
        async with publishing_stand_in(svc, fail="x"):
            with pytest.raises(SystemExit) as exit_:
                await asyncio.to_thread(cli.main, args)
        assert exit_.value.code == 1  # both pieces partial: x failed
        logs = await as_owner(fresh_db, "SELECT status FROM analytics_sync_logs")
        assert [r["status"] for r in logs] == ["partial", "partial"]
        with pytest.raises(SystemExit) as exit_:
            await asyncio.to_thread(cli.main, [*args[:5], "2027-02-01", *args[6:]])
        assert exit_.value.code == 2  # from after to
