"""The approvals API: the list with its status filter and cursor pages, comments, and odd
inputs (bad ids, bodies, NUL bytes, huge text) answered with a 4xx problem, never a 500."""

from __future__ import annotations

import uuid

import pytest
from approval_testkit import Service, as_owner, code

pytestmark = pytest.mark.integration


async def test_list_filters_by_status_and_pages(svc: Service) -> None:
    brand = uuid.uuid4()
    posts = [await svc.submit(brand, author="ann") for _ in range(5)]
    ids = [str((await svc.row(brand, p))["id"]) for p in posts]
    await svc.call("POST", f"/v1/approvals/{ids[0]}/approve", brand, sub="bob", json={})
    await svc.call(
        "POST", f"/v1/approvals/{ids[1]}/reject", brand, sub="bob", json={"reason": "no"}
    )

    seen, cursor = [], None
    while True:
        query = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        status, page = await svc.call("GET", "/v1/approvals", brand, role="viewer", params=query)
        assert status == 200, page
        assert len(page["items"]) <= 2
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(ids) and len(seen) == len(set(seen))
    for wanted, expected in (
        ("approved", {ids[0]}),
        ("rejected", {ids[1]}),
        ("pending", set(ids[2:])),
        ("expired", set()),
    ):
        status, page = await svc.call(
            "GET", "/v1/approvals", brand, role="viewer", params={"status": wanted}
        )
        assert status == 200
        assert {i["id"] for i in page["items"]} == expected
        assert all(i["status"] == wanted for i in page["items"])
    status, page = await svc.call(
        "GET", "/v1/approvals", brand, role="viewer", params={"post_id": str(posts[3])}
    )
    assert status == 200 and [i["id"] for i in page["items"]] == [ids[3]]
    for bad in (
        {"post_id": "nope"},
        {"status": "maybe"},
        {"limit": "0"},
        {"limit": "abc"},
        {"cursor": "nope"},
    ):
        status, body = await svc.call("GET", "/v1/approvals", brand, role="viewer", params=bad)
        assert status in (400, 422), (bad, body)


async def test_comments_are_a_discussion(svc: Service) -> None:
    brand = uuid.uuid4()
    post_id = await svc.submit(brand, author="ann")
    approval_id = (await svc.row(brand, post_id))["id"]
    path = f"/v1/approvals/{approval_id}/comments"
    status, body = await svc.call("POST", path, brand, role="viewer", json={"body": "hi"})
    assert status == 403
    made = []
    for i in range(3):
        status, body = await svc.call(
            "POST", path, brand, sub="bob", email="bob@example.com", json={"body": f"  point {i}  "}
        )
        assert status == 201, body
        made.append(body)
    assert made[0]["body"] == "point 0" and made[0]["author"]["id"] == "bob"
    assert made[0]["author"]["email"] == "bob@example.com"
    status, page = await svc.call("GET", path, brand, role="viewer", params={"limit": "2"})
    assert status == 200 and [c["body"] for c in page["items"]] == ["point 0", "point 1"]
    status, rest = await svc.call(
        "GET", path, brand, role="viewer", params={"cursor": page["next_cursor"]}
    )
    assert [c["body"] for c in rest["items"]] == ["point 2"] and rest["next_cursor"] is None
    # the author may comment on their own post (only deciding is refused)
    status, _ = await svc.call("POST", path, brand, sub="ann", json={"body": "fixed"})
    assert status == 201
    audit = await as_owner(
        svc.db,
        "SELECT count(*) AS n FROM audit_logs WHERE approval_id = $1 AND action = 'comment.added'",
        approval_id,
    )
    assert audit[0]["n"] == 4
    for bad in (
        {},
        {"body": ""},
        {"body": "   "},
        {"body": "x" * 5001},
        {"body": 5},
        {"body": "a\u0000b"},
        {"body": "ok", "extra": 1},
    ):
        status, answer = await svc.call("POST", path, brand, sub="bob", json=bad)
        assert status == 422, (bad, answer)


async def test_odd_inputs_never_reach_a_500(svc: Service) -> None:
    brand = uuid.uuid4()
    post_id = await svc.submit(brand, author="ann")
    approval_id = (await svc.row(brand, post_id))["id"]
    missing = uuid.uuid4()
    cases = [
        ("GET", "/v1/approvals/not-a-uuid", None, None),
        ("GET", f"/v1/approvals/{missing}", None, None),
        ("POST", f"/v1/approvals/{missing}/approve", {}, None),
        ("POST", f"/v1/approvals/{approval_id}/approve", None, b"{not json"),
        ("POST", f"/v1/approvals/{approval_id}/approve", None, b"[]"),
        ("POST", f"/v1/approvals/{approval_id}/approve", {"comment": "a\u0000"}, None),
        (
            "POST",
            f"/v1/approvals/{approval_id}/approve",
            {"scheduled_at": "0001-01-01T00:00:00+14:00"},
            None,
        ),
        ("POST", f"/v1/approvals/{approval_id}/approve", {"scheduled_at": 12}, None),
        ("POST", f"/v1/approvals/{approval_id}/approve", {"comment": "x" * 100_000}, None),
        ("POST", f"/v1/approvals/{approval_id}/reject", {"reason": ["a"]}, None),
        ("POST", f"/v1/approvals/{approval_id}/unlock", {"reason": 1}, None),
        ("GET", f"/v1/approvals/{approval_id}/comments?cursor=zzz", None, None),
    ]
    for method, path, body, raw in cases:
        kwargs = {"json": body} if raw is None and body is not None else {}
        if raw is not None:
            kwargs = {"data": raw, "headers": {"Content-Type": "application/json"}}
        role = "admin" if "unlock" in path else "manager"
        status, answer = await svc.call(method, path, brand, role=role, sub="bob", **kwargs)
        assert 400 <= status < 500, (path, body, raw, status, answer)
        if status != 200:
            assert isinstance(answer, dict) and "type" in answer, answer
    status, answer = await svc.call("GET", f"/v1/approvals/{missing}", brand, role="viewer")
    assert status == 404 and code(answer) == "no_approval"
    # an unknown comment cursor is an empty page, not an error
    status, page = await svc.call(
        "GET",
        f"/v1/approvals/{approval_id}/comments",
        brand,
        role="viewer",
        params={"cursor": str(missing)},
    )
    assert status == 200 and page["items"] == []
    assert (await svc.row(brand, post_id))["status"] == "pending"
