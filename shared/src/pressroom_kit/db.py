"""PostgreSQL: pools, numbered migrations, the runtime role and the tenant context."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import random
import re
from collections.abc import AsyncIterator, Awaitable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit
from uuid import UUID

import asyncpg

from pressroom_kit import eventstore
from pressroom_kit.logs import get_logger

log = get_logger(__name__)

KIT_MIGRATIONS = resources.files("pressroom_kit") / "migrations"
_MIGRATION_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_MIGRATION_LOCK = 7_250_001  # advisory lock key: one migrator per database at a time


def _json_dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


async def init_connection(conn: asyncpg.Connection) -> None:
    """jsonb/json columns in and out as Python objects."""
    for name in ("jsonb", "json"):
        await conn.set_type_codec(
            name, encoder=_json_dumps, decoder=json.loads, schema="pg_catalog"
        )


class PooledConnection(asyncpg.Connection):
    """A pooled connection released without asyncpg's reset query.

    asyncpg rolls back an open transaction on release either way; the reset query
    (``UNLISTEN``, ``RESET ALL``, unlock all) costs a round trip per request and undoes
    nothing the kit does: tenant settings are ``SET LOCAL``, advisory locks are
    transaction-level, and ``LISTEN`` only happens on dedicated connections. Code that
    changes session state on a pooled connection must undo it itself.
    """

    def get_reset_query(self) -> str:
        return ""


async def create_pool(
    dsn: str, *, min_size: int = 1, max_size: int = 10, **kwargs: Any
) -> asyncpg.Pool:
    """An asyncpg pool whose connections speak JSON for json/jsonb."""
    kwargs.setdefault("connection_class", PooledConnection)
    pool = await asyncpg.create_pool(
        dsn, min_size=min_size, max_size=max_size, init=init_connection, **kwargs
    )
    assert pool is not None
    return pool


async def connect(dsn: str) -> asyncpg.Connection:
    """One connection set up like a pool's."""
    conn = await asyncpg.connect(dsn)
    await init_connection(conn)
    return conn


@dataclass(frozen=True)
class Migration:
    namespace: str
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


class MigrationError(RuntimeError):
    """A migration already applied has changed, or the files are malformed."""


def load_migrations(namespace: str, folder: Traversable | Path) -> list[Migration]:
    """Read ``NNNN_name.sql`` files from ``folder`` in order; versions must be unique."""
    found: dict[int, Migration] = {}
    for entry in folder.iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = _MIGRATION_NAME.match(entry.name)
        if match is None:
            raise MigrationError(f"{namespace}: bad migration file name {entry.name!r}")
        version = int(match.group(1))
        if version in found:
            raise MigrationError(f"{namespace}: two migrations numbered {version}")
        found[version] = Migration(namespace, version, match.group(2), entry.read_text())
    return [found[v] for v in sorted(found)]


async def apply_migrations(
    conn: asyncpg.Connection, sets: Sequence[tuple[str, Traversable | Path]]
) -> list[Migration]:
    """Apply the kit's migrations, then each ``(namespace, folder)`` set, once each.

    Safe when several replicas start together: a session advisory lock admits one migrator
    at a time and each migration runs in its own transaction. A changed checksum of an
    applied migration raises ``MigrationError``.
    """
    all_sets = [("kit", KIT_MIGRATIONS), *sets]
    applied_now: list[Migration] = []
    await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
    try:
        await conn.execute(
            """
            CREATE TABLE IF NOT EXISTS schema_migrations (
                namespace  text        NOT NULL,
                version    integer     NOT NULL,
                name       text        NOT NULL,
                checksum   text        NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now(),
                PRIMARY KEY (namespace, version)
            )
            """
        )
        rows = await conn.fetch("SELECT namespace, version, checksum FROM schema_migrations")
        done = {(r["namespace"], r["version"]): r["checksum"] for r in rows}
        for namespace, folder in all_sets:
            for migration in load_migrations(namespace, folder):
                key = (namespace, migration.version)
                if key in done:
                    if done[key] != migration.checksum:
                        raise MigrationError(
                            f"{namespace} migration {migration.version:04d}_{migration.name} "
                            "changed after it was applied; add a new migration instead"
                        )
                    continue
                async with conn.transaction():
                    await set_all_brands(conn)  # a migration that moves data moves every brand's
                    await conn.execute(migration.sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations (namespace, version, name, checksum) "
                        "VALUES ($1, $2, $3, $4)",
                        namespace,
                        migration.version,
                        migration.name,
                        migration.checksum,
                    )
                log.info(
                    "migration applied",
                    namespace=namespace,
                    version=migration.version,
                    name=migration.name,
                )
                applied_now.append(migration)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)
    return applied_now


