"""Runtime roles: created safely under concurrency, one per service, never able to escape
row-level security; FORCE RLS binds the tables' owner except where it says so."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from pressroom_kit import projections
from pressroom_kit.db import (
    UnsafeRuntimeRoleError,
    apply_migrations,
    check_runtime_role,
    connect,
    create_pool,
    ensure_databases,
    grant_runtime_role,
    prepare_database,
    replace_database,
    replace_user,
    set_all_brands,
    tenant_transaction,
)
from pressroom_kit.service import discover_services
from pressroom_kit.settings import ServiceSettings
from pressroom_kit.testing.plugin import (
    OwnedDatabase,
    create_test_database,
    drop_role,
    drop_test_database,
    owned_database,
)
from pressroom_kit.testing.sample import domain as sample


def _every_service_migrations() -> list[tuple[str, object]]:
    """Each installed service's migration set, plus the kit's sample service."""
    found: list[tuple[str, object]] = [sample.MIGRATIONS]
    for spec in discover_services():
        if spec.migrations is not None:
            found.append((spec.name, spec.migrations))
    return found


async def _drop_roles(admin_dsn: str, pattern: str) -> None:
    """Drop roles whose grants lived only in databases already dropped."""
    admin = await asyncpg.connect(admin_dsn)
    try:
        rows = await admin.fetch("SELECT rolname FROM pg_roles WHERE rolname LIKE $1", pattern)
        for row in rows:
            await admin.execute(f"DROP ROLE {row['rolname']}")
    finally:
        await admin.close()


@pytest.mark.integration
async def test_every_service_preparing_at_once_on_a_fresh_cluster_never_fails(pg_admin_dsn):
    """Roles are cluster-wide, the migration lock per database: check-then-create lost the
    race (``role ... already exists``). Each round starts every service's preparation at
    once on fresh databases, then restarts them at once with a role that is new again."""
    sets = _every_service_migrations()
    assert len(sets) >= 4  # the sample, gateway, media, webhook
    for _ in range(3):
        databases = [await create_test_database(pg_admin_dsn, "template0") for _ in sets]
        try:
            for _ in range(3):
                role = f"race_{uuid.uuid4().hex[:10]}"
                results = await asyncio.gather(
                    *(
                        prepare_database(
                            database_url=db.owner_dsn,
                            migrate_database_url=None,
                            runtime_role=role,
                            migrations=[migrations],  # type: ignore[list-item]
                        )
                        for db, migrations in zip(databases, sets, strict=True)
                    ),
                    return_exceptions=True,
                )
                assert [r for r in results if isinstance(r, BaseException)] == []
                for dsn in results:
                    conn = await connect(str(dsn))
                    try:
                        assert await conn.fetchval("SELECT current_user") == role
                        assert await conn.fetchval("SELECT count(*) FROM outbox") == 0
                    finally:
                        await conn.close()
        finally:
            for db in databases:
                await drop_test_database(pg_admin_dsn, db.name)
        await _drop_roles(pg_admin_dsn, "race_%")


@pytest.mark.integration
async def test_granting_one_new_role_in_many_databases_at_once_never_fails(pg_admin_dsn):
    databases = [await create_test_database(pg_admin_dsn, "template0") for _ in range(6)]
    owners = [await connect(db.owner_dsn) for db in databases]
    try:
        await asyncio.gather(*(apply_migrations(conn, []) for conn in owners))
        for _ in range(10):
            role = f"race_{uuid.uuid4().hex[:10]}"
            try:
                results = await asyncio.gather(
                    *(grant_runtime_role(conn, role) for conn in owners), return_exceptions=True
                )
                assert [r for r in results if r is not None] == []
            finally:
                for conn in owners:
                    await conn.execute(f"DROP OWNED BY {role}")  # also its database grants
                await drop_role(pg_admin_dsn, role)
    finally:
        for conn in owners:
            await conn.close()
        for db in databases:
            await drop_test_database(pg_admin_dsn, db.name)


@pytest.mark.integration
async def test_granting_while_someone_else_grants_on_the_same_tables_retries(fresh_db):
    """Concurrent GRANTs on one object fail with ``tuple concurrently updated`` (XX000)."""
    role = f"race_{uuid.uuid4().hex[:10]}"
    owner = await connect(fresh_db.owner_dsn)
    others = [await connect(fresh_db.owner_dsn) for _ in range(4)]
    done = asyncio.Event()
    collisions = 0

    async def grant_alongside(conn: asyncpg.Connection) -> None:
        nonlocal collisions
        while not done.is_set():
            try:
                await conn.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}")
            except asyncpg.PostgresError:  # these plain GRANTs do not retry; ours must
                collisions += 1

    try:
        await grant_runtime_role(owner, role)
        hammers = [asyncio.create_task(grant_alongside(c)) for c in others]
        try:
            for _ in range(40):
                await grant_runtime_role(owner, role)
        finally:
            done.set()
            await asyncio.gather(*hammers, return_exceptions=True)
        assert collisions > 0  # the race really happened
    finally:
        await owner.execute(f"DROP OWNED BY {role}")
        for conn in [owner, *others]:
            await conn.close()
        await drop_role(fresh_db.owner_dsn, role)


@pytest.fixture
async def owned_db(pg_admin_dsn: str) -> AsyncIterator[OwnedDatabase]:
    async with owned_database(pg_admin_dsn, [sample.MIGRATIONS]) as db:
        yield db


async def _write_notes(runtime_dsn: str, notes: dict[str, uuid.UUID]) -> None:
    pool = await create_pool(runtime_dsn, max_size=2)
    try:
        for note_id, brand in notes.items():
            async with tenant_transaction(pool, brand) as conn:
                note = sample.Note.write(note_id, brand, f"title of {note_id}")
                await sample.repository("t").save(conn, note, brand_id=brand, actor="u1")
    finally:
        await pool.close()


@pytest.mark.integration
async def test_forced_rls_binds_the_owner_unless_it_opts_in(owned_db):
    brand_a, brand_b = uuid.uuid4(), uuid.uuid4()
    await _write_notes(owned_db.runtime_dsn, {"a1": brand_a, "b1": brand_b})
    owner = await connect(owned_db.owner_dsn)
    try:
        forced = await owner.fetch(
            "SELECT relname FROM pg_class WHERE relforcerowsecurity ORDER BY relname"
        )
        assert [r["relname"] for r in forced] == ["note_mentions", "notes"]
        assert await owner.fetchval("SELECT count(*) FROM notes") == 0
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
            await owner.execute(
                "INSERT INTO notes (id, brand_id, title, updated_at) VALUES ('x', $1, 'x', now())",
                brand_a,
            )
        async with owner.transaction():
            await set_all_brands(owner)
            assert await owner.fetchval("SELECT count(*) FROM notes") == 2
        assert await owner.fetchval("SELECT count(*) FROM notes") == 0  # SET LOCAL only
    finally:
        await owner.close()

    runtime = await connect(owned_db.runtime_dsn)
    try:
        async with runtime.transaction():  # the setting is the owner's; others gain nothing
            await set_all_brands(runtime)
            assert await runtime.fetchval("SELECT count(*) FROM notes") == 0
            await runtime.execute("SELECT set_config('app.brand_id', $1, true)", str(brand_a))
            assert await runtime.fetchval("SELECT count(*) FROM notes") == 1
    finally:
        await runtime.close()


@pytest.mark.integration
async def test_owner_functions_cross_brands_and_owner_views_do_not(owned_db):
    """SECURITY DEFINER functions of the owner (webhook_claim_due, the media sweeper's
    claim) still see every brand; a view the owner made gives the runtime role nothing."""
    await _write_notes(owned_db.runtime_dsn, {"a1": uuid.uuid4(), "b1": uuid.uuid4()})
    owner = await connect(owned_db.owner_dsn)
    try:
        await owner.execute(
            """
            CREATE FUNCTION claim_notes() RETURNS SETOF text
            LANGUAGE sql SECURITY DEFINER SET search_path = public AS $$
                UPDATE notes SET edits = edits + 1 RETURNING id
            $$;
            CREATE VIEW every_note AS SELECT id FROM notes;
            """
        )
        await owner.execute(f"GRANT SELECT ON every_note TO {owned_db.runtime}")
    finally:
        await owner.close()
    runtime = await connect(owned_db.runtime_dsn)
    try:
        claimed = await runtime.fetch("SELECT claim_notes() AS id")
        assert sorted(r["id"] for r in claimed) == ["a1", "b1"]
        async with runtime.transaction():
            await set_all_brands(runtime)
            assert await runtime.fetch("SELECT id FROM every_note") == []
    finally:
        await runtime.close()


@pytest.mark.integration
async def test_rebuild_verify_and_swap_as_an_owner_bound_by_rls(owned_db):
    brands = [uuid.uuid4(), uuid.uuid4()]
    await _write_notes(owned_db.runtime_dsn, {f"n{i}": brands[i % 2] for i in range(6)})
    owner = await connect(owned_db.owner_dsn)
    try:
        assert await projections.rebuild(owner, sample.NOTES_PROJECTION) > 0
        diffs = await projections.verify(owner, sample.NOTES_PROJECTION)
        assert all(d.equal for d in diffs), diffs
        async with owner.transaction():
            await set_all_brands(owner)
            await owner.execute("UPDATE notes SET title = 'drifted' WHERE id = 'n3'")
        diffs = await projections.verify(owner, sample.NOTES_PROJECTION)
        assert (diffs[0].only_live, diffs[0].only_rebuilt) == (1, 1)
        await projections.swap(owner, sample.NOTES_PROJECTION)
        async with owner.transaction():
            await set_all_brands(owner)
            titles = await owner.fetch("SELECT id, title FROM notes ORDER BY id")
        assert [r["title"] for r in titles] == [f"title of n{i}" for i in range(6)]
    finally:
        await owner.close()


@pytest.mark.integration
async def test_a_migration_that_moves_data_moves_every_brands_rows(owned_db, tmp_path):
    await _write_notes(owned_db.runtime_dsn, {"a1": uuid.uuid4(), "b1": uuid.uuid4()})
    namespace, folder = sample.MIGRATIONS
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            (tmp_path / entry.name).write_text(entry.read_text())
    (tmp_path / "0002_shout.sql").write_text("UPDATE notes SET title = upper(title);")
    owner = await connect(owned_db.owner_dsn)
    try:
        applied = await apply_migrations(owner, [(namespace, tmp_path)])
        assert [m.name for m in applied] == ["shout"]
        async with owner.transaction():
            await set_all_brands(owner)
            titles = await owner.fetch("SELECT title FROM notes ORDER BY id")
        assert [r["title"] for r in titles] == ["TITLE OF A1", "TITLE OF B1"]
    finally:
        await owner.close()


@pytest.mark.integration
async def test_the_kit_migration_forces_rls_on_tables_made_before_it(owned_db):
    owner = await connect(owned_db.owner_dsn)
    try:
        # Back to the state before kit migration 0003: enabled, not forced, no owner policy.
        await owner.execute(
            """
            DROP POLICY owner_maintenance ON notes;
            DROP POLICY owner_maintenance ON note_mentions;
            ALTER TABLE notes NO FORCE ROW LEVEL SECURITY;
            ALTER TABLE note_mentions NO FORCE ROW LEVEL SECURITY;
            DROP FUNCTION pressroom_force_tenant_rls(regclass);
            DROP FUNCTION pressroom_all_brands(name);
            DELETE FROM schema_migrations WHERE namespace = 'kit' AND version = 3;
            """
        )
        applied = await apply_migrations(owner, [sample.MIGRATIONS])
        assert [(m.namespace, m.version) for m in applied] == [("kit", 3)]
        forced = await owner.fetch(
            "SELECT c.relname FROM pg_class c JOIN pg_policy p ON p.polrelid = c.oid "
            "WHERE c.relforcerowsecurity AND p.polname = 'owner_maintenance' ORDER BY 1"
        )
        assert [r["relname"] for r in forced] == ["note_mentions", "notes"]
    finally:
        await owner.close()


@pytest.mark.integration
async def test_every_service_forces_rls_on_each_of_its_tenant_tables(owned_db):
    """Service migrations run after the kit's, through ``pressroom_enable_tenant_rls``."""
    owner = await connect(owned_db.owner_dsn)
    try:
        await apply_migrations(owner, _every_service_migrations())  # type: ignore[arg-type]
        loose = await owner.fetch(
            "SELECT relname FROM pg_class WHERE relrowsecurity AND NOT relforcerowsecurity"
        )
        assert loose == []
        tenant_tables = await owner.fetchval(
            "SELECT count(*) FROM pg_policy WHERE polname = 'owner_maintenance'"
        )
        assert tenant_tables >= 8
    finally:
        await owner.close()


