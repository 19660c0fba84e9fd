"""A brand's whole publishing day through the gateway, as a user would live it: connect the
built-in sandbox through its consent page, upload an image, schedule a post, watch the real
scheduler publish it once with the media service's signed URL, and see the media service
learn of it over the broker and a partner's webhook receiver get it, signed. Another brand
sees none of it; a forged, expired or replayed OAuth state is refused; the vault's rows
hold no readable token.

The stack is wired as ``pressroom dev`` wires it: the gateway on a port of its own (not
8000), the services told where it is only through ``PRESSROOM_PUBLIC_URL`` as the deploy
tool computes it (publishing) or through the kit's default from ``PRESSROOM_GATEWAY_PORT``
(media), so every absolute URL handed out must start with the gateway's real address.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import asyncpg
import pytest
from gateway_testkit import gateway_settings
from media_samples import jpeg_bytes
from media_testkit import form, media_service
from multidict import CIMultiDict
from pressroom_deploy.stack import service_env
from pressroom_gateway.app import create_app as create_gateway
from pressroom_kit.auth import mint_token
from pressroom_kit.embedded import free_port
from pressroom_kit.testing.plugin import (
    TestDatabase,
    create_test_database,
    drop_test_database,
)
from pressroom_kit.testing.servers import serve_asgi
from pressroom_publishing.app import create_app as create_publishing
from pressroom_publishing.posts.commands import client_reference
from pressroom_publishing.sandbox.state import SandboxState
from pressroom_publishing.service import SERVICE as PUBLISHING
from pressroom_webhook.signing import verify as verify_signature
from publishing_testkit import publishing_settings
from sandbox_testkit import SandboxClient
from webhook_testkit import Receiver, receiver, webhook_service

pytestmark = pytest.mark.e2e

SECRET = "e2e-publishing-secret-e2e-publishing-secret"
STATE_TTL_S = 120  # short; the clock is pushed past it, not waited for


class SkewableClock:
    """The real clock, which a test may push forward for a moment (an OAuth state outliving
    its time) without waiting."""

    def __init__(self) -> None:
        self.skew = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.skew

    @contextmanager
    def ahead(self, seconds: float) -> Iterator[None]:
        self.skew = timedelta(seconds=seconds)
        try:
            yield
        finally:
            self.skew = timedelta()


@dataclass
class Stack:
    gateway: str
    gateway_port: int
    publishing: str  # direct, for the sandbox's control API only
    db: TestDatabase
    clock: SkewableClock
    sandbox: SandboxState
    publishing_public_url: str
    media_public_url: str
    http: aiohttp.ClientSession
    hooks: Receiver  # a partner's webhook receiver
    brands: dict[str, uuid.UUID] = field(default_factory=dict)
    seen: dict[str, Any] = field(default_factory=dict)  # what one test leaves the next

    def token(self, brand: str, role: str = "manager") -> str:
        return mint_token(
            SECRET,
            sub=f"{brand}-{role}",
            role=role,  # type: ignore[arg-type]
            brand_id=self.brands[brand],
        )

    async def call(
        self, method: str, path: str, brand: str | None = None, role: str = "manager", **kw: Any
    ) -> tuple[int, Any, CIMultiDict[str]]:
        headers = dict(kw.pop("headers", {}))
        if brand is not None:
            headers["Authorization"] = f"Bearer {self.token(brand, role)}"
        url = path if path.startswith("http") else self.gateway + path
        async with self.http.request(
            method, url, headers=headers, allow_redirects=False, **kw
        ) as answer:
            raw = await answer.read()
            kind = answer.headers.get("Content-Type", "")
            body: Any = json.loads(raw) if raw and "json" in kind else raw
            return answer.status, body, answer.headers.copy()

    def control(self) -> SandboxClient:
        return SandboxClient(f"{self.publishing}/sandbox-platform", self.http)

    def tokens(self) -> set[str]:
        """Every access and refresh token the sandbox ever issued."""
        return set(self.sandbox.access_tokens) | set(self.sandbox.refresh_tokens)


def sandbox_state_of(app: Any) -> SandboxState:
    """The state of the sandbox mounted in the publishing app (its own in-memory platform:
    the tokens it issued are what the vault must not show)."""
    for route in app.routes:
        handler = getattr(route, "route_handler", None)
        fn = getattr(handler, "fn", None)
        if fn is not None and getattr(fn, "__name__", "") == "sandbox_platform":
            inner = inspect.getclosurevars(fn).nonlocals["app"]
            return inner.state.sandbox  # type: ignore[no-any-return]
    raise AssertionError("the publishing app has no sandbox mounted")


async def ensure_topics(bootstrap: str) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from pressroom_contracts import TOPICS

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        missing = [t for t in TOPICS if t not in set(await admin.list_topics())]
        if missing:
            await admin.create_topics([NewTopic(t, 3, 1) for t in missing])
    finally:
        await admin.close()


@contextmanager
def environment(**values: str | None) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    for name, value in values.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


async def eventually(check: Any, timeout: float = 20.0, what: str = "") -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"never happened: {what}")
        await asyncio.sleep(0.1)


@pytest.fixture(scope="module")
async def stack(pg_admin_dsn: str, _template_db: str, kafka_bootstrap: str) -> AsyncIterator[Stack]:
    await ensure_topics(kafka_bootstrap)
    db = await create_test_database(pg_admin_dsn, _template_db)
    gateway_port = free_port()
    publishing_port = free_port()
    # What ``pressroom dev`` hands the publishing process for the gateway's address.
    env = service_env(
        PUBLISHING,
        environ={},
        secret=SECRET,
        bootstrap=kafka_bootstrap,
        admin_dsn=db.owner_dsn,
        ports={"gateway": gateway_port, "publishing": publishing_port},
        routes={},
        brand=uuid.uuid4(),
        folder=Path(tempfile.gettempdir()),
    )
    clock = SkewableClock()
    try:
        with (
            tempfile.TemporaryDirectory() as data_dir,
            # Media is told nothing but the gateway's port: the kit's default public URL.
            environment(PRESSROOM_PUBLIC_URL=None, PRESSROOM_GATEWAY_PORT=str(gateway_port)),
        ):
            async with (
                media_service(
                    db, kafka_bootstrap, Path(data_dir), jwt_secret=SECRET, public_base_url=""
                ) as media,
                webhook_service(db, kafka_bootstrap, run_delivery=True, jwt_secret=SECRET) as hook,
                receiver() as hooks,
            ):
                publishing_app = create_publishing(
                    publishing_settings(
                        db,
                        kafka_bootstrap,
                        port=publishing_port,
                        jwt_secret=SECRET,
                        public_url=env["PRESSROOM_PUBLIC_URL"],
                        sandbox_enabled=True,
                        media_url=media.base,
                        state_ttl_s=STATE_TTL_S,
                        poll_interval_s=0.05,
                        lease_s=5.0,
                        retry_base_s=1.0,
                        platform_timeout_s=5.0,
                    ),
                    clock=clock,
                )
                routes = {
                    "/v1/media": media.base,
                    "/media-files": media.base,
                    **{
                        prefix: f"http://127.0.0.1:{publishing_port}"
                        for prefix in (
                            "/v1/posts",
                            "/v1/connections",
                            "/v1/calendar",
                            "/sandbox-platform",
                        )
                    },
                    "/v1/webhooks": hook.base,
                }
                gateway = create_gateway(
                    gateway_settings(
                        db,
                        kafka_bootstrap,
                        routes,
                        jwt_secret=SECRET,
                        port=gateway_port,
                        read_timeout_s=15.0,
                        rate_limit_user=100_000,
                        rate_limit_brand=100_000,
                        rate_limit_anonymous=100_000,
                    )
                )
                async with (
                    serve_asgi(publishing_app, port=publishing_port) as publishing,
                    serve_asgi(gateway, port=gateway_port, proxy_headers=False) as base,
                    aiohttp.ClientSession() as http,
                ):
                    yield Stack(
                        gateway=base,
                        gateway_port=gateway_port,
                        publishing=publishing,
                        db=db,
                        clock=clock,
                        sandbox=sandbox_state_of(publishing_app),
                        publishing_public_url=publishing_app.state.settings.public_url,
                        media_public_url=media.settings.public_base_url,
                        http=http,
                        hooks=hooks,
                    )
    finally:
        await drop_test_database(pg_admin_dsn, db.name)


async def new_brand(stack: Stack, name: str) -> None:
    onboarding = mint_token(SECRET, sub=f"{name}-admin", role="viewer")  # type: ignore[arg-type]
    status, body, _ = await stack.call(
        "POST",
        "/v1/brands",
        json={"name": f"Brand {name}"},
        headers={"Authorization": f"Bearer {onboarding}"},
    )
    assert status == 201, body
    stack.brands[name] = uuid.UUID(body["id"])


async def consent(stack: Stack, brand: str, username: str) -> str:
    """Start connecting and press Authorize on the consent page (through the gateway, no
    Pressroom token: a browser); the callback URL the sandbox sends the browser to."""
    status, body, _ = await stack.call(
        "POST", "/v1/connections/sandbox/authorize", brand, role="admin"
    )
    assert status == 200, body
    url = body["authorization_url"]
    stack.seen.setdefault("authorization_urls", []).append(url)
    assert url.startswith(f"{stack.gateway}/sandbox-platform/oauth/authorize?"), url
    browser = SandboxClient(f"{stack.gateway}/sandbox-platform")  # its own cookie-less session
    authorized = await browser.authorize(url, username=username)
    assert authorized.code, authorized
    return authorized.location


async def test_a_brand_connects_the_sandbox_through_the_gateway(stack: Stack) -> None:
    await new_brand(stack, "a")
    await new_brand(stack, "b")
    status, endpoint, _ = await stack.call(
        "POST",
        "/v1/webhooks/endpoints",
        "a",
        role="admin",
        json={"url": stack.hooks.url, "event_types": ["publishing.post.published.v1"]},
    )
    assert status == 201, endpoint
    stack.seen["webhook_secret"] = endpoint["secret"]
    callback = await consent(stack, "a", "brand-a")
    assert callback.startswith(f"{stack.gateway}/v1/connections/sandbox/callback?"), callback
    status, page, _ = await stack.call("GET", callback)  # the browser, without our token
    assert status == 200, page
    assert b"Sandbox is connected" in page
    stack.seen["callback"] = callback

    status, listed, _ = await stack.call("GET", "/v1/connections", "a", role="viewer")
    assert status == 200, listed
    [connection] = listed["items"]
    assert connection["platform"] == "sandbox"
    assert connection["status"] == "connected"
    assert connection["extra"]["username"] == "brand-a", connection
    assert connection["connected_by"] == "a-admin", connection
    stack.seen["connection"] = connection["id"]
    text = json.dumps(listed)
    issued = stack.tokens()
    assert issued, "the sandbox issued no token"
    assert not [t for t in issued if t in text], "a token in the connections list"


async def test_a_scheduled_post_with_an_image_goes_out_once(stack: Stack) -> None:
    image = jpeg_bytes(320, 240)
    status, asset, _ = await stack.call("POST", "/v1/media", "a", data=form(image, "photo.jpg"))
    assert status == 201, asset
    stack.seen["media_id"] = asset["id"]

    async def created() -> Any:
        # Publishing learns of the asset from the media service's event, over the broker.
        status, body, _ = await stack.call(
            "POST",
            "/v1/posts",
            "a",
            json={
                "content": {"text": "Hello from the whole stack", "media_ids": [asset["id"]]},
                "platforms": ["sandbox"],
                "scheduled_at": (datetime.now(UTC) + timedelta(seconds=1)).isoformat(),
            },
        )
        if status == 201:
            return body
        # Until the event arrives, the asset is unknown to publishing: 422 on the field.
        assert status == 422 and "media_ids" in json.dumps(body), body
        return None

    post = await eventually(created, what="publishing knows the uploaded asset")
    post_id = post["id"]
    stack.seen["post"] = post_id
    status, submitted, _ = await stack.call("POST", f"/v1/posts/{post_id}/submit", "a")
    assert status == 200, submitted
    assert submitted["status"] == "scheduled", submitted

    async def published() -> Any:
        status, body, _ = await stack.call("GET", f"/v1/posts/{post_id}", "a", role="viewer")
        assert status == 200, body
        assert body["status"] in {"scheduled", "publishing", "published"}, body
        return body if body["status"] == "published" else None

    done = await eventually(published, what="the scheduler publishes the post")
    result = done["results"]["sandbox"]
    assert result["status"] == "published", result
    assert result["platform_post_id"] and result["url"], result

    sent = await stack.control().posts()  # the sandbox itself, not through the gateway
    assert len(sent) == 1, sent
    [on_platform] = sent
    assert on_platform["id"] == result["platform_post_id"]
    assert on_platform["idempotency_key"] == client_reference(post_id, "sandbox")
    [media] = on_platform["media"]
    assert media["url"].startswith(f"{stack.gateway}/media-files/"), media
    signed = parse_qs(urlsplit(media["url"]).query)
    assert signed.keys() >= {"expires", "signature"}, media  # signed, no token needed
    status, fetched, headers = await stack.call("GET", media["url"])  # a platform, no token
    assert status == 200, fetched
    assert headers["Content-Type"].startswith("image/"), headers
    assert fetched[:3] == b"\xff\xd8\xff" and len(fetched) > 100  # a JPEG
    stack.seen["media_url"] = media["url"]

    status, logs, _ = await stack.call("GET", f"/v1/posts/{post_id}/logs", "a", role="viewer")
    assert status == 200, logs
    attempts = [entry for entry in logs if entry["platform"] == "sandbox"]
    assert attempts and attempts[-1]["status"] == "published", logs
    assert attempts[-1]["platform_post_id"] == result["platform_post_id"]
    answers = json.dumps([done, logs])
    assert not [t for t in stack.tokens() if t in answers], "a platform token in an answer"

    async def used() -> Any:
        status, body, _ = await stack.call("GET", f"/v1/media/{asset['id']}", "a", role="viewer")
        assert status == 200, body
        return f"post:{post_id}" in body["used_in"]

    await eventually(used, what="media learns the post was published (over the broker)")

    # The partner's receiver hears of it once, signed with the endpoint's secret.
    def deliveries() -> list[dict[str, Any]]:
        return [r for r in stack.hooks.requests if post_id.encode() in r["body"]]

    async def delivered() -> Any:
        return deliveries()

    [delivery] = await eventually(delivered, what="the webhook delivery of the published post")
    headers = {name.lower(): value for name, value in delivery["headers"].items()}
    verify_signature(stack.seen["webhook_secret"], headers, delivery["body"])
    assert b"publishing.post.published.v1" in delivery["body"], delivery["body"][:300]


async def test_another_brand_sees_and_touches_nothing(stack: Stack) -> None:
    post_id, connection_id = stack.seen["post"], stack.seen["connection"]
    for path in (f"/v1/posts/{post_id}", f"/v1/posts/{post_id}/logs"):
        status, body, headers = await stack.call("GET", path, "b")
        assert status == 404, (path, body)
        assert headers["Content-Type"].startswith("application/problem+json")
    for method, path in (
        ("POST", f"/v1/connections/{connection_id}/verify"),
        ("DELETE", f"/v1/connections/{connection_id}"),
    ):
        status, body, _ = await stack.call(method, path, "b", role="admin")
        assert status == 404, (path, body)
    status, posts, _ = await stack.call("GET", "/v1/posts", "b")
    assert status == 200 and posts["items"] == [], posts
    status, connections, _ = await stack.call("GET", "/v1/connections", "b", role="viewer")
    assert status == 200 and connections["items"] == [], connections

    status, body, headers = await stack.call(
        "POST",
        "/v1/posts",
        "b",
        json={
            "content": {"text": "borrowed", "media_ids": [stack.seen["media_id"]]},
            "platforms": ["sandbox"],
        },
    )
    assert status == 422, body
    assert headers["Content-Type"].startswith("application/problem+json")
    assert "media_ids" in json.dumps(body.get("errors", body)), body

    # A's connection is untouched by B's attempts.
    status, listed, _ = await stack.call("GET", "/v1/connections", "a", role="viewer")
    assert [c["status"] for c in listed["items"]] == ["connected"], listed


async def test_forged_expired_and_replayed_states_are_refused(stack: Stack) -> None:
    async def refused(url: str) -> dict[str, Any]:
        status, body, headers = await stack.call("GET", url)
        assert 400 <= status < 500, (status, body)
        assert headers["Content-Type"].startswith("application/problem+json"), body
        return body  # type: ignore[no-any-return]

    callback = f"{stack.gateway}/v1/connections/sandbox/callback"
    forged = await refused(f"{callback}?code=anything&state=forged.state.value")
    assert (forged["status"], forged["type"].rsplit("/", 1)[1]) == (400, "bad_state"), forged

    late = await consent(stack, "a", "brand-a")
    with stack.clock.ahead(STATE_TTL_S + 1):
        expired = await refused(late)
    assert expired["type"].endswith("/state_expired"), expired

    replayed = await refused(stack.seen["callback"])  # the first connection's own callback
    assert (replayed["status"], replayed["type"].rsplit("/", 1)[1]) == (409, "state_used")

    # Still one connection, and no token readable in the vault's rows.
    status, listed, _ = await stack.call("GET", "/v1/connections", "a", role="viewer")
    assert status == 200 and len(listed["items"]) == 1, listed
    conn = await asyncpg.connect(stack.db.owner_dsn)
    try:
        rows = await conn.fetch(
            "SELECT row_to_json(t)::text AS raw, access_token_enc, refresh_token_enc "
            "FROM platform_connection_tokens t"
        )
    finally:
        await conn.close()
    assert rows, "no token rows"
    issued = stack.tokens()
    assert len(issued) >= 2  # an access and a refresh token at least
    for row in rows:
        assert row["access_token_enc"] and row["refresh_token_enc"], row  # sealed, not absent
        assert not [t for t in issued if t in row["raw"]], "a readable token in the vault"


async def test_every_absolute_url_starts_with_the_gateways_real_address(stack: Stack) -> None:
    real = f"http://127.0.0.1:{stack.gateway_port}"
    assert stack.gateway == real and stack.gateway_port != 8000
    assert stack.publishing_public_url == real
    assert stack.media_public_url == real  # the kit's default from PRESSROOM_GATEWAY_PORT
    for url in stack.seen["authorization_urls"]:
        query = parse_qs(urlsplit(url).query)
        assert url.startswith(f"{real}/sandbox-platform/"), url
        assert query["redirect_uri"] == [f"{real}/v1/connections/sandbox/callback"], query
    assert stack.seen["media_url"].startswith(f"{real}/media-files/")
    status, asset, _ = await stack.call(
        "GET", f"/v1/media/{stack.seen['media_id']}", "a", role="viewer"
    )
    assert status == 200, asset
    assert asset["url"].startswith(f"{real}/media-files/"), asset
