"""Mastodon's app per instance, against real local Mastodon instances over HTTP.

``FakeInstance`` speaks the Mastodon API shapes the connections need: ``POST /api/v1/apps``
(form; ``client_id``/``client_secret``), ``/oauth/authorize`` (redirects back with a code;
the client and its registered redirect URI checked), ``POST /oauth/token`` (client
authentication, single-use codes, PKCE S256), ``GET /api/v1/accounts/verify_credentials``
(401 for a bad token, 403 for a disabled login) and ``POST /oauth/revoke``.
``MastodonTestPlatform`` implements the connections' ``InstanceAppPlatform`` protocol over
it, reading the instance and client from ``extra`` as the real adapter does.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import date
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from aiohttp import web
from connections_testkit import (
    FakeClock,
    OAuthProvider,
    ProviderPlatform,
    Service,
    connections_service,
)
from pressroom_kit.embedded import free_port
from pressroom_publishing.platforms.base import (
    Account,
    Capabilities,
    ConnectionUnusable,
    Credentials,
    MetricsReport,
    NotSupportedError,
    OAuthContext,
    Platform,
    PlatformHTTP,
    PublishedPost,
    PublishRequest,
    TextCount,
    TokenGrant,
)

pytestmark = pytest.mark.integration


def challenge_of(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


# --- an instance ---------------------------------------------------------------------------


@dataclass
class App:
    client_secret: str
    redirect_uri: str
    scopes: str


@dataclass
class FakeInstance:
    url: str = ""
    account_id: str = ""
    username: str = "alice"
    apps: dict[str, App] = field(default_factory=dict)
    codes: dict[str, dict[str, str]] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)  # access token -> account id
    calls: Counter[str] = field(default_factory=Counter)
    hold_apps: asyncio.Event | None = None
    apps_arrived: asyncio.Event = field(default_factory=asyncio.Event)
    login_disabled: bool = False

    def _client(self, form: Any) -> App | None:
        app = self.apps.get(str(form.get("client_id", "")))
        if app is None or app.client_secret != form.get("client_secret"):
            return None
        return app

    async def register(self, request: web.Request) -> web.Response:
        self.calls["apps"] += 1
        self.apps_arrived.set()
        if self.hold_apps is not None:
            await self.hold_apps.wait()
        form = await request.post()
        redirect = str(form.get("redirect_uris", ""))
        if not form.get("client_name") or not redirect.startswith(("http://", "https://")):
            return web.json_response(
                {"error": "Validation failed: Redirect URI must be an absolute URI."}, status=422
            )
        client_id = secrets.token_urlsafe(16)
        app = App(secrets.token_urlsafe(24), redirect, str(form.get("scopes") or "read"))
        self.apps[client_id] = app
        return web.json_response(
            {
                "id": str(len(self.apps)),
                "name": form["client_name"],
                "website": form.get("website"),
                "scopes": app.scopes.split(),
                "redirect_uri": redirect,
                "redirect_uris": [redirect],
                "client_id": client_id,
                "client_secret": app.client_secret,
                "vapid_key": secrets.token_urlsafe(65),
            }
        )

    async def authorize(self, request: web.Request) -> web.Response:
        q = request.query
        app = self.apps.get(q.get("client_id", ""))
        if app is None or q.get("redirect_uri") != app.redirect_uri:
            return web.Response(status=400, text="The redirect uri included is not valid.")
        if q.get("response_type") != "code" or q.get("code_challenge_method") != "S256":
            return web.Response(status=400, text="unsupported request")
        code = secrets.token_urlsafe(16)
        self.codes[code] = {
            "client_id": q["client_id"],
            "redirect_uri": q["redirect_uri"],
            "challenge": q.get("code_challenge", ""),
        }
        raise web.HTTPFound(f"{q['redirect_uri']}?{urlencode({'code': code, 'state': q['state']})}")

    async def token(self, request: web.Request) -> web.Response:
        self.calls["token"] += 1
        form = await request.post()
        if self._client(form) is None:
            return web.json_response(
                {
                    "error": "invalid_client",
                    "error_description": "Client authentication failed due to unknown client.",
                },
                status=401,
            )
        issued = self.codes.pop(str(form.get("code", "")), None)
        if (
            issued is None
            or issued["client_id"] != form.get("client_id")
            or issued["redirect_uri"] != form.get("redirect_uri")
            or issued["challenge"] != challenge_of(str(form.get("code_verifier", "")))
        ):
            return web.json_response(
                {"error": "invalid_grant", "error_description": "The provided grant is invalid"},
                status=400,
            )
        access = secrets.token_urlsafe(32)
        self.tokens[access] = self.account_id
        return web.json_response(
            {
                "access_token": access,
                "token_type": "Bearer",
                "scope": "read write",
                "created_at": 1_733_000_000,
            }
        )

    async def verify_credentials(self, request: web.Request) -> web.Response:
        self.calls["verify"] += 1
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        account = self.tokens.get(token) if scheme == "Bearer" else None
        if account is None:
            return web.json_response({"error": "The access token is invalid"}, status=401)
        if self.login_disabled:
            return web.json_response({"error": "Your login is currently disabled"}, status=403)
        return web.json_response(
            {
                "id": account,
                "username": self.username,
                "acct": self.username,
                "display_name": self.username.title(),
                "url": f"{self.url}/@{self.username}",
                "followers_count": 12,
            }
        )

    async def revoke(self, request: web.Request) -> web.Response:
        self.calls["revoke"] += 1
        form = await request.post()
        if self._client(form) is None:
            return web.json_response(
                {"error": "unauthorized_client", "error_description": "not your token"},
                status=403,
            )
        self.tokens.pop(str(form.get("token", "")), None)
        return web.json_response({})


@asynccontextmanager
async def fake_instance(account_id: str) -> AsyncIterator[FakeInstance]:
    instance = FakeInstance(account_id=account_id)
    app = web.Application()
    app.router.add_post("/api/v1/apps", instance.register)
    app.router.add_get("/oauth/authorize", instance.authorize)
    app.router.add_post("/oauth/token", instance.token)
    app.router.add_post("/oauth/revoke", instance.revoke)
    app.router.add_get("/api/v1/accounts/verify_credentials", instance.verify_credentials)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    instance.url = f"http://127.0.0.1:{port}"
    try:
        yield instance
    finally:
        await runner.cleanup()


# --- the adapter -------------------------------------------------------------------------


class MastodonTestPlatform(Platform):
    capabilities = Capabilities(
        platform="mastodon",
        display_name="Mastodon",
        text_limit=500,
        text_count=TextCount.GRAPHEMES,
        pkce=True,
        token_lifetime_s=None,
        refreshable=False,
    )

    async def register_app(self, instance_url: str, redirect_uri: str) -> dict[str, str]:
        answer = await self.http.request(
            self,
            "POST",
            f"{instance_url}/api/v1/apps",
            data={
                "client_name": "Pressroom",
                "redirect_uris": redirect_uri,
                "scopes": "read write",
            },
        )
        body = answer.json()
        return {
            "instance_url": instance_url,
            "client_id": body["client_id"],
            "client_secret": body["client_secret"],
        }

    async def authorization_url(self, context: OAuthContext) -> str:
        assert context.code_verifier is not None
        query = {
            "response_type": "code",
            "client_id": context.extra["client_id"],
            "redirect_uri": context.redirect_uri,
            "scope": "read write",
            "state": context.state,
            "code_challenge": challenge_of(context.code_verifier),
            "code_challenge_method": "S256",
        }
        return f"{context.extra['instance_url']}/oauth/authorize?{urlencode(query)}"

    async def exchange_code(self, code: str, context: OAuthContext) -> TokenGrant:
        answer = await self.http.request(
            self,
            "POST",
            f"{context.extra['instance_url']}/oauth/token",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "client_id": context.extra["client_id"],
                "client_secret": context.extra["client_secret"],
                "redirect_uri": context.redirect_uri,
                "code_verifier": context.code_verifier or "",
            },
        )
        body = answer.json()
        return TokenGrant(access_token=body["access_token"], scopes=tuple(body["scope"].split()))

    async def refresh(self, credentials: Credentials) -> TokenGrant:
        raise NotSupportedError(self.id, "Mastodon tokens do not expire")

    async def verify(self, credentials: Credentials) -> Account:
        answer = await self.http.request(
            self,
            "GET",
            f"{credentials.extra['instance_url']}/api/v1/accounts/verify_credentials",
            token=credentials.access_token,
        )
        body = answer.json()
        return Account(
            account_id=body["id"],
            name=body["display_name"],
            extra={"username": body["username"], "url": body["url"]},
        )

    async def revoke(self, credentials: Credentials) -> None:
        await self.http.request(
            self,
            "POST",
            f"{credentials.extra['instance_url']}/oauth/revoke",
            data={
                "client_id": credentials.extra["client_id"],
                "client_secret": credentials.extra["client_secret"],
                "token": credentials.access_token,
            },
        )

    async def publish(self, credentials: Credentials, request: PublishRequest) -> PublishedPost:
        raise NotSupportedError(self.id, "this test adapter only connects")

    async def delete(self, credentials: Credentials, platform_post_id: str) -> None:
        raise NotSupportedError(self.id, "this test adapter only connects")

    async def fetch_metrics(
        self,
        credentials: Credentials,
        since: date,
        until: date,
        platform_post_ids: Sequence[str] = (),
    ) -> MetricsReport:
        raise NotSupportedError(self.id, "this test adapter only connects")


@asynccontextmanager
async def mastodon_service(
    db: Any, instances: int = 2, **overrides: Any
) -> AsyncIterator[tuple[Service, list[FakeInstance]]]:
    clock = FakeClock()
    async with AsyncExitStack() as stack:
        fakes = [await stack.enter_async_context(fake_instance(f"10{n}")) for n in range(instances)]

        def platforms(
            http: PlatformHTTP, provider: OAuthProvider, clock: FakeClock
        ) -> dict[str, Platform]:
            return {
                "mastodon": MastodonTestPlatform(http, {}),
                "sandbox": ProviderPlatform(http, {"url": provider.url, "clock": clock}),
            }

        overrides.setdefault("allow_insecure_instances", True)
        service = await stack.enter_async_context(
            connections_service(db, platforms=platforms, clock=clock, **overrides)
        )
        yield service, fakes


AUTHORIZE = "/v1/connections/mastodon/authorize"


async def authorize(service: Service, brand: uuid.UUID, instance_url: str) -> dict[str, Any]:
    status, out = await service.call("POST", AUTHORIZE, brand, json={"instance_url": instance_url})
    assert status == 200, out
    return out  # type: ignore[no-any-return]


async def consent(service: Service, authorization_url: str) -> str:
    """The instance's consent page, allowed: the callback URL it sends the browser to."""
    async with service.http.get(authorization_url, allow_redirects=False) as answer:
        assert answer.status == 302, await answer.text()
        return answer.headers["Location"]