@pytest.mark.integration
async def test_a_service_refuses_to_run_as_a_superuser_a_bypassrls_role_or_an_owner(
    owned_db, pg_admin_dsn
):
    admin_dsn = replace_database(pg_admin_dsn, owned_db.name)
    suffix = uuid.uuid4().hex[:10]
    bypass, member = f"bypass_{suffix}", f"member_{suffix}"
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f"CREATE ROLE {bypass} LOGIN BYPASSRLS")
        await admin.execute(f"CREATE ROLE {member} LOGIN IN ROLE {owned_db.owner}")
    finally:
        await admin.close()
    try:
        cases = {
            admin_dsn: "is a superuser",
            replace_user(admin_dsn, bypass): "has BYPASSRLS",
            owned_db.owner_dsn: "owns",
            replace_user(admin_dsn, member): "owns",
        }
        for dsn, problem in cases.items():
            with pytest.raises(UnsafeRuntimeRoleError, match=problem):
                await prepare_database(
                    database_url=dsn,
                    migrate_database_url=owned_db.owner_dsn,
                    runtime_role=None,
                    migrations=[sample.MIGRATIONS],
                )
        with pytest.raises(UnsafeRuntimeRoleError, match="superuser"):  # the local stack's way
            await prepare_database(
                database_url=admin_dsn,
                migrate_database_url=None,
                runtime_role="",
                migrations=[sample.MIGRATIONS],
            )
        conn = await connect(owned_db.runtime_dsn)
        try:
            await check_runtime_role(conn)  # the runtime role itself is fine
        finally:
            await conn.close()
    finally:
        admin = await asyncpg.connect(admin_dsn)
        try:
            await admin.execute(f"DROP OWNED BY {bypass}, {member}")
        finally:
            await admin.close()
        await drop_role(pg_admin_dsn, bypass)
        await drop_role(pg_admin_dsn, member)


