"""SIGKILL of the service in the middle of a publish, then a restart: no second post, and the
open attempt is reconciled with the platform.

The publishing service runs as a real process (``python -m pressroom_publishing``) against
the test's database and broker; the sandbox platform is a real server in the test process
that the service's adapter points at (``PRESSROOM_PUBLISHING_SANDBOX_API_URL``), connected
through its OAuth consent flow. The sandbox holds the publish request (its ``timeout``
failure), with or without creating the post first; once it has the request the test kills
the service, checks the attempt was recorded before the call, and restarts it with a short
lease so the new process takes the target over at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pressroom_kit.embedded import free_port
from pressroom_kit.testing.plugin import APP_ROLE, TestDatabase
from pressroom_publishing.posts.commands import client_reference
from publishing_testkit import SECRET, as_owner, eventually, targets, token
from sandbox_testkit import SandboxClient, running_sandbox

pytestmark = pytest.mark.e2e

LEASE_S = 2.0


@dataclass
class ServiceProcess:
    """``python -m pressroom_publishing`` on a fixed port; ``start`` again after ``kill``."""

    env: dict[str, str]
    base: str
    log: Path
    process: asyncio.subprocess.Process | None = None

    async def start(self, http: aiohttp.ClientSession) -> None:
        with self.log.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "pressroom_publishing",
                env=self.env,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=log,
            )

        async def ready() -> bool:
            assert self.process is not None
            if self.process.returncode is not None:
                raise AssertionError(f"the service exited: {self.log.read_text()[-3000:]}")
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(f"{self.base}/readyz") as answer:
                    return answer.status == 200
            return False

        await eventually(ready, timeout=30)

    async def kill(self) -> None:
        assert self.process is not None
        self.process.kill()  # SIGKILL: no shutdown, no finally, no lease given back
        await self.process.wait()

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), timeout=15)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


@contextlib.asynccontextmanager
async def service_process(
    db: TestDatabase, kafka: str, sandbox_url: str, tmp_path: Path
) -> AsyncIterator[ServiceProcess]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "PRESSROOM_PUBLISHING_PORT": str(port),
        "PRESSROOM_PUBLISHING_DATABASE_URL": db.owner_dsn,
        "PRESSROOM_PUBLISHING_RUNTIME_ROLE": APP_ROLE,
        "PRESSROOM_PUBLISHING_CONSUMER_GROUP": f"publishing-sigkill-{uuid.uuid4().hex[:8]}",
        "PRESSROOM_PUBLISHING_CONSUMER_SESSION_TIMEOUT_MS": "2000",
        "PRESSROOM_PUBLISHING_SANDBOX_ENABLED": "true",  # as pressroom dev runs it
        "PRESSROOM_PUBLISHING_SANDBOX_API_URL": sandbox_url,
        "PRESSROOM_PUBLISHING_SANDBOX_AUTH_URL": sandbox_url,
        "PRESSROOM_PUBLISHING_LEASE_S": str(LEASE_S),
        "PRESSROOM_PUBLISHING_PLATFORM_TIMEOUT_S": "30",
        "PRESSROOM_PUBLISHING_MEDIA_URL": "http://127.0.0.1:9",
        "PRESSROOM_PUBLISHING_LOG_LEVEL": "WARNING",
        "PRESSROOM_PUBLIC_URL": base,
        "PRESSROOM_JWT_SECRET": SECRET,
        "PRESSROOM_KAFKA_BOOTSTRAP_SERVERS": kafka,
    }
    service = ServiceProcess(env, base, tmp_path / "publishing.log")
    try:
        yield service
    finally:
        await service.stop()


async def call(
    http: aiohttp.ClientSession, base: str, method: str, path: str, brand: uuid.UUID, **kw: Any
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token('admin', brand)}"}
    async with http.request(method, base + path, headers=headers, **kw) as answer:
        raw = await answer.read()
        return answer.status, (json.loads(raw) if raw else None)


async def connect(http: aiohttp.ClientSession, base: str, client: SandboxClient) -> uuid.UUID:
    """A brand connects a sandbox account through the consent page, as a person would."""
    brand = uuid.uuid4()
    status, out = await call(http, base, "POST", "/v1/connections/sandbox/authorize", brand)
    assert status == 200, out
    consent = await client.authorize(out["authorization_url"], username=f"u{brand.hex[:6]}")
    async with http.get(consent.location, allow_redirects=False) as answer:
        assert answer.status == 200, await answer.text()
    return brand


async def killed_mid_publish(
    fresh_db: TestDatabase, kafka: str, tmp_path: Path, *, effect: bool
) -> tuple[dict[str, Any], list[dict[str, Any]], list[Any], dict[str, int]]:
    """Connect, schedule a post for now, let the sandbox hold its publish request (after
    creating the post when ``effect``), SIGKILL the service, restart it, and wait until
    the post is settled. Returns the post, the sandbox's posts, the attempt log and the
    sandbox's call counts."""
    async with (
        running_sandbox() as (sandbox_url, state),
        aiohttp.ClientSession() as http,
        service_process(fresh_db, kafka, sandbox_url, tmp_path) as service,
    ):
        client = SandboxClient(sandbox_url, http)
        await service.start(http)
        brand = await connect(http, service.base, client)
        await client.fail("publish", "timeout", delay_s=60, effect=effect)
        status, post = await call(
            http,
            service.base,
            "POST",
            "/v1/posts",
            brand,
            json={"content": {"text": "killed mid-publish"}, "platforms": ["sandbox"]},
        )
        assert status == 201, post
        post_id = post["id"]
        status, body = await call(http, service.base, "POST", f"/v1/posts/{post_id}/submit", brand)
        # Due at once: the running scheduler may be on it before the answer is read.
        assert status == 200 and body["status"] in ("scheduled", "publishing"), body

        async def holding() -> bool:
            return state.held() == 1

        await eventually(holding, timeout=10)
        assert len(await client.posts()) == (1 if effect else 0)
        await service.kill()

        # The attempt was recorded before the call, and nothing after it.
        target = (await targets(fresh_db, post_id))["sandbox"]
        assert (target["status"], target["attempts"], target["attempt_open"]) == (
            "publishing",
            1,
            True,
        )
        opened = await as_owner(
            fresh_db,
            "SELECT status, finished_at FROM publishing_logs WHERE post_id = $1",
            target["post_id"],
        )
        assert [(r["status"], r["finished_at"]) for r in opened] == [("started", None)]

        await service.start(http)

        async def settled() -> dict[str, Any] | None:
            status, body = await call(http, service.base, "GET", f"/v1/posts/{post_id}", brand)
            assert status == 200, body
            return body if body["status"] not in ("scheduled", "publishing") else None

        settled_post = await eventually(settled, timeout=20)
        status, logs = await call(http, service.base, "GET", f"/v1/posts/{post_id}/logs", brand)
        assert status == 200, logs
        sent = [
            p
            for p in await client.posts()
            if p["idempotency_key"] == client_reference(post_id, "sandbox")
        ]
        return settled_post, sent, logs, await client.calls()


