from __future__ import annotations

import asyncio
import json
import logging
import uuid

import asyncpg
import pytest
from kafka_helpers import create_topics
from pressroom_kit.db import MigrationError, apply_migrations, connect, tenant_transaction
from pressroom_kit.health import Heartbeats
from pressroom_kit.http import broker_check, database_check
from pressroom_kit.logs import configure_logging, get_logger, request_id_var
from pressroom_kit.outbox import Relay, RelaySettings
from pressroom_kit.projections import rebuild_with_progress_bar
from pressroom_kit.testing.sample import domain as sample

pytestmark = pytest.mark.integration


async def test_two_replicas_migrating_together_apply_each_migration_once(fresh_db, tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "0001_things.sql").write_text("CREATE TABLE things (id int PRIMARY KEY);")
    (folder / "0002_more.sql").write_text("ALTER TABLE things ADD COLUMN name text;")
    conns = [await connect(fresh_db.owner_dsn) for _ in range(4)]
    try:
        results = await asyncio.gather(*(apply_migrations(c, [("svc", folder)]) for c in conns))
        assert sorted(len(r) for r in results) == [0, 0, 0, 2]
        rows = await conns[0].fetch(
            "SELECT version FROM schema_migrations WHERE namespace = 'svc' ORDER BY 1"
        )
        assert [r["version"] for r in rows] == [1, 2]
        (folder / "0002_more.sql").write_text("ALTER TABLE things ADD COLUMN other text;")
        with pytest.raises(MigrationError, match="changed after it was applied"):
            await apply_migrations(conns[0], [("svc", folder)])
        (folder / "0003_broken.sql").write_text("ALTER TABLE nope ADD COLUMN x int;")
        (folder / "0002_more.sql").write_text("ALTER TABLE things ADD COLUMN name text;")
        with pytest.raises(asyncpg.UndefinedTableError):
            await apply_migrations(conns[0], [("svc", folder)])
        assert (
            await conns[0].fetchval(
                "SELECT count(*) FROM schema_migrations WHERE namespace = 'svc'"
            )
            == 2
        )  # the failed migration left nothing behind
    finally:
        for conn in conns:
            await conn.close()


async def test_readiness_checks_fail_when_database_or_broker_are_unreachable(
    app_pool, kafka_bootstrap
):
    from pressroom_kit.embedded import free_port

    await database_check(app_pool)()
    await broker_check(kafka_bootstrap)()
    with pytest.raises(ConnectionError):
        await broker_check(f"127.0.0.1:{free_port()}", timeout=0.5)()
    dead_pool = await asyncpg.create_pool(
        f"postgresql://nobody@127.0.0.1:{free_port()}/x", min_size=0
    )
    with pytest.raises(OSError):
        await database_check(dead_pool, timeout=1)()
    await dead_pool.close()


async def test_metrics_expose_outbox_backlog_and_publishing(
    app_pool, sample_db, kafka_bootstrap, unique_topic
):
    from prometheus_client import REGISTRY, generate_latest

    await create_topics(kafka_bootstrap, unique_topic)
    brand = uuid.uuid4()
    async with tenant_transaction(app_pool, brand) as conn:
        await sample.repository(unique_topic).save(
            conn, sample.Note.write("m1", brand, "t"), brand_id=brand
        )
    stop = asyncio.Event()
    relay = Relay(
        service="metrics-test",
        dsn=sample_db.app_dsn,
        bootstrap_servers=kafka_bootstrap,
        heartbeats=Heartbeats(),
        settings=RelaySettings(poll_interval=0.1, backlog_every=0),
    )
    task = asyncio.create_task(relay.run(stop))
    try:
        async with asyncio.timeout(15):
            while await app_pool.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL"):
                await asyncio.sleep(0.05)
    finally:
        stop.set()
        await task
    text = generate_latest(REGISTRY).decode()
    assert 'pressroom_outbox_published_total{service="metrics-test"} 1.0' in text
    assert 'pressroom_outbox_backlog{service="metrics-test"}' in text
    assert "pressroom_outbox_publish_lag_seconds_bucket" in text


async def test_rebuild_with_progress_bar_reports_equal_tables(app_pool, owner_pool, capsys):
    brand = uuid.uuid4()
    for i in range(5):
        async with tenant_transaction(app_pool, brand) as conn:
            await sample.repository("t").save(
                conn, sample.Note.write(f"p{i}", brand, f"t{i}"), brand_id=brand
            )
    async with owner_pool.acquire() as conn:
        diffs = await rebuild_with_progress_bar(conn, [sample.NOTES_PROJECTION], do_swap=True)
        assert [d.equal for d in diffs] == [True]
        assert await conn.fetchval("SELECT count(*) FROM notes") == 5
        assert not await conn.fetchval(
            "SELECT 1 FROM information_schema.schemata WHERE schema_name = 'rebuild_notes'"
        )
    assert "rebuild notes" in capsys.readouterr().out


def test_json_logs_carry_trace_and_request_ids(capsys):
    from opentelemetry import trace
    from pressroom_kit.telemetry import configure_tracing

    configure_tracing("logs-test")
    configure_logging("logs-test", json=True)
    token = request_id_var.set("req-7")
    try:
        with trace.get_tracer("t").start_as_current_span("span") as span:
            get_logger("x").info("hello", answer=42)
            trace_id = format(span.get_span_context().trace_id, "032x")
    finally:
        request_id_var.reset(token)
        logging.getLogger().handlers.clear()
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert line["event"] == "hello" and line["answer"] == 42
    assert line["trace_id"] == trace_id and line["request_id"] == "req-7"
    assert line["service"] == "logs-test" and line["level"] == "info"


async def test_prepare_database_grants_a_production_runtime_role(fresh_db):
    from pressroom_kit.db import prepare_database, replace_user

    owner = await connect(fresh_db.owner_dsn)
    try:
        await owner.execute("DROP ROLE IF EXISTS svc_runtime")
        await owner.execute("CREATE ROLE svc_runtime LOGIN")
    finally:
        await owner.close()
    runtime_dsn = replace_user(fresh_db.owner_dsn, "svc_runtime")
    dsn = await prepare_database(
        database_url=runtime_dsn,
        migrate_database_url=fresh_db.owner_dsn,
        runtime_role=None,
        migrations=[sample.MIGRATIONS],
    )
    assert dsn == runtime_dsn
    conn = await connect(dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM notes") == 0  # granted, RLS applies
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("DELETE FROM events")
    finally:
        await conn.close()
    owner = await connect(fresh_db.owner_dsn)
    try:
        await owner.execute("REASSIGN OWNED BY svc_runtime TO postgres")
        await owner.execute("DROP OWNED BY svc_runtime")
        await owner.execute("DROP ROLE svc_runtime")
    finally:
        await owner.close()