async def connect(service: Service, brand: uuid.UUID, instance_url: str) -> dict[str, Any]:
    out = await authorize(service, brand, instance_url)
    status, page, _ = await service.browser(await consent(service, out["authorization_url"]))
    assert status == 200 and "Mastodon is connected" in page, page
    return await service.connection(brand)


def client_id_of(authorization_url: str) -> str:
    return parse_qs(urlsplit(authorization_url).query)["client_id"][0]


# --- tests -------------------------------------------------------------------------------


async def test_two_instances_for_two_brands_each_app_registered_once(fresh_db):
    async with mastodon_service(fresh_db) as (service, (one, two)):
        a, b, c = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()

        out = await authorize(service, a, one.url)
        assert out["authorization_url"].startswith(f"{one.url}/oauth/authorize?")
        cid_one = client_id_of(out["authorization_url"])
        assert list(one.apps) == [cid_one] and one.calls["apps"] == 1
        assert one.apps[cid_one].redirect_uri == (
            f"{service.base}/v1/connections/mastodon/callback"
        )
        status, _, _ = await service.browser(await consent(service, out["authorization_url"]))
        assert status == 200
        conn_a = await service.connection(a)
        assert conn_a["account_id"] == one.account_id
        assert conn_a["extra"] == {
            "instance_url": one.url,
            "client_id": cid_one,
            "username": "alice",
            "url": f"{one.url}/@alice",
        }

        # Brand b on the second instance, typed the way people do (the path is dropped, the
        # scheme's case does not matter): the code is exchanged there, with that app.
        port = urlsplit(two.url).port
        conn_b = await connect(service, b, f"HTTP://127.0.0.1:{port}/@alice")
        assert conn_b["extra"]["instance_url"] == two.url
        assert conn_b["account_id"] == two.account_id
        assert two.calls["apps"] == 1 and two.calls["token"] == 1
        assert one.calls["token"] == 1

        # Brand c on the first instance again: the app is shared, not registered again.
        out = await authorize(service, c, f"{one.url}/")
        assert client_id_of(out["authorization_url"]) == cid_one
        assert one.calls["apps"] == 1
        status, _, _ = await service.browser(await consent(service, out["authorization_url"]))
        assert status == 200 and one.calls["token"] == 2

        apps = await service.owner("SELECT * FROM platform_apps ORDER BY created_at")
        assert [(r["platform"], r["instance_url"]) for r in apps] == [
            ("mastodon", one.url),
            ("mastodon", two.url),
        ]
        # The client secrets are sealed (bound to their app row), like every token: in no
        # row, response, event or state in readable form.
        everything = await service.database_text()
        secrets_ = [app.client_secret for fake in (one, two) for app in fake.apps.values()]
        secrets_ += [*one.tokens, *two.tokens]
        for secret in secrets_:
            assert secret not in everything
        for brand in (a, b, c):
            _, listed = await service.call("GET", "/v1/connections", brand, role="viewer")
            assert "client_secret" not in str(listed)
            assert not any(secret in str(listed) for secret in secrets_)
        box = service.app.state.box
        row = apps[0]
        opened = box.decrypt(
            row["client_secret_enc"], context=f"platform_app:{row['id']}:client_secret"
        )
        assert opened == one.apps[cid_one].client_secret
        with pytest.raises(ValueError):
            box.decrypt(
                row["client_secret_enc"], context=f"platform_app:{apps[1]['id']}:client_secret"
            )

        # Publishing gets the instance and its client with the tokens; verify and revoke go to
        # the connection's own instance.
        credentials = await service.source().credentials(b, "mastodon")
        assert credentials.extra["instance_url"] == two.url
        assert credentials.extra["client_secret"] == next(iter(two.apps.values())).client_secret
        status, verified = await service.call("POST", f"/v1/connections/{conn_a['id']}/verify", a)
        assert status == 200 and verified["status"] == "connected"
        assert (one.calls["verify"], two.calls["verify"]) == (3, 1)
        status, _ = await service.call("DELETE", f"/v1/connections/{conn_b['id']}", b)
        assert status == 204
        assert two.calls["revoke"] == 1 and not two.tokens  # revoked with the right client
        assert one.calls["revoke"] == 0


