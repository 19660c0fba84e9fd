"""Review (issue #11): odd inputs on the publishing routes must be 4xx problems, never 500."""

from __future__ import annotations

import uuid

import pytest
from publishing_testkit import connect_platform, fake_platform, publishing_service

pytestmark = pytest.mark.integration


@pytest.fixture
async def service(fresh_db, kafka_bootstrap):
    async with (
        fake_platform() as platform,
        publishing_service(fresh_db, kafka_bootstrap, platform) as service,
    ):
        yield service


CREATES = {
    "nul_text": {"content": {"text": "a\x00b"}, "platforms": ["sandbox"]},
    "nul_override": {
        "content": {"text": "a"},
        "platforms": ["sandbox"],
        "overrides": {"sandbox": {"text": "\x00"}},
    },
    "nul_option": {
        "content": {"text": "a"},
        "platforms": ["sandbox"],
        "overrides": {"sandbox": {"options": {"title": "\x00"}}},
    },
    "lone_surrogate": {"content": {"text": "\ud800"}, "platforms": ["sandbox"]},
    "year_1_east": {
        "content": {"text": "a"},
        "platforms": ["sandbox"],
        "scheduled_at": "0001-01-01T00:00:00+14:00",
    },
    "year_9999_west": {
        "content": {"text": "a"},
        "platforms": ["sandbox"],
        "scheduled_at": "9999-12-31T23:59:59-14:00",
    },
    "duplicate_platforms": {"content": {"text": "a"}, "platforms": ["sandbox", "sandbox"]},
    "override_not_in_post": {
        "content": {"text": "a"},
        "platforms": ["sandbox"],
        "overrides": {"x": {"text": "b"}},
    },
}


@pytest.mark.parametrize("name", sorted(CREATES))
async def test_create_with_odd_bodies_is_a_4xx(service, name):
    brand = uuid.uuid4()
    await connect_platform(service.db, brand, "sandbox")
    status, answer = await service.call("POST", "/v1/posts", brand, json=CREATES[name])
    assert status < 500, answer
    if status == 201:  # accepted: reading and submitting it must not break either
        status, answer = await service.call("GET", f"/v1/posts/{answer['id']}", brand)
        assert status < 500, answer
        pid = answer["id"]
        status, answer = await service.call("POST", f"/v1/posts/{pid}/submit", brand)
        assert status < 500, answer


QUERIES = [
    "/v1/posts?from=0001-01-01T00:00:00%2B14:00",
    "/v1/posts?to=9999-12-31T23:59:59-14:00",
    "/v1/posts?cursor=%00",
    "/v1/posts?cursor=" + "A" * 5000,
    "/v1/calendar?from=0001-01-01&to=9999-12-31",
    "/v1/calendar?from=9999-12-31&to=9999-12-31",
]


@pytest.mark.parametrize("path", QUERIES)
async def test_odd_queries_are_a_4xx(service, path):
    brand = uuid.uuid4()
    status, answer = await service.call("GET", path, brand, role="viewer")
    assert status < 500, answer


async def test_mark_published_with_nul_is_a_4xx(service):
    brand = uuid.uuid4()
    await connect_platform(service.db, brand, "sandbox")
    post = await service.create(brand)
    status, answer = await service.call(
        "POST",
        f"/v1/posts/{post['id']}/platforms/sandbox/mark-published",
        brand,
        json={"platform_post_id": "\x00", "url": "https://a.example/\x00"},
    )
    assert status < 500, answer


@pytest.mark.parametrize(
    "when", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "1999-12-31T23:59:59Z"]
)
async def test_times_out_of_range_are_a_422_naming_the_field(service, when):
    brand = uuid.uuid4()
    await connect_platform(service.db, brand, "sandbox")
    body = {"content": {"text": "a"}, "platforms": ["sandbox"], "scheduled_at": when}
    status, answer = await service.call("POST", "/v1/posts", brand, json=body)
    assert status == 422 and [e["field"] for e in answer["errors"]] == ["scheduled_at"], answer
    assert "2000-01-01" in answer["errors"][0]["message"]
    post = await service.create(brand)
    status, answer = await service.call(
        "PATCH", f"/v1/posts/{post['id']}", brand, json={"scheduled_at": when}
    )
    assert status == 422 and [e["field"] for e in answer["errors"]] == ["scheduled_at"], answer
    for name in ("from", "to"):
        status, answer = await service.call(
            "GET", f"/v1/posts?{name}={when.replace('+', '%2B')}", brand, role="viewer"
        )
        assert status == 422 and [e["field"] for e in answer["errors"]] == [name], answer
