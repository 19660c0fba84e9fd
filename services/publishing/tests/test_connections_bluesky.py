"""Connecting with an app password (Bluesky) against a real local atproto PDS over HTTP.

``FakePDS`` speaks the XRPC shapes of ``com.atproto.server.createSession`` /
``refreshSession`` / ``getSession`` / ``deleteSession`` (JWTs with ``exp``, refresh tokens
that rotate, ``{"error", "message"}`` bodies: 401 ``AuthenticationRequired``, 400
``ExpiredToken``); ``BlueskyTestPlatform`` is a small adapter implementing the connections'
``AppPasswordPlatform`` protocol over it, as the real adapter does.
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

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
from pressroom_publishing.connections.app_password import DEFAULT_SERVICE_URL
from pressroom_publishing.connections.instances import normalize_server_url
from pressroom_publishing.platforms.base import (
    Account,
    AuthExpiredError,
    Capabilities,
    Credentials,
    MetricsReport,
    NotSupportedError,
    OAuthContext,
    Platform,
    PlatformError,
    PlatformHTTP,
    PublishedPost,
    PublishRequest,
    Response,
    RevokedError,
    TextCount,
    TokenGrant,
)
from structlog.testing import capture_logs

pytestmark = pytest.mark.integration

APP_PASSWORD = "abcd-2345-efgh-6789"
ACCOUNT_PASSWORD = "correct horse battery staple"
ACCESS_LIFETIME = timedelta(hours=2)


def jwt(claims: dict[str, Any]) -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'typ': 'at+jwt', 'alg': 'ES256K'})}.{part(claims)}.{secrets.token_urlsafe(32)}"


def jwt_expiry(token: str) -> datetime:
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return datetime.fromtimestamp(int(claims["exp"]), UTC)


# --- the PDS ---------------------------------------------------------------------------


@dataclass
class Session:
    did: str
    app_password: str
    access: str
    refresh: str
    access_exp: datetime
    dead: bool = False


@dataclass
class FakePDS:
    clock: FakeClock
    url: str = ""
    did: str = "did:plc:alice4bsky7test0account"
    handle: str = "alice.test"
    email: str = "alice@example.com"
    app_passwords: set[str] = field(default_factory=lambda: {APP_PASSWORD})
    calls: Counter[str] = field(default_factory=Counter)
    fail_next: list[int] = field(default_factory=list)
    sessions: list[Session] = field(default_factory=list)
    identifiers: list[str] = field(default_factory=list)

    def _issue(self, app_password: str) -> Session:
        now = self.clock()
        exp = now + ACCESS_LIFETIME
        session = Session(
            did=self.did,
            app_password=app_password,
            access=jwt(
                {"scope": "com.atproto.appPass", "sub": self.did, "exp": int(exp.timestamp())}
            ),
            refresh=jwt(
                {
                    "scope": "com.atproto.refresh",
                    "sub": self.did,
                    "jti": secrets.token_hex(8),
                    "exp": int((now + timedelta(days=90)).timestamp()),
                }
            ),
            access_exp=exp,
        )
        self.sessions.append(session)
        return session

    def _answer(self, session: Session) -> web.Response:
        return web.json_response(
            {
                "did": self.did,
                "handle": self.handle,
                "email": self.email,
                "emailConfirmed": True,
                "accessJwt": session.access,
                "refreshJwt": session.refresh,
                "active": True,
                "didDoc": {
                    "id": self.did,
                    "service": [
                        {
                            "id": "#atproto_pds",
                            "type": "AtprotoPersonalDataServer",
                            "serviceEndpoint": self.url,
                        }
                    ],
                },
            }
        )

    @staticmethod
    def _error(status: int, error: str, message: str) -> web.Response:
        return web.json_response({"error": error, "message": message}, status=status)

    def _bearer(self, request: web.Request) -> str:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        return token if scheme == "Bearer" else ""

    def revoke_app_password(self, app_password: str) -> None:
        """The user deletes the app password in their settings: its sessions end."""
        self.app_passwords.discard(app_password)
        for session in self.sessions:
            if session.app_password == app_password:
                session.dead = True

    async def create_session(self, request: web.Request) -> web.Response:
        self.calls["createSession"] += 1
        if self.fail_next:
            return self._error(self.fail_next.pop(0), "InternalServerError", "try later")
        body = await request.json()
        identifier, password = body.get("identifier"), body.get("password")
        if not isinstance(identifier, str) or not isinstance(password, str):
            return self._error(400, "InvalidRequest", "identifier and password are required")
        self.identifiers.append(identifier)
        if identifier not in (self.handle, self.did, self.email) or (
            password not in self.app_passwords
        ):
            return self._error(401, "AuthenticationRequired", "Invalid identifier or password")
        return self._answer(self._issue(password))

    async def refresh_session(self, request: web.Request) -> web.Response:
        self.calls["refreshSession"] += 1
        if self.fail_next:
            return self._error(self.fail_next.pop(0), "InternalServerError", "try later")
        token = self._bearer(request)
        session = next((s for s in self.sessions if s.refresh == token), None)
        if session is None or session.dead:
            return self._error(400, "ExpiredToken", "Token has been revoked")
        session.dead = True  # rotation: the old pair ends
        return self._answer(self._issue(session.app_password))

    async def get_session(self, request: web.Request) -> web.Response:
        self.calls["getSession"] += 1
        token = self._bearer(request)
        session = next((s for s in self.sessions if s.access == token), None)
        if session is None or session.dead or session.access_exp <= self.clock():
            return self._error(400, "ExpiredToken", "Token has expired")
        return web.json_response({"did": self.did, "handle": self.handle, "active": True})

    async def delete_session(self, request: web.Request) -> web.Response:
        self.calls["deleteSession"] += 1
        token = self._bearer(request)
        for session in self.sessions:
            if session.refresh == token:
                session.dead = True
        return web.Response(status=200)


@asynccontextmanager
async def fake_pds(clock: FakeClock) -> AsyncIterator[FakePDS]:
    pds = FakePDS(clock)
    app = web.Application()
    xrpc = "/xrpc/com.atproto.server."
    app.router.add_post(xrpc + "createSession", pds.create_session)
    app.router.add_post(xrpc + "refreshSession", pds.refresh_session)
    app.router.add_get(xrpc + "getSession", pds.get_session)
    app.router.add_post(xrpc + "deleteSession", pds.delete_session)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    pds.url = f"http://127.0.0.1:{port}"
    try:
        yield pds
    finally:
        await runner.cleanup()


# --- the adapter -------------------------------------------------------------------------


class BlueskyTestPlatform(Platform):
    capabilities = Capabilities(
        platform="bluesky",
        display_name="Bluesky",
        text_limit=300,
        text_count=TextCount.GRAPHEMES,
        connect="app_password",
        pkce=False,
        token_lifetime_s=7200,
    )

    def _grant(self, body: dict[str, Any]) -> tuple[TokenGrant, Account]:
        endpoint = next(
            (
                s["serviceEndpoint"]
                for s in body.get("didDoc", {}).get("service", [])
                if s.get("id") == "#atproto_pds"
            ),
            None,
        )
        grant = TokenGrant(
            access_token=body["accessJwt"],
            refresh_token=body["refreshJwt"],
            expires_at=jwt_expiry(body["accessJwt"]),
        )
        extra = {"did": body["did"], "handle": body["handle"]}
        if endpoint:
            extra["service_url"] = endpoint
        return grant, Account(account_id=body["did"], name=body["handle"], extra=extra)

    async def create_session(
        self, identifier: str, app_password: str, service_url: str
    ) -> tuple[TokenGrant, Account]:
        answer = await self.http.request(
            self,
            "POST",
            f"{service_url}/xrpc/com.atproto.server.createSession",
            json={"identifier": identifier, "password": app_password},
        )
        return self._grant(answer.json())

    async def refresh(self, credentials: Credentials) -> TokenGrant:
        answer = await self.http.request(
            self,
            "POST",
            f"{credentials.extra['service_url']}/xrpc/com.atproto.server.refreshSession",
            token=credentials.refresh_token,
        )
        return self._grant(answer.json())[0]

    async def verify(self, credentials: Credentials) -> Account:
        answer = await self.http.request(
            self,
            "GET",
            f"{credentials.extra['service_url']}/xrpc/com.atproto.server.getSession",
            token=credentials.access_token,
        )
        body = answer.json()
        return Account(account_id=body["did"], name=body["handle"])

    async def revoke(self, credentials: Credentials) -> None:
        await self.http.request(
            self,
            "POST",
            f"{credentials.extra['service_url']}/xrpc/com.atproto.server.deleteSession",
            token=credentials.refresh_token,
        )

    def classify(self, response: Response) -> PlatformError:
        code, message = self.error_details(response)
        if code in ("ExpiredToken", "InvalidToken"):
            return AuthExpiredError(self.id, message, code=code, status=response.status)
        if code in ("AccountTakedown", "AccountDeactivated"):
            return RevokedError(self.id, message, code=code, status=response.status)
        return super().classify(response)

    async def authorization_url(self, context: OAuthContext) -> str:
        raise NotSupportedError(self.id, "connects with an app password")

    async def exchange_code(self, code: str, context: OAuthContext) -> TokenGrant:
        raise NotSupportedError(self.id, "connects with an app password")

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
async def bluesky_service(db: Any, **overrides: Any) -> AsyncIterator[tuple[Service, FakePDS]]:
    clock = FakeClock()
    async with fake_pds(clock) as pds:

        def platforms(
            http: PlatformHTTP, provider: OAuthProvider, clock: FakeClock
        ) -> dict[str, Platform]:
            return {
                "bluesky": BlueskyTestPlatform(http, {"service_url": pds.url}),
                "sandbox": ProviderPlatform(http, {"url": provider.url, "clock": clock}),
            }

        overrides.setdefault("allow_insecure_instances", True)
        async with connections_service(db, platforms=platforms, clock=clock, **overrides) as svc:
            yield svc, pds


PATH = "/v1/connections/bluesky/app-password"


# --- tests -------------------------------------------------------------------------------


async def test_app_password_connects_and_is_kept_nowhere(fresh_db, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    async with bluesky_service(fresh_db) as (service, pds):
        brand = uuid.uuid4()
        body = {"identifier": "@alice.test", "app_password": APP_PASSWORD, "service_url": pds.url}
        with capture_logs() as logs:
            status, connection = await service.call("POST", PATH, brand, json=body)
        assert status == 201, connection
        assert pds.identifiers == ["alice.test"]  # the leading @ is not part of a handle
        assert connection["platform"] == "bluesky"
        assert connection["status"] == "connected"
        assert connection["account_id"] == pds.did
        assert connection["account_name"] == "alice.test"
        assert connection["connected_by"] == "user-admin"
        assert connection["extra"] == {
            "service_url": pds.url,
            "did": pds.did,
            "handle": "alice.test",
        }
        session = pds.sessions[-1]
        assert connection["token_expires_at"] is not None
        assert datetime.fromisoformat(connection["token_expires_at"]) == session.access_exp

        # The app password is nowhere: not in any table (events, outbox, states, tokens),
        # not in a log line; the tokens only sealed.
        everything = await service.database_text()
        assert APP_PASSWORD not in everything
        assert session.access not in everything and session.refresh not in everything
        logged = f"{logs} {caplog.text} {capsys.readouterr()}"
        assert APP_PASSWORD not in logged and session.refresh not in logged
        assert await service.outbox_types() == ["publishing.connection.connected.v1"]
        _, listed = await service.call("GET", "/v1/connections", brand, role="viewer")
        assert session.access not in str(listed) and APP_PASSWORD not in str(listed)

        # The scheduler gets the session's tokens, with the server they belong to.
        credentials = await service.source().credentials(brand, "bluesky")
        assert credentials.access_token == session.access
        assert credentials.refresh_token == session.refresh
        assert credentials.extra["service_url"] == pds.url

        # A second app password (the first one revoked, say): a reconnect, same id, 200;
        # without service_url it goes to the adapter's configured server.
        pds.app_passwords.add("wxyz-2345-abcd-6789")
        body = {"identifier": "alice.test", "app_password": "wxyz-2345-abcd-6789"}
        status, again = await service.call("POST", PATH, brand, json=body)
        assert status == 200, again
        assert again["id"] == connection["id"]
        assert again["extra"]["service_url"] == pds.url
        rows = await service.owner("SELECT generation FROM platform_connection_tokens")
        assert [r["generation"] for r in rows] == [2]
        assert "wxyz-2345-abcd-6789" not in await service.database_text()
        payloads = await service.owner("SELECT payload FROM outbox ORDER BY id")
        assert [p["payload"]["reconnected"] for p in payloads] == [
            False,
            True,
        ]


async def test_refused_and_malformed_app_passwords_are_clear_4xx(fresh_db):
    async with bluesky_service(fresh_db) as (service, pds):
        brand = uuid.uuid4()
        good = {"identifier": "alice.test", "app_password": APP_PASSWORD, "service_url": pds.url}

        # The server refuses: a 422 with its words, nothing stored.
        wrong = "zzzz-9999-zzzz-9999"
        status, body = await service.call("POST", PATH, brand, json={**good, "app_password": wrong})
        assert status == 422, body
        assert body["type"].endswith("/credentials_refused")
        assert "Invalid identifier or password" in body["detail"]
        assert wrong not in json.dumps(body)
        status, body = await service.call(
            "POST", PATH, brand, json={**good, "identifier": "bob.test"}
        )
        assert status == 422 and body["type"].endswith("/credentials_refused")
        assert pds.calls["createSession"] == 2

        # The account's own password is refused before anything is sent anywhere.
        status, body = await service.call(
            "POST", PATH, brand, json={**good, "app_password": ACCOUNT_PASSWORD}
        )
        assert status == 422 and body["type"].endswith("/not_an_app_password"), body
        assert "App passwords" in body["detail"]
        assert ACCOUNT_PASSWORD not in json.dumps(body)
        assert pds.calls["createSession"] == 2

        refusals: list[tuple[dict[str, Any], str]] = [
            ({**good, "identifier": "not a handle"}, "identifier"),
            ({**good, "identifier": ""}, "identifier"),
            ({k: v for k, v in good.items() if k != "app_password"}, "app_password"),
            ({**good, "app_password": ""}, "app_password"),
            ({**good, "service_url": "ftp://pds.example"}, "service_url"),
            ({**good, "service_url": "https://user:pw@pds.example"}, "service_url"),
            ({**good, "service_url": "https://pds.example/#x"}, "service_url"),
            ({**good, "handle": "alice.test"}, "handle"),
        ]
        for sent, field_name in refusals:
            status, body = await service.call("POST", PATH, brand, json=sent)
            assert status == 422, (sent, body)
            assert field_name in json.dumps(body["errors"]), (sent, body)
            assert APP_PASSWORD not in json.dumps(body)
        status, body = await service.call(
            "POST", PATH, brand, data=b"{not json", headers={"Content-Type": "application/json"}
        )
        assert status == 400, body

        # The server is down, or failing: a 502, nothing stored.
        down = f"http://127.0.0.1:{free_port()}"
        status, body = await service.call("POST", PATH, brand, json={**good, "service_url": down})
        assert status == 502 and body["type"].endswith("/platform_error"), body
        pds.fail_next.append(500)
        status, body = await service.call("POST", PATH, brand, json=good)
        assert status == 502 and "try later" in body["detail"], body

        # Other platforms and other roles.
        status, body = await service.call(
            "POST", "/v1/connections/sandbox/app-password", brand, json=good
        )
        assert status == 422 and body["type"].endswith("/not_app_password"), body
        status, body = await service.call(
            "POST", "/v1/connections/myspace/app-password", brand, json=good
        )
        assert status == 404
        status, body = await service.call("POST", PATH, brand, role="manager", json=good)
        assert status == 403
        status, body = await service.call("POST", "/v1/connections/bluesky/authorize", brand)
        assert status == 422 and "app password" in body["detail"]

        assert await service.owner("SELECT id FROM platform_connections") == []
        assert wrong not in await service.database_text()


async def test_insecure_servers_are_refused_unless_allowed(fresh_db):
    async with bluesky_service(fresh_db, allow_insecure_instances=False) as (service, pds):
        brand = uuid.uuid4()
        for url in (pds.url, "https://127.0.0.1", "https://localhost:8443", "https://[::1]"):
            status, body = await service.call(
                "POST",
                PATH,
                brand,
                json={"identifier": "alice.test", "app_password": APP_PASSWORD, "service_url": url},
            )
            assert status == 422 and body["type"].endswith("/bad_server_url"), (url, body)
        assert pds.calls["createSession"] == 0
    assert normalize_server_url(DEFAULT_SERVICE_URL, field="f", allow_insecure=False) == (
        "https://bsky.social"
    )


async def test_sessions_refresh_rotate_and_die_with_the_app_password(fresh_db):
    async with bluesky_service(fresh_db) as (service, pds):
        brand, other = uuid.uuid4(), uuid.uuid4()
        body = {"identifier": pds.did, "app_password": APP_PASSWORD, "service_url": pds.url}
        status, connection = await service.call("POST", PATH, brand, json=body)
        assert status == 201, connection
        first = pds.sessions[-1]

        # The worker refreshes ahead of expiry, with the refresh JWT (no password needed).
        worker = service.worker()
        service.clock.now = first.access_exp - timedelta(minutes=30)
        assert await worker.step() == 1
        assert pds.calls["refreshSession"] == 1 and first.dead
        second = pds.sessions[-1]
        credentials = await service.source().credentials(brand, "bluesky")
        assert credentials.refresh_token == second.refresh
        assert credentials.access_token == second.access

        # Verify asks getSession with the new token.
        status, verified = await service.call(
            "POST", f"/v1/connections/{connection['id']}/verify", brand
        )
        assert status == 200 and verified["status"] == "connected", verified
        assert pds.calls["getSession"] == 1

        # Disconnect ends the session on the server.
        status, _ = await service.call("POST", PATH, other, json=body)
        assert status == 201
        other_id = (await service.call("GET", "/v1/connections", other, role="viewer"))[1]["items"][
            0
        ]["id"]
        status, _ = await service.call("DELETE", f"/v1/connections/{other_id}", other)
        assert status == 204 and pds.calls["deleteSession"] == 1

        # The user deletes the app password: its sessions die; the next refresh finds the
        # refresh JWT dead and the connection expires, with its public event.
        pds.revoke_app_password(APP_PASSWORD)
        service.clock.now = second.access_exp - timedelta(minutes=30)
        assert await worker.step() == 1
        connection = await service.connection(brand)
        assert connection["status"] == "expired", connection
        assert "Token has been revoked" in connection["last_error"]
        assert "publishing.connection.expired.v1" in await service.outbox_types()
