"""The migration Jobs' script (deploy/k8s/base/migrate.py) against a real PostgreSQL, the
way the Job runs it: the service's settings from the environment, production style (the
owner migrates, DATABASE_URL names the non-owner runtime role, RUNTIME_ROLE empty)."""

from __future__ import annotations

import asyncio
import os
import sys

import asyncpg
import pytest
from deploy_testkit import ROOT

pytestmark = pytest.mark.integration

SCRIPT = ROOT / "deploy" / "k8s" / "base" / "migrate.py"


async def run_job(env: dict[str, str]) -> tuple[int, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PRESSROOM_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(SCRIPT),
        "pressroom_webhook",
        env={**clean, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
    return proc.returncode or 0, out.decode()


async def test_the_job_migrates_a_service_once_and_again_as_a_no_op(fresh_db):
    env = {
        "PRESSROOM_WEBHOOK_MIGRATE_DATABASE_URL": fresh_db.owner_dsn,
        "PRESSROOM_WEBHOOK_DATABASE_URL": fresh_db.app_dsn,
        "PRESSROOM_WEBHOOK_RUNTIME_ROLE": "",
    }
    code, out = await run_job(env)
    assert code == 0, out
    runtime_user = fresh_db.app_dsn.split("://", 1)[1].split(":", 1)[0].split("@", 1)[0]
    assert f"pressroom_webhook: migrated; runs as {runtime_user}" in out

    conn = await asyncpg.connect(fresh_db.owner_dsn)
    try:
        applied = await conn.fetchval(
            "SELECT count(*) FROM schema_migrations WHERE namespace = 'webhook'"
        )
        assert applied > 0
        assert await conn.fetchval("SELECT to_regclass('webhook_endpoints') IS NOT NULL")
    finally:
        await conn.close()

    code, out = await run_job(env)  # a re-run (a retried Job) changes nothing
    assert code == 0, out
    conn = await asyncpg.connect(fresh_db.owner_dsn)
    try:
        again = await conn.fetchval(
            "SELECT count(*) FROM schema_migrations WHERE namespace = 'webhook'"
        )
    finally:
        await conn.close()
    assert again == applied


async def test_the_job_refuses_an_unsafe_runtime_role(fresh_db):
    # DATABASE_URL naming the owner (a superuser here): row-level security would not apply.
    code, out = await run_job(
        {
            "PRESSROOM_WEBHOOK_MIGRATE_DATABASE_URL": fresh_db.owner_dsn,
            "PRESSROOM_WEBHOOK_DATABASE_URL": fresh_db.owner_dsn,
            "PRESSROOM_WEBHOOK_RUNTIME_ROLE": "",
        }
    )
    assert code != 0
    assert "UnsafeRuntimeRoleError" in out


async def test_the_job_names_an_unknown_service():
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(SCRIPT),
        "pressroom_nothing",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 1
    assert b"no installed service runs as pressroom_nothing" in out
