"""The public review page: what it shows, deciding through its forms, and every link that
can no longer be used answering a clear HTML page (never JSON, never a 500)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from approval_testkit import Service, as_owner, outbox
from pressroom_approval.review import tokens
from pressroom_approval.settings import DEV_LINK_KEY
from pressroom_kit.testing.plugin import TestDatabase
from review_testkit import (
    approve_form,
    create_link,
    decide_through_page,
    fake_media,
    form_of,
    get_page,
    linked_approval,
    local_path,
    open_approval,
    post_form,
)

pytestmark = pytest.mark.integration


def html(page: object) -> None:
    """Every review answer is a page for a person."""
    headers = page.headers  # type: ignore[attr-defined]
    assert headers["Content-Type"].startswith("text/html"), headers
    assert headers["Cache-Control"] == "no-store"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["Content-Security-Policy"].startswith("default-src 'none';")
    assert "Traceback" not in page.html  # type: ignore[attr-defined]


async def test_the_page_shows_the_post_in_the_brand_timezone(svc: Service) -> None:
    brand = await svc.brand("Café Lumière", timezone="Europe/Paris")
    when = datetime(2031, 7, 14, 18, 0, tzinfo=UTC)
    approval_id, _ = await open_approval(
        svc, brand, platforms=("mastodon", "x"), text="Fête <b>ce soir</b>", scheduled_at=when
    )
    status, _ = await svc.call(
        "POST",
        f"/v1/approvals/{approval_id}/comments",
        brand,
        sub="mia",
        email="mia@brand.example",
        json={"body": "Client, please check the hashtag"},
    )
    assert status == 201
    link = await create_link(svc, brand, approval_id, name="Clara")
    page = await get_page(svc, link["url"])
    assert page.status == 200, page.text
    html(page)
    text = page.text
    assert "Café Lumière" in text and "Hello Clara" in text
    assert "Fête <b>ce soir</b> (mastodon)" in text and "Fête <b>ce soir</b> (x)" in text
    assert "<b>ce soir</b>" not in page.html  # escaped, not markup
    assert "Monday 14 July 2031, 20:00 CEST (Europe/Paris)" in text
    assert "waiting for a decision" in text
    assert "Client, please check the hashtag" in text
    forms = page.forms()
    assert set(forms) == {"approve-form", "changes-form"}
    assert forms["approve-form"]["decision"] == "approve"
    assert forms["changes-form"]["decision"] == "reject"
    assert forms["approve-form"]["__action"] == local_path(svc, link["url"]) + "/decision"


async def test_approving_through_the_form(svc: Service) -> None:
    brand = await svc.brand()
    approval_id, post_id = await open_approval(svc, brand, submission=4)
    link = await create_link(svc, brand, approval_id, name="Clara", email="clara@client.example")
    result = await decide_through_page(
        svc,
        link["url"],
        comment="Lovely",
        headers={"X-Forwarded-For": "198.51.100.1, 203.0.113.7", "User-Agent": "ReviewBrowser/1.0"},
    )
    assert result.status == 200, result.text
    html(result)
    assert "approved" in result.text
    approval = await svc.approval_of(brand, post_id)
    assert approval["status"] == "approved" and approval["locked"] is True
    assert approval["decided_by"] == f"client:{link['id']}"
    assert approval["comment"] == "Lovely"
    events = [d for t, d in await outbox(svc.db) if t == "approval.approved.v1"]
    assert len(events) == 1
    assert events[0]["submission"] == 4 and events[0]["decided_by"] == f"client:{link['id']}"
    audit = await as_owner(
        svc.db,
        "SELECT l.action, l.actor_id, p.email, p.name, p.ip, p.user_agent FROM audit_logs l "
        "JOIN audit_personal_data p ON p.audit_id = l.id WHERE l.brand_id = $1 "
        "AND l.action IN ('approval.approved', 'comment.added') ORDER BY l.seq",
        brand,
    )
    assert [r["action"] for r in audit] == ["comment.added", "approval.approved"]
    assert {(r["email"], r["name"], r["ip"], r["user_agent"]) for r in audit} == {
        ("clara@client.example", "Clara", "203.0.113.7", "ReviewBrowser/1.0")
    }
    _status, listed = await svc.call(
        "GET", f"/v1/approvals/{approval_id}/review-links", brand, role="viewer"
    )
    assert listed[0]["status"] == "used" and listed[0]["used_decision"] == "approve"


async def test_requesting_changes_rejects_with_the_comment(svc: Service) -> None:
    brand = await svc.brand()
    approval_id, post_id = await open_approval(svc, brand, submission=2)
    link = await create_link(svc, brand, approval_id)
    # No comment: refused with a sentence, nothing decided, the link still usable.
    refused = await decide_through_page(svc, link["url"], form="changes-form", comment="  ")
    assert refused.status == 422 and "comment is required" in refused.text
    html(refused)
    assert (await svc.approval_of(brand, post_id))["status"] == "pending"
    result = await decide_through_page(
        svc, link["url"], form="changes-form", comment="Use the new logo, please"
    )
    assert result.status == 200 and "changes requested" in result.text
    approval = await svc.approval_of(brand, post_id)
    assert approval["status"] == "rejected"
    assert approval["reason"] == "Use the new logo, please"
    events = [d for t, d in await outbox(svc.db) if t == "approval.rejected.v1"]
    assert [(e["reason"], e["submission"]) for e in events] == [("Use the new logo, please", 2)]
    status, comments = await svc.call(
        "GET", f"/v1/approvals/{approval_id}/comments", brand, role="viewer"
    )
    assert status == 200
    items = comments["items"] if isinstance(comments, dict) else comments
    assert [c["body"] for c in items] == ["Use the new logo, please"]


async def test_a_used_link_is_refused_with_a_page(svc: Service) -> None:
    brand, _approval_id, post_id, link = await linked_approval(svc)
    action, fields = await approve_form(svc, link["url"])
    assert (await post_form(svc, action, {**fields, "comment": "   "})).status == 200
    assert (await svc.approval_of(brand, post_id))["comment"] is None  # blank is no comment
    replay = await post_form(svc, action, fields)
    assert replay.status == 410 and "already used" in replay.text
    html(replay)
    again = await get_page(svc, link["url"])
    assert again.status == 410 and "You approved the post" in again.text
    assert len([t for t, _ in await outbox(svc.db) if t == "approval.approved.v1"]) == 1


async def test_an_expired_link_is_refused_with_a_page(svc: Service) -> None:
    brand, _approval_id, post_id, link = await linked_approval(svc, hours=2)
    action, fields = await approve_form(svc, link["url"])
    svc.clock.advance(2 * 3600)
    for answer in (await get_page(svc, link["url"]), await post_form(svc, action, fields)):
        assert answer.status == 410 and "expired" in answer.text, answer.text
        html(answer)
    assert (await svc.approval_of(brand, post_id))["status"] == "pending"


async def test_a_revoked_link_is_refused_with_a_page(svc: Service) -> None:
    brand, approval_id, post_id, link = await linked_approval(svc)
    action, fields = await approve_form(svc, link["url"])
    status, _ = await svc.call(
        "DELETE", f"/v1/approvals/{approval_id}/review-links/{link['id']}", brand
    )
    assert status == 204
    for answer in (await get_page(svc, link["url"]), await post_form(svc, action, fields)):
        assert answer.status == 410 and "withdrawn" in answer.text
        html(answer)
    assert (await svc.approval_of(brand, post_id))["status"] == "pending"


async def test_tampered_and_foreign_tokens_are_404_pages(svc: Service) -> None:
    brand, other = await svc.brand(), await svc.brand()
    approval_id, post_id = await open_approval(svc, brand)
    link = await create_link(svc, brand, approval_id)
    path = local_path(svc, link["url"])
    token = path.rsplit("/", 1)[1]
    flipped = token[:10] + ("A" if token[10] != "A" else "B") + token[11:]
    # A validly signed token naming the link under another brand finds nothing: the brand
    # comes from the token and row-level security hides brand A's rows from brand B.
    claims = tokens.read_link(DEV_LINK_KEY, token)
    foreign = tokens.sign_link(
        DEV_LINK_KEY, tokens.LinkClaims(claims.link_id, other, claims.expires_at)
    )
    later = tokens.sign_link(
        DEV_LINK_KEY,
        tokens.LinkClaims(claims.link_id, brand, claims.expires_at + timedelta(days=30)),
    )
    for bad in (flipped, "nope", "x" * tokens.TOKEN_LENGTH, foreign, later, token + "A"):
        answer = await get_page(svc, f"/review/{bad}")
        assert answer.status == 404 and "not valid" in answer.text, (bad, answer.text)
        html(answer)
        posted = await post_form(svc, f"/review/{bad}/decision", {"decision": "approve"})
        assert posted.status == 404
        html(posted)
    assert (await svc.approval_of(brand, post_id))["status"] == "pending"


async def test_a_decided_approval_shows_its_status_and_refuses_decisions(svc: Service) -> None:
    brand, approval_id, _post_id, link = await linked_approval(svc)
    action, fields = await approve_form(svc, link["url"])
    status, _ = await svc.call(
        "POST", f"/v1/approvals/{approval_id}/reject", brand, sub="bob", json={"reason": "no"}
    )
    assert status == 200
    answer = await post_form(svc, action, fields)
    assert answer.status == 409 and "changes requested already" in answer.text
    html(answer)
    shown = await get_page(svc, link["url"])
    assert shown.status == 409 and "nothing to decide" in shown.text
    assert shown.forms() == {}
    status, listed = await svc.call(
        "GET", f"/v1/approvals/{approval_id}/review-links", brand, role="viewer"
    )
    assert listed[0]["status"] == "active"  # the refused decision did not use the link


async def test_a_form_from_before_a_resubmission_is_refused(svc: Service) -> None:
    brand = await svc.brand()
    approval_id, post_id = await open_approval(svc, brand, submission=1, text="First")
    link = await create_link(svc, brand, approval_id)
    action, fields = await approve_form(svc, link["url"])
    await svc.submit(brand, post_id, submission=2, version=3, text="Second", author="ann")
    stale = await post_form(svc, action, fields)
    assert stale.status == 409 and "Reload the page" in stale.text
    assert (await svc.approval_of(brand, post_id))["status"] == "pending"
    fresh = await get_page(svc, link["url"])
    assert "Second (sandbox)" in fresh.text
    result = await decide_through_page(svc, link["url"])
    assert result.status == 200
    events = [d for t, d in await outbox(svc.db) if t == "approval.approved.v1"]
    assert [e["submission"] for e in events] == [2]


async def test_two_replicas_posting_one_link_at_once_decide_once(svc: Service) -> None:
    """Eight posts of one link (approve and request changes) spread over two replicas of
    the service on one database: exactly one decides."""
    from approval_testkit import approval_service

    _brand, _approval_id, post_id, link = await linked_approval(svc)
    page = await get_page(svc, link["url"])
    action, approve = form_of(page)
    _, reject = form_of(page, "changes-form")
    reject["comment"] = "No"
    async with approval_service(svc.db, svc.kafka, clock=svc.clock) as replica:
        answers = await asyncio.gather(
            *(
                post_form(target, action, form)
                for target in (svc, replica)
                for form in (approve, reject, approve, reject)
            )
        )
    statuses = sorted(a.status for a in answers)
    assert statuses.count(200) == 1, statuses
    assert all(s in (200, 409, 410) for s in statuses), statuses
    decided = [
        d for t, d in await outbox(svc.db) if t in ("approval.approved.v1", "approval.rejected.v1")
    ]
    assert len(decided) == 1 and decided[0]["post_id"] == str(post_id)
    used = await as_owner(
        svc.db, "SELECT used_decision FROM review_links WHERE id = $1", uuid.UUID(link["id"])
    )
    assert used[0]["used_decision"] in ("approve", "reject")


async def test_bad_forms_answer_pages_not_problems(svc: Service) -> None:
    brand, _approval_id, post_id, link = await linked_approval(svc)
    action, fields = await approve_form(svc, link["url"])
    cases: list[tuple[dict[str, object], int, str]] = [
        ({"data": {**fields, "decision": "maybe"}}, 422, "Approve or Request changes"),
        ({"data": {**fields, "nonce": "forged"}}, 409, "Reload the page"),
        ({"data": {"decision": "approve"}}, 409, "Reload the page"),
        ({"data": {**fields, "comment": "bad\x00text"}}, 422, "cannot be stored"),
        ({"data": {**fields, "comment": "x" * 5001}}, 422, "too long"),
        ({"json": {**fields}}, 400, "its own form"),
        ({"data": b"\xff\xfe", "headers": {"Content-Type": "text/plain"}}, 400, "its own form"),
    ]
    for kwargs, status, words in cases:
        async with svc.http.post(svc.base + action, **kwargs) as answer:  # type: ignore[arg-type]
            body = await answer.text()
            assert answer.status == status, (kwargs, answer.status, body)
            assert answer.headers["Content-Type"].startswith("text/html")
            assert words in body, (kwargs, body)
    async with svc.http.get(svc.base + "/review/%00abc") as answer:
        assert answer.status in (404, 422)
        assert answer.headers["Content-Type"].startswith("text/html")
    assert (await svc.approval_of(brand, post_id))["status"] == "pending"


async def test_thumbnails_come_from_the_media_service(
    fresh_db: TestDatabase, kafka_bootstrap: str, topics: None
) -> None:
    from approval_testkit import SECRET, approval_service
    from pressroom_kit.auth import JWTSettings, JWTVerifier

    async with fake_media() as media:
        photo, gone = media.add("beach.jpg"), uuid.uuid4()
        async with approval_service(fresh_db, kafka_bootstrap, media_url=media.url) as svc:
            brand = await svc.brand()
            approval_id, _ = await open_approval(
                svc, brand, platforms=("sandbox",), media={"sandbox": [photo, gone]}
            )
            link = await create_link(svc, brand, approval_id)
            page = await get_page(svc, link["url"])
            assert page.status == 200
            assert f'src="{media.url}/media-files/{photo}/thumb?sig=abc"' in page.html
            assert "this file was deleted" in page.text
            csp = page.headers["Content-Security-Policy"]
            assert f"img-src {media.url} data:;" in csp
            verifier = JWTVerifier(JWTSettings(secret=SECRET))
            principal = await verifier.verify(media.tokens[0])
            assert principal.brand_id == brand and principal.role == "viewer"

            # A media service slower than the timeout: placeholders, the page still renders.
            media.delay = 5.0
            started = asyncio.get_running_loop().time()
            slow = await get_page(svc, link["url"])
            elapsed = asyncio.get_running_loop().time() - started
            assert slow.status == 200 and "preview unavailable" in slow.text
            assert elapsed < 4.0, elapsed
            assert "img-src data:;" in slow.headers["Content-Security-Policy"]


async def test_the_media_service_down_leaves_placeholders(
    fresh_db: TestDatabase, kafka_bootstrap: str, topics: None
) -> None:
    from approval_testkit import approval_service

    # Port 9 (discard): nothing listens, the connection is refused at once.
    async with approval_service(fresh_db, kafka_bootstrap, media_url="http://127.0.0.1:9") as svc:
        brand = await svc.brand()
        approval_id, _ = await open_approval(svc, brand, media={"sandbox": [uuid.uuid4()]})
        link = await create_link(svc, brand, approval_id)
        page = await get_page(svc, link["url"])
        assert page.status == 200 and "preview unavailable" in page.text
        html(page)


async def test_a_reviewer_may_still_approve_an_expired_approval(svc: Service) -> None:
    """The post's time passed undecided (approval.expired.v1): a late approval is still
    taken, through the page as through the API."""
    brand = await svc.brand()
    when = svc.clock.now + timedelta(hours=1)
    approval_id, post_id = await open_approval(svc, brand, scheduled_at=when)
    link = await create_link(svc, brand, approval_id, hours=48)
    svc.clock.advance(2 * 3600)
    assert await svc.expiry.step() >= 1
    assert (await svc.approval_of(brand, post_id))["status"] == "expired"
    page = await get_page(svc, link["url"])
    assert page.status == 200 and "its publish time has passed" in page.text
    result = await decide_through_page(svc, link["url"])
    assert result.status == 200, result.text
    assert (await svc.approval_of(brand, post_id))["status"] == "approved"


async def test_the_audit_chain_keeps_no_reviewer_email(svc: Service) -> None:
    brand = await svc.brand()
    approval_id, _ = await open_approval(svc, brand)
    link = await create_link(svc, brand, approval_id, name="Zed Secret", email="zed@secret.example")
    await decide_through_page(svc, link["url"], comment="ok")
    rows = await as_owner(
        svc.db, "SELECT actor_id, metadata::text AS m FROM audit_logs WHERE brand_id = $1", brand
    )
    assert rows
    for row in rows:
        assert "zed@secret.example" not in row["m"] and "Zed Secret" not in row["m"]
        assert "zed@secret.example" not in row["actor_id"]
    events = await as_owner(svc.db, "SELECT payload::text AS p FROM outbox")
    assert all("zed@secret.example" not in e["p"] for e in events)


async def test_odd_addresses_under_review_answer_pages(svc: Service) -> None:
    brand = await svc.brand()
    approval_id, _ = await open_approval(svc, brand)
    link = await create_link(svc, brand, approval_id)
    path = local_path(svc, link["url"])
    async with svc.http.get(svc.base + "/review/") as answer:
        assert answer.status == 404
        assert answer.headers["Content-Type"].startswith("text/html")
    async with svc.http.get(svc.base + path + "/decision", allow_redirects=False) as answer:
        assert answer.status == 303 and answer.headers["Location"] == path
    async with svc.http.get(svc.base + "/review/forged/decision", allow_redirects=False) as answer:
        assert answer.status == 404
        assert answer.headers["Content-Type"].startswith("text/html")
