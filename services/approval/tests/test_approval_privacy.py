"""GDPR: a subject's export holds what the service keeps about them; erasure removes it from
every table (searched column by column, the event store and outbox included) and the audit
chain still verifies."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import pytest
from approval_testkit import Service, as_owner, event
from pressroom_contracts.topics import Topic
from review_testkit import create_link, decide_through_page, open_approval

pytestmark = pytest.mark.integration

CLARA = "Clara.Client@Example.org"  # as the manager typed it; matched without case
CLARA_NAME = "Clara Reviewerson"
BOB = "bob.manager@example.org"


async def traces(svc: Service, *needles: str) -> list[str]:
    """``table.column`` of every text, json or array column in the database (all schemas
    but the catalogs) that holds one of ``needles``, case-insensitively: read as the
    superuser, so row-level security hides nothing."""
    conn = await asyncpg.connect(svc.db.owner_dsn)
    try:
        columns = await conn.fetch(
            """SELECT table_schema, table_name, column_name FROM information_schema.columns
               WHERE table_schema NOT IN ('pg_catalog', 'information_schema')
                 AND (data_type IN ('text', 'character varying', 'character', 'json', 'jsonb',
                                    'bytea', 'name')
                      OR data_type = 'ARRAY')
                 AND table_name IN (SELECT table_name FROM information_schema.tables
                                    WHERE table_type = 'BASE TABLE')"""
        )
        found = []
        for c in columns:
            target = f'"{c["table_schema"]}"."{c["table_name"]}"'
            column = f'"{c["column_name"]}"'
            for needle in needles:
                hit = await conn.fetchval(
                    f"SELECT EXISTS (SELECT 1 FROM {target} "
                    f"WHERE position(lower($1) IN lower({column}::text)) > 0)",
                    needle,
                )
                if hit:
                    found.append(f"{c['table_name']}.{c['column_name']}: {needle}")
        return found
    finally:
        await conn.close()


async def add_member(svc: Service, brand: uuid.UUID, user_id: str, email: str) -> None:
    await svc.publish(
        Topic.BRANDS.value,
        event(
            "brand.member_added.v1",
            brand,
            brand,
            brand_id=brand,
            user_id=user_id,
            email=email,
            role="manager",
        ),
    )

    async def known() -> list[asyncpg.Record]:
        return await as_owner(
            svc.db,
            "SELECT 1 FROM approval_members WHERE user_id = $1 AND email = $2",
            user_id,
            email,
        )

    from approval_testkit import eventually

    await eventually(known)


async def admin_post(svc: Service, path: str, brand: uuid.UUID) -> tuple[int, Any]:
    return await svc.call("POST", path, brand, role="admin", sub="root", email="root@corp.test")


async def verify(svc: Service, brand: uuid.UUID) -> dict[str, Any]:
    status, result = await svc.call("GET", "/v1/audit-logs/verify", brand, role="admin")
    assert status == 200, result
    return result  # type: ignore[no-any-return]


async def reviewed_by_clara(svc: Service) -> tuple[uuid.UUID, str]:
    """A brand whose approval a client reviewed through a link (with a comment), and whose
    client settings hold her address."""
    brand = await svc.brand()
    approval_id, _ = await open_approval(svc, brand)
    link = await create_link(svc, brand, approval_id, name=CLARA_NAME, email=CLARA)
    page = await decide_through_page(svc, link["url"], comment="Lovely, ship it")
    assert page.status == 200, page.text
    status, body = await svc.call(
        "POST",
        f"/v1/approvals/{approval_id}/comments",
        brand,
        sub="mia",
        json={"body": f"Sent the draft to {CLARA.lower()} this morning"},
    )
    assert status in (200, 201), body
    status, body = await svc.call(
        "PUT",
        "/v1/client-settings/clara-co",
        brand,
        role="admin",
        json={"email": CLARA, "name": CLARA_NAME, "language": "fr"},
    )
    assert status == 200, body
    return brand, approval_id


async def test_a_clients_export_holds_their_entries_links_comments_and_settings(
    svc: Service,
) -> None:
    brand, _ = await reviewed_by_clara(svc)
    status, found = await admin_post(svc, f"/v1/privacy/subjects/{CLARA.lower()}/export", brand)
    assert status == 200, found
    actions = {e["action"] for e in found["audit_entries"]}
    assert {"approval.approved", "comment.added"} <= actions
    assert all(e["actor"]["email"] == CLARA for e in found["audit_entries"])
    assert [link["email"] for link in found["review_links"]] == [CLARA]
    assert [c["body"] for c in found["comments"]] == ["Lovely, ship it"]
    assert [c["body"] for c in found["mentions"]] == [
        f"Sent the draft to {CLARA.lower()} this morning"
    ]
    assert [s["client_id"] for s in found["client_settings"]] == ["clara-co"]
    # Another brand's admin finds nothing about her.
    status, other = await admin_post(svc, f"/v1/privacy/subjects/{CLARA}/export", uuid.uuid4())
    assert status == 200 and other["audit_entries"] == [] and other["review_links"] == []
    logged = await as_owner(
        svc.db, "SELECT metadata::text AS m FROM audit_logs WHERE action = 'privacy.exported'"
    )
    assert len(logged) == 2 and all("@" not in r["m"] for r in logged)


async def test_erasing_a_client_leaves_no_trace_and_the_chain_verifies(svc: Service) -> None:
    brand, _ = await reviewed_by_clara(svc)
    assert await traces(svc, CLARA), "the scan should see her before erasure"
    before = await verify(svc, brand)
    assert before["valid"]

    status, result = await admin_post(svc, f"/v1/privacy/subjects/client:{CLARA}/erase", brand)
    assert status == 200, result
    erased = result["erased"]
    assert erased["audit_personal_data"] >= 2
    assert erased["review_links"] == 1 and erased["approval_comments"] == 1
    assert erased["free_text"] == 1  # the manager's comment quoting her address
    assert erased["client_settings"] == 1

    assert await traces(svc, CLARA, CLARA_NAME) == []
    after = await verify(svc, brand)
    assert after["valid"] and after["checked"] == before["checked"] + 1
    entries = await as_owner(
        svc.db,
        "SELECT action FROM audit_logs WHERE brand_id = $1 ORDER BY seq DESC LIMIT 1",
        brand,
    )
    assert entries[0]["action"] == "privacy.erased"
    # Her entries are still in the log, without her data; a second erasure changes nothing.
    status, found = await admin_post(svc, f"/v1/privacy/subjects/{CLARA}/export", brand)
    assert status == 200 and found["audit_entries"] == [] and found["review_links"] == []
    status, again = await admin_post(svc, f"/v1/privacy/subjects/{CLARA}/erase", brand)
    assert status == 200 and set(again["erased"].values()) == {0}
    assert (await verify(svc, brand))["valid"]


async def test_erasing_a_user_removes_their_address_ip_and_comments_authorship(
    svc: Service,
) -> None:
    brand = await svc.brand()
    await add_member(svc, brand, "bob", BOB)
    approval_id, _ = await open_approval(svc, brand)
    headers = {"X-Forwarded-For": "192.0.2.44", "User-Agent": "BobBrowser/7"}
    status, body = await svc.call(
        "POST",
        f"/v1/approvals/{approval_id}/comments",
        brand,
        sub="bob",
        email=BOB,
        json={"body": "One typo in line 2"},
        headers=headers,
    )
    assert status in (200, 201), body
    status, body = await svc.call(
        "POST",
        f"/v1/approvals/{approval_id}/approve",
        brand,
        sub="bob",
        email=BOB,
        json={},
        headers=headers,
    )
    assert status == 200, body
    status, found = await admin_post(svc, "/v1/privacy/subjects/bob/export", brand)
    assert status == 200
    assert BOB in found["emails"] and found["memberships"][0]["email"] == BOB
    assert {e["actor"]["ip"] for e in found["audit_entries"]} == {"192.0.2.44"}

    status, result = await admin_post(svc, "/v1/privacy/subjects/bob/erase", brand)
    assert status == 200, result
    assert result["erased"]["approval_members"] == 1
    assert await traces(svc, BOB, "192.0.2.44", "BobBrowser/7") == []
    assert (await verify(svc, brand))["valid"]
    # The account id stays (it names no one by itself): the log still says bob approved.
    status, page = await svc.call(
        "GET", "/v1/audit-logs?actor_id=bob", brand, role="admin", sub="root"
    )
    assert {e["action"] for e in page["items"]} >= {"approval.approved", "comment.added"}
    assert all(e["actor"] is None for e in page["items"])


async def test_bad_subjects_are_4xx(svc: Service) -> None:
    brand = uuid.uuid4()
    for subject in ("%00x", "a%0Ab", "x" * 321):
        status, body = await admin_post(svc, f"/v1/privacy/subjects/{subject}/erase", brand)
        assert status in (400, 404, 422), (subject, status, body)


async def test_erasure_in_one_brand_leaves_another_brands_data(svc: Service) -> None:
    """The brand is the controller: its admin erases what it holds, nothing of another's."""
    mine, _ = await reviewed_by_clara(svc)
    theirs, _ = await reviewed_by_clara(svc)
    status, result = await admin_post(svc, f"/v1/privacy/subjects/{CLARA}/erase", mine)
    assert status == 200 and result["erased"]["audit_personal_data"] >= 2
    status, kept = await admin_post(svc, f"/v1/privacy/subjects/{CLARA}/export", theirs)
    assert status == 200
    assert {e["actor"]["email"] for e in kept["audit_entries"]} == {CLARA}
    assert [link["email"] for link in kept["review_links"]] == [CLARA]
    assert [s["email"] for s in kept["client_settings"]] == [CLARA]
    for brand in (mine, theirs):
        assert (await verify(svc, brand))["valid"]
