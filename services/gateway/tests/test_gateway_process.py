from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import sys
import uuid

import psutil
import pytest
from gateway_testkit import SECRET, bearer, call, echo_backend, token
from pressroom_kit.embedded import free_port, wait_for_port
from pressroom_kit.testing.plugin import APP_ROLE

MB = 1024 * 1024


@pytest.mark.e2e
async def test_a_200_mb_upload_streams_through_the_gateway_with_bounded_memory(
    fresh_db, kafka_bootstrap, http
):
    async with echo_backend() as backend:
        port = free_port()
        env = {
            **os.environ,
            "PRESSROOM_GATEWAY_PORT": str(port),
            "PRESSROOM_GATEWAY_DATABASE_URL": fresh_db.owner_dsn,
            "PRESSROOM_GATEWAY_RUNTIME_ROLE": APP_ROLE,
            "PRESSROOM_GATEWAY_ROUTES": json.dumps({"/v1/media": backend}),
            "PRESSROOM_JWT_SECRET": SECRET,
            "PRESSROOM_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        }
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "pressroom_gateway",
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            await asyncio.to_thread(wait_for_port, "127.0.0.1", port, 30)
            base = f"http://127.0.0.1:{port}"
            manager = bearer(token("manager", uuid.uuid4()))
            # Warm up (imports, pools), then take the baseline.
            for _ in range(3):
                await call(http, "POST", f"{base}/v1/media/upload", data=b"x" * MB, headers=manager)
            gateway = psutil.Process(process.pid)
            baseline = gateway.memory_info().rss
            peak = baseline
            sampling = True

            async def sample() -> None:
                nonlocal peak
                while sampling:
                    peak = max(peak, gateway.memory_info().rss)
                    await asyncio.sleep(0.02)

            sampler = asyncio.create_task(sample())
            digest = hashlib.sha256()
            block = os.urandom(MB)

            async def body():
                for _ in range(200):
                    digest.update(block)
                    yield block

            status, _, answer = await call(
                http,
                "POST",
                f"{base}/v1/media/upload",
                data=body(),
                headers={**manager, "Content-Type": "application/octet-stream"},
            )
            sampling = False
            await sampler
            assert status == 200, answer
            assert answer["bytes"] == 200 * MB
            assert answer["sha256"] == digest.hexdigest()
            growth = (peak - baseline) / MB
            print(f"gateway RSS baseline {baseline / MB:.1f} MB, peak growth {growth:.1f} MB")
            assert growth < 64, f"the gateway grew by {growth:.1f} MB for a 200 MB upload"
        finally:
            process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(process.wait(), timeout=20)
