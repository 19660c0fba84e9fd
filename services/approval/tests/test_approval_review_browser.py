"""A reviewer in a real browser: headless Chromium (over the DevTools Protocol) opens the
review page, reads it, clicks "Approve" and sees the result page; the approval is then
approved and ``approval.approved.v1`` is on its way to publishing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from approval_testkit import Service, outbox
from browser_testkit import Browser, BrowserUnavailable, chromium, ensure_chromium
from review_testkit import create_link, local_path, open_approval

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def chromium_path() -> str:
    try:
        return ensure_chromium()
    except BrowserUnavailable as exc:
        pytest.skip(f"no headless browser: {exc}")


@pytest.fixture
async def browser(chromium_path: str) -> AsyncIterator[Browser]:
    async with chromium() as running:
        yield running


async def test_a_reviewer_approves_in_a_browser(svc: Service, browser: Browser) -> None:
    brand = await svc.brand("Northwind", timezone="America/New_York")
    when = datetime(2031, 1, 10, 15, 0, tzinfo=UTC)
    approval_id, post_id = await open_approval(
        svc, brand, platforms=("sandbox", "x"), text="Winter sale", scheduled_at=when
    )
    link = await create_link(svc, brand, approval_id, name="Clara")
    url = svc.base + local_path(svc, link["url"])
    async with browser.page() as page:
        assert await page.goto(url) == 200
        text = await page.text()
        assert "Northwind: a post for your review" in text
        assert "Winter sale (sandbox)" in text and "Winter sale (x)" in text
        assert "Friday 10 January 2031, 10:00 EST (America/New_York)" in text
        assert await page.evaluate("document.querySelectorAll('form').length") == 2
        await page.fill("#approve-comment", "Ship it")
        assert await page.click_and_wait("#approve") == 200
        result = await page.text()
        assert "Thank you: the post is approved" in result
    approval = await svc.approval_of(brand, post_id)
    assert approval["status"] == "approved" and approval["comment"] == "Ship it"
    assert approval["decided_by"] == f"client:{link['id']}"
    events = [d for t, d in await outbox(svc.db) if t == "approval.approved.v1"]
    assert len(events) == 1 and events[0]["post_id"] == str(post_id)


async def test_request_changes_needs_a_comment_in_the_browser_too(
    svc: Service, browser: Browser
) -> None:
    """The textarea is ``required``: the browser does not send an empty request; with a
    comment it goes through and the page says so."""
    brand = await svc.brand()
    approval_id, post_id = await open_approval(svc, brand)
    link = await create_link(svc, brand, approval_id)
    url = svc.base + local_path(svc, link["url"])
    async with browser.page() as page:
        assert await page.goto(url) == 200
        valid = await page.evaluate("document.querySelector('#changes-form').checkValidity()")
        assert valid is False
        await page.fill("#changes-comment", "Shorter, please")
        assert await page.click_and_wait("#request-changes") == 200
        assert "changes requested" in await page.text()
    approval = await svc.approval_of(brand, post_id)
    assert approval["status"] == "rejected" and approval["reason"] == "Shorter, please"
