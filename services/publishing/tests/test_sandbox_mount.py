"""The sandbox mounted in a service app built like publishing's: public (no Pressroom
token), out of the OpenAPI document, post URLs under the mount, control switchable."""

from __future__ import annotations

import asyncio
import sys
import uuid

import aiohttp
import pytest
from litestar import get
from pressroom_kit.auth import JWTSettings, JWTVerifier
from pressroom_kit.embedded import free_port
from pressroom_kit.http import create_service_app
from pressroom_kit.testing.servers import serve_asgi
from pressroom_publishing.platforms.base import PostContent, PublishRequest
from pressroom_publishing.sandbox import DEFAULT_CLIENT_ID, SandboxState, sandbox_mount
from sandbox_testkit import REDIRECT_URI, SandboxClient, connect, sandbox_platform

pytestmark = pytest.mark.integration

SECRET = "sandbox-mount-test-secret-sandbox-mount"


@get("/v1/private")
async def private() -> dict[str, str]:
    return {"ok": "yes"}


async def test_the_mount_is_public_undocumented_and_answers_urls_under_itself():
    state = SandboxState()
    app = create_service_app(
        name="publishing-like",
        route_handlers=[private, sandbox_mount("/sandbox-platform", state)],
        verifier=JWTVerifier(JWTSettings(secret=SECRET)),
    )
    async with serve_asgi(app) as root, aiohttp.ClientSession() as session:
        base = f"{root}/sandbox-platform"
        async with session.get(f"{root}/v1/private") as answer:
            assert answer.status == 401  # the service's own routes still need a token
        async with session.get(
            f"{base}/oauth/authorize",
            params={"client_id": DEFAULT_CLIENT_ID, "redirect_uri": REDIRECT_URI, "state": "x"},
        ) as page:
            assert page.status == 200
            assert "Authorize" in await page.text()
        async with session.get(f"{root}/schema/openapi.json") as schema:
            paths = (await schema.json())["paths"]
        assert "/v1/private" in paths
        assert not [p for p in paths if "sandbox" in p or "oauth" in p]

        platform = sandbox_platform(base, session)
        credentials = await connect(platform, SandboxClient(base, session), username="mounted")
        published = await platform.publish(
            credentials,
            PublishRequest(
                post_id=uuid.uuid4(), reference="r1", content=PostContent(text="through the mount")
            ),
        )
        assert published.url == f"{base}/@mounted/{published.platform_post_id}"
        assert [p["id"] for p in await SandboxClient(base, session).posts()] == [
            published.platform_post_id
        ]


async def test_without_control_the_control_api_is_not_there():
    app = create_service_app(
        name="publishing-like",
        route_handlers=[sandbox_mount("/sandbox-platform", control=False)],
        verifier=JWTVerifier(JWTSettings(secret=SECRET)),
    )
    async with serve_asgi(app) as root, aiohttp.ClientSession() as session:
        async with session.get(f"{root}/sandbox-platform/_control/posts") as answer:
            assert answer.status == 404
        async with session.post(f"{root}/sandbox-platform/_control/reset") as answer:
            assert answer.status in (404, 405)
        async with session.get(f"{root}/sandbox-platform/v1/me") as answer:
            assert answer.status == 401  # the API itself is there (its own token check)
            assert (await answer.json())["error"]["code"] == "unauthorized"


async def test_a_configured_public_url_is_the_base_of_post_urls():
    app = create_service_app(
        name="publishing-like",
        route_handlers=[
            sandbox_mount(public_url="https://pressroom.example.com/sandbox-platform/")
        ],
        verifier=None,
    )
    async with serve_asgi(app) as root, aiohttp.ClientSession() as session:
        base = f"{root}/sandbox-platform"
        platform = sandbox_platform(base, session)
        credentials = await connect(platform, SandboxClient(base, session), username="pub")
        published = await platform.publish(
            credentials,
            PublishRequest(post_id=uuid.uuid4(), reference="r2", content=PostContent(text="x")),
        )
        assert published.url == (
            f"https://pressroom.example.com/sandbox-platform/@pub/{published.platform_post_id}"
        )


async def test_it_runs_on_its_own_as_a_process():
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pressroom_publishing.sandbox",
        "--port",
        str(port),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}/sandbox-platform"
    try:
        async with aiohttp.ClientSession() as session:
            async with asyncio.timeout(20):
                while True:
                    try:
                        async with session.get(f"{base}/_control/calls") as answer:
                            assert answer.status == 200
                            break
                    except aiohttp.ClientConnectionError:
                        assert process.returncode is None, await process.stderr.read()  # type: ignore[union-attr]
                        await asyncio.sleep(0.05)
            platform = sandbox_platform(base, session)
            credentials = await connect(platform, SandboxClient(base, session), username="solo")
            assert (await platform.verify(credentials)).extra == {"username": "solo"}
    finally:
        process.terminate()
        await process.wait()