async def test_killed_after_the_platform_created_the_post(
    fresh_db, kafka_bootstrap, topics, tmp_path
):
    post, sent, logs, calls = await killed_mid_publish(
        fresh_db, kafka_bootstrap, tmp_path, effect=True
    )
    assert len(sent) == 1, sent
    assert post["status"] == "published", post
    assert post["results"]["sandbox"]["platform_post_id"] == sent[0]["id"]
    assert post["results"]["sandbox"]["url"] == sent[0]["url"]
    # One attempt: opened before the call, settled by asking the sandbox (not sent again).
    assert [(entry["attempt"], entry["status"]) for entry in logs] == [(1, "found")], logs
    assert logs[0]["platform_post_id"] == sent[0]["id"]
    assert calls["publish"] == 1 and calls["lookup"] == 1, calls


async def test_killed_before_the_platform_created_the_post(
    fresh_db, kafka_bootstrap, topics, tmp_path
):
    post, sent, logs, calls = await killed_mid_publish(
        fresh_db, kafka_bootstrap, tmp_path, effect=False
    )
    assert len(sent) == 1, sent
    assert post["status"] == "published", post
    assert post["results"]["sandbox"]["platform_post_id"] == sent[0]["id"]
    # The open attempt was looked up (not found), then attempted again once.
    assert [(entry["attempt"], entry["status"]) for entry in logs] == [
        (1, "not_found"),
        (2, "published"),
    ], logs
    assert calls["publish"] == 2 and calls["lookup"] == 1, calls
