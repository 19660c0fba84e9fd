"""One-click unsubscribe (RFC 8058) from a real email: the GET page asks, the POST (as a
mail client sends it, no login) unsubscribes, again changes nothing; the recipient then
gets nothing of that type (a ``skipped`` step, not a failure); bad tokens get a 400 page."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from approval_testkit import as_owner
from mail_testkit import (
    add_members,
    address,
    drain,
    escalation_service,
    history,
    local,
    text_part,
    unsubscribe_url,
)
from pressroom_kit.testing.plugin import TestDatabase

pytestmark = pytest.mark.integration
MONDAY = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)


async def test_unsubscribe_from_a_type_then_from_all(
    fresh_db: TestDatabase, kafka_bootstrap: str, topics: None
) -> None:
    async with escalation_service(fresh_db, kafka_bootstrap, start=MONDAY) as (svc, mail):
        brand = await svc.brand("Acme", "UTC")
        await add_members(svc, brand, ("mo", "admin"))
        status, _ = await svc.call(
            "PUT", "/v1/client-settings/mo", brand, role="admin", json={"language": "de"}
        )
        assert status == 200
        first = await svc.submit(brand, author="ann")
        svc.clock.now = MONDAY + timedelta(hours=24)
        await drain(svc)
        [reminder] = mail.of(brand)
        assert reminder["Subject"].startswith("Erinnerung")
        url = local(svc, unsubscribe_url(reminder))

        async with svc.http.get(url) as page:
            html = await page.text()
            assert page.status == 200 and page.content_type == "text/html"
        assert '<form method="post"' in html and "Abbestellen" in html
        assert "reminder_24h" in html
        settings = await as_owner(svc.db, "SELECT * FROM client_settings WHERE client_id = 'mo'")
        assert list(settings[0]["unsubscribed_types"]) == []  # a GET changes nothing

        for _ in range(2):  # one-click as RFC 8058 sends it; twice is the same
            async with svc.http.post(
                url,
                data="List-Unsubscribe=One-Click",
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            ) as answer:
                assert answer.status == 200, await answer.text()
                assert "nicht mehr" in await answer.text()
        settings = await as_owner(svc.db, "SELECT * FROM client_settings WHERE client_id = 'mo'")
        assert list(settings[0]["unsubscribed_types"]) == ["reminder_24h"]
        audits = await as_owner(
            svc.db,
            "SELECT count(*) AS n FROM audit_logs WHERE action = 'unsubscribe' AND brand_id = $1",
            brand,
        )
        assert audits[0]["n"] == 1

        # The 48 h escalation still comes (another type); a new reminder does not.
        second = await svc.submit(brand, author="ann")
        svc.clock.now = MONDAY + timedelta(hours=48)
        await drain(svc)
        assert [m["Subject"].split(":")[0] for m in mail.of(brand)] == ["Erinnerung", "Eskalation"]
        row = await svc.row(brand, second)
        assert row is not None
        assert ("skipped", "email", "mo") in await history(svc, row["id"])
        view = await svc.approval_of(brand, second)
        assert view["escalations"][0]["status"] == "sent"  # skipped is not a failure

        # "Unsubscribe from all" from the body of the escalation.
        body = text_part(mail.of(brand)[-1])
        links = re.findall(r"http://gateway\.test/v1/unsubscribe/\S+", body)
        assert len(links) == 2 and links[0] != links[1]
        async with svc.http.post(local(svc, links[1])) as answer:
            assert answer.status == 200
        settings = await as_owner(svc.db, "SELECT * FROM client_settings WHERE client_id = 'mo'")
        assert settings[0]["unsubscribed_from_all"] is True
        # An admin editing the language does not subscribe the recipient again.
        status, edited = await svc.call(
            "PUT", "/v1/client-settings/mo", brand, role="admin", json={"language": "fr"}
        )
        assert status == 200, edited
        assert edited["language"] == "fr" and edited["unsubscribed_from_all"] is True, edited
        assert edited["unsubscribed_types"] == ["reminder_24h"], edited
        svc.clock.now = MONDAY + timedelta(hours=96)
        await drain(svc)
        assert len(mail.of(brand)) == 2
        row = await svc.row(brand, first)
        assert row is not None


async def test_bad_tokens_get_a_page_not_a_500(
    fresh_db: TestDatabase, kafka_bootstrap: str, topics: None
) -> None:
    async with escalation_service(fresh_db, kafka_bootstrap, start=MONDAY) as (svc, _):
        tokens = svc.app.state.unsubscribe_tokens
        from pressroom_approval.escalations.tokens import Unsubscribe

        brand = await svc.brand("Acme", "UTC")
        nobody = tokens.sign(Unsubscribe(brand, "nobody-here"))
        other_brand = tokens.sign(Unsubscribe(uuid.uuid4(), "mo"))
        good = tokens.sign(Unsubscribe(brand, "mo"))
        for token, expected in (
            ("garbage", 400),
            (good[:-3] + "abc", 400),
            ("a" * 2000, 400),
            ("%E2%80%AE.x", 400),
            (nobody, 404),
            (other_brand, 404),
        ):
            for method in ("GET", "POST"):
                async with svc.http.request(method, f"{svc.base}/v1/unsubscribe/{token}") as r:
                    assert r.status == expected, (token, method, await r.text())
                    assert r.content_type == "text/html"
        rows = await as_owner(svc.db, "SELECT count(*) AS n FROM client_settings")
        assert rows[0]["n"] == 0
        assert address("mo", brand)  # the helper is shared with the other tests
