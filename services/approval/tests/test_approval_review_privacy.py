"""Hostile review of erasure: scrubbing a subject's address out of free text must not
rewrite a *different* address that merely contains it (``ann@x.org`` inside
``joann@x.org`` or ``ann@x.org.uk``), nor miss the subject's own address at the ends of a
sentence; the export's ``mentions`` likewise."""

from __future__ import annotations

import pytest
from approval_testkit import Service
from review_testkit import open_approval

pytestmark = pytest.mark.integration

ANN = "ann@x.org"
OTHERS = "ask joann@x.org or ann@x.org.uk or mary.ann@x.org"


async def test_erasure_scrubs_only_the_subjects_own_address(svc: Service) -> None:
    brand = await svc.brand()
    approval_id, _ = await open_approval(svc, brand)
    comments = f"/v1/approvals/{approval_id}/comments"
    for body in (OTHERS, f"cc {ANN}.", f"<{ANN}>, (Ann@X.org)"):
        status, answer = await svc.call("POST", comments, brand, sub="bob", json={"body": body})
        assert status == 201, answer

    status, found = await svc.call(
        "POST", f"/v1/privacy/subjects/{ANN}/export", brand, role="admin", sub="root"
    )
    assert status == 200, found
    # Other people's comments quoting *her* address, not ones naming someone else.
    assert sorted(c["body"] for c in found["mentions"]) == [f"<{ANN}>, (Ann@X.org)", f"cc {ANN}."]

    status, answer = await svc.call(
        "POST", f"/v1/privacy/subjects/{ANN}/erase", brand, role="admin", sub="root"
    )
    assert status == 200, answer
    status, page = await svc.call("GET", comments, brand, role="viewer")
    assert status == 200, page
    bodies = [c["body"] for c in page["items"]]
    assert bodies[0] == OTHERS  # other people's addresses are untouched
    assert "ann@x.org" not in bodies[1].lower() and bodies[1].startswith("cc ~")
    assert bodies[1].endswith(".")
    assert "ann@x.org" not in bodies[2].lower() and bodies[2].count("~") == 2
    assert answer["erased"]["free_text"] == 2
