"""Paths with empty, ``.`` or ``..`` segments never get past the edge: public paths and routes
are matched on the path as sent, and a backend may read such a path otherwise
(``/sandbox-platform//_control`` was routed to the sandbox's token-guarded ``/_control``)."""

from __future__ import annotations

import pytest
from gateway_testkit import bearer, call, echo_backend, gateway_settings, running_gateway, token
from pressroom_gateway.edge import _is_normal
from yarl import URL

pytestmark = pytest.mark.integration

BRAND = "3f1f9a4e-5b7c-4d2e-9a6b-1c2d3e4f5a6b"


@pytest.mark.unit
@pytest.mark.parametrize(
    ("path", "normal"),
    [
        ("/v1/media", True),
        ("/v1/media/", True),
        ("/", True),
        ("/sandbox-platform//_control/posts", False),
        ("//v1/media", False),
        ("/v1/media/./x", False),
        ("/v1/media/../webhooks", False),
        ("/v1/media/..", False),
        ("/v1/media/a..b", True),
    ],
)
def test_normal_paths(path, normal):
    assert _is_normal(path) is normal


async def test_a_doubled_slash_cannot_reach_a_guarded_path_through_a_public_one(
    fresh_db, kafka_bootstrap, http
):
    async with echo_backend() as backend:
        settings = gateway_settings(
            fresh_db,
            kafka_bootstrap,
            {"/sandbox-platform": backend, "/v1/media": backend},
            public_paths=[r"^/sandbox-platform/(?!_control(/|$))"],
        )
        async with running_gateway(settings) as base:
            status, _, _ = await call(http, "GET", f"{base}/sandbox-platform/_control/posts")
            assert status == 401  # the guard as written
            for raw in (
                "/sandbox-platform//_control/posts",
                "/sandbox-platform/./_control/posts",
                "/sandbox-platform/x/../_control/posts",
            ):
                status, headers, body = await call(http, "GET", URL(base + raw, encoded=True))
                assert status == 400, (raw, status, body)
                assert headers["Content-Type"].startswith("application/problem+json")
                assert body["type"].endswith("/bad_path")
            manager = bearer(token("manager", BRAND))
            status, _, _ = await call(
                http, "GET", URL(f"{base}/v1/media//x", encoded=True), headers=manager
            )
            assert status == 400  # with a token too: nothing odd is forwarded
            status, _, _ = await call(http, "GET", f"{base}/v1/media/", headers=manager)
            assert status != 400
