"""A service's composition root in one shape: ``ServiceWiring``.

Every service starts the same way: readiness that checks the database and the broker,
``prepare_database`` (migrations as the owner, then the runtime role), a pool, the outbox
relay, its inbox consumers and workers supervised in the lifespan, ``create_service_app``.
What differs (media's storage and processing pool, the webhook's delivery worker) is the
service's ``setup``: an async context manager that receives the ``Runtime`` once the pool
exists, adds its state and workers, yields while the app serves, and closes what it opened
after the workers have stopped and before the pool closes::

    @contextlib.asynccontextmanager
    async def setup(rt: Runtime) -> AsyncIterator[None]:
        worker = DeliveryWorker(rt.pool, ...)
        rt.app.state.worker = worker
        rt.consume("fanout", topics=list(TOPICS), handlers={...})
        rt.workers.add("delivery", worker.run)
        try:
            yield
        finally:
            await worker.close()

    wiring = ServiceWiring("webhook", settings, migrations=[MIGRATIONS], setup=setup)
    return wiring.app(description="...", route_handlers=[EndpointController])
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import asyncpg
from litestar import Litestar

from pressroom_kit.auth import JWTVerifier
from pressroom_kit.consumer import ConsumerSettings, Handler, InboxConsumer
from pressroom_kit.db import create_pool, prepare_database
from pressroom_kit.health import Heartbeats
from pressroom_kit.http import ReadinessCheck, broker_check, create_service_app, database_check
from pressroom_kit.outbox import Relay
from pressroom_kit.runtime import BackgroundWorkers
from pressroom_kit.settings import ServiceSettings

Migrations = Sequence[tuple[str, Traversable | Path]]


@dataclass
class Runtime:
    """What a service's ``setup`` gets: the app, its settings, the pool, the runtime DSN (for
    connections of their own: the relay's, a ``LISTEN``), and the heartbeats and workers."""

    app: Litestar
    settings: ServiceSettings
    pool: asyncpg.Pool
    dsn: str
    heartbeats: Heartbeats
    workers: BackgroundWorkers

    def consume(
        self,
        worker: str,
        *,
        topics: Iterable[str],
        handlers: Mapping[str, Handler],
        group: str | None = None,
        **options: Any,
    ) -> InboxConsumer:
        """Add an inbox consumer as the worker named ``worker``: group ``group`` (default the
        service's ``consumer_group``), the service's broker, pool, heartbeats and consumer
        session timeout. ``options`` go to ``InboxConsumer`` (``default_handler``, ...)."""
        consumer = InboxConsumer(
            name=group or self.settings.consumer_group,
            dsn_or_pool=self.pool,
            bootstrap_servers=self.settings.kafka_bootstrap_servers,
            topics=list(topics),
            handlers=handlers,
            heartbeats=self.heartbeats,
            settings=ConsumerSettings.with_session_timeout(
                self.settings.consumer_session_timeout_ms,
                rest_after_s=self.settings.consumer_rest_after_s,
            ),
            **options,
        )
        self.workers.add(worker, consumer.run)
        return consumer


Setup = Callable[[Runtime], AbstractAsyncContextManager[None]]


class ServiceWiring:
    """The lifespan and readiness checks of one service; ``app(...)`` builds the Litestar app.

    The lifespan migrates (``prepare_database``), opens the pool (``pool_size``: min, max),
    puts ``pool`` and ``settings`` on ``app.state``, adds the outbox relay (``relay=False``
    for a service that writes no events), enters ``setup`` and then runs the workers. On the
    way out the workers stop first, then ``setup`` closes its resources, then the pool.
    ``readiness`` adds checks to the database and broker ones (media's storage).
    """

    def __init__(
        self,
        name: str,
        settings: ServiceSettings,
        *,
        migrations: Migrations = (),
        setup: Setup | None = None,
        pool_size: tuple[int, int] = (2, 20),
        readiness: Mapping[str, ReadinessCheck] | None = None,
        relay: bool = True,
    ) -> None:
        self.name = name
        self.settings = settings
        self.migrations = list(migrations)
        self.setup = setup
        self.pool_size = pool_size
        self.relay = relay
        self.heartbeats = Heartbeats()
        self.workers = BackgroundWorkers()
        self.pool: asyncpg.Pool | None = None
        self.readiness: dict[str, ReadinessCheck] = {
            "database": self._database_ready,
            "broker": broker_check(settings.kafka_bootstrap_servers),
            **(readiness or {}),
        }

    async def _database_ready(self) -> None:
        if self.pool is None:
            raise ConnectionError("the database is not prepared yet")
        await database_check(self.pool)()

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Litestar) -> AsyncIterator[None]:
        settings = self.settings
        dsn = await prepare_database(
            database_url=settings.database_url,
            migrate_database_url=settings.migrate_database_url,
            runtime_role=settings.runtime_role,
            migrations=self.migrations,
        )
        min_size, max_size = self.pool_size
        pool = await create_pool(dsn, min_size=min_size, max_size=max_size)
        self.pool = pool
        try:
            app.state.update(pool=pool, settings=settings)
            if self.relay:
                relay = Relay(
                    service=self.name,
                    dsn=dsn,
                    bootstrap_servers=settings.kafka_bootstrap_servers,
                    heartbeats=self.heartbeats,
                )
                self.workers.add("relay", relay.run)
            runtime = Runtime(app, settings, pool, dsn, self.heartbeats, self.workers)
            setup = self.setup(runtime) if self.setup else contextlib.nullcontext()
            async with setup, self.workers.lifespan():  # workers stop before setup closes
                yield
        finally:
            self.pool = None
            await pool.close()

    def app(self, *, description: str, route_handlers: Sequence[Any], **options: Any) -> Litestar:
        """``create_service_app`` with this service's name, token verifier, heartbeats,
        readiness, lifespan and CORS origins; ``options`` go to it as they are."""
        return create_service_app(
            name=self.name,
            description=description,
            route_handlers=route_handlers,
            verifier=JWTVerifier(self.settings.jwt()),
            heartbeats=self.heartbeats,
            readiness=self.readiness,
            lifespan=[self.lifespan],
            cors_origins=self.settings.cors_origins,
            **options,
        )
