"""Posts over HTTP: create, validate, edit, reschedule, submit, cancel, retry, the 409s and
brand isolation; against the real service, database and a fake platform over HTTP."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from publishing_testkit import (
    add_media,
    connect_platform,
    fake_platform,
    outbox,
    publishing_service,
    targets,
)

pytestmark = pytest.mark.integration


@pytest.fixture
async def service(fresh_db, kafka_bootstrap):
    async with (
        fake_platform() as platform,
        publishing_service(fresh_db, kafka_bootstrap, platform) as service,
    ):
        service.platform = platform
        yield service


def fields(body) -> dict[str, str]:
    return {e["field"]: e["message"] for e in body["errors"]}


async def test_a_post_is_created_as_a_draft_and_read_back(service):
    brand = uuid.uuid4()
    await connect_platform(service.db, brand, "sandbox")
    await connect_platform(service.db, brand, "x")
    image = await add_media(service.db, brand)
    when = (service.clock() + timedelta(hours=2)).isoformat()
    created = await service.create(
        brand,
        content={"text": "Spring launch", "media_ids": [str(image)], "link": "https://ex.am/ple"},
        platforms=["sandbox", "x"],
        overrides={"x": {"text": "Spring launch, short"}},
        scheduled_at=when,
    )
    assert created["status"] == "draft"
    assert created["results"] == {
        "sandbox": {"status": "pending", "platform_post_id": None, "url": None, "error": None},
        "x": {"status": "pending", "platform_post_id": None, "url": None, "error": None},
    }
    assert created["overrides"] == {"x": {"text": "Spring launch, short", "media_ids": None}}
    assert created["author"] == "user-manager"
    assert await service.post(brand, created["id"]) == created
    status, page = await service.call("GET", "/v1/posts?platform=x", brand, role="viewer")
    assert status == 200 and [p["id"] for p in page["items"]] == [created["id"]]
    status, page = await service.call("GET", "/v1/posts?status=scheduled", brand, role="viewer")
    assert status == 200 and page["items"] == []
    types = [t for t, _ in await outbox(service.db)]
    assert types == ["publishing.post.created.v1"]


async def test_validation_names_each_platform_and_field(service):
    brand, other = uuid.uuid4(), uuid.uuid4()
    await connect_platform(service.db, brand, "sandbox")
    await connect_platform(service.db, brand, "x")
    await connect_platform(service.db, brand, "pinterest")
    mine = await add_media(service.db, brand)
    video = await add_media(service.db, brand, kind="video", content_type="video/mp4")
    theirs = await add_media(service.db, other)
    status, body = await service.call(
        "POST",
        "/v1/posts",
        brand,
        json={
            "content": {"text": "x" * 300, "media_ids": [str(mine), str(theirs)]},
            "platforms": ["sandbox", "x", "pinterest", "mastodon", "facebook", "myspace"],
            "overrides": {
                "sandbox": {"text": "short"},
                "pinterest": {"media_ids": [str(video)]},
                "threads": {"text": "?"},
            },
        },
    )
    assert status == 422, body
    assert body["type"].endswith("/invalid_post")
    problems = fields(body)
    assert set(problems) == {
        "content.media_ids[1]",  # another brand's asset
        "overrides.threads",  # not one of the post's platforms
        "platforms.x.text",  # 300 over X's 280; sandbox's override is short, so fine
        "platforms.pinterest.media",  # a video where only an image goes
        "platforms.mastodon.connection",  # known, configured, not connected
        "platforms.facebook",  # known but not available here
        "platforms.myspace",  # unknown
    }
    assert "280" in problems["platforms.x.text"]
    assert "unknown platform" in problems["platforms.myspace"]


async def test_bad_bodies_are_422_problems_never_500(service):
    brand = uuid.uuid4()
    for body in (
        {"content": {"text": "a"}, "platforms": []},
        {"content": {"text": "a"}, "platforms": ["Sand Box"]},
        {"content": {"text": "a"}, "platforms": ["sandbox"], "scheduled_at": "2026-01-01T10:00"},
        {"content": {"text": "a", "media_ids": ["nope"]}, "platforms": ["sandbox"]},
        {"content": {"text": "a"}, "platforms": ["sandbox"], "requires_approval": 1},
        {"content": {"text": "a"}, "platforms": ["sandbox"], "extra": True},
        {"platforms": ["sandbox"]},
    ):
        status, answer = await service.call("POST", "/v1/posts", brand, json=body)
        assert status == 422, (body, answer)
        assert answer["errors"], answer
    status, _ = await service.call("POST", "/v1/posts", brand, data=b"{not json")
    assert status == 400


async def test_edit_reschedule_submit_cancel_and_their_conflicts(service):
    brand = uuid.uuid4()
    await connect_platform(service.db, brand, "sandbox")
    await connect_platform(service.db, brand, "x")
    later = service.clock() + timedelta(hours=3)
    post = await service.create(brand, scheduled_at=later.isoformat())
    pid = post["id"]

    status, edited = await service.call(
        "PATCH", f"/v1/posts/{pid}", brand, json={"content": {"text": "Better"}, "platforms": ["x"]}
    )
    assert status == 200, edited
    assert edited["content"]["text"] == "Better" and edited["platforms"] == ["x"]
    status, body = await service.call(
        "PATCH", f"/v1/posts/{pid}", brand, json={"content": {"text": "y" * 281}}
    )
    assert status == 422 and set(fields(body)) == {"platforms.x.text"}
    status, body = await service.call("PATCH", f"/v1/posts/{pid}", brand, json={"platforms": None})
    assert status == 422

    status, submitted = await service.call("POST", f"/v1/posts/{pid}/submit", brand)
    assert status == 200 and submitted["status"] == "scheduled", submitted
    rows = await targets(service.db, pid)
    assert set(rows) == {"x"} and rows["x"]["status"] == "pending"
    assert rows["x"]["due_at"] == later

    sooner = later - timedelta(hours=1)
    status, moved = await service.call(
        "PATCH", f"/v1/posts/{pid}", brand, json={"scheduled_at": sooner.isoformat()}
    )
    assert status == 200 and moved["status"] == "scheduled"
    assert (await targets(service.db, pid))["x"]["due_at"] == sooner

    status, body = await service.call("POST", f"/v1/posts/{pid}/submit", brand)
    assert status == 409 and body["type"].endswith("/not_a_draft")
    status, body = await service.call("POST", f"/v1/posts/{pid}/retry", brand)
    assert status == 409 and body["type"].endswith("/nothing_to_retry")

    status, cancelled = await service.call("POST", f"/v1/posts/{pid}/cancel", brand)
    assert status == 200 and cancelled["status"] == "cancelled"
    assert cancelled["results"]["x"]["status"] == "cancelled"
    assert (await targets(service.db, pid))["x"]["status"] == "cancelled"
    status, body = await service.call(
        "PATCH", f"/v1/posts/{pid}", brand, json={"content": {"text": "z"}}
    )
    assert status == 409
    status, body = await service.call("POST", f"/v1/posts/{pid}/cancel", brand)
    assert status == 409 and body["type"].endswith("/not_cancellable")
    types = [t for t, _ in await outbox(service.db)]
    assert types == [
        "publishing.post.created.v1",
        "publishing.post.updated.v1",
        "publishing.post.scheduled.v1",
        "publishing.post.updated.v1",
        "publishing.post.cancelled.v1",
    ]


async def test_a_published_post_cannot_be_edited_or_cancelled(service):
    brand = uuid.uuid4()
    await connect_platform(service.db, brand, "sandbox")
    post = await service.create(brand)
    status, _ = await service.call("POST", f"/v1/posts/{post['id']}/submit", brand)
    assert status == 200
    await service.drain()
    published = await service.post(brand, post["id"])
    assert published["status"] == "published", published
    status, body = await service.call(
        "PATCH", f"/v1/posts/{post['id']}", brand, json={"content": {"text": "late"}}
    )
    assert status == 409 and body["type"].endswith("/already_published")
    status, body = await service.call("POST", f"/v1/posts/{post['id']}/cancel", brand)
    assert status == 409


async def test_roles_and_brand_isolation(service):
    brand, other = uuid.uuid4(), uuid.uuid4()
    await connect_platform(service.db, brand, "sandbox")
    post = await service.create(brand)
    pid = post["id"]
    status, _ = await service.call("POST", "/v1/posts", brand, role="viewer", json={})
    assert status == 403
    status, _ = await service.call("POST", f"/v1/posts/{pid}/submit", brand, role="viewer")
    assert status == 403
    for method, path, body in (
        ("GET", f"/v1/posts/{pid}", None),
        ("PATCH", f"/v1/posts/{pid}", {"content": {"text": "mine now"}}),
        ("POST", f"/v1/posts/{pid}/submit", None),
        ("POST", f"/v1/posts/{pid}/cancel", None),
        ("POST", f"/v1/posts/{pid}/retry", None),
        ("GET", f"/v1/posts/{pid}/logs", None),
        ("POST", f"/v1/posts/{pid}/platforms/sandbox/retry", None),
        ("POST", f"/v1/posts/{pid}/platforms/sandbox/mark-published", {"platform_post_id": "1"}),
    ):
        status, answer = await service.call(method, path, other, json=body)
        assert status == 404, (method, path, answer)
    status, page = await service.call("GET", "/v1/posts", other, role="viewer")
    assert page["items"] == []
    assert (await service.post(brand, pid))["content"]["text"] == "Hello"


async def test_editing_a_post_under_review_returns_it_to_draft(service):
    brand = uuid.uuid4()
    await connect_platform(service.db, brand, "sandbox")
    post = await service.create(brand, requires_approval=True)
    pid = post["id"]
    status, body = await service.call("POST", f"/v1/posts/{pid}/submit", brand)
    assert status == 200 and body["status"] == "awaiting_approval"
    status, body = await service.call(
        "PATCH", f"/v1/posts/{pid}", brand, json={"content": {"text": "changed under review"}}
    )
    assert status == 200 and body["status"] == "draft", body
    updated = [d for t, d in await outbox(service.db) if t == "publishing.post.updated.v1"]
    assert updated[-1]["status"] == "draft" and updated[-1]["changed"] == ["text"]
    status, body = await service.call("POST", f"/v1/posts/{pid}/cancel", brand)
    assert status == 200 and body["status"] == "cancelled"


async def test_racing_commands_on_one_post_are_serialized_never_a_500(service):
    import asyncio

    brand = uuid.uuid4()
    await connect_platform(service.db, brand, "sandbox")
    post = await service.create(brand)
    pid = post["id"]
    edits = await asyncio.gather(
        *(
            service.call("PATCH", f"/v1/posts/{pid}", brand, json={"content": {"text": f"v{i}"}})
            for i in range(8)
        )
    )
    assert [status for status, _ in edits] == [200] * 8
    final = await service.post(brand, pid)
    assert final["content"]["text"] in {f"v{i}" for i in range(8)}
    submits = await asyncio.gather(
        *(service.call("POST", f"/v1/posts/{pid}/submit", brand) for _ in range(4))
    )
    assert sorted(status for status, _ in submits) == [200, 409, 409, 409]
    assert len(await targets(service.db, pid)) == 1
    types = [t for t, _ in await outbox(service.db)]
    assert types.count("publishing.post.updated.v1") == 8
    assert types.count("publishing.post.scheduled.v1") == 1
