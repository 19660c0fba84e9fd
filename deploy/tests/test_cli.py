from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import uuid

import asyncpg
import pytest
from pressroom_kit.auth import JWTSettings, JWTVerifier
from pressroom_kit.embedded import free_port

JWT_RE = re.compile(r"^eyJ[\w-]+\.[\w-]+\.[\w-]+$")


async def _run_dev(tmp_path, pg_port, kafka_port, gateway_port, webhook_port):
    env = {
        **os.environ,
        "PRESSROOM_DATA_DIR": str(tmp_path / "var"),
        "PRESSROOM_DEV_POSTGRES_PORT": str(pg_port),
        "PRESSROOM_DEV_KAFKA_PORT": str(kafka_port),
        "PRESSROOM_GATEWAY_PORT": str(gateway_port),
        "PRESSROOM_WEBHOOK_PORT": str(webhook_port),
        "COLUMNS": "200",
    }
    env.pop("PRESSROOM_JWT_SECRET", None)
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pressroom_deploy",
        "dev",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )


async def _tokens(process, lines, count=3):
    tokens = []
    async with asyncio.timeout(120):
        while len(tokens) < count:
            raw = await process.stdout.readline()
            assert raw, "pressroom dev exited early:\n" + "".join(lines)
            line = raw.decode().strip()
            lines.append(line + "\n")
            if JWT_RE.match(line):
                tokens.append(line)
    return tokens


async def _stop(process):
    if process.returncode is None:
        process.send_signal(signal.SIGINT)
    rest = await asyncio.wait_for(process.stdout.read(), timeout=60)
    code = await asyncio.wait_for(process.wait(), timeout=60)
    return code, rest.decode()


@pytest.mark.e2e
async def test_pressroom_dev_runs_the_stack_with_a_demo_brand_and_stops_cleanly(tmp_path):
    import aiohttp

    pg_port, kafka_port, gateway_port, webhook_port = (free_port() for _ in range(4))
    for run in range(2):  # the second start finds the demo brand and creates nothing
        process = await _run_dev(tmp_path, pg_port, kafka_port, gateway_port, webhook_port)
        lines: list[str] = []
        try:
            admin, manager, viewer = await _tokens(process, lines)
            secret = (tmp_path / "var" / "jwt-secret").read_text().strip()
            principal = await JWTVerifier(JWTSettings(secret=secret)).verify(admin)
            assert principal.role == "admin" and principal.brand_id is not None
            base = f"http://127.0.0.1:{gateway_port}"
            async with aiohttp.ClientSession() as http:
                async with http.get(
                    f"{base}/v1/brands/current", headers={"Authorization": f"Bearer {viewer}"}
                ) as response:
                    assert response.status == 200, await response.text()
                    assert (await response.json())["name"] == "Demo Brand"
                async with http.get(
                    f"{base}/v1/brands/current/members",
                    headers={"Authorization": f"Bearer {admin}"},
                ) as response:
                    members = {m["user_id"]: m["role"] for m in (await response.json())["items"]}
                async with http.get(
                    f"{base}/v1/webhooks/endpoints", headers={"Authorization": f"Bearer {admin}"}
                ) as response:
                    assert response.status == 200, await response.text()  # routed to webhook
                async with http.patch(
                    f"{base}/v1/brands/current",
                    json={"name": "x"},
                    headers={"Authorization": f"Bearer {manager}"},
                ) as response:
                    assert response.status == 403
                assert members == {
                    str(uuid.uuid5(principal.brand_id, f"dev-{role}")): role
                    for role in ("admin", "manager", "viewer")
                }
            conn = await asyncpg.connect(
                f"postgresql://postgres@127.0.0.1:{pg_port}/pressroom_gateway"
            )
            brand_events = await conn.fetchval(
                "SELECT count(*) FROM events WHERE type = 'BrandCreated'"
            )
            await conn.close()
            assert brand_events == 1, f"run {run}: the demo brand was created again"
            _, writer = await asyncio.open_connection("127.0.0.1", kafka_port)
            writer.close()
        finally:
            code, rest = await _stop(process)
        assert code == 0, "".join(lines) + rest
        assert "stopped" in rest
    with pytest.raises(OSError):
        await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{pg_port}/postgres", timeout=2)


@pytest.mark.unit
def test_pressroom_token_mints_the_requested_claims(tmp_path, monkeypatch, capsys):
    import uuid

    import jwt
    from pressroom_deploy.cli import main

    monkeypatch.setenv("PRESSROOM_JWT_SECRET", "cli-secret-cli-secret-cli-secret-cli")
    brand = uuid.uuid4()
    main(["token", "--brand", str(brand), "--role", "viewer", "--sub", "u9"])
    token = capsys.readouterr().out.strip()
    claims = jwt.decode(token, "cli-secret-cli-secret-cli-secret-cli", algorithms=["HS256"])
    assert claims["brand_id"] == str(brand) and claims["role"] == "viewer" and claims["sub"] == "u9"
