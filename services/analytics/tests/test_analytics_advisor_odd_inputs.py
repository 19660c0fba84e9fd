"""No input reaches a 500 on the advisor's routes: odd bodies, ids, queries and content
types all get a 4xx problem."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from analytics_testkit import analytics_service, token
from pressroom_kit.testing.plugin import TestDatabase

pytestmark = pytest.mark.integration

BODIES: list[Any] = [
    None,
    [],
    "text",
    1,
    {},
    {"metric": None, "target": None, "deadline": None},
    {"metric": "reach", "target": 1e308, "deadline": "2027-04-01"},
    {"metric": "reach", "target": 1, "deadline": "0000-01-01"},
    {"metric": "reach", "target": 1, "deadline": "2027-04-01T00:00:00Z"},
    {"metric": "reach", "target": 1, "deadline": "2027-04-01", "name": "\u0000"},
    {"metric": "reach", "target": 1, "deadline": "2027-04-01", "name": "x" * 201},
    {"metric": "reach", "target": 1, "deadline": "2027-04-01", "platform": "x" * 41},
    {"month": "0000-00"},
    {"month": "2999-12"},
    {"month": "\ud800"},
    {"feedback": None},
    {"feedback": ["accepted"]},
]


async def test_odd_inputs_get_problems_not_500s(
    fresh_db: TestDatabase, kafka_bootstrap: str, topics: None
) -> None:
    brand = uuid.uuid4()
    async with analytics_service(fresh_db, kafka_bootstrap) as svc:
        goal_id = str(uuid.uuid4())
        paths = [
            ("POST", "/v1/analytics/goals"),
            ("PATCH", f"/v1/analytics/goals/{goal_id}"),
            ("POST", "/v1/analytics/plans"),
            ("POST", f"/v1/analytics/insights/{goal_id}/feedback"),
        ]
        for method, path in paths:
            for body in BODIES:
                status, got = await svc.call(method, path, brand, json=body)
                assert 400 <= status < 500, (method, path, body, got)
            headers = {"Authorization": f"Bearer {token('manager', brand)}"}
            async with svc.http.request(
                method, svc.base + path, headers=headers, data=b"{not json"
            ) as answer:
                assert 400 <= answer.status < 500
                assert answer.headers["Content-Type"].startswith("application/problem+json")
        for path in (
            "/v1/analytics/goals/not-a-uuid",
            "/v1/analytics/plans/123",
            f"/v1/analytics/plans/{goal_id}",
            "/v1/analytics/plans?month=2027-1",
            "/v1/analytics/goals?status=%00",
            "/v1/analytics/insights?platform=" + "x" * 100,
        ):
            status, got = await svc.call("GET", path, brand, role="viewer")
            assert 400 <= status < 500, (path, got)
        # No token, and a token without a brand.
        async with svc.http.get(svc.base + "/v1/analytics/goals") as answer:
            assert answer.status == 401
        headers = {"Authorization": f"Bearer {token('manager', None)}"}
        async with svc.http.get(svc.base + "/v1/analytics/plans", headers=headers) as answer:
            assert answer.status == 403
