"""Hostile review of the review form's nonce: it must notice a re-submission even when
publishing's event carries no ``submission`` number (the contract allows null; the
approval then tells rounds apart by the post's ``version``). A form shown for version 2
must not approve version 5."""

from __future__ import annotations

import uuid

import pytest
from approval_testkit import Service
from review_testkit import create_link, get_page, local_path, post_form

pytestmark = pytest.mark.integration


async def test_a_form_of_an_unnumbered_submission_is_stale_after_a_resubmission(
    svc: Service,
) -> None:
    brand = await svc.brand()
    post_id = await svc.submit(brand, uuid.uuid4(), author="ann", submission=None, version=2)
    row = await svc.row(brand, post_id)
    assert row is not None
    link = await create_link(svc, brand, str(row["id"]))
    page = await get_page(svc, link["url"])
    assert page.status == 200, page.text
    fields = dict(page.forms()["approve-form"])
    action = fields.pop("__action")

    await svc.submit(brand, post_id, author="ann", submission=None, version=5, text="Changed")
    answer = await post_form(svc, action, {**fields, "comment": ""})
    assert answer.status == 409, answer.text
    assert "Reload the page" in answer.text
    after = await svc.row(brand, post_id)
    assert after is not None and after["status"] == "pending"
    # The page as it is now decides.
    assert action == local_path(svc, link["url"]) + "/decision"
    fresh = dict((await get_page(svc, link["url"])).forms()["approve-form"])
    fresh.pop("__action")
    assert (await post_form(svc, action, {**fresh, "comment": ""})).status == 200
