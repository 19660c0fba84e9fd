"""The local stack: embedded PostgreSQL (a database per service), the embedded broker and
every installed service, with prefixed coloured logs and a clean stop on Ctrl-C."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import sys
import uuid
from collections.abc import Mapping
from pathlib import Path

from pressroom_contracts import TOPICS, dlq_topic
from pressroom_kit.auth import Role, mint_token
from pressroom_kit.db import ensure_databases, replace_database
from pressroom_kit.embedded import EmbeddedKafka, EmbeddedPostgres
from pressroom_kit.service import ServiceSpec, discover_services
from rich.console import Console
from rich.text import Text

from pressroom_deploy.mailcatcher import MailCatcher

COLOURS = ["cyan", "magenta", "green", "yellow", "blue", "bright_red", "bright_cyan"]
console = Console(highlight=False)


def data_dir() -> Path:
    path = Path(os.environ.get("PRESSROOM_DATA_DIR", "./var")).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def jwt_secret(folder: Path) -> str:
    """``PRESSROOM_JWT_SECRET``, or a development secret generated once under ``folder``."""
    configured = os.environ.get("PRESSROOM_JWT_SECRET")
    if configured:
        return configured
    path = folder / "jwt-secret"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


def dev_brand(folder: Path) -> uuid.UUID:
    path = folder / "dev-brand"
    if not path.exists():
        path.write_text(str(uuid.uuid4()))
    return uuid.UUID(path.read_text().strip())


def log_line(name: str, colour: str, line: str) -> None:
    prefix = Text(f"{name:>10} | ", style=colour)
    console.print(prefix + Text(line.rstrip("\n")), soft_wrap=True)


def public_url(ports: Mapping[str, int], environ: Mapping[str, str]) -> str:
    """The gateway as browsers reach it locally: its real port (``PRESSROOM_GATEWAY_PORT``
    honoured), or ``PRESSROOM_PUBLIC_URL`` when the operator set it."""
    configured = environ.get("PRESSROOM_PUBLIC_URL")
    if configured:
        return configured
    port = ports.get("gateway") or int(environ.get("PRESSROOM_GATEWAY_PORT", "8000"))
    return f"http://127.0.0.1:{port}"


def service_env(
    spec: ServiceSpec,
    *,
    environ: Mapping[str, str],
    secret: str,
    bootstrap: str,
    admin_dsn: str,
    ports: Mapping[str, int],
    routes: Mapping[str, str],
    brand: uuid.UUID,
    folder: Path,
    smtp: tuple[str, int] | None = None,
) -> dict[str, str]:
    """The environment one service process of the local stack runs with: the operator's,
    with the stack's shared names (secret, broker, public URL) and the service's own
    database, role and port on top."""
    env = {
        **environ,
        "PRESSROOM_JWT_SECRET": secret,
        "PRESSROOM_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "PRESSROOM_PUBLIC_URL": public_url(ports, environ),
        f"{spec.env_prefix}DATABASE_URL": replace_database(admin_dsn, spec.database),
        # Migrations run as the admin; the service runs as its own role, granted
        # on its own database only (PRESSROOM_<SVC>_RUNTIME_ROLE overrides it).
        f"{spec.env_prefix}RUNTIME_ROLE": environ.get(
            f"{spec.env_prefix}RUNTIME_ROLE", f"pressroom_{spec.name}"
        ),
        f"{spec.env_prefix}PORT": str(ports[spec.name]),
        "PRESSROOM_DATA_DIR": str(folder),
        "PYTHONUNBUFFERED": "1",
    }
    if "media" in ports:
        # Services that call the media service directly (fresh signed URLs, thumbnails)
        # find it on its real port, not only on the default one.
        for service in ("publishing", "approval"):
            env.setdefault(
                f"PRESSROOM_{service.upper()}_MEDIA_URL", f"http://127.0.0.1:{ports['media']}"
            )
    env.setdefault("PRESSROOM_WEBHOOK_ALLOW_PRIVATE_TARGETS", "true")  # local receivers
    env.setdefault("PRESSROOM_PUBLISHING_SANDBOX_ENABLED", "true")  # the local default platform
    if spec.name == "approval" and smtp is not None:  # the stack's mail catcher
        env.setdefault("PRESSROOM_APPROVAL_SMTP_HOST", smtp[0])
        env.setdefault("PRESSROOM_APPROVAL_SMTP_PORT", str(smtp[1]))
    if spec.name == "gateway":
        env.setdefault("PRESSROOM_GATEWAY_ROUTES", json.dumps(dict(routes)))
        env["PRESSROOM_GATEWAY_DEMO_BRAND_ID"] = str(brand)
    return env


class LocalStack:
    def __init__(self, folder: Path, only: list[str] | None = None) -> None:
        self.folder = folder
        self.only = set(only or [])
        self.postgres: EmbeddedPostgres | None = None
        self.kafka: EmbeddedKafka | None = None
        self.processes: dict[str, asyncio.subprocess.Process] = {}
        self.mail: MailCatcher | None = None

    def services(self) -> list[ServiceSpec]:
        found = discover_services()
        return [s for s in found if not self.only or s.name in self.only]

    async def run(self, stop: asyncio.Event) -> int:
        secret = jwt_secret(self.folder)
        external_kafka = os.environ.get("PRESSROOM_KAFKA_BOOTSTRAP_SERVERS")
        external_pg = os.environ.get("PRESSROOM_DATABASE_URL")
        try:
            if external_pg:
                admin_dsn = external_pg
            else:
                self.postgres = EmbeddedPostgres(
                    self.folder / "postgres",
                    port=int(os.environ.get("PRESSROOM_DEV_POSTGRES_PORT", "54329")),
                    log_file=self.folder / "postgres.log",
                )
                await asyncio.to_thread(self.postgres.start)
                admin_dsn = self.postgres.admin_dsn
            log_line("postgres", "bright_black", f"ready at {admin_dsn}")
            if external_kafka:
                bootstrap = external_kafka
            else:
                self.kafka = EmbeddedKafka(
                    port=int(os.environ.get("PRESSROOM_DEV_KAFKA_PORT", "19092")),
                    log_file=self.folder / "broker.log",
                )
                await asyncio.to_thread(self.kafka.start)
                bootstrap = self.kafka.bootstrap_servers
            await _ensure_topics(bootstrap)
            log_line("broker", "bright_black", f"ready at {bootstrap}")
            services = self.services()
            self.mail = MailCatcher(
                self.folder / "mail",
                port=int(os.environ.get("PRESSROOM_DEV_SMTP_PORT", "8025")),
                log=lambda line: log_line("mail", "bright_black", line),
            )
            await self.mail.start()
            log_line("mail", "bright_black", f"SMTP at 127.0.0.1:{self.mail.port}")
            await ensure_databases(admin_dsn, [s.database for s in services])
            ports = {
                s.name: int(os.environ.get(f"{s.env_prefix}PORT", str(s.port))) for s in services
            }
            routes = {
                prefix: f"http://127.0.0.1:{ports[s.name]}"
                for s in services
                for prefix in s.prefixes
            }
            brand = dev_brand(self.folder)
            readers = []
            for index, spec in enumerate(services):
                env = service_env(
                    spec,
                    environ=os.environ,
                    secret=secret,
                    bootstrap=bootstrap,
                    admin_dsn=admin_dsn,
                    ports=ports,
                    routes=routes,
                    brand=brand,
                    folder=self.folder,
                    smtp=("127.0.0.1", self.mail.port),
                )
                process = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    spec.module,
                    env=env,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.STDOUT,
                )
                self.processes[spec.name] = process
                readers.append(
                    asyncio.create_task(_pump(spec.name, COLOURS[index % len(COLOURS)], process))
                )
            await self._wait_healthy(services, ports, stop)
            self._banner(secret, admin_dsn, bootstrap, services, ports)
            waiters = [asyncio.create_task(p.wait()) for p in self.processes.values()]
            stopper = asyncio.create_task(stop.wait())
            done, _ = await asyncio.wait([stopper, *waiters], return_when=asyncio.FIRST_COMPLETED)
            exit_code = 0
            if stopper not in done:
                dead = [n for n, p in self.processes.items() if p.returncode is not None]
                log_line("pressroom", "red", f"{', '.join(dead)} exited; stopping the stack")
                exit_code = 1
            return exit_code
        finally:
            await self._shutdown()

    async def _wait_healthy(
        self,
        services: list[ServiceSpec],
        ports: dict[str, int],
        stop: asyncio.Event,
        within_s: float = 60.0,
    ) -> None:
        """Wait until every service answers ``/healthz`` (or has exited, or we stop)."""
        import aiohttp

        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        pending = {s.name for s in services}
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1)) as http:
            while pending and not stop.is_set():
                for name in list(pending):
                    if self.processes[name].returncode is not None:
                        pending.discard(name)
                        continue
                    with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                        url = f"http://127.0.0.1:{ports[name]}/healthz"
                        async with http.get(url) as response:
                            if response.status == 200:
                                pending.discard(name)
                if loop.time() > deadline:
                    log_line("pressroom", "red", f"not healthy yet: {', '.join(sorted(pending))}")
                    return
                if pending:
                    await asyncio.sleep(0.2)

    def _banner(
        self,
        secret: str,
        admin_dsn: str,
        bootstrap: str,
        services: list[ServiceSpec],
        ports: dict[str, int],
    ) -> None:
        brand = dev_brand(self.folder)
        console.rule("[bold]Pressroom local stack")
        console.print(f"PostgreSQL   {admin_dsn}")
        console.print(f"Kafka        {bootstrap}")
        for spec in services:
            url = f"http://127.0.0.1:{ports[spec.name]}"
            console.print(f"{spec.name:<12} {url}  (API docs: {url}/schema)")
        if not services:
            console.print("(no service packages installed yet: only the infrastructure runs)")
        console.print(f"Data         {self.folder}")
        if self.mail is not None:
            console.print(
                f"Mail         smtp://127.0.0.1:{self.mail.port}, kept in {self.mail.folder}"
            )
        console.print(f'Brand        {brand} ("Demo Brand" when the gateway runs)')
        roles: tuple[Role, ...] = ("admin", "manager", "viewer")
        for role in roles:
            token = mint_token(
                secret,
                # UUID subjects like every other id, stable with the brand kept in var/.
                sub=str(uuid.uuid5(brand, f"dev-{role}")),
                role=role,
                brand_id=brand,
                email=f"{role}@pressroom.local",
            )
            console.print(f"Token ({role}, 12 h):")
            print(token, flush=True)
        console.print(f"More tokens: make token BRAND={brand} ROLE=manager|viewer|admin")
        console.rule("Ctrl-C stops everything")

    async def _shutdown(self) -> None:
        for process in self.processes.values():
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.terminate()
        for name, process in self.processes.items():
            try:
                await asyncio.wait_for(process.wait(), timeout=15)
            except TimeoutError:
                log_line(name, "red", "did not stop in 15 s; killing it")
                process.kill()
                await process.wait()
        if self.mail is not None:
            await self.mail.stop()
        if self.kafka is not None:
            await asyncio.to_thread(self.kafka.stop)
        if self.postgres is not None:
            await asyncio.to_thread(self.postgres.stop)
        log_line("pressroom", "bright_black", "stopped")


async def _pump(name: str, colour: str, process: asyncio.subprocess.Process) -> None:
    assert process.stdout is not None
    async for raw in process.stdout:
        log_line(name, colour, raw.decode(errors="replace"))


async def _ensure_topics(bootstrap: str, partitions: int = 3) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import TopicAlreadyExistsError

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [t for name in TOPICS for t in (name, dlq_topic(name)) if t not in existing]
        if wanted:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics([NewTopic(t, partitions, 1) for t in wanted])
    finally:
        await admin.close()


async def rebuild_service(name: str, database_url: str | None, *, swap: bool) -> int:
    from pressroom_kit.db import connect
    from pressroom_kit.projections import rebuild_with_progress_bar

    specs = {s.name: s for s in discover_services()}
    if name not in specs:
        console.print(f"[red]no service named {name!r}; installed: {', '.join(specs) or 'none'}")
        return 2
    spec = specs[name]
    dsn = database_url or os.environ.get(f"{spec.env_prefix}DATABASE_URL")
    if dsn is None:
        port = os.environ.get("PRESSROOM_DEV_POSTGRES_PORT", "54329")
        dsn = f"postgresql://postgres@127.0.0.1:{port}/{spec.database}"
    conn = await connect(dsn)
    try:
        diffs = await rebuild_with_progress_bar(conn, spec.projections(), do_swap=swap)
    finally:
        await conn.close()
    bad = [d for d in diffs if not d.equal]
    for diff in diffs:
        state = (
            "[green]equal"
            if diff.equal
            else (f"[red]{diff.only_live} live-only, {diff.only_rebuilt} rebuilt-only rows")
        )
        console.print(f"{diff.table:<30} {state}")
    return 1 if bad and not swap else 0
