"""Brand isolation: brand B can neither see nor decide, unlock or comment on brand A's
approval (404, as if it did not exist), and its lists never show A's rows."""

from __future__ import annotations

import uuid

import pytest
from approval_testkit import Service, as_owner, code

pytestmark = pytest.mark.integration


async def test_another_brand_cannot_see_or_touch_an_approval(svc: Service) -> None:
    brand_a, brand_b = uuid.uuid4(), uuid.uuid4()
    post_a = await svc.submit(brand_a, author="ann")
    await svc.submit(brand_b, author="ann")
    approval_id = (await svc.row(brand_a, post_a))["id"]
    base = f"/v1/approvals/{approval_id}"
    attempts = [
        ("GET", base, "viewer", None),
        ("POST", f"{base}/approve", "admin", {}),
        ("POST", f"{base}/reject", "admin", {"reason": "not yours"}),
        ("POST", f"{base}/unlock", "admin", {}),
        ("GET", f"{base}/comments", "viewer", None),
        ("POST", f"{base}/comments", "admin", {"body": "hello"}),
    ]
    for method, path, role, body in attempts:
        status, answer = await svc.call(method, path, brand_b, role=role, sub="eve", json=body)
        assert status == 404, (method, path, answer)
        assert code(answer) == "no_approval"
    status, page = await svc.call("GET", "/v1/approvals", brand_b, role="viewer")
    assert status == 200
    assert str(approval_id) not in {item["id"] for item in page["items"]}
    assert {item["brand_id"] for item in page["items"]} == {str(brand_b)}
    # Nothing happened to A's approval, and nothing was written for B about it.
    row = await svc.row(brand_a, post_a)
    assert row["status"] == "pending"
    comments = await as_owner(svc.db, "SELECT 1 FROM approval_comments")
    assert comments == []
    # The same post id in brand B is a different approval.
    await svc.submit(brand_b, post_a, author="ann")
    other = await svc.row(brand_b, post_a)
    assert other["id"] != approval_id


async def test_a_token_without_a_brand_or_a_token_at_all_is_refused(svc: Service) -> None:
    from approval_testkit import token

    headers = {"Authorization": f"Bearer {token('admin', None)}"}
    async with svc.http.get(svc.base + "/v1/approvals", headers=headers) as answer:
        assert answer.status == 403
    async with svc.http.get(svc.base + "/v1/approvals") as answer:
        assert answer.status == 401
        assert answer.content_type == "application/problem+json"
