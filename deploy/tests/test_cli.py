from __future__ import annotations

import asyncio
import os
import re
import signal
import sys

import asyncpg
import pytest
from pressroom_kit.auth import JWTSettings, JWTVerifier
from pressroom_kit.embedded import free_port

JWT_RE = re.compile(r"^eyJ[\w-]+\.[\w-]+\.[\w-]+$")


@pytest.mark.e2e
async def test_pressroom_dev_starts_the_stack_prints_a_working_token_and_stops_cleanly(tmp_path):
    pg_port, kafka_port = free_port(), free_port()
    env = {
        **os.environ,
        "PRESSROOM_DATA_DIR": str(tmp_path / "var"),
        "PRESSROOM_DEV_POSTGRES_PORT": str(pg_port),
        "PRESSROOM_DEV_KAFKA_PORT": str(kafka_port),
        "COLUMNS": "200",
    }
    env.pop("PRESSROOM_JWT_SECRET", None)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pressroom_deploy",
        "dev",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    lines: list[str] = []
    token = None
    try:
        async with asyncio.timeout(90):
            while token is None:
                raw = await process.stdout.readline()
                assert raw, "pressroom dev exited early:\n" + "".join(lines)
                line = raw.decode().strip()
                lines.append(line + "\n")
                if JWT_RE.match(line):
                    token = line
        secret = (tmp_path / "var" / "jwt-secret").read_text().strip()
        principal = await JWTVerifier(JWTSettings(secret=secret)).verify(token)
        assert principal.role == "admin" and principal.brand_id is not None
        conn = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{pg_port}/postgres")
        assert await conn.fetchval("SELECT 1") == 1
        await conn.close()
        _, writer = await asyncio.open_connection("127.0.0.1", kafka_port)
        writer.close()
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGINT)
        rest = await asyncio.wait_for(process.stdout.read(), timeout=60)
        code = await asyncio.wait_for(process.wait(), timeout=60)
    assert code == 0, rest.decode()
    assert "stopped" in rest.decode()
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
