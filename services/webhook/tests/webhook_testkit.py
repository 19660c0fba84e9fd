from __future__ import annotations

import asyncio
import json
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.abc import AbstractResolver
from pressroom_kit.auth import mint_token
from pressroom_kit.testing.plugin import APP_ROLE, TestDatabase
from pressroom_kit.testing.servers import serve_asgi
from pressroom_webhook.app import create_app
from pressroom_webhook.settings import WebhookSettings

SECRET = "webhook-test-secret-webhook-test-secret"


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class StaticResolver(AbstractResolver):
    """DNS for tests: names from a table, everything else from the system."""

    def __init__(self, table: dict[str, str]) -> None:
        self.table = table

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[Any]:
        address = self.table.get(host)
        if address is None:
            address = socket.gethostbyname(host)
        return [
            {
                "hostname": host,
                "host": address,
                "port": port,
                "family": socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
        ]

    async def close(self) -> None:
        return None


@dataclass
class Receiver:
    """A partner's webhook receiver: scripted answers, every request recorded."""

    url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    script: list[tuple[int, dict[str, str], float | asyncio.Event]] = field(default_factory=list)

    def answer(
        self,
        status: int,
        headers: dict[str, str] | None = None,
        delay: float | asyncio.Event = 0.0,
    ) -> None:
        """Answer the next request with ``status`` after ``delay`` seconds, or once the
        ``delay`` event is set (a request held until the test releases it)."""
        self.script.append((status, headers or {}, delay))

    async def wait_for_requests(self, n: int, timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while len(self.requests) < n:
                await asyncio.sleep(0.01)


@asynccontextmanager
async def receiver() -> AsyncIterator[Receiver]:
    state = Receiver()

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        state.requests.append(
            {"headers": dict(request.headers), "body": body, "path": request.path}
        )
        status, headers, delay = state.script.pop(0) if state.script else (200, {}, 0.0)
        if isinstance(delay, asyncio.Event):
            await delay.wait()
        elif delay:
            await asyncio.sleep(delay)
        return web.Response(
            status=status, headers=headers, text="x" * 10_000 if status >= 500 else "ok"
        )

    app = web.Application()
    app.router.add_post("/{tail:.*}", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    state.url = f"http://localhost:{port}/hooks/pressroom"
    try:
        yield state
    finally:
        await runner.cleanup()


def token(role: str = "admin", brand: uuid.UUID | None = None) -> str:
    return mint_token(
        SECRET,
        sub=f"user-{role}",
        role=role,  # type: ignore[arg-type]
        brand_id=brand,
    )


@dataclass
class Service:
    base: str
    app: Any
    clock: FakeClock
    http: aiohttp.ClientSession

    @property
    def worker(self) -> Any:
        return self.app.state.worker

    @property
    def pool(self) -> Any:
        return self.app.state.pool

    async def call(
        self, method: str, path: str, brand: uuid.UUID, role: str = "admin", **kwargs: Any
    ) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token(role, brand)}"}
        async with self.http.request(
            method, self.base + path, headers=headers, **kwargs
        ) as response:
            raw = await response.read()
            return response.status, (json.loads(raw) if raw else None)


def webhook_settings(db: TestDatabase, kafka: str, **overrides: Any) -> WebhookSettings:
    values: dict[str, Any] = {
        "database_url": db.owner_dsn,
        "runtime_role": APP_ROLE,
        "jwt_secret": SECRET,
        "kafka_bootstrap_servers": kafka,
        "consumer_group": f"webhook-test-{uuid.uuid4().hex[:8]}",
        "timeout_s": 1.0,
        "consumer_session_timeout_ms": 2000,
        "allow_private_targets": True,
        **overrides,
    }
    return WebhookSettings.model_validate(values)


@asynccontextmanager
async def webhook_service(
    db: TestDatabase,
    kafka: str,
    *,
    dns: dict[str, str] | None = None,
    run_delivery: bool = False,
    **overrides: Any,
) -> AsyncIterator[Service]:
    """The service on a real port; tests step the worker on a fake clock unless
    ``run_delivery`` runs it for real (on the real clock)."""
    clock = FakeClock()
    app = create_app(
        webhook_settings(db, kafka, **overrides),
        clock=(lambda: datetime.now(UTC)) if run_delivery else clock,
        inner_resolver=StaticResolver(dns or {}),
        run_delivery=run_delivery,
    )
    async with serve_asgi(app) as base, aiohttp.ClientSession() as http:
        yield Service(base, app, clock, http)