class UnsafeRuntimeRoleError(RuntimeError):
    """The runtime connection could step around row-level security; the service must not start."""


_ROLE_NAME = re.compile(r"[a-z_][a-z0-9_]*")
_GRANT_ATTEMPTS = 6


async def _create_role(conn: asyncpg.Connection, role: str, *, login: bool) -> None:
    """Create ``role`` unless it exists; a concurrent creator winning is success.

    Roles are cluster-wide while the migration lock is per database, so services migrating
    their own databases at once race here: the loser sees ``DuplicateObjectError`` or, when
    both inserted at the same moment, a unique violation on ``pg_authid``.
    """
    if await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role):
        return
    try:
        await conn.execute(
            f"CREATE ROLE {role} {'LOGIN' if login else 'NOLOGIN'} NOSUPERUSER NOBYPASSRLS"
        )
    except (asyncpg.DuplicateObjectError, asyncpg.UniqueViolationError):
        log.info("runtime role created concurrently elsewhere", role=role)


async def _execute_retrying(conn: asyncpg.Connection, sql: str) -> None:
    """Run ``sql`` (one implicit transaction), retrying concurrent catalog updates.

    Two sessions granting on the same object at once make the later one fail with
    ``tuple concurrently updated`` (XX000); the grants are idempotent, so run them again.
    """
    for attempt in range(1, _GRANT_ATTEMPTS + 1):
        try:
            await conn.execute(sql)
            return
        except (asyncpg.InternalServerError, asyncpg.DeadlockDetectedError) as exc:
            concurrent = isinstance(exc, asyncpg.DeadlockDetectedError) or (
                "tuple concurrently updated" in str(exc)
            )
            if not concurrent or attempt == _GRANT_ATTEMPTS:
                raise
            log.info("grant raced a concurrent one; retrying", attempt=attempt)
            await asyncio.sleep(random.uniform(0.01, 0.05) * attempt)


async def grant_runtime_role(conn: asyncpg.Connection, role: str, *, login: bool = True) -> None:
    """Create (if missing) the non-owner role the service runs as, and grant it DML.

    The role owns nothing, so row-level security applies to it; it may only read and
    append to the event store. Only it (besides the owner and superusers) may connect to
    this database: ``PUBLIC`` loses ``CONNECT``, so one service's role cannot reach another
    service's database. Safe to run at once from many databases of one cluster and from
    many replicas of one database.
    """
    if not _ROLE_NAME.fullmatch(role):
        raise ValueError(f"bad role name {role!r}")
    await conn.execute(f"SELECT pg_advisory_lock({_MIGRATION_LOCK})")
    try:
        await _create_role(conn, role, login=login)
        database = await conn.fetchval("SELECT current_database()")
        await _execute_retrying(
            conn,
            f"""
            REVOKE CONNECT, TEMPORARY ON DATABASE "{database}" FROM PUBLIC;
            GRANT CONNECT, TEMPORARY ON DATABASE "{database}" TO {role};
            GRANT USAGE ON SCHEMA public TO {role};
            GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role};
            REVOKE UPDATE, DELETE, TRUNCATE ON events FROM {role};
            GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role};
            """,
        )
    finally:
        await conn.execute(f"SELECT pg_advisory_unlock({_MIGRATION_LOCK})")


async def check_runtime_role(conn: asyncpg.Connection) -> None:
    """Raise ``UnsafeRuntimeRoleError`` unless row-level security binds this connection.

    A superuser or a ``BYPASSRLS`` role skips every policy; the owner of a table (or a member
    of the owner's role) can switch its security off. A service runs as neither.
    """
    row = await conn.fetchrow(
        """
        SELECT r.rolname, r.rolsuper, r.rolbypassrls,
               array(
                   SELECT format('%I.%I', n.nspname, c.relname)
                   FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                   WHERE c.relkind IN ('r', 'p')
                     AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%'
                     AND pg_has_role(r.oid, c.relowner, 'MEMBER')
                   ORDER BY 1 LIMIT 5
               ) AS owned
        FROM pg_roles r WHERE r.rolname = current_user
        """
    )
    assert row is not None
    role = row["rolname"]
    if row["rolsuper"]:
        problem = "is a superuser"
    elif row["rolbypassrls"]:
        problem = "has BYPASSRLS"
    elif row["owned"]:
        problem = f"owns (or may act as the owner of) {', '.join(row['owned'])}"
    else:
        return
    raise UnsafeRuntimeRoleError(
        f"refusing to run as database role {role!r}: it {problem}, so row-level security "
        "would not keep brands apart. Run as a non-owner role (the local stack creates "
        "one: RUNTIME_ROLE), and keep the owner for migrations (MIGRATE_DATABASE_URL)."
    )


