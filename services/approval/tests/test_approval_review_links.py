"""Review links over the JSON API: who may create, list and revoke them, what is refused,
that the token is shown once, the audit rows, and brands kept apart."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from approval_testkit import Service, as_owner
from review_testkit import create_link, open_approval

pytestmark = pytest.mark.integration


async def test_a_manager_creates_a_link_with_a_signed_public_url(svc: Service) -> None:
    brand = uuid.uuid4()
    approval_id, post_id = await open_approval(svc, brand)
    status, body = await svc.call(
        "POST",
        f"/v1/approvals/{approval_id}/review-links",
        brand,
        sub="mia",
        json={"name": "  Clara Client ", "email": "clara@client.example", "expires_in_hours": 72},
    )
    assert status == 201, body
    public = svc.app.state.settings.public_url
    assert body["url"].startswith(f"{public}/review/")
    assert body["name"] == "Clara Client" and body["email"] == "clara@client.example"
    assert body["status"] == "active" and body["created_by"] == "mia"
    assert body["approval_id"] == approval_id
    expires = svc.clock.now.replace(microsecond=0) + timedelta(hours=72)
    assert body["expires_at"].replace("Z", "+00:00") == expires.isoformat()
    # An admin may too, and any number of reviewers have their own link.
    status, second = await svc.call(
        "POST",
        f"/v1/approvals/{approval_id}/review-links",
        brand,
        role="admin",
        json={"name": "Dan", "expires_in_hours": 1},
    )
    assert status == 201 and second["email"] is None and second["url"] != body["url"]
    rows = await as_owner(
        svc.db,
        "SELECT action, actor_id, post_id, approval_id FROM audit_logs "
        "WHERE brand_id = $1 AND action = 'review_link.created' ORDER BY seq",
        brand,
    )
    assert len(rows) == 2
    assert rows[0]["post_id"] == post_id and str(rows[0]["approval_id"]) == approval_id


async def test_a_viewer_cannot_create_or_revoke_but_may_list(svc: Service) -> None:
    brand = uuid.uuid4()
    approval_id, _ = await open_approval(svc, brand)
    link = await create_link(svc, brand, approval_id)
    path = f"/v1/approvals/{approval_id}/review-links"
    status, body = await svc.call(
        "POST", path, brand, role="viewer", json={"name": "x", "expires_in_hours": 1}
    )
    assert status == 403 and body["type"].endswith("/role")
    status, body = await svc.call("DELETE", f"{path}/{link['id']}", brand, role="viewer")
    assert status == 403
    status, body = await svc.call("GET", path, brand, role="viewer")
    assert status == 200 and [x["id"] for x in body] == [link["id"]]
    async with svc.http.post(svc.base + path, json={"name": "x", "expires_in_hours": 1}) as r:
        assert r.status == 401


BAD_BODIES: list[object] = [
    {"name": "Ana", "expires_in_hours": 0},
    {"name": "Ana", "expires_in_hours": 721},
    {"name": "Ana", "expires_in_hours": -5},
    {"name": "Ana", "expires_in_hours": "5"},
    {"name": "Ana", "expires_in_hours": 1.5},
    {"name": "Ana", "expires_in_hours": True},
    {"name": "Ana"},
    {"expires_in_hours": 5},
    {"name": "", "expires_in_hours": 5},
    {"name": "   ", "expires_in_hours": 5},
    {"name": "x" * 201, "expires_in_hours": 5},
    {"name": None, "expires_in_hours": 5},
    {"name": "Ana", "email": "not-an-email", "expires_in_hours": 5},
    {"name": "Ana", "email": "a@b", "expires_in_hours": 5},
    {"name": "Ana", "email": "x" * 250 + "@b.example", "expires_in_hours": 5},
    {"name": "Ana", "expires_in_hours": 5, "role": "admin"},
    {"name": "Ana\x00", "expires_in_hours": 5},
    [],
    "text",
]


async def test_bad_bodies_are_422(svc: Service) -> None:
    brand = uuid.uuid4()
    approval_id, _ = await open_approval(svc, brand)
    for body in BAD_BODIES:
        status, answer = await svc.call(
            "POST", f"/v1/approvals/{approval_id}/review-links", brand, json=body
        )
        assert status == 422, (body, status, answer)
        assert isinstance(answer, dict) and "title" in answer
    rows = await as_owner(svc.db, "SELECT 1 FROM review_links WHERE brand_id = $1", brand)
    assert rows == []


async def test_the_limits_themselves_are_accepted(svc: Service) -> None:
    brand = uuid.uuid4()
    approval_id, _ = await open_approval(svc, brand)
    for hours, name in ((1, "a"), (720, "n" * 200)):
        await create_link(svc, brand, approval_id, name=name, hours=hours)


async def test_unknown_decided_or_other_brand_approvals(svc: Service) -> None:
    brand, other = uuid.uuid4(), uuid.uuid4()
    approval_id, _ = await open_approval(svc, brand)
    body = {"name": "Ana", "expires_in_hours": 5}
    for target, caller in ((str(uuid.uuid4()), brand), (approval_id, other)):
        status, answer = await svc.call(
            "POST", f"/v1/approvals/{target}/review-links", caller, json=body
        )
        assert status == 404, answer
        status, answer = await svc.call(
            "GET", f"/v1/approvals/{target}/review-links", caller, role="viewer"
        )
        assert status == 404, answer
    link = await create_link(svc, brand, approval_id)
    status, _ = await svc.call(
        "DELETE", f"/v1/approvals/{approval_id}/review-links/{link['id']}", other
    )
    assert status == 404
    status, answer = await svc.call(
        "POST", f"/v1/approvals/{approval_id}/approve", brand, sub="bob", json={}
    )
    assert status == 200, answer
    status, answer = await svc.call(
        "POST", f"/v1/approvals/{approval_id}/review-links", brand, json=body
    )
    assert status == 409 and answer["type"].endswith("/approval_closed")


async def test_the_list_never_shows_the_token(svc: Service) -> None:
    brand = uuid.uuid4()
    approval_id, _ = await open_approval(svc, brand)
    first = await create_link(svc, brand, approval_id, name="One")
    svc.clock.advance(1)
    second = await create_link(svc, brand, approval_id, name="Two", email=None)
    async with svc.http.get(
        f"{svc.base}/v1/approvals/{approval_id}/review-links",
        headers={"Authorization": f"Bearer {_viewer(brand)}"},
    ) as answer:
        raw = await answer.text()
        listed = await answer.json()
    for link in (first, second):
        assert link["url"].rsplit("/", 1)[1] not in raw
    assert [x["name"] for x in listed] == ["One", "Two"]
    assert all("url" not in x for x in listed)


async def test_revoke_marks_the_link_and_is_audited_once(svc: Service) -> None:
    brand = uuid.uuid4()
    approval_id, _ = await open_approval(svc, brand)
    link = await create_link(svc, brand, approval_id)
    path = f"/v1/approvals/{approval_id}/review-links/{link['id']}"
    for _ in range(2):
        status, body = await svc.call("DELETE", path, brand, sub="mia")
        assert status == 204, body
    status, listed = await svc.call(
        "GET", f"/v1/approvals/{approval_id}/review-links", brand, role="viewer"
    )
    assert listed[0]["status"] == "revoked" and listed[0]["revoked_at"] is not None
    rows = await as_owner(
        svc.db,
        "SELECT actor_id FROM audit_logs WHERE brand_id = $1 AND action = 'review_link.revoked'",
        brand,
    )
    assert len(rows) == 1
    status, body = await svc.call(
        "DELETE", f"/v1/approvals/{approval_id}/review-links/{uuid.uuid4()}", brand
    )
    assert status == 404
    other_approval, _ = await open_approval(svc, brand)
    status, body = await svc.call(
        "DELETE", f"/v1/approvals/{other_approval}/review-links/{link['id']}", brand
    )
    assert status == 404


def _viewer(brand: uuid.UUID) -> str:
    from approval_testkit import token

    return token("viewer", brand)


async def test_the_routes_are_in_the_openapi_document(svc: Service) -> None:
    async with svc.http.get(f"{svc.base}/schema/openapi.json") as answer:
        assert answer.status == 200
        paths = (await answer.json())["paths"]
    links = paths["/v1/approvals/{approval_id}/review-links"]
    assert {"get", "post"} <= set(links)
    assert "delete" in paths["/v1/approvals/{approval_id}/review-links/{link_id}"]
    assert "get" in paths["/review/{token}"] and "post" in paths["/review/{token}/decision"]
    create = links["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert create.get("additionalProperties") is False or "$ref" in create
