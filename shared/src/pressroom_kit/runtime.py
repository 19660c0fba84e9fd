"""Background workers (outbox relay, consumers, schedulers) tied to the app's lifespan.

Each worker is ``async def run(stop: asyncio.Event) -> None``. A worker that raises is
logged and restarted with backoff, never silently gone; its heartbeat (see ``health``)
makes ``/readyz`` report the gap meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pressroom_kit.logs import get_logger

if TYPE_CHECKING:
    from pressroom_kit.settings import ServiceSettings

log = get_logger(__name__)

Worker = Callable[[asyncio.Event], Awaitable[None]]


def idle_poll(base: float, quiet: int, ceiling: float) -> float:
    """A worker's poll after ``quiet`` rounds in a row found nothing: ``base`` doubled once
    per quiet round, never above ``ceiling`` (and never below ``base``). A quiet stack then
    wakes rarely; the first round that finds work (or a wake-up) starts again at ``base``."""
    if quiet <= 0:
        return base
    return max(base, min(base * 2.0 ** min(quiet, 32), ceiling))


async def first_set(*events: asyncio.Event) -> None:
    """Return as soon as any of ``events`` is set (a worker's idle wait: its stop, a
    wake-up, a finished task); the other waiters are cancelled."""
    waiters = [asyncio.create_task(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


@dataclass
class BackgroundWorkers:
    max_backoff: float = 10.0
    shutdown_timeout: float = 15.0
    _workers: dict[str, Worker] = field(default_factory=dict)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    restarts: dict[str, int] = field(default_factory=dict)

    def add(self, name: str, worker: Worker) -> None:
        self._workers[name] = worker

    async def _supervise(self, name: str, worker: Worker) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            try:
                await worker(self._stop)
                if self._stop.is_set():
                    return
                log.warning("worker returned before stop; restarting", worker=name)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("worker crashed; restarting", worker=name, backoff_s=backoff)
            self.restarts[name] = self.restarts.get(name, 0) + 1
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=backoff)
            backoff = min(backoff * 2, self.max_backoff)

    async def start(self) -> None:
        self._stop.clear()
        self._tasks = [
            asyncio.create_task(self._supervise(name, worker), name=f"worker:{name}")
            for name, worker in self._workers.items()
        ]

    async def stop(self) -> None:
        self._stop.set()
        if not self._tasks:
            return
        _, pending = await asyncio.wait(self._tasks, timeout=self.shutdown_timeout)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        self._tasks = []

    @contextlib.asynccontextmanager
    async def lifespan(self, _: Any = None) -> AsyncIterator[None]:
        """Use as a Litestar ``lifespan`` entry: workers run while the app serves."""
        await self.start()
        try:
            yield
        finally:
            await self.stop()


def serve(name: str, settings: ServiceSettings, create_app: Callable[[Any], Any]) -> None:
    """``python -m pressroom_<name>``: logging and tracing, then the app on uvicorn."""
    import uvicorn

    from pressroom_kit.logs import configure_logging
    from pressroom_kit.telemetry import configure_tracing

    configure_logging(name, level=settings.log_level, json=settings.log_json)
    configure_tracing(name)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        server_header=False,
        timeout_keep_alive=settings.http_keep_alive_s,
        timeout_graceful_shutdown=10,
    )
