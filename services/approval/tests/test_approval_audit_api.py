"""The audit log over HTTP: admins only, filters and pages, streamed exports that match the
list, verify, and one brand never reaching another's log."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from approval_testkit import Service, as_owner
from pressroom_approval.audit import Actor, record
from pressroom_kit.db import tenant_transaction

pytestmark = pytest.mark.integration

T0 = datetime(2026, 5, 4, 8, 0, tzinfo=UTC)


async def seed(svc: Service, brand: uuid.UUID, n: int, **kwargs: Any) -> list[uuid.UUID]:
    """``n`` entries a minute apart from T0, alternating two actors and two actions."""
    ids = []
    async with tenant_transaction(svc.pool, brand) as conn:
        for i in range(n):
            ids.append(
                await record(
                    conn,
                    brand_id=brand,
                    actor=Actor(
                        f"user-{i % 2}",
                        email=f"user{i % 2}@example.org",
                        ip="203.0.113.7",
                        user_agent="Firefox",
                    ),
                    action="comment.added" if i % 2 else "approval.approved",
                    at=T0 + timedelta(minutes=i),
                    post_id=kwargs.get("post_id"),
                    metadata={"i": i, "text": 'a, "quoted"\nline', "formula": "=1+1"},
                )
            )
    return ids


async def admin(svc: Service, path: str, brand: uuid.UUID, **kwargs: Any) -> tuple[int, Any]:
    return await svc.call("GET", path, brand, role="admin", sub="root", **kwargs)


async def test_only_admins_read_the_log(svc: Service) -> None:
    brand = uuid.uuid4()
    for role in ("viewer", "manager"):
        for path in ("/v1/audit-logs", "/v1/audit-logs/export", "/v1/audit-logs/verify"):
            status, body = await svc.call("GET", path, brand, role=role)
            assert status == 403, (role, path, status, body)
            assert body["type"].endswith("/role"), body
    status, body = await svc.call("POST", "/v1/privacy/subjects/u1/erase", brand)
    assert status == 403


async def test_a_decision_is_logged_with_who_and_from_where(svc: Service) -> None:
    brand = uuid.uuid4()
    post_id = await svc.submit(brand, author="ann")
    row = await svc.row(brand, post_id)
    assert row is not None
    status, body = await svc.call(
        "POST",
        f"/v1/approvals/{row['id']}/approve",
        brand,
        sub="bob",
        email="bob@example.org",
        json={},
        headers={"X-Forwarded-For": "198.51.100.1, 203.0.113.9", "User-Agent": "Brave/1"},
    )
    assert status == 200, body
    status, page = await admin(svc, f"/v1/audit-logs?post_id={post_id}", brand)
    assert status == 200, page
    actions = [e["action"] for e in page["items"]]
    assert "approval.approved" in actions and "approval.requested" in actions
    approved = next(e for e in page["items"] if e["action"] == "approval.approved")
    assert approved["actor_id"] == "bob"
    assert approved["actor"] == {
        "email": "bob@example.org",
        "ip": "203.0.113.9",
        "user_agent": "Brave/1",
        "name": None,
    }
    status, result = await admin(svc, "/v1/audit-logs/verify", brand)
    assert status == 200 and result["valid"] is True and result["checked"] == len(actions)


async def test_filters_and_pages(svc: Service) -> None:
    brand = uuid.uuid4()
    post = uuid.uuid4()
    ids = await seed(svc, brand, 7, post_id=post)
    await seed(svc, brand, 2)  # no post
    status, page = await admin(svc, f"/v1/audit-logs?post_id={post}&limit=3", brand)
    assert status == 200
    seen = [e["id"] for e in page["items"]]
    while page["next_cursor"]:
        status, page = await admin(
            svc, f"/v1/audit-logs?post_id={post}&limit=3&cursor={page['next_cursor']}", brand
        )
        assert status == 200
        seen += [e["id"] for e in page["items"]]
    assert seen == [str(i) for i in reversed(ids)]

    status, page = await admin(svc, "/v1/audit-logs?action=comment.added", brand)
    assert {e["action"] for e in page["items"]} == {"comment.added"}
    assert len(page["items"]) == 3 + 1
    status, page = await admin(svc, "/v1/audit-logs?actor_id=user-1", brand)
    assert {e["actor_id"] for e in page["items"]} == {"user-1"} and len(page["items"]) == 4
    start, end = (T0 + timedelta(minutes=2)).isoformat(), (T0 + timedelta(minutes=4)).isoformat()
    status, page = await admin(
        svc, "/v1/audit-logs", brand, params={"from": start, "to": end, "post_id": str(post)}
    )
    assert status == 200 and [e["metadata"]["i"] for e in page["items"]] == [3, 2]


BAD_QUERIES = [
    "post_id=nope",
    "from=yesterday",
    "from=2026-01-02T00:00:00",
    "from=2026-01-03T00:00:00Z&to=2026-01-02T00:00:00Z",
    "limit=0",
    "limit=501",
    "cursor=abc",
    "actor_id=",
    "actor_id=a%00b",
    "action=%0A",
    "to=0001-01-01T00:00:00%2B14:00",
]


async def test_bad_filters_are_4xx_problems(svc: Service) -> None:
    for path in ("/v1/audit-logs", "/v1/audit-logs/export"):
        for query in [*BAD_QUERIES, "format=xml"] if path.endswith("export") else BAD_QUERIES:
            if path.endswith("export") and query.startswith(("limit", "cursor")):
                continue
            status, body = await admin(svc, f"{path}?{query}", uuid.uuid4())
            assert status in (400, 422), (path, query, body)
            assert body["status"] == status


async def test_export_formats_parse_and_match_the_list(svc: Service) -> None:
    brand = uuid.uuid4()
    await seed(svc, brand, 1203)  # more than two chunks and a cursor fetch
    status, page = await admin(svc, "/v1/audit-logs?limit=500", brand)
    newest = page["items"]
    async with svc.http.get(
        f"{svc.base}/v1/audit-logs/export?format=json",
        headers={"Authorization": f"Bearer {_token(brand)}"},
    ) as answer:
        assert answer.status == 200
        assert answer.headers["Content-Type"].startswith("application/json")
        assert "attachment" in answer.headers["Content-Disposition"]
        entries = json.loads(await answer.read())
    # The export is recorded before it starts, so it is its own last entry.
    assert [e["seq"] for e in entries] == list(range(1, 1205))
    assert entries[-1]["action"] == "audit.exported" and entries[-1]["actor_id"] == "root"
    assert entries[-501:-1][::-1] == newest

    status, raw = await admin(svc, "/v1/audit-logs/export?format=ndjson", brand)
    lines = raw.splitlines() if isinstance(raw, str) else None
    assert lines is not None
    # The first export's own entry (audit.exported) is in the second one's snapshot.
    ndjson = [json.loads(line) for line in lines]
    assert ndjson[:-1] == entries and ndjson[-1]["action"] == "audit.exported"

    status, text = await admin(svc, "/v1/audit-logs/export?format=csv&actor_id=user-0", brand)
    assert status == 200
    rows = list(csv.DictReader(io.StringIO(text)))
    expected = [e for e in entries if e["actor_id"] == "user-0"]
    assert [r["id"] for r in rows] == [e["id"] for e in expected]
    first = rows[0]
    assert first["email"] == "user0@example.org" and first["hash"] == expected[0]["hash"]
    assert json.loads(first["metadata"]) == expected[0]["metadata"]
    assert first["metadata"].startswith("{")

    exported = await as_owner(
        svc.db,
        "SELECT metadata FROM audit_logs WHERE brand_id = $1 AND action = 'audit.exported' "
        "ORDER BY seq",
        brand,
    )
    formats = [json.loads(r["metadata"])["format"] for r in exported]
    assert formats == ["json", "ndjson", "csv"]
    status, result = await admin(svc, "/v1/audit-logs/verify", brand)
    last = await as_owner(svc.db, "SELECT seq, hash FROM audit_heads WHERE brand_id = $1", brand)
    assert result == {
        "valid": True,
        "checked": 1206,
        "first_bad_id": None,
        "first_bad_seq": None,
        "problem": None,
        "last_seq": 1206,
        "last_hash": bytes(last[0]["hash"]).hex(),
    }


def _token(brand: uuid.UUID) -> str:
    from approval_testkit import token

    return token("admin", brand, "root", None)


async def test_csv_cells_that_look_like_formulas_are_quoted(svc: Service) -> None:
    brand = uuid.uuid4()
    async with tenant_transaction(svc.pool, brand) as conn:
        await record(
            conn,
            brand_id=brand,
            actor=Actor("=HYPERLINK(1)", name="@SUM(A1)"),
            action="comment.added",
            at=T0,
        )
    status, text = await admin(svc, "/v1/audit-logs/export?format=csv", brand)
    assert status == 200
    row = next(r for r in csv.DictReader(io.StringIO(text)) if r["action"] == "comment.added")
    assert row["actor_id"] == "'=HYPERLINK(1)" and row["name"] == "'@SUM(A1)"


async def test_verify_over_http_names_the_tampered_entry(svc: Service) -> None:
    brand = uuid.uuid4()
    ids = await seed(svc, brand, 4)
    owner = await asyncpg.connect(svc.db.owner_dsn)
    try:
        await owner.execute(
            "ALTER TABLE audit_logs DISABLE TRIGGER audit_logs_append_only; "
            f"UPDATE audit_logs SET at = at + interval '1 second' WHERE id = '{ids[3]}'; "
            "ALTER TABLE audit_logs ENABLE TRIGGER audit_logs_append_only"
        )
    finally:
        await owner.close()
    status, result = await admin(svc, "/v1/audit-logs/verify", brand)
    assert status == 200
    assert result["valid"] is False and result["first_bad_id"] == str(ids[3])
    assert result["checked"] == 4 and result["first_bad_seq"] == 4
    assert result["last_seq"] == 3 and result["problem"] == "the entry does not match its hash"


async def test_a_brand_never_reaches_another_brands_log(svc: Service) -> None:
    mine, theirs = uuid.uuid4(), uuid.uuid4()
    post = uuid.uuid4()
    await seed(svc, theirs, 3, post_id=post)
    (own,) = await seed(svc, mine, 1)
    status, page = await admin(svc, f"/v1/audit-logs?post_id={post}", mine)
    assert status == 200 and page["items"] == []
    status, page = await admin(svc, "/v1/audit-logs", mine)
    assert [e["id"] for e in page["items"]] == [str(own)]
    status, exported = await admin(svc, "/v1/audit-logs/export?format=json", mine)
    assert [e["id"] for e in exported][:1] == [str(own)]
    assert [e["action"] for e in exported[1:]] == ["audit.exported"]
    status, result = await admin(svc, "/v1/audit-logs/verify", mine)
    assert result["checked"] == 2  # its own entry and its export
    status, found = await svc.call(
        "POST", "/v1/privacy/subjects/user-0/export", mine, role="admin", sub="root"
    )
    assert status == 200 and len(found["audit_entries"]) == 1


async def test_a_client_leaving_mid_export_frees_its_transaction(svc: Service) -> None:
    brand = uuid.uuid4()
    await seed(svc, brand, 3000)  # a few MB of JSON: more than the socket buffers hold
    async with svc.http.get(
        f"{svc.base}/v1/audit-logs/export?format=ndjson",
        headers={"Authorization": f"Bearer {_token(brand)}"},
    ) as answer:
        assert answer.status == 200
        first = await answer.content.readline()
        assert json.loads(first)["seq"] == 1
        answer.close()  # the client goes away with most of the export unread

    async def open_transactions() -> int:
        rows = await as_owner(
            svc.db,
            "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() "
            "AND usename <> current_user AND state LIKE 'idle in transaction%'",
        )
        return int(rows[0]["n"])

    for _ in range(100):
        if await open_transactions() == 0:
            break
        await asyncio.sleep(0.05)
    assert await open_transactions() == 0
    status, result = await admin(svc, "/v1/audit-logs/verify", brand)
    assert status == 200 and result["valid"]