def set_all_brands(conn: asyncpg.Connection) -> Awaitable[str]:
    """Let the tables' owner see and write every brand's rows, in this transaction only.

    Row-level security is forced, so the owner is bound by the policies too; this setting
    opens them for maintenance the owner does on purpose (migrations, projection rebuilds).
    It does nothing for any other role.
    """
    return conn.execute("SELECT set_config('app.all_brands', 'on', true)")


async def set_tenant(conn: asyncpg.Connection, brand_id: UUID | str | None) -> None:
    """Set ``app.brand_id`` for the current transaction only (``SET LOCAL``)."""
    await conn.execute(
        "SELECT set_config('app.brand_id', $1, true)", "" if brand_id is None else str(brand_id)
    )


@asynccontextmanager
async def tenant_transaction(
    pool: asyncpg.Pool, brand_id: UUID | str | None
) -> AsyncIterator[asyncpg.Connection]:
    """A transaction whose row-level security sees only ``brand_id``'s rows.

    ``BEGIN`` and ``SET LOCAL`` travel in one round trip (the brand id is a validated UUID,
    so it is safe to inline); the transaction commits on exit and rolls back on error. Its
    event-store appends and outbox rows are staged and written by the commit itself
    (``eventstore.writes_transaction``), so the writers' lock is held only inside the server,
    for the final inserts and the commit.
    """
    brand = "" if brand_id is None else str(UUID(str(brand_id)))
    async with pool.acquire() as proxy:
        conn = cast(asyncpg.Connection, proxy)  # a pool proxy behaves as its connection
        async with eventstore.writes_transaction(
            conn, begin=f"BEGIN; SET LOCAL app.brand_id = '{brand}'"
        ):
            yield conn


def replace_database(dsn: str, database: str) -> str:
    """The same DSN pointing at another database."""
    head, _, tail = dsn.rpartition("/")
    query = ""
    if "?" in tail:
        tail, query = tail.split("?", 1)
        query = "?" + query
    return f"{head}/{database}{query}"


def replace_user(dsn: str, user: str) -> str:
    """The same DSN with another user (and no password)."""
    scheme, rest = dsn.split("://", 1)
    hostpart = rest.split("@", 1)[1] if "@" in rest else rest
    return f"{scheme}://{user}@{hostpart}"


async def ensure_databases(admin_dsn: str, names: Iterable[str]) -> None:
    """Create the databases that do not exist yet."""
    conn = await asyncpg.connect(admin_dsn)
    try:
        for name in names:
            if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
                raise ValueError(f"bad database name {name!r}")
            if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
                with contextlib.suppress(
                    asyncpg.DuplicateDatabaseError, asyncpg.UniqueViolationError
                ):
                    await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def prepare_database(
    *,
    database_url: str,
    migrate_database_url: str | None,
    runtime_role: str | None,
    migrations: Sequence[tuple[str, Traversable | Path]],
) -> str:
    """Migrate a service database and return the DSN the service should run with.

    Migrations run as the owner (``migrate_database_url``, else ``database_url``). With a
    ``runtime_role`` (the local stack), the role is created and granted, and the returned
    DSN connects as it; without one (production), ``database_url`` already names the
    non-owner runtime role: it is granted what it needs (when it differs from the owner)
    and returned as it is. Either way the runtime DSN is checked last: a superuser, a
    ``BYPASSRLS`` role or a table owner raises ``UnsafeRuntimeRoleError``, so the service
    does not start.
    """
    owner_dsn = migrate_database_url or database_url
    conn = await connect(owner_dsn)
    try:
        await apply_migrations(conn, migrations)
        if runtime_role:
            await grant_runtime_role(conn, runtime_role)
        else:
            user = urlsplit(database_url).username
            if user and user != urlsplit(owner_dsn).username:
                await grant_runtime_role(conn, user)
    finally:
        await conn.close()
    runtime_dsn = replace_user(owner_dsn, runtime_role) if runtime_role else database_url
    conn = await connect(runtime_dsn)
    try:
        await check_runtime_role(conn)
    finally:
        await conn.close()
    return runtime_dsn