@pytest.mark.integration
async def test_one_services_runtime_role_cannot_reach_another_services_database(pg_admin_dsn):
    specs = {s.name: s for s in discover_services()}
    suffix = uuid.uuid4().hex[:8]
    roles = {name: f"pressroom_{name}_{suffix}" for name in ("media", "webhook")}
    databases = {name: await create_test_database(pg_admin_dsn, "template0") for name in roles}
    try:
        runtime = {
            name: await prepare_database(
                database_url=databases[name].owner_dsn,
                migrate_database_url=None,
                runtime_role=roles[name],
                migrations=[(name, specs[name].migrations)],  # type: ignore[list-item]
            )
            for name in roles
        }
        media_into_webhook = replace_database(runtime["media"], databases["webhook"].name)
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
            await connect(media_into_webhook)
        webhook_into_media = replace_database(runtime["webhook"], databases["media"].name)
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
            await connect(webhook_into_media)
        conn = await connect(runtime["media"])  # its own database: yes
        try:
            assert await conn.fetchval("SELECT count(*) FROM media_assets") == 0
        finally:
            await conn.close()
    finally:
        for db in databases.values():
            await drop_test_database(pg_admin_dsn, db.name)
        for role in roles.values():
            await drop_role(pg_admin_dsn, role)


@pytest.mark.unit
def test_each_service_runs_as_its_own_role_by_default(monkeypatch):
    from pydantic_settings import SettingsConfigDict

    class FooSettings(ServiceSettings):
        model_config = SettingsConfigDict(env_prefix="PRESSROOM_FOO_", extra="ignore")

    monkeypatch.delenv("PRESSROOM_FOO_RUNTIME_ROLE", raising=False)
    assert FooSettings().runtime_role == "pressroom_foo"
    monkeypatch.setenv("PRESSROOM_FOO_RUNTIME_ROLE", "custom_role")
    assert FooSettings().runtime_role == "custom_role"
    monkeypatch.setenv("PRESSROOM_FOO_RUNTIME_ROLE", "")
    assert not FooSettings().runtime_role  # production: database_url names the role


@pytest.mark.integration
async def test_creating_the_same_databases_at_once_never_fails(pg_admin_dsn):
    names = [f"e_{uuid.uuid4().hex[:10]}" for _ in range(3)]
    try:
        for _ in range(3):
            await asyncio.gather(*(ensure_databases(pg_admin_dsn, names) for _ in range(4)))
        admin = await asyncpg.connect(pg_admin_dsn)
        try:
            found = await admin.fetchval(
                "SELECT count(*) FROM pg_database WHERE datname = ANY($1::text[])", names
            )
        finally:
            await admin.close()
        assert found == len(names)
    finally:
        for name in names:
            await drop_test_database(pg_admin_dsn, name)
