"""The whole stack as ``pressroom dev`` runs it, in processes a test can hurt.

Its own embedded PostgreSQL and broker (a test may restart the one and freeze the other
without touching the servers the rest of the suite shares), a database per service, and
every installed service started as ``python -m <module>`` with the environment
``pressroom dev`` gives it (``pressroom_deploy.stack.service_env``). A test can SIGKILL a
service and start it again, SIGSTOP/SIGCONT the broker, and restart PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from pressroom_deploy.stack import _ensure_topics, service_env
from pressroom_kit.db import ensure_databases
from pressroom_kit.embedded import EmbeddedKafka, EmbeddedPostgres, free_port
from pressroom_kit.service import ServiceSpec, discover_services

SECRET = "process-stack-secret-process-stack-secret"


@dataclass
class ServiceProcess:
    spec: ServiceSpec
    port: int
    env: dict[str, str]
    log: Path
    process: asyncio.subprocess.Process | None = None
    starts: int = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class ProcessStack:
    folder: Path
    postgres: EmbeddedPostgres
    kafka: EmbeddedKafka
    services: dict[str, ServiceProcess] = field(default_factory=dict)
    http: aiohttp.ClientSession | None = None
    # The sandbox platform in a process of its own, as a real platform would be: what it
    # received outlives any restart of publishing.
    sandbox: asyncio.subprocess.Process | None = None
    sandbox_url: str = ""

    @property
    def gateway(self) -> str:
        return self.services["gateway"].base

    async def start(self, name: str) -> None:
        service = self.services[name]
        out = service.log.open("ab")
        try:
            service.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                service.spec.module,
                env=service.env,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            out.close()
        service.starts += 1

    async def kill(self, name: str) -> None:
        """SIGKILL: no shutdown hook runs, open transactions die with the connection."""
        process = self.services[name].process
        assert process is not None
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()

    async def restart(self, name: str) -> None:
        await self.kill(name)
        await self.start(name)
        await self.wait_healthy([name])

    def pause_broker(self) -> None:
        assert self.kafka.pid is not None
        os.kill(self.kafka.pid, signal.SIGSTOP)

    def resume_broker(self) -> None:
        assert self.kafka.pid is not None
        os.kill(self.kafka.pid, signal.SIGCONT)

    async def restart_postgres(self) -> None:
        await asyncio.to_thread(self.postgres.stop)
        await asyncio.to_thread(self.postgres.start)

    async def status(self, name: str, path: str) -> int:
        assert self.http is not None
        try:
            async with self.http.get(
                self.services[name].base + path, timeout=aiohttp.ClientTimeout(total=3)
            ) as answer:
                return answer.status
        except (aiohttp.ClientError, TimeoutError):
            return 0

    async def wait_healthy(self, names: list[str] | None = None, within_s: float = 90.0) -> None:
        pending = set(names or self.services)
        deadline = time.monotonic() + within_s
        while pending:
            for name in list(pending):
                process = self.services[name].process
                if process is not None and process.returncode is not None:
                    raise AssertionError(f"{name} exited:\n{self.tail(name)}")
                if await self.status(name, "/healthz") == 200:
                    pending.discard(name)
            if pending and time.monotonic() > deadline:
                raise AssertionError(f"not healthy: {sorted(pending)}")
            await asyncio.sleep(0.2)

    async def wait_ready(self, names: list[str] | None = None, within_s: float = 120.0) -> None:
        pending = set(names or self.services)
        deadline = time.monotonic() + within_s
        while pending:
            for name in list(pending):
                if await self.status(name, "/readyz") == 200:
                    pending.discard(name)
            if pending and time.monotonic() > deadline:
                raise AssertionError(f"not ready: {sorted(pending)}")
            await asyncio.sleep(0.25)

    def tail(self, name: str, size: int = 6000) -> str:
        return self.services[name].log.read_text(errors="replace")[-size:]


# Knobs that make a test of minutes out of a product of hours, and nothing else.
FAST = {
    "PRESSROOM_LOG_LEVEL": "INFO",
    # The flow idles between steps; on the embedded broker a resting consumer's first
    # message waits for one 2 s fetch (this environment drops the plugin's PRESSROOM_*).
    "PRESSROOM_CONSUMER_REST_AFTER_S": "0",
    "PRESSROOM_PUBLISHING_POLL_INTERVAL_S": "0.1",
    "PRESSROOM_PUBLISHING_LEASE_S": "6",
    "PRESSROOM_PUBLISHING_RETRY_BASE_S": "1",
    "PRESSROOM_PUBLISHING_PLATFORM_TIMEOUT_S": "5",
    "PRESSROOM_WEBHOOK_SCHEDULE_S": "[0, 1, 2, 4, 8]",
    "PRESSROOM_WEBHOOK_POLL_INTERVAL_S": "0.1",
    "PRESSROOM_WEBHOOK_LEASE_S": "6",
    "PRESSROOM_APPROVAL_EXPIRY_INTERVAL_S": "1",
    "PRESSROOM_ANALYTICS_WORKER_POLL_S": "1",
    "PRESSROOM_GATEWAY_RATE_LIMIT_USER": "100000",
    "PRESSROOM_GATEWAY_RATE_LIMIT_BRAND": "100000",
    "PRESSROOM_GATEWAY_RATE_LIMIT_ANONYMOUS": "100000",
    "PRESSROOM_GATEWAY_READ_TIMEOUT_S": "20",
}


@asynccontextmanager
async def process_stack(extra_env: Mapping[str, str] | None = None) -> AsyncIterator[ProcessStack]:
    with tempfile.TemporaryDirectory(prefix="pressroom-stack-") as tmp:
        folder = Path(tmp)
        postgres = EmbeddedPostgres(folder / "postgres", durable=False)
        kafka = EmbeddedKafka(log_file=folder / "broker.log")
        await asyncio.to_thread(postgres.start)
        await asyncio.to_thread(kafka.start)
        stack = ProcessStack(folder, postgres, kafka)
        try:
            await _ensure_topics(kafka.bootstrap_servers)
            specs = discover_services()
            await ensure_databases(postgres.admin_dsn, [s.database for s in specs])
            ports = {s.name: free_port() for s in specs}
            sandbox_port = free_port()
            stack.sandbox_url = f"http://127.0.0.1:{sandbox_port}/sandbox-platform"
            with (folder / "sandbox.log").open("ab") as out:
                stack.sandbox = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "pressroom_publishing.sandbox",
                    "--port",
                    str(sandbox_port),
                    stdout=out,
                    stderr=asyncio.subprocess.STDOUT,
                    start_new_session=True,
                )
            routes = {
                prefix: f"http://127.0.0.1:{ports[s.name]}" for s in specs for prefix in s.prefixes
            }
            environ = {
                **{k: v for k, v in os.environ.items() if not k.startswith("PRESSROOM_")},
                **FAST,
                "PRESSROOM_GATEWAY_PORT": str(ports["gateway"]),
                "PRESSROOM_PUBLISHING_SANDBOX_API_URL": stack.sandbox_url,
                "PRESSROOM_PUBLISHING_SANDBOX_AUTH_URL": stack.sandbox_url,
                **(extra_env or {}),
            }
            for spec in specs:
                env = service_env(
                    spec,
                    environ=environ,
                    secret=SECRET,
                    bootstrap=kafka.bootstrap_servers,
                    admin_dsn=postgres.admin_dsn,
                    ports=ports,
                    routes=routes,
                    brand=uuid.uuid4(),
                    folder=folder,
                )
                # Several processes of one stack on one machine: distinct consumer session
                # timeouts are not needed, short ones make a killed consumer's partitions
                # move on in seconds.
                env[f"{spec.env_prefix}CONSUMER_SESSION_TIMEOUT_MS"] = "6000"
                stack.services[spec.name] = ServiceProcess(
                    spec, ports[spec.name], env, folder / f"{spec.name}.log"
                )
            async with aiohttp.ClientSession() as http:
                stack.http = http
                for name in stack.services:
                    await stack.start(name)
                await stack.wait_healthy()
                await stack.wait_ready()
                yield stack
        finally:
            for service in stack.services.values():
                if service.process is not None and service.process.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        service.process.terminate()
            for service in stack.services.values():
                if service.process is not None:
                    try:
                        await asyncio.wait_for(service.process.wait(), 15)
                    except TimeoutError:
                        service.process.kill()
                        await service.process.wait()
            with contextlib.suppress(ProcessLookupError, AssertionError):
                stack.resume_broker()
            if stack.sandbox is not None and stack.sandbox.returncode is None:
                stack.sandbox.terminate()
                await stack.sandbox.wait()
            await asyncio.to_thread(kafka.stop)
            await asyncio.to_thread(postgres.stop)


def dump(value: Any) -> str:
    return json.dumps(value, indent=1, default=str)[:4000]
