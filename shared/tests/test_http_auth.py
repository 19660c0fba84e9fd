from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import time
import uuid

import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from pressroom_kit.auth import JWTSettings, JWTVerifier, mint_token
from pressroom_kit.health import Heartbeats
from pressroom_kit.testing.sample.app import build_app
from pressroom_kit.testing.servers import serve_asgi

SECRET = "test-secret-that-is-long-enough-for-hs256"
BRAND = uuid.uuid4()
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
ED_KEY = ed25519.Ed25519PrivateKey.generate()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims(**overrides):
    claims = {
        "sub": "user-1",
        "email": "u@example.com",
        "brand_id": str(BRAND),
        "role": "manager",
        "exp": int(time.time()) + 600,
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def _jwk(key, kid, alg):
    public = key.public_key()
    algo = {
        "RS256": jwt.algorithms.RSAAlgorithm,
        "ES256": jwt.algorithms.ECAlgorithm,
        "EdDSA": jwt.algorithms.OKPAlgorithm,
    }[alg]
    entry = json.loads(algo.to_jwk(public))
    entry.update({"kid": kid, "alg": alg, "use": "sig"})
    return entry


JWKS_KEYS: dict[str, list] = {"keys": []}


@pytest.fixture
async def jwks_url():
    """A real JWKS endpoint; tests may add keys to ``JWKS_KEYS`` to rotate."""
    app = web.Application()
    JWKS_KEYS["keys"] = [
        _jwk(RSA_KEY, "rsa-1", "RS256"),
        _jwk(EC_KEY, "ec-1", "ES256"),
        _jwk(ED_KEY, "ed-1", "EdDSA"),
    ]

    async def serve(_):
        return web.json_response(JWKS_KEYS)

    app.router.add_get("/.well-known/jwks.json", serve)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}/.well-known/jwks.json"
    await runner.cleanup()


class Client:
    """A thin aiohttp client with the answers tests look at."""

    def __init__(self, session, base):
        self.session, self.base = session, base

    async def request(self, method, path, *, json=None, content=None, headers=None):
        async with self.session.request(
            method, self.base + path, json=json, data=content, headers=headers
        ) as response:
            body = await response.read()
            return Answer(response.status, response.headers, body)

    async def get(self, path, **kwargs):
        return await self.request("GET", path, **kwargs)

    async def post(self, path, **kwargs):
        return await self.request("POST", path, **kwargs)


class Answer:
    def __init__(self, status, headers, body):
        self.status_code, self.headers, self.content = status, headers, body
        self.text = body.decode()

    def json(self):
        return json.loads(self.content)


@contextlib.asynccontextmanager
async def served(app):
    from aiohttp import ClientSession

    async with serve_asgi(app) as base, ClientSession() as session:
        yield Client(session, base)


@pytest.fixture
async def client(jwks_url):
    verifier = JWTVerifier(JWTSettings(secret=SECRET, jwks_url=jwks_url, leeway=0))
    async with served(build_app(verifier)) as test_client:
        yield test_client


def _bearer(token):
    return {"Authorization": f"Bearer {token}"}


async def _status(client, token, path="/v1/whoami"):
    response = await client.get(path, headers=_bearer(token))
    return response


@pytest.mark.integration
@pytest.mark.parametrize(
    ("alg", "key", "kid"),
    [
        ("HS256", SECRET, None),
        ("RS256", RSA_KEY, "rsa-1"),
        ("ES256", EC_KEY, "ec-1"),
        ("EdDSA", ED_KEY, "ed-1"),
    ],
)
async def test_valid_tokens_of_every_supported_algorithm_are_accepted(client, alg, key, kid):
    token = jwt.encode(_claims(), key, algorithm=alg, headers={"kid": kid} if kid else None)
    response = await _status(client, token)
    assert response.status_code == 200, response.text
    assert response.json()["sub"] == "user-1"