async def test_a_new_instance_authorized_by_two_brands_at_once_is_registered_once(fresh_db):
    async with mastodon_service(fresh_db, instances=1) as (service, (one,)):
        one.hold_apps = asyncio.Event()
        a, b = uuid.uuid4(), uuid.uuid4()
        first = asyncio.create_task(authorize(service, a, one.url))
        await asyncio.wait_for(one.apps_arrived.wait(), 5)
        second = asyncio.create_task(authorize(service, b, one.url))
        # The second waits for the first's registration (an advisory lock), not the instance.
        for _ in range(500):
            waiting = await service.owner(
                "SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            )
            if waiting[0]["n"]:
                break
            await asyncio.sleep(0.01)
        assert waiting[0]["n"] == 1
        one.hold_apps.set()
        outs = await asyncio.gather(first, second)
        assert one.calls["apps"] == 1
        assert {client_id_of(o["authorization_url"]) for o in outs} == set(one.apps)
        assert len(await service.owner("SELECT id FROM platform_apps")) == 1
        # Both flows finish with the one app.
        for brand, out in zip((a, b), outs, strict=True):
            status, _, _ = await service.browser(await consent(service, out["authorization_url"]))
            assert status == 200
            assert (await service.connection(brand))["extra"]["instance_url"] == one.url


async def test_bad_instances_are_refused(fresh_db):
    async with mastodon_service(fresh_db, instances=1) as (service, (one,)):
        brand = uuid.uuid4()
        status, body = await service.call("POST", AUTHORIZE, brand)
        assert status == 422 and body["type"].endswith("/instance_required"), body
        status, body = await service.call("POST", AUTHORIZE, brand, json={})
        assert status == 422 and body["type"].endswith("/instance_required"), body
        for url in (
            "",
            "ftp://social.example",
            "javascript:alert(1)",
            "https://user:secret@social.example",
            "https://social.example/#about",
            "https://social.example/?next=/home",
            "https://social example",
            "https://-social.example",
            "https://social.example:99999",
            "https://",
        ):
            status, body = await service.call("POST", AUTHORIZE, brand, json={"instance_url": url})
            assert status == 422, (url, body)
            assert "instance_url" in str(body["errors"]), (url, body)
        # A server that is not a Mastodon instance (no /api/v1/apps) refuses: a 422; one
        # that does not answer: a 502. Neither leaves an app or a state behind.
        status, body = await service.call(
            "POST", AUTHORIZE, brand, json={"instance_url": service.provider.url}
        )
        assert status == 422 and body["type"].endswith("/instance_refused"), body
        status, body = await service.call(
            "POST", AUTHORIZE, brand, json={"instance_url": f"http://127.0.0.1:{free_port()}"}
        )
        assert status == 502 and body["type"].endswith("/platform_error"), body
        assert await service.owner("SELECT id FROM platform_apps") == []
        assert await service.owner("SELECT id FROM oauth_states") == []

        # The app a state names is gone (deleted by an operator): the callback says so.
        out = await authorize(service, brand, one.url)
        callback = await consent(service, out["authorization_url"])
        await service.owner("DELETE FROM platform_apps")
        status, text, _ = await service.browser(callback)
        assert status == 400 and "state_unreadable" in text, text
    async with mastodon_service(fresh_db, instances=1, allow_insecure_instances=False) as (
        service,
        (one,),
    ):
        status, body = await service.call(
            "POST", AUTHORIZE, uuid.uuid4(), json={"instance_url": one.url}
        )
        assert status == 422 and "https" in body["detail"], body
        assert one.calls["apps"] == 0


async def test_a_refusing_verify_is_the_error_status_and_it_recovers(fresh_db):
    async with mastodon_service(fresh_db, instances=1) as (service, (one,)):
        brand = uuid.uuid4()
        connection = await connect(service, brand, one.url)
        verify = f"/v1/connections/{connection['id']}/verify"

        # A 403 (the login disabled): not expired, not revoked, but not usable either.
        one.login_disabled = True
        status, body = await service.call("POST", verify, brand)
        assert status == 200 and body["status"] == "error", body
        assert "Your login is currently disabled" in body["last_error"]
        with pytest.raises(ConnectionUnusable) as unusable:
            await service.source().credentials(brand, "mastodon")
        assert unusable.value.status == "error"

        # The worker keeps verifying it (every VERIFY_INTERVAL_S) and it comes back.
        worker = service.worker()
        assert await worker.step() == 0
        service.clock.advance(service.app.state.settings.verify_interval_s + 1)
        assert await worker.step() == 1
        assert (await service.connection(brand))["status"] == "error"
        one.login_disabled = False
        service.clock.advance(service.app.state.settings.verify_interval_s + 1)
        assert await worker.step() == 1
        connection = await service.connection(brand)
        assert connection["status"] == "connected" and connection["last_error"] is None
        assert (await service.source().credentials(brand, "mastodon")).extra["instance_url"]

        # The token now answers for another account: an error too (reconnect to fix).
        one.tokens = {token: "999" for token in one.tokens}
        status, body = await service.call("POST", verify, brand)
        assert status == 200 and body["status"] == "error"
        assert "account 999, not 100" in body["last_error"]
        # A reconnect makes it connected again, same id; no public event for `error`.
        reconnected = await connect(service, brand, one.url)
        assert reconnected["id"] == connection["id"]
        assert reconnected["status"] == "connected"
        assert await service.outbox_types() == ["publishing.connection.connected.v1"] * 2

        # An errored token that the instance no longer accepts at all expires.
        one.login_disabled = True
        status, body = await service.call("POST", verify, brand)
        assert body["status"] == "error"
        one.tokens.clear()
        status, body = await service.call("POST", verify, brand)
        assert status == 200 and body["status"] == "expired", body
        assert "publishing.connection.expired.v1" in await service.outbox_types()
