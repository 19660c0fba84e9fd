"""``pressroom analytics backfill``: fill a long range of history through the service's own
API, as a manager would.

A sync covers at most 366 days, and one that asks a platform for a year at once is slow and
all-or-nothing; so the range is split into pieces of ``chunk_days`` (31 by default), each
``POST /v1/analytics/sync``. At most ``parallel`` pieces are in flight (publishing fetches
them from the platforms' rate-limited APIs); each is followed by polling
``GET /v1/analytics/sync-logs/{id}`` until it ends, which feeds the progress bar (days of
the range done). It goes over HTTP with a token, not to the database, so it needs no
credentials beyond a manager's and goes through the same checks, tenancy and logs as any
sync. The upserts are idempotent: running a backfill again (say after one piece timed out)
only rewrites what changed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import aiohttp

from pressroom_analytics.sync.requests import split_range

Progress = Callable[[int, dict[str, Any]], None]  # (days just finished, the log)


class BackfillError(Exception):
    """The service refused a piece (a 4xx problem) or could not be reached."""


@dataclass
class BackfillResult:
    logs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def statuses(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for log in self.logs:
            counts[log["status"]] = counts.get(log["status"], 0) + 1
        return counts

    @property
    def ok(self) -> bool:
        return all(log["status"] == "completed" for log in self.logs)


async def backfill(
    base_url: str,
    token: str,
    since: date,
    until: date,
    *,
    platforms: Sequence[str] | None = None,
    chunk_days: int = 31,
    parallel: int = 2,
    poll_s: float = 1.0,
    timeout_s: float = 3600.0,
    progress: Progress | None = None,
) -> BackfillResult:
    """Sync ``since..until`` in pieces; the final log of every piece, in date order."""
    if since > until:
        raise BackfillError("from must not be after to")
    pieces = split_range(since, until, max(1, min(chunk_days, 366)))
    headers = {"Authorization": f"Bearer {token}"}
    gate = asyncio.Semaphore(max(1, parallel))
    deadline = time.monotonic() + timeout_s
    base = base_url.rstrip("/")

    async with aiohttp.ClientSession(headers=headers) as http:

        async def one(first: date, last: date) -> dict[str, Any]:
            async with gate:
                body: dict[str, Any] = {"from": first.isoformat(), "to": last.isoformat()}
                if platforms:
                    body["platforms"] = list(platforms)
                async with http.post(f"{base}/v1/analytics/sync", json=body) as answer:
                    got = await answer.json(content_type=None)
                    if answer.status != 202:
                        detail = got.get("detail") if isinstance(got, dict) else got
                        raise BackfillError(f"{first}..{last}: {answer.status} {detail}")
                sync_id = got["sync_log_id"]
                while True:
                    async with http.get(f"{base}/v1/analytics/sync-logs/{sync_id}") as answer:
                        log: dict[str, Any] = await answer.json(content_type=None)
                        if answer.status != 200:
                            raise BackfillError(f"sync {sync_id}: {answer.status} {log}")
                    if log["status"] != "running":
                        break
                    if time.monotonic() > deadline:
                        raise BackfillError(f"sync {sync_id} still running at the deadline")
                    await asyncio.sleep(poll_s)
            if progress is not None:
                progress((last - first).days + 1, log)
            return log

        try:
            logs = await asyncio.gather(*[one(first, last) for first, last in pieces])
        except aiohttp.ClientError as exc:
            raise BackfillError(f"the analytics service at {base} did not answer: {exc}") from exc
    return BackfillResult(logs=list(logs))


def run_with_progress(
    base_url: str, token: str, since: date, until: date, **options: Any
) -> BackfillResult:
    """``backfill`` with a rich progress bar over the range's days (the command line)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    console = Console(stderr=True)
    total = (until - since).days + 1
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as bar:
        task = bar.add_task(f"days {since}..{until}", total=max(total, 0))

        def advance(days: int, log: dict[str, Any]) -> None:
            bar.advance(task, days)
            if log["status"] != "completed":
                bar.console.print(
                    f"{log['from']}..{log['to']}: {log['status']} {log.get('error') or ''}"
                )

        return asyncio.run(backfill(base_url, token, since, until, progress=advance, **options))
