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


def _png() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (32, 24), (200, 40, 40)).save(buffer, "PNG")
    return buffer.getvalue()


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
                if run == 0:  # media's file URLs point at this gateway, on its port
                    upload = aiohttp.FormData()
                    upload.add_field("file", _png(), filename="a.png", content_type="image/png")
                    async with http.post(
                        f"{base}/v1/media",
                        data=upload,
                        headers={"Authorization": f"Bearer {manager}"},
                    ) as response:
                        assert response.status == 201, await response.text()
                        url = (await response.json())["url"]
                    assert url.startswith(f"{base}/media-files/"), url
                    async with http.get(url) as response:
                        assert response.status == 200
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


@pytest.mark.unit
def test_every_dev_service_is_told_the_gateway_public_url(tmp_path):
    from pressroom_deploy.stack import service_env
    from pressroom_kit.service import ServiceSpec

    specs = [
        ServiceSpec(name="media", module="pressroom_media", port=8101, database="pressroom_media"),
        ServiceSpec(name="gateway", module="pressroom_gateway", port=8000, database="gw"),
    ]
    common = {
        "secret": "s",
        "bootstrap": "127.0.0.1:19092",
        "admin_dsn": "postgresql://postgres@127.0.0.1:5432/postgres",
        "ports": {"media": 8101, "gateway": 9000},
        "routes": {"/v1/media": "http://127.0.0.1:8101"},
        "brand": uuid.uuid4(),
        "folder": tmp_path,
    }
    for spec in specs:
        env = service_env(spec, environ={"PRESSROOM_GATEWAY_PORT": "9000"}, **common)
        assert env["PRESSROOM_PUBLIC_URL"] == "http://127.0.0.1:9000", spec.name
        assert env[f"{spec.env_prefix}PORT"] == str(common["ports"][spec.name])
        assert env[f"{spec.env_prefix}DATABASE_URL"].endswith(f"/{spec.database}")
    # Only media, the gateway not started by this stack: its configured port still counts.
    env = service_env(
        specs[0],
        environ={"PRESSROOM_GATEWAY_PORT": "9100"},
        **{**common, "ports": {"media": 8101}},
    )
    assert env["PRESSROOM_PUBLIC_URL"] == "http://127.0.0.1:9100"
    # The operator's own public URL wins.
    env = service_env(specs[0], environ={"PRESSROOM_PUBLIC_URL": "https://s.example"}, **common)
    assert env["PRESSROOM_PUBLIC_URL"] == "https://s.example"


@pytest.mark.unit
def test_the_dev_stack_turns_the_sandbox_platform_on_and_production_settings_do_not(tmp_path):
    from pressroom_deploy.stack import service_env
    from pressroom_kit.service import ServiceSpec
    from pressroom_publishing.settings import PublishingSettings

    spec = ServiceSpec(
        name="publishing", module="pressroom_publishing", port=8102, database="pressroom_pub"
    )
    env = service_env(
        spec,
        environ={},
        secret="s",
        bootstrap="127.0.0.1:19092",
        admin_dsn="postgresql://postgres@127.0.0.1:5432/postgres",
        ports={"publishing": 8102, "gateway": 8000},
        routes={},
        brand=uuid.uuid4(),
        folder=tmp_path,
    )
    assert env["PRESSROOM_PUBLISHING_SANDBOX_ENABLED"] == "true"
    assert PublishingSettings.model_validate({}).sandbox_enabled is False
    off = service_env(
        spec,
        environ={"PRESSROOM_PUBLISHING_SANDBOX_ENABLED": "false"},
        secret="s",
        bootstrap="b",
        admin_dsn="postgresql://postgres@127.0.0.1:5432/postgres",
        ports={"publishing": 8102},
        routes={},
        brand=uuid.uuid4(),
        folder=tmp_path,
    )
    assert off["PRESSROOM_PUBLISHING_SANDBOX_ENABLED"] == "false"


@pytest.mark.unit
def test_services_that_call_media_are_told_its_real_port(tmp_path):
    from pressroom_deploy.stack import service_env
    from pressroom_kit.service import ServiceSpec

    spec = ServiceSpec(
        name="publishing", module="pressroom_publishing", port=8102, database="pressroom_pub"
    )
    env = service_env(
        spec,
        environ={},
        secret="s",
        bootstrap="127.0.0.1:19092",
        admin_dsn="postgresql://postgres@127.0.0.1:5432/postgres",
        ports={"media": 9101, "publishing": 8102},
        routes={},
        brand=uuid.uuid4(),
        folder=tmp_path,
    )
    assert env["PRESSROOM_PUBLISHING_MEDIA_URL"] == "http://127.0.0.1:9101"
    assert env["PRESSROOM_APPROVAL_MEDIA_URL"] == "http://127.0.0.1:9101"
