from __future__ import annotations

import uuid

import pytest
from gateway_testkit import bearer, call, create_brand, token

pytestmark = pytest.mark.integration


async def test_brand_lifecycle_and_role_matrix(gateway, http):
    brand = await create_brand(http, gateway, sub="founder")
    admin = token("admin", brand, sub="founder")
    manager = token("manager", brand, sub="m1")
    viewer = token("viewer", brand, sub="v1")

    status, _, body = await call(
        http, "GET", f"{gateway}/v1/brands/current", headers=bearer(viewer)
    )
    assert status == 200
    assert body["name"] == "Acme" and body["timezone"] == "Europe/Paris"
    assert body["created_by"] == "founder"

    status, headers, body = await call(
        http, "PATCH", f"{gateway}/v1/brands/current", json={"name": "Nope"}, headers=bearer(viewer)
    )
    assert status == 403 and headers["Content-Type"].startswith("application/problem+json")
    status, _, body = await call(
        http,
        "POST",
        f"{gateway}/v1/brands/current/members",
        json={"user_id": "x", "role": "viewer"},
        headers=bearer(manager),
    )
    assert status == 403

    status, _, body = await call(
        http,
        "PATCH",
        f"{gateway}/v1/brands/current",
        json={"name": "Acme Corp", "settings": {"approval_required": True}},
        headers=bearer(admin),
    )
    assert status == 200, body
    assert body["name"] == "Acme Corp" and body["settings"] == {"approval_required": True}
    status, _, body = await call(
        http,
        "PATCH",
        f"{gateway}/v1/brands/current",
        json={"settings": {"approval_required": None}},
        headers=bearer(admin),
    )
    assert body["settings"] == {}

    status, _, body = await call(
        http,
        "POST",
        f"{gateway}/v1/brands/current/members",
        json={"user_id": "m1", "email": "m@x.io", "role": "manager"},
        headers=bearer(admin),
    )
    assert status == 201 and body["role"] == "manager"
    status, _, body = await call(
        http, "GET", f"{gateway}/v1/brands/current/members?limit=1", headers=bearer(admin)
    )
    assert status == 200 and len(body["items"]) == 1 and body["next_cursor"]
    status, _, page2 = await call(
        http,
        "GET",
        f"{gateway}/v1/brands/current/members?limit=1&cursor={body['next_cursor']}",
        headers=bearer(admin),
    )
    assert {body["items"][0]["user_id"], page2["items"][0]["user_id"]} == {"founder", "m1"}

    status, _, body = await call(
        http, "DELETE", f"{gateway}/v1/brands/current/members/founder", headers=bearer(admin)
    )
    assert status == 409 and body["title"] == "Conflict"  # the last admin stays
    status, _, _ = await call(
        http, "DELETE", f"{gateway}/v1/brands/current/members/m1", headers=bearer(admin)
    )
    assert status == 204
    status, _, _ = await call(
        http, "DELETE", f"{gateway}/v1/brands/current/members/m1", headers=bearer(admin)
    )
    assert status == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x", "timezone": "Mars/Olympus"}, "timezone"),
        ({"name": ""}, "name"),
        ({"timezone": "UTC"}, "name"),
        ({"name": "x", "colour": "red"}, "colour"),
    ],
)
async def test_bad_brand_input_is_422_naming_the_field(gateway, http, body, field):
    status, headers, problem = await call(
        http,
        "POST",
        f"{gateway}/v1/brands",
        json=body,
        headers=bearer(token("viewer", sub="someone")),
    )
    assert status in (400, 422), problem
    assert headers["Content-Type"].startswith("application/problem+json")
    assert field in str(problem)


async def test_brand_a_never_reaches_brand_b(gateway, http):
    brand_a = await create_brand(http, gateway, sub="alice", name="A")
    brand_b = await create_brand(http, gateway, sub="bob", name="B")
    alice = token("admin", brand_a, sub="alice")
    status, _, body = await call(http, "GET", f"{gateway}/v1/brands/current", headers=bearer(alice))
    assert body["id"] == str(brand_a)
    status, _, body = await call(
        http, "GET", f"{gateway}/v1/brands/current/members", headers=bearer(alice)
    )
    assert [m["user_id"] for m in body["items"]] == ["alice"]
    # Routes take the brand from the token only; a brand id in the query changes nothing.
    status, _, body = await call(
        http, "GET", f"{gateway}/v1/brands/current?brand_id={brand_b}", headers=bearer(alice)
    )
    assert body["id"] == str(brand_a)
    ghost = token("admin", uuid.uuid4(), sub="ghost")
    status, _, body = await call(http, "GET", f"{gateway}/v1/brands/current", headers=bearer(ghost))
    assert status == 404


async def test_brandless_tokens_only_create_brands(gateway, http):
    onboarding = token("viewer", None, sub="newbie")
    status, _, _ = await call(
        http, "GET", f"{gateway}/v1/brands/current", headers=bearer(onboarding)
    )
    assert status == 403
    status, _, _ = await call(http, "GET", f"{gateway}/v1/media", headers=bearer(onboarding))
    assert status == 403
    await create_brand(http, gateway, sub="newbie")


async def test_two_replicas_creating_the_demo_brand_together_create_it_once(fresh_db):
    import asyncio

    from pressroom_gateway.app import MIGRATIONS
    from pressroom_gateway.handlers import ensure_demo_brand
    from pressroom_kit.db import create_pool, prepare_database
    from pressroom_kit.testing.plugin import APP_ROLE

    dsn = await prepare_database(
        database_url=fresh_db.owner_dsn,
        migrate_database_url=None,
        runtime_role=APP_ROLE,
        migrations=[MIGRATIONS],
    )
    pool = await create_pool(dsn)
    try:
        brand = uuid.uuid4()
        created = await asyncio.gather(
            *(ensure_demo_brand(pool, brand, admin_sub="dev-admin") for _ in range(4))
        )
        assert sorted(created) == [False, False, False, True]
        assert await ensure_demo_brand(pool, brand, admin_sub="dev-admin") is False
        count = await pool.fetchval("SELECT count(*) FROM events WHERE type = 'BrandCreated'")
        assert count == 1
    finally:
        await pool.close()


async def test_pressroom_rebuild_replays_the_gateway_projections(gateway, http, fresh_db):
    import asyncio
    import sys

    brand = await create_brand(http, gateway, sub="rebuild-founder", name="Rebuilt")
    admin = token("admin", brand, sub="rebuild-founder")
    await call(
        http,
        "POST",
        f"{gateway}/v1/brands/current/members",
        json={"user_id": "m9", "role": "manager"},
        headers=bearer(admin),
    )
    await call(
        http,
        "PATCH",
        f"{gateway}/v1/brands/current",
        json={"name": "Rebuilt 2"},
        headers=bearer(admin),
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pressroom_deploy",
        "rebuild",
        "gateway",
        "--database-url",
        fresh_db.owner_dsn,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output = (await process.communicate())[0].decode()
    assert process.returncode == 0, output
    assert "brands" in output and "brand_users" in output and "equal" in output