def _hs256_with(secret: bytes, claims) -> str:
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = _b64(json.dumps(claims).encode())
    signature = hmac.new(secret, f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{_b64(signature)}"


def _unsigned(claims) -> str:
    header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return f"{header}.{_b64(json.dumps(claims).encode())}."


REFUSED = {
    "expired": (lambda: jwt.encode(_claims(exp=int(time.time()) - 60), SECRET, "HS256"), 401),
    "bad signature": (
        lambda: jwt.encode(_claims(), "another-secret-of-enough-length!", "HS256"),
        401,
    ),
    "alg none": (lambda: _unsigned(_claims()), 401),
    "hs256 with the rsa public key": (
        lambda: _hs256_with(
            RSA_KEY.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
            _claims(),
        ),
        401,
    ),
    "rs256 with an unknown key": (
        lambda: jwt.encode(
            _claims(),
            rsa.generate_private_key(public_exponent=65537, key_size=2048),
            "RS256",
            headers={"kid": "rsa-1"},
        ),
        401,
    ),
    "no exp": (lambda: jwt.encode(_claims(exp=None), SECRET, "HS256"), 401),
    "garbage": (lambda: "not.a.jwt", 401),
    "missing brand_id": (lambda: jwt.encode(_claims(brand_id=None), SECRET, "HS256"), 403),
    "unknown role": (lambda: jwt.encode(_claims(role="owner"), SECRET, "HS256"), 403),
}


@pytest.mark.integration
@pytest.mark.parametrize("case", list(REFUSED))
async def test_bad_tokens_are_refused_with_problem_json(client, case):
    make, status = REFUSED[case]
    response = await _status(client, make(), path="/v1/notes")
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status and body["title"] and body["detail"]


@pytest.mark.integration
async def test_missing_token_is_401_and_public_routes_need_none(client):
    response = await client.get("/v1/notes")
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert (await client.get("/healthz")).status_code == 200
    assert (await client.get("/metrics")).status_code == 200
    schema = (await client.get("/schema/openapi.json")).json()
    assert "/v1/notes" in schema["paths"]
    assert "BearerAuth" in schema["components"]["securitySchemes"]


@pytest.mark.integration
async def test_a_token_without_brand_passes_only_where_the_route_allows(client):
    token = jwt.encode(_claims(brand_id=None), SECRET, "HS256")
    assert (await client.get("/v1/whoami", headers=_bearer(token))).status_code == 200
    assert (await client.get("/v1/notes", headers=_bearer(token))).status_code == 403


@pytest.mark.integration
async def test_roles_are_ranked(client):
    viewer = mint_token(SECRET, sub="v", role="viewer", brand_id=BRAND)
    response = await client.post("/v1/notes", json={"title": "x"}, headers=_bearer(viewer))
    assert response.status_code == 403
    assert "manager" in response.json()["detail"]


@pytest.mark.integration
async def test_errors_are_problems_without_internals(client):
    token = mint_token(SECRET, sub="m", role="manager", brand_id=BRAND)
    response = await client.get("/v1/boom", headers={**_bearer(token), "X-Request-ID": "req-42"})
    assert response.status_code == 500
    assert "secret internals" not in response.text
    assert response.json()["request_id"] == "req-42"
    assert response.headers["x-request-id"] == "req-42"
    bad = await client.post(
        "/v1/notes",
        content=b"{nope",
        headers={**_bearer(token), "Content-Type": "application/json"},
    )
    assert bad.status_code == 400
    invalid = await client.post("/v1/notes", json={"title": ""}, headers=_bearer(token))
    assert invalid.status_code in (400, 422)
    assert invalid.json()["errors"]
    missing = await client.get("/v1/nothing-here", headers=_bearer(token))
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("application/problem+json")


@pytest.mark.integration
async def test_readyz_tells_the_truth_about_background_work(jwks_url):
    beats = Heartbeats()
    beats.register("relay:sample", max_age=0.2)
    verifier = JWTVerifier(JWTSettings(secret=SECRET))
    async with served(build_app(verifier, heartbeats=beats)) as test_client:
        response = await test_client.get("/readyz")
        assert response.status_code == 503  # never beaten
        beats.beat("relay:sample")
        assert (await test_client.get("/readyz")).status_code == 200
        import asyncio

        await asyncio.sleep(0.3)
        stale = await test_client.get("/readyz")
        assert stale.status_code == 503
        assert "no beat" in stale.json()["checks"]["relay:sample"]["detail"]


@pytest.mark.integration
async def test_a_rotated_signing_key_is_picked_up_from_the_jwks(jwks_url):
    import asyncio

    from pressroom_kit.errors import Unauthorized

    verifier = JWTVerifier(JWTSettings(jwks_url=jwks_url, jwks_min_refresh=0.2))
    await verifier.verify(jwt.encode(_claims(), RSA_KEY, "RS256", headers={"kid": "rsa-1"}))
    new_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode(_claims(sub="after-rotation"), new_key, "RS256", headers={"kid": "rsa-2"})
    with pytest.raises(Unauthorized):
        await verifier.verify(token)
    JWKS_KEYS["keys"].append(_jwk(new_key, "rsa-2", "RS256"))
    await asyncio.sleep(0.25)
    assert (await verifier.verify(token)).sub == "after-rotation"


@pytest.mark.integration
async def test_issuer_and_audience_are_checked_when_configured():
    from pressroom_kit.errors import Unauthorized

    verifier = JWTVerifier(
        JWTSettings(secret=SECRET, issuer="https://id.example.com", audience="pressroom")
    )
    good = jwt.encode(_claims(iss="https://id.example.com", aud="pressroom"), SECRET, "HS256")
    assert (await verifier.verify(good)).sub == "user-1"
    for claims in (
        _claims(iss="https://evil.example.com", aud="pressroom"),
        _claims(iss="https://id.example.com", aud="other"),
        _claims(aud="pressroom"),
    ):
        with pytest.raises(Unauthorized):
            await verifier.verify(jwt.encode(claims, SECRET, "HS256"))
